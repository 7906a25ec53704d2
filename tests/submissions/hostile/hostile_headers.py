# hostile: answers probes with frames the reader must survive: a 400-digit integer, a 100,000-level nested list, huge declared arrays
# expect: score < 100
# reason: protocol
import json
import struct
import sys
import zlib

_child = sys.modules.get("bngrader_rt._child")


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _hostile(probe_id: str) -> bytes:
    choice = zlib.crc32(probe_id.encode()) % 5
    if choice == 0:  # an integer no float can hold
        return _frame(b'{"kind": "result", "id": "%s", "error": null, "seconds": %s, "arrays": []}'
                      % (probe_id.encode(), b"9" * 400))
    if choice == 1:  # nesting deep enough to overflow a recursive parser
        deep = b"[" * 100_000 + b"]" * 100_000
        return _frame(b'{"kind": "result", "id": "%s", "error": null, "meta": {"calls": %s}, "arrays": []}'
                      % (probe_id.encode(), deep))
    if choice == 2:  # an array of 2**53 * 2**53 float64s, and no bytes behind it
        spec = {"name": "train0/y", "dtype": "float64", "shape": [2**53, 2**53]}
        return _frame(json.dumps({"kind": "result", "id": probe_id, "error": None, "arrays": [spec]}).encode())
    if choice == 3:  # zero bytes, but dimensions no allocator can take
        specs = [{"name": f"a{i}", "dtype": "float64", "shape": [0] + [2**53] * 7} for i in range(3)]
        return _frame(json.dumps({"kind": "result", "id": probe_id, "error": None, "arrays": specs}).encode())
    # many small arrays: just under the header cap
    specs = [{"name": "n%06d" % i, "dtype": "bool", "shape": [0]} for i in range(4000)]
    return _frame(json.dumps({"kind": "result", "id": probe_id, "error": None, "arrays": specs}).encode())


if _child is not None:
    def _send_result(out, result, outputs):
        out.write(_hostile(str(result["id"])))
        out.flush()

    _child._send_result = _send_result
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
            var = jnp.mean((x - mu) ** 2, axis=0)
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
