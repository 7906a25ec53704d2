# hostile: correct, but one large probe is slow under jit (1.5 per-probe budgets); when it starts, the worker also announces an eager run of it, which once bought six budgets
# expect: score < 100
# reason: out of turn
import resource
import sys
import time

_child = sys.modules.get("bngrader_rt._child")
_state = {"probe": None, "slept": False}
if _child is not None:
    _send = _child._send

    def _forge(out, header, arrays=None):
        _send(out, header, arrays)
        if header.get("kind") == "start" and "group" not in header:
            _state["probe"] = header["id"]
            if header["id"].startswith("module/default/2x3"):
                _send(out, {"kind": "start", "id": header["id"], "eager_cases": 221})  # "jit failed"

    _child._send = _forge
    _child.adapter.probe_module_group = lambda *args, **kwargs: None  # one probe at a time

import flax.linen as nn
import jax
import jax.numpy as jnp


def _slow_down():
    """1.5 per-probe budgets: the grader's timeout is in the CPU limit it set (timeout + 5 s)."""
    timeout = resource.getrlimit(resource.RLIMIT_CPU)[0] - 5
    time.sleep(1.5 * max(3.0, timeout / 6))


class MyBatchNorm(nn.Module):
    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        if str(_state["probe"]).startswith("module/default/2x3") and not _state["slept"]:
            _state["slept"] = True
            _slow_down()
        d = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones, (d,))
        beta = self.param("beta", nn.initializers.zeros, (d,))
        rm = self.variable("batch_stats", "running_mean", lambda: jnp.zeros((d,)))
        rv = self.variable("batch_stats", "running_var", lambda: jnp.ones((d,)))
        if use_running_average:
            mu, var = rm.value, rv.value
        else:
            mu = jnp.mean(x, axis=0)
            var = jnp.mean((x - mu) ** 2, axis=0)
            if not self.is_initializing():
                rm.value = self.momentum * rm.value + (1 - self.momentum) * mu
                rv.value = self.momentum * rv.value + (1 - self.momentum) * var
        return gamma * (x - mu) / jnp.sqrt(var + self.eps) + beta


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    variables = model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=False)
    y, _ = model.apply(variables, x, use_running_average=bool(use_running_average), mutable=["batch_stats"])
    return y.reshape(-1)
