# style: get_value()/set_value() accessors, super().__init__(), mode set with model.set_attributes(...)
"""Flax 0.12's explicit accessors: `variable.get_value()` and
`variable.set_value(new)` (what the deprecation message of `.value` suggests for
non-array Variables) write into the BatchStat itself. A PyTorch habit,
`super().__init__()`, is harmless on an nnx.Module. init_and_apply sets the mode
with `model.set_attributes(use_running_average=...)`, which is exactly what
`model.eval()` / `model.train()` do (they call set_attributes), and jits a named
step with the nnx.jit decorator."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class MyBatchNorm(nnx.Module):
    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, rngs: nnx.Rngs):
        super().__init__()
        self.num_features = num_features
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = False
        self.gamma = nnx.Param(jnp.ones(num_features, dtype=jnp.float32))
        self.beta = nnx.Param(jnp.zeros(num_features, dtype=jnp.float32))
        self.running_mean = nnx.BatchStat(jnp.zeros(num_features, dtype=jnp.float32))
        self.running_var = nnx.BatchStat(jnp.ones(num_features, dtype=jnp.float32))

    def _update(self, stat: nnx.BatchStat, batch_value: jax.Array) -> None:
        stat.set_value(self.momentum * stat.get_value() + (1.0 - self.momentum) * batch_value)

    def __call__(self, x: jax.Array) -> jax.Array:
        if not self.use_running_average:
            mean = x.mean(axis=0)
            var = ((x - mean) * (x - mean)).mean(axis=0)
            self._update(self.running_mean, mean)
            self._update(self.running_var, var)
        else:
            mean = self.running_mean.get_value()
            var = self.running_var.get_value()
        scale = self.gamma.get_value() / jnp.sqrt(var + self.epsilon)
        return (x - mean) * scale + self.beta.get_value()


@nnx.jit
def forward_step(model: MyBatchNorm, batch: jax.Array) -> jax.Array:
    return model(batch)


def init_and_apply(seed: float, x: jax.Array, use_running_average: float) -> jax.Array:
    model = MyBatchNorm(x.shape[-1], rngs=nnx.Rngs(int(seed)))
    model.set_attributes(use_running_average=bool(use_running_average))
    out = forward_step(model, x)
    return out.ravel()
