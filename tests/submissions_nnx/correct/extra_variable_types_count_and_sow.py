# style: following the NNX basics guide: a `class Count(nnx.Variable)` call counter and self.sow(nnx.Intermediate, ...)
"""Two kinds of extra state a Flax NNX user learns from the basics guide, beside the
contract's four: its own Variable type, `class Count(nnx.Variable)`, counting
training calls (split, merged and carried through nnx.jit with the model, but
neither nnx.Param nor nnx.BatchStat), and `self.sow(nnx.Intermediate, ...)`
recording each training batch's mean and variance for inspection (an Intermediate
variable created by the first call). Neither changes what the contract's
variables compute: outputs, running update and eval are exactly as specified."""

import jax.numpy as jnp
from flax import nnx


class Count(nnx.Variable):
    pass


class MyBatchNorm(nnx.Module):
    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, rngs: nnx.Rngs):
        self.gamma = nnx.Param(jnp.ones((num_features,)))
        self.beta = nnx.Param(jnp.zeros((num_features,)))
        self.running_mean = nnx.BatchStat(jnp.zeros((num_features,)))
        self.running_var = nnx.BatchStat(jnp.ones((num_features,)))
        self.count = Count(jnp.array(0, dtype=jnp.int32))
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = False

    def __call__(self, x):
        if self.use_running_average:
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            mean = jnp.mean(x, axis=0)
            var = jnp.mean(jnp.square(x - mean), axis=0)
            self.sow(nnx.Intermediate, "batch_mean", mean)
            self.sow(nnx.Intermediate, "batch_var", var)
            self.running_mean[...] = self.momentum * self.running_mean[...] + (1 - self.momentum) * mean
            self.running_var[...] = self.momentum * self.running_var[...] + (1 - self.momentum) * var
            self.count[...] += 1
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
    return forward(model, x).reshape(-1)
