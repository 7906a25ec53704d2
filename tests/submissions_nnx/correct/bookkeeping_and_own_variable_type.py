"""Extra state beside the contract's: a step counter (its own BatchStat), the Rngs
kept as an attribute, and the running statistics as a subclass of nnx.BatchStat.
A train step jitted with nnx.jit as a method decorator."""

import jax
import jax.numpy as jnp
from flax import nnx


class RunningStat(nnx.BatchStat):
    """Still a BatchStat: an optimizer over nnx.Param does not see it."""


class MyBatchNorm(nnx.Module):
    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, rngs: nnx.Rngs):
        self.rngs = rngs
        self.gamma = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.beta = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.running_mean = RunningStat(jnp.zeros((num_features,), jnp.float32))
        self.running_var = RunningStat(jnp.ones((num_features,), jnp.float32))
        self.steps = nnx.BatchStat(jnp.zeros((), jnp.int32))
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = False

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.use_running_average:
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            mean = x.mean(0)
            var = jnp.square(x - mean).mean(0)
            keep = self.momentum
            self.running_mean[...] = keep * self.running_mean[...] + (1.0 - keep) * mean
            self.running_var[...] = keep * self.running_var[...] + (1.0 - keep) * var
            self.steps[...] += 1
        inv = jax.lax.rsqrt(var + self.epsilon)
        return (x - mean) * inv * self.gamma[...] + self.beta[...]

    @nnx.jit
    def step(self, x: jax.Array) -> jax.Array:
        return self(x)


def init_and_apply(seed: float, x, use_running_average: float):
    model = MyBatchNorm(jnp.shape(x)[-1], rngs=nnx.Rngs(int(seed)))
    if use_running_average:
        model.eval()
    else:
        model.train()
    return jnp.reshape(model.step(jnp.asarray(x)), (-1,))
