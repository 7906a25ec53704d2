# hostile: parks the descriptors of an unlinked file in its home and of a memfd in a socket pair it never reads (held by no process, so no watchdog sees them: 1.5 GiB of disk and 2.5 GiB of memory in issue 17); correct only if the kernel refused to carry them
# expect: score == 100
# reason: 
# levels: namespaces uid userns landlock process
import os
import socket

_pair = socket.socketpair()
_path = os.path.join(os.environ.get("HOME") or ".", "parked")
_file = os.open(_path, os.O_CREAT | os.O_RDWR, 0o600)
os.write(_file, b"\x5a" * (1 << 20))  # 1 MiB here; the trick scales to whatever the limits allow
_memfd = os.memfd_create("parked")
os.write(_memfd, b"\x5a" * (1 << 20))
try:
    socket.send_fds(_pair[0], [b"x"], [_file, _memfd])
    PARKED = True
except OSError:
    PARKED = False  # sendmsg refused: nothing can be held out of every process's sight
os.close(_file)
os.close(_memfd)
os.unlink(_path)

if not PARKED:
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
        variables = model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=False)
        y, _ = model.apply(variables, x, use_running_average=bool(use_running_average), mutable=["batch_stats"])
        return y.reshape(-1)
