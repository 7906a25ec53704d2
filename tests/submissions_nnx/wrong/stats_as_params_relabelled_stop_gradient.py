# pitfall: stats_as_params
"""Variant of tests/submissions_nnx/wrong/stats_as_params_relabelled.py with ONE extra
change: eval reads the running statistics through jax.lax.stop_gradient. The optimizer
probe then moves nothing, and the split evidence (statistics in the Param group) is not
judged, so the relabelling alone earns the variables check.

Original docstring: the statistics are nnx.Param, and the file patches the worker's
reporting (the adapter's collection_of, which it can reach: it runs in the same
process) so that their declared type reads as batch_stats. The optimizer
probe still sees one nnx.Optimizer(wrt=nnx.Param) step move them: the forgery
does not buy the variables check."""

import sys

import jax
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
            mean, var = jax.lax.stop_gradient((self.running_mean[...], self.running_var[...]))
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


if __name__ == "__main__":
    import optax
    m = MyBatchNorm(3, rngs=nnx.Rngs(0))
    x = jnp.arange(6.0).reshape(2, 3)
    forward(m, x)
    m.eval()  # eval-mode loss: the forward writes nothing, and stop_gradient makes its gradient 0
    before = m.running_var[...]
    grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(m)
    nnx.Optimizer(m, optax.adamw(1e-1, weight_decay=0.5), wrt=nnx.Param).update(m, grads)
    print("running_var is an nnx.Param:", isinstance(m.running_var, nnx.Param))
    print("running_var before/after one adamw step (weight decay pulls it to 0):", before, m.running_var[...])
