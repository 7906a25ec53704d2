"""The floor: a fresh interpreter that imports jax and flax and runs one jitted
flax.linen.BatchNorm init + apply. Nothing that runs student code can be cheaper."""

import flax.linen as nn
import jax
import jax.numpy as jnp

model = nn.BatchNorm(momentum=0.9, epsilon=1e-5)


@jax.jit
def init_and_apply(x):
    variables = model.init(jax.random.PRNGKey(0), x, use_running_average=False)
    return model.apply(variables, x, use_running_average=False, mutable=["batch_stats"])


y, _ = init_and_apply(jnp.ones((8, 4)))
jax.block_until_ready(y)
