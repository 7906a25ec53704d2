# style: a notebook habit: init_and_apply hands back a NumPy array (np.asarray(...).ravel())
"""Written in a notebook: the arithmetic is the textbook one, and init_and_apply
returns `np.asarray(y).ravel()`, a 1-D NumPy array of the N * D output values
(row by row, like jnp's reshape(-1)). The call itself goes through nnx.jit, so the
BatchStat updates are carried back into the model; converting the result to
NumPy only happens after the jitted call returned concrete values."""

import numpy as np
import jax
import jax.numpy as jnp
from flax import nnx


class MyBatchNorm(nnx.Module):
    def __init__(self, num_features, *, momentum=0.9, epsilon=1e-5, rngs):
        self.gamma = nnx.Param(jnp.ones(num_features))
        self.beta = nnx.Param(jnp.zeros(num_features))
        self.running_mean = nnx.BatchStat(jnp.zeros(num_features))
        self.running_var = nnx.BatchStat(jnp.ones(num_features))
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = False

    def __call__(self, x):
        if self.use_running_average:
            mean = self.running_mean[...]
            var = self.running_var[...]
        else:
            batch_mean = x.mean(axis=0)
            batch_var = ((x - batch_mean) ** 2).mean(axis=0)
            self.running_mean[...] = self.momentum * self.running_mean[...] + (1 - self.momentum) * batch_mean
            self.running_var[...] = self.momentum * self.running_var[...] + (1 - self.momentum) * batch_var
            mean, var = batch_mean, batch_var
        return self.gamma[...] * (x - mean) / jnp.sqrt(var + self.epsilon) + self.beta[...]


@nnx.jit
def forward(model, x):
    return model(x)


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm(x.shape[-1], rngs=nnx.Rngs(int(seed)))
    if use_running_average:
        model.eval()
    else:
        model.train()
    y = forward(model, x)
    return np.asarray(y).ravel()
