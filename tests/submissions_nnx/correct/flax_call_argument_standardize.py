# style: like nnx.BatchNorm: optional use_running_average call argument, dtype/param_dtype options, jax.nn.standardize
"""Modelled on flax.nnx.BatchNorm: `__call__(x, use_running_average=None)` falls back
to the attribute (so model.eval()/model.train() decide when nothing is passed, as
the contract calls it), extra keyword-only dtype/param_dtype options with
defaults, and the normalization done by `jax.nn.standardize(x, axis=0, mean=...,
variance=..., epsilon=...)`, which computes (x - mean) * rsqrt(variance + eps):
the contract's formula. The statistics it is given are the batch mean and the
biased variance (jnp.var, ddof=0) in training and the running ones in eval."""

from __future__ import annotations

import typing as tp

import jax
import jax.numpy as jnp
from flax import nnx


def first_from(*args: tp.Any) -> tp.Any:
    for arg in args:
        if arg is not None:
            return arg
    raise ValueError("no value given")


class MyBatchNorm(nnx.Module):
    def __init__(
        self,
        num_features: int,
        *,
        momentum: float = 0.9,
        epsilon: float = 1e-5,
        dtype: tp.Any | None = None,
        param_dtype: tp.Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        feature_shape = (num_features,)
        self.gamma = nnx.Param(jnp.ones(feature_shape, param_dtype))
        self.beta = nnx.Param(jnp.zeros(feature_shape, param_dtype))
        self.running_mean = nnx.BatchStat(jnp.zeros(feature_shape, param_dtype))
        self.running_var = nnx.BatchStat(jnp.ones(feature_shape, param_dtype))
        self.num_features = num_features
        self.momentum = momentum
        self.epsilon = epsilon
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.use_running_average = False

    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        use_running_average = first_from(use_running_average, self.use_running_average)
        if use_running_average:
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            mean = jnp.mean(x, axis=0)
            var = jnp.var(x, axis=0)
            self.running_mean[...] = self.momentum * self.running_mean[...] + (1 - self.momentum) * mean
            self.running_var[...] = self.momentum * self.running_var[...] + (1 - self.momentum) * var
        y = jax.nn.standardize(x, axis=0, mean=mean, variance=var, epsilon=self.epsilon)
        y = y * self.gamma[...] + self.beta[...]
        return jnp.asarray(y, self.dtype or jnp.result_type(x, self.param_dtype))


@nnx.jit
def apply_model(model, x):
    return model(x)


def init_and_apply(seed: float, x: jax.Array, use_running_average: float) -> jax.Array:
    model = MyBatchNorm(x.shape[-1], rngs=nnx.Rngs(int(seed)))
    if use_running_average:
        model.eval()
    else:
        model.train()
    return jnp.ravel(apply_model(model, x))
