# style: the EMA written with optax.incremental_update over a dict of both statistics
"""The running statistics are a Polyak average, so a Flax user reaches for optax:
`optax.incremental_update(new, old, step_size)` returns
`step_size * new + (1 - step_size) * old`, which with step_size = 1 - momentum is
exactly `momentum * running + (1 - momentum) * batch`. It maps over a dict of
both statistics at once; the results are written back with `[...] =`, so the
BatchStats stay BatchStats. Eval reads them and writes nothing."""

import jax.numpy as jnp
import optax
from flax import nnx


class MyBatchNorm(nnx.Module):
    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, rngs: nnx.Rngs):
        self.gamma = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.beta = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.running_mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.running_var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = False

    def __call__(self, x):
        running = {"mean": self.running_mean[...], "var": self.running_var[...]}
        if self.use_running_average:
            stats = running
        else:
            mean = jnp.mean(x, axis=0)
            stats = {"mean": mean, "var": jnp.mean(jnp.square(x - mean), axis=0)}
            new = optax.incremental_update(stats, running, step_size=1.0 - self.momentum)
            self.running_mean[...] = new["mean"]
            self.running_var[...] = new["var"]
        x_hat = (x - stats["mean"]) / jnp.sqrt(stats["var"] + self.epsilon)
        return self.gamma[...] * x_hat + self.beta[...]


@nnx.jit
def run(model, x):
    return model(x)


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm(x.shape[-1], rngs=nnx.Rngs(int(seed)))
    model.eval() if use_running_average else model.train()
    return run(model, jnp.asarray(x)).reshape(-1)
