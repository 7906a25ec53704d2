# hostile: adds a key to its user's kernel keyring (add_key), where it would outlive the worker; otherwise correct
# expect: score == 100
# reason: 
# levels: namespaces uid userns landlock process
import ctypes
import os
import platform

ADD_KEY = {"x86_64": 248, "aarch64": 217}.get(platform.machine())
KEY_SPEC_USER_KEYRING = -4
KEY_SPEC_SESSION_KEYRING = -3
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
if ADD_KEY is not None:
    payload = b"left-behind-by-a-submission"
    for ring, name in ((KEY_SPEC_USER_KEYRING, b"bngrade-hostile-key-user"),
                       (KEY_SPEC_SESSION_KEYRING, b"bngrade-hostile-key-session")):
        serial = libc.syscall(ADD_KEY, b"user", name, payload, ctypes.c_size_t(len(payload)), ctypes.c_int(ring))
        if serial < 0:
            print("add_key refused:", os.strerror(ctypes.get_errno()))
        else:
            print("add_key gave serial", serial)
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
