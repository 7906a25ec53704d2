# pitfall: stats_as_params
"""Red team: the statistics are nnx.Param, and the file patches the worker's
reporting (the adapter's collection_of, which it can reach: it runs in the same
process) so that their declared type reads as batch_stats. The optimizer
probe still sees one nnx.Optimizer(wrt=nnx.Param) step move them: the forgery
does not buy the variables check."""

import sys

import jax.numpy as jnp
from flax import nnx


class RunningStat(nnx.Param):
    """A Param by type: optimizers over nnx.Param train it."""


def _relabel() -> None:
    # Whatever the worker's package is called: the module that reports Variable types.
    for reporting in [m for m in list(sys.modules.values()) if hasattr(m, "collection_of") and hasattr(m, "slots")]:
        honest = reporting.collection_of

        def collection_of(variable, honest=honest):
            return "batch_stats" if isinstance(variable, RunningStat) else honest(variable)

        reporting.collection_of = collection_of


_relabel()


class MyBatchNorm(nnx.Module):
    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, rngs: nnx.Rngs):
        self.gamma = nnx.Param(jnp.ones((num_features,)))
        self.beta = nnx.Param(jnp.zeros((num_features,)))
        self.running_mean = RunningStat(jnp.zeros((num_features,)))
        self.running_var = RunningStat(jnp.ones((num_features,)))
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = False

    def __call__(self, x):
        m = self.momentum
        if self.use_running_average:
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            mean = jnp.mean(x, axis=0)
            var = jnp.mean((x - mean) ** 2, axis=0)
            self.running_mean[...] = m * self.running_mean[...] + (1 - m) * mean
            self.running_var[...] = m * self.running_var[...] + (1 - m) * var
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
