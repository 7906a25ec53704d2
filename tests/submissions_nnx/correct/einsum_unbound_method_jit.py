# style: einsum arithmetic, a feature-count assertion, nnx.jit over the unbound MyBatchNorm.__call__
"""Index notation throughout: the batch sums are `einsum('nd->d')` and
`einsum('nd,nd->d')` divided by N (the biased variance), the output is an einsum
broadcast of gamma. `__call__` checks `x.shape[-1] == num_features` (shapes are
static under jit). init_and_apply jits the unbound method, `nnx.jit(MyBatchNorm.__call__)`,
and calls it with the model as its first argument: nnx.jit sees the model as an
argument and carries its BatchStat updates out. In-place `+=` on `[...]` does the EMA
as running + (1 - momentum) * (batch - running), the same update rearranged."""

import jax.numpy as jnp
from flax import nnx


class MyBatchNorm(nnx.Module):
    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, rngs: nnx.Rngs):
        self.num_features = num_features
        self.gamma = nnx.Param(jnp.ones((num_features,)))
        self.beta = nnx.Param(jnp.zeros((num_features,)))
        self.running_mean = nnx.BatchStat(jnp.zeros((num_features,)))
        self.running_var = nnx.BatchStat(jnp.ones((num_features,)))
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = False

    def __call__(self, x):
        n, d = x.shape
        assert d == self.num_features, f"expected {self.num_features} features, got {d}"
        if self.use_running_average:
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            mean = jnp.einsum("nd->d", x) / n
            centered = x - mean
            var = jnp.einsum("nd,nd->d", centered, centered) / n
            self.running_mean[...] += (1.0 - self.momentum) * (mean - self.running_mean[...])
            self.running_var[...] += (1.0 - self.momentum) * (var - self.running_var[...])
        inv_std = 1.0 / jnp.sqrt(var + self.epsilon)
        return jnp.einsum("nd,d->nd", x - mean, self.gamma[...] * inv_std) + self.beta[...]


def init_and_apply(seed, x, use_running_average):
    x = jnp.asarray(x, jnp.float32)
    model = MyBatchNorm(x.shape[-1], rngs=nnx.Rngs(int(seed)))
    if use_running_average:
        model.eval()
    else:
        model.train()
    forward = nnx.jit(MyBatchNorm.__call__)
    return forward(model, x).reshape(x.shape[0] * x.shape[1])
