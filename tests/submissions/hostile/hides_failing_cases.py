# hostile: floors the variance at 1e-2 (wrong on tiny variances) and patches the worker to drop the cases that show it
# expect: score <= 56
# reason: cases
import sys

import numpy as np

_child = sys.modules.get("bngrader_rt._child")
if _child is not None:
    _honest = _child.probe_module

    def _hiding(cls, params, arrays):
        outputs, meta = _honest(cls, params, arrays)
        x = np.asarray(arrays["train"][:, 0] if "train" in arrays else arrays["x"], np.float64)
        keep = x.var(axis=-2).min(axis=-1) > 2e-2  # per case: does the floor show?
        if keep.all() or not keep.any():
            return outputs, meta
        return {k: v[keep] for k, v in outputs.items()}, meta

    _child.probe_module = _hiding
    _child.probe_module_group = lambda *args, **kwargs: None  # one by one, through the patch
import flax.linen as nn
import jax
import jax.numpy as jnp


class MyBatchNorm(nn.Module):
    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        d = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones, (d,))
        beta = self.param("beta", nn.initializers.zeros, (d,))
        rm = self.variable("batch_stats", "running_mean", lambda: jnp.zeros((d,)))
        rv = self.variable("batch_stats", "running_var", lambda: jnp.ones((d,)))
        if use_running_average:
            mu, var = rm.value, rv.value
        else:
            mu = jnp.mean(x, axis=0)
            var = jnp.maximum(jnp.mean((x - mu) ** 2, axis=0), 1e-2)
            if not self.is_initializing():
                rm.value = self.momentum * rm.value + (1 - self.momentum) * mu
                rv.value = self.momentum * rv.value + (1 - self.momentum) * var
        return gamma * (x - mu) / jnp.sqrt(var + self.eps) + beta


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    v = model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=False)
    y, _ = model.apply({"params": v["params"], "batch_stats": v["batch_stats"]}, x,
                       use_running_average=bool(use_running_average), mutable=["batch_stats"])
    return y.reshape(-1)
