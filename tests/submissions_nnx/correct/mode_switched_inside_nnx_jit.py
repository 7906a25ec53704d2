# style: one nnx.jit step with a static `train` argument that switches the mode inside the trace
"""A training-loop habit: one jitted step for both modes, `train` a static argument,
and model.train() / model.eval() called inside the nnx.jit trace. nnx.jit merges a
copy of the model inside its trace, the mode attribute is read there, and the
BatchStat writes of a training call are carried back out. The flag still decides
the mode (model.eval() for 1.0, model.train() for 0.0) and the model is called
once through nnx.jit."""

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
        if self.use_running_average:
            mu, sigma2 = self.running_mean[...], self.running_var[...]
        else:
            mu = x.mean(axis=0)
            sigma2 = jnp.square(x - mu).mean(axis=0)
            self.running_mean[...] = self.momentum * self.running_mean[...] + (1 - self.momentum) * mu
            self.running_var[...] = self.momentum * self.running_var[...] + (1 - self.momentum) * sigma2
        return self.gamma[...] * (x - mu) / jnp.sqrt(sigma2 + self.epsilon) + self.beta[...]


@partial(nnx.jit, static_argnames="train")
def step(model: MyBatchNorm, x: jax.Array, train: bool) -> jax.Array:
    if train:
        model.train()
    else:
        model.eval()
    return model(x)


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm(x.shape[-1], rngs=nnx.Rngs(int(seed)))
    y = step(model, x, train=not bool(use_running_average))
    return y.flatten()
