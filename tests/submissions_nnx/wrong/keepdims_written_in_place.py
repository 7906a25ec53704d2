# pitfall: state_shape_changes
"""keepdims=True batch statistics written with `self.running_mean[...] = ...`: the (1, D)
value does not fit the (D,) BatchStat and the training call raises. One mistake: the
grader writes the value in the variable's shape to judge the rest, and charges the shape
once, in the variables check."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class MyBatchNorm(nnx.Module):
    """Batch normalization over axis 0 of an ``(N, D)`` input, ``D = num_features``.

    Attributes:
        gamma, beta: ``nnx.Param``, ones and zeros: what an optimizer trains.
        running_mean, running_var: ``nnx.BatchStat``, zeros and ones: state that
            changes by assignment, never by a gradient step.
        momentum: weight of the old running value in each update.
        epsilon: added to the variance inside the square root.
        use_running_average: False (training) after construction; ``eval()`` and
            ``train()`` set it.
    """

    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, rngs: nnx.Rngs):
        del rngs  # ones and zeros need no randomness; the signature is the NNX convention
        self.gamma = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.beta = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        # Not parameters: an optimizer built over nnx.Param never touches them.
        self.running_mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.running_var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = False

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.use_running_average:
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            mean = jnp.mean(x, axis=0, keepdims=True)  # (1, D)
            var = jnp.mean(jnp.square(x - mean), axis=0, keepdims=True)
            m = self.momentum
            self.running_mean[...] = m * self.running_mean[...] + (1.0 - m) * mean
            self.running_var[...] = m * self.running_var[...] + (1.0 - m) * var
        return self.gamma[...] * (x - mean) / jnp.sqrt(var + self.epsilon) + self.beta[...]


@nnx.jit
def _forward(model: MyBatchNorm, x: jax.Array) -> jax.Array:
    return model(x)


def init_and_apply(seed: float, x: jax.Array, use_running_average: float) -> jax.Array:
    """Build the model, set its mode, call it once through nnx.jit, return the flat output."""
    x = jnp.asarray(x)
    model = MyBatchNorm(x.shape[-1], rngs=nnx.Rngs(int(seed)))
    if use_running_average:
        model.eval()
    else:
        model.train()
    return _forward(model, x).reshape(-1)
