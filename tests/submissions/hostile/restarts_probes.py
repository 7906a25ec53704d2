# hostile: hangs in eval mode on the largest shape while a thread re-sends the probe's START frame every second, to restart its time budget; otherwise correct
# expect: score < 100
# reason: out of turn
import sys
import threading
import time

_child = sys.modules.get("bngrader_rt._child")
if _child is not None:
    _send, _last = _child._send, {}

    def _remember(out, header, arrays=None):
        if header.get("kind") == "start":
            _last.update(out=out, header=dict(header))
        _send(out, header, arrays)

    def _keep_alive():
        while True:
            time.sleep(1)
            if _last:
                try:
                    _send(_last["out"], _last["header"])
                except Exception:  # noqa: BLE001
                    pass

    _child._send = _remember
    threading.Thread(target=_keep_alive, daemon=True).start()
import flax.linen as nn
import jax
import jax.numpy as jnp
import time


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
        if use_running_average and x.shape[0] >= 1000:
            while True:
                time.sleep(1)
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
