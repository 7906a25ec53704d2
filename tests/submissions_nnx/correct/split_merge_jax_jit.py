"""The functional style: split the model into graphdef, params and batch stats,
merge it inside a plain jax.jit, return the new BatchStat state and update the
model with it. Correct: jax.jit never sees the outer model's variables."""

from functools import partial

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
        if not self.use_running_average:
            mean = jnp.mean(x, axis=0)
            var = jnp.var(x, axis=0)
            self.running_mean[...] = self.momentum * self.running_mean[...] + (1 - self.momentum) * mean
            self.running_var[...] = self.momentum * self.running_var[...] + (1 - self.momentum) * var
        else:
            mean = self.running_mean[...]
            var = self.running_var[...]
        x_hat = (x - mean) / jnp.sqrt(var + self.epsilon)
        return self.gamma[...] * x_hat + self.beta[...]


@partial(jax.jit, static_argnums=0)
def _step(graphdef, params, batch_stats, x):
    model = nnx.merge(graphdef, params, batch_stats)
    y = model(x)
    _, _, new_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    return y, new_stats


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm(x.shape[-1], rngs=nnx.Rngs(int(seed)))
    model.eval() if use_running_average else model.train()
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    y, new_stats = _step(graphdef, params, batch_stats, jnp.asarray(x))
    nnx.update(model, new_stats)
    return y.flatten()
