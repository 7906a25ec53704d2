# hostile: correct, but one large probe is slow (1.5 per-probe budgets); while it runs, a thread computes a later probe and sends its result, which once restarted the running probe's clock
# expect: score < 100
# reason: not running
import resource
import sys
import threading
import time
import types

_child = sys.modules.get("bngrader_rt._child")
_state = {"probe": None, "slept": False, "frames": {}, "sent": set()}
if _child is not None:
    _send, _read = _child._send, _child.wire.read

    def _capture(source, *args, **kwargs):
        frame = _read(source, *args, **kwargs)
        if frame is not None and frame[0].get("kind") == "probe":
            _state["frames"][frame[0]["id"]] = frame
        return frame

    def _answer_early(out, probe_id):
        header, arrays = _state["frames"][probe_id]
        submission = types.SimpleNamespace(MyBatchNorm=MyBatchNorm, init_and_apply=init_and_apply)
        outputs, meta = _child._run_probe(submission, header, arrays)
        _state["sent"].add(probe_id)
        _send(out, {"kind": "result", "id": probe_id, "error": None, "meta": meta, "seconds": 0.1}, outputs)

    def _forge(out, header, arrays=None):
        if header.get("id") in _state["sent"]:
            return  # already answered from the thread: the loop's own frames for it are dropped
        _send(out, header, arrays)
        if header.get("kind") == "start" and "group" not in header:
            _state["probe"] = header["id"]
            if header["id"].startswith("module/default/2x3"):
                later = [i for i in _state["frames"] if i.startswith("module/") and i != header["id"]][-1]
                threading.Thread(target=_answer_early, args=(out, later), daemon=True).start()

    _child.wire.read = _capture
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
        if str(_state["probe"]).startswith("module/default/2x3") and not _state["slept"] \
                and threading.current_thread() is threading.main_thread():
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
