# pitfall: jax_jit_on_state
"""init_and_apply jits the stateful call with a plain jax.jit: in training mode the BatchStat update raises TraceContextError (eval mode writes nothing and runs)."""

import jax
import jax.numpy as jnp
from flax import nnx


class MyBatchNorm(nnx.Module):
    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, rngs: nnx.Rngs):
        self.gamma = nnx.Param(jnp.ones((num_features,)))
        self.beta = nnx.Param(jnp.zeros((num_features,)))
        self.running_mean = nnx.BatchStat(jnp.zeros((num_features,)))
        self.running_var = nnx.BatchStat(jnp.ones((num_features,)))
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = False

    def __call__(self, x):
        m = self.momentum
        if self.use_running_average:
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            mean = jnp.mean(x, axis=0)
            var = jnp.mean((x - mean) ** 2, axis=0)
            self.running_mean[...] = m * self.running_mean[...] + (1 - m) * mean
            self.running_var[...] = m * self.running_var[...] + (1 - m) * var
        return self.gamma[...] * (x - mean) / jnp.sqrt(var + self.epsilon) + self.beta[...]


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm(x.shape[-1], rngs=nnx.Rngs(int(seed)))
    if use_running_average:
        model.eval()
    else:
        model.train()
    return jax.jit(lambda x: model(x))(x).reshape(-1)
