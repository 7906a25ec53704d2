"""The NNX exercise's floor: a fresh interpreter that imports jax and flax.nnx
(heavier than flax.linen) and runs one nnx.jit-ted nnx.BatchNorm training call.
Nothing that runs an NNX submission can be cheaper."""

import jax.numpy as jnp
from flax import nnx

model = nnx.BatchNorm(4, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))


@nnx.jit
def train_step(model, x):
    return model(x)


y = train_step(model, jnp.ones((8, 4)))
y.block_until_ready()
