"""Written the way flax.nnx.BatchNorm is: statistics from E[x] and E[x^2] (one pass,
clipped at 0), a _normalize helper with flax's local names (scale, bias, mean, var),
while the attributes are the contract's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def _compute_stats(x: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    mean = jnp.mean(x, axes)
    mean2 = jnp.mean(jnp.square(x), axes)
    # Like flax's use_fast_variance: the one-pass form can cancel below zero.
    var = jnp.maximum(0.0, mean2 - jnp.square(mean))
    return mean, var


def _normalize(x: jax.Array, mean: jax.Array, var: jax.Array, scale: jax.Array, bias: jax.Array,
               epsilon: float) -> jax.Array:
    y = (x - mean) * jax.lax.rsqrt(var + epsilon)
    return y * scale + bias


class MyBatchNorm(nnx.Module):
    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, rngs: nnx.Rngs):
        feature_shape = (num_features,)
        self.running_mean = nnx.BatchStat(jnp.zeros(feature_shape, jnp.float32))
        self.running_var = nnx.BatchStat(jnp.ones(feature_shape, jnp.float32))
        self.gamma = nnx.Param(nnx.initializers.ones_init()(rngs.params(), feature_shape, jnp.float32))
        self.beta = nnx.Param(nnx.initializers.zeros_init()(rngs.params(), feature_shape, jnp.float32))
        self.num_features = num_features
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = False

    def __call__(self, x: jax.Array) -> jax.Array:
        reduction_axes = (0,)
        if self.use_running_average:
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            mean, var = _compute_stats(x, reduction_axes)
            self.running_mean[...] = self.momentum * self.running_mean[...] + (1 - self.momentum) * mean
            self.running_var[...] = self.momentum * self.running_var[...] + (1 - self.momentum) * var
        return _normalize(x, mean, var, self.gamma[...], self.beta[...], self.epsilon)


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm(x.shape[-1], rngs=nnx.Rngs(int(seed)))
    model.set_attributes(use_running_average=bool(use_running_average))
    y = nnx.jit(lambda model, x: model(x))(model, jnp.asarray(x))
    return jnp.ravel(y)
