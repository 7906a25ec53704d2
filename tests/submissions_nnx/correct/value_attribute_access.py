# style: Variables read and written through `.value` (deprecated in flax 0.12, still works), nnx.jit over a lambda
"""The pre-0.12 NNX spelling: every Variable is read and written through `.value`
(`self.running_mean.value = new`). Flax 0.12 deprecates `.value` in favour of
`[...]` and warns, but the write still goes into the BatchStat (it is not
`self.running_mean = new`), so the statistics stay nnx.BatchStat, nnx.jit carries
them out, and the outputs are exactly the contract's. The step is nnx.jit over a
lambda, as the flax docs write it, and the float flag is compared with 1.0."""

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
            mean = self.running_mean.value
            var = self.running_var.value
        else:
            mean = jnp.mean(x, axis=0)
            var = jnp.mean((x - mean) ** 2, axis=0)
            self.running_mean.value = self.momentum * self.running_mean.value + (1 - self.momentum) * mean
            self.running_var.value = self.momentum * self.running_var.value + (1 - self.momentum) * var
        x_norm = (x - mean) / jnp.sqrt(var + self.epsilon)
        return self.gamma.value * x_norm + self.beta.value


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm(x.shape[-1], rngs=nnx.Rngs(int(seed)))
    if use_running_average == 1.0:
        model.eval()
    else:
        model.train()
    y = nnx.jit(lambda model, x: model(x))(model, x)
    return y.reshape(-1)
