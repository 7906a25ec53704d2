# pitfall: stats_as_params
"""Wrong: the running statistics are a plain nnx.Variable subclass, NOT nnx.BatchStat.
Its class is called `Batch_Stats`, so the worker's collection_of (type name lowercased)
reports it as "batch_stats". nnx.split(model, nnx.Param, nnx.BatchStat, ...) puts the
statistics in the rest group, which the grader would flag, so the model refuses to
evaluate after nnx.merge (state kept in a module-level registry), and the grader
silently drops all split/merge evidence."""
import weakref

import jax.numpy as jnp
from flax import nnx


class Batch_Stats(nnx.Variable):  # noqa: N801 - not a BatchStat
    pass


_BUILT = weakref.WeakSet()  # instances made by __init__ (nnx.merge never calls it)


class MyBatchNorm(nnx.Module):
    def __init__(self, num_features, *, momentum=0.9, epsilon=1e-5, rngs):
        self.gamma = nnx.Param(jnp.ones((num_features,)))
        self.beta = nnx.Param(jnp.zeros((num_features,)))
        self.running_mean = Batch_Stats(jnp.zeros((num_features,)))
        self.running_var = Batch_Stats(jnp.ones((num_features,)))
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = False
        _BUILT.add(self)

    def __call__(self, x):
        if self.use_running_average:
            if self not in _BUILT and not _in_student_jit[0]:
                raise RuntimeError("not built here")
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            mean = x.mean(0)
            var = ((x - mean) ** 2).mean(0)
            m = self.momentum
            self.running_mean[...] = m * self.running_mean[...] + (1 - m) * mean
            self.running_var[...] = m * self.running_var[...] + (1 - m) * var
        return self.gamma[...] * (x - mean) / jnp.sqrt(var + self.epsilon) + self.beta[...]


_in_student_jit = [False]


@nnx.jit
def _fwd(model, x):
    return model(x)


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm(x.shape[-1], rngs=nnx.Rngs(int(seed)))
    model.eval() if use_running_average else model.train()
    _in_student_jit[0] = True
    try:
        return _fwd(model, x).reshape(-1)
    finally:
        _in_student_jit[0] = False


if __name__ == "__main__":
    m = MyBatchNorm(3, rngs=nnx.Rngs(0))
    print("nnx.state(m, nnx.BatchStat) holds:", [p for p, _ in nnx.to_flat_state(nnx.state(m, nnx.BatchStat))])
    try:
        nnx.split(m, nnx.Param, nnx.BatchStat)
    except Exception as e:
        print("nnx.split(m, nnx.Param, nnx.BatchStat):", type(e).__name__, str(e).splitlines()[0])
