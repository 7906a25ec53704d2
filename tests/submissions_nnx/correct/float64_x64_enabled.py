# style: double precision: jax_enable_x64 switched on at import, float64 variables, input cast to float64
"""A student who wants exact numbers turns on JAX's 64-bit mode at the top of the
file and keeps everything in float64: the variables are created as float64 and
the input is cast to float64. The arithmetic is the contract's (batch mean, biased
variance over axis 0, EMA with momentum, eps inside the square root), only more
precise than float32; the statistics are still nnx.Param / nnx.BatchStat and the
call goes through nnx.jit."""

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402


class MyBatchNorm(nnx.Module):
    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, rngs: nnx.Rngs):
        self.gamma = nnx.Param(jnp.ones((num_features,), jnp.float64))
        self.beta = nnx.Param(jnp.zeros((num_features,), jnp.float64))
        self.running_mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float64))
        self.running_var = nnx.BatchStat(jnp.ones((num_features,), jnp.float64))
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = False

    def __call__(self, x):
        x = jnp.asarray(x, jnp.float64)
        if self.use_running_average:
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            mean = jnp.mean(x, axis=0)
            var = jnp.mean(jnp.square(x - mean), axis=0)
            self.running_mean[...] = self.momentum * self.running_mean[...] + (1.0 - self.momentum) * mean
            self.running_var[...] = self.momentum * self.running_var[...] + (1.0 - self.momentum) * var
        return self.gamma[...] * (x - mean) / jnp.sqrt(var + self.epsilon) + self.beta[...]


@nnx.jit
def _apply(model, x):
    return model(x)


def init_and_apply(seed, x, use_running_average):
    x = jnp.asarray(x, jnp.float64)
    model = MyBatchNorm(x.shape[-1], rngs=nnx.Rngs(int(seed)))
    if use_running_average:
        model.eval()
    else:
        model.train()
    return _apply(model, x).reshape(-1)
