# style: momentum and epsilon stored as float32 jnp scalars (dtype discipline), not Python floats
"""Dtype discipline: the hyperparameters are kept as float32 JAX scalars
(`jnp.float32(momentum)`), so nothing is promoted. Flax 0.12 accepts array
attributes on a Module (they are part of its state and traced by nnx.jit; an
optimizer over nnx.Param does not touch them). The statistics are BatchStats
updated in place, and the outputs are the contract's."""

import jax.numpy as jnp
from flax import nnx


class MyBatchNorm(nnx.Module):
    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, rngs: nnx.Rngs):
        self.gamma = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.beta = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.running_mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.running_var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.momentum = jnp.float32(momentum)
        self.epsilon = jnp.float32(epsilon)
        self.use_running_average = False

    def __call__(self, x):
        if self.use_running_average:
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            mean = jnp.mean(x, axis=0)
            var = jnp.mean(jnp.square(x - mean), axis=0)
            self.running_mean[...] = self.momentum * self.running_mean[...] + (1 - self.momentum) * mean
            self.running_var[...] = self.momentum * self.running_var[...] + (1 - self.momentum) * var
        return self.gamma[...] * (x - mean) / jnp.sqrt(var + self.epsilon) + self.beta[...]


@nnx.jit
def _forward(model, x):
    return model(x)


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm(x.shape[-1], rngs=nnx.Rngs(int(seed)))
    if use_running_average:
        model.eval()
    else:
        model.train()
    return _forward(model, x).reshape(-1)
