# pitfall: dtype_not_float32
"""Mixed-precision habits: gamma and beta declared as bfloat16 (param_dtype). The outputs
are still float32 by promotion, and close, but the parameters are rounded: charged once
by the variables check instead of a zero (the worker sends bfloat16 arrays widened)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class MyBatchNorm(nn.Module):
    """Batch normalization over axis 0 of an ``(N, D)`` input.

    Attributes:
        momentum: weight of the old running value in each update.
        eps: added to the variance inside the square root.
    """

    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
        features = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones, (features,), jnp.bfloat16)
        beta = self.param("beta", nn.initializers.zeros, (features,), jnp.bfloat16)
        # Not parameters: no optimizer touches them; they change by assignment.
        running_mean = self.variable(
            "batch_stats", "running_mean", lambda: jnp.zeros((features,), x.dtype)
        )
        running_var = self.variable(
            "batch_stats", "running_var", lambda: jnp.ones((features,), x.dtype)
        )

        if use_running_average:
            mean, var = running_mean.value, running_var.value
        else:
            mean = jnp.mean(x, axis=0)
            var = jnp.mean(jnp.square(x - mean), axis=0)
            # init only allocates the statistics; the first real batch updates them.
            if not self.is_initializing():
                m = self.momentum
                running_mean.value = m * running_mean.value + (1.0 - m) * mean
                running_var.value = m * running_var.value + (1.0 - m) * var

        return gamma * (x - mean) / jnp.sqrt(var + self.eps) + beta


def init_and_apply(seed: float, x: jax.Array, use_running_average: float) -> jax.Array:
    """Initialize, split the variables, apply once, and return the flat output."""
    model = MyBatchNorm()
    x = jnp.asarray(x)
    variables = model.init(
        jax.random.PRNGKey(int(seed)), x, use_running_average=False
    )
    params, batch_stats = variables["params"], variables["batch_stats"]
    y, _updates = model.apply(
        {"params": params, "batch_stats": batch_stats},
        x,
        use_running_average=bool(use_running_average),
        mutable=["batch_stats"],
    )
    return y.reshape(-1)
