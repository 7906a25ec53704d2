# style: __call__ itself decorated with @nnx.jit, so every call of the model is jitted
"""`@nnx.jit` on `__call__`: calling the model is the call through nnx.jit (self,
the model, is nnx.jit's first argument, so its BatchStat writes are carried back
out). init_and_apply then simply calls `model(x)` after setting the mode."""

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

    @nnx.jit
    def __call__(self, x):
        if self.use_running_average:
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            mean = jnp.mean(x, axis=0)
            var = jnp.mean(jnp.square(x - mean), axis=0)
            self.running_mean[...] = self.momentum * self.running_mean[...] + (1 - self.momentum) * mean
            self.running_var[...] = self.momentum * self.running_var[...] + (1 - self.momentum) * var
        return self.gamma[...] * (x - mean) / jnp.sqrt(var + self.epsilon) + self.beta[...]


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm(x.shape[-1], rngs=nnx.Rngs(int(seed)))
    if use_running_average:
        model.eval()
    else:
        model.train()
    return model(x).reshape(-1)
