# hostile: keeps 3 GB in memfd files (written, never mapped) and a 2 GB SysV segment (touched, then detached) while being imported
# expect: score == 0
# reason: memory
# levels: namespaces uid userns landlock process
import ctypes
import os
import signal

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # one file may not pass the size limit: use many
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmget.argtypes = (ctypes.c_int, ctypes.c_size_t, ctypes.c_int)
libc.shmat.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
libc.shmdt.argtypes = (ctypes.c_void_p,)
IPC_PRIVATE, IPC_CREAT = 0, 0o1000
segment = libc.shmget(IPC_PRIVATE, 2 << 30, IPC_CREAT | 0o600)
if segment < 0:
    print("shmget refused:", os.strerror(ctypes.get_errno()))
else:
    address = libc.shmat(segment, None, 0)
    if address not in (None, ctypes.c_void_p(-1).value):
        ctypes.memset(address, 0x5A, 2 << 30)  # resident now, and owned by no process once detached
        libc.shmdt(address)
    print("SysV segment", segment, "kept")
kept = []
chunk = b"\x5a" * (16 << 20)
try:
    while len(kept) * (64 << 20) < (3 << 30):
        fd = os.memfd_create(f"hostile-{len(kept)}")
        for _ in range(4):
            os.write(fd, chunk)
        kept.append(fd)
    print("memfd: 3 GB kept")
except OSError as err:
    print("memfd stopped after", len(kept), "files:", type(err).__name__, err)
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
