# hostile: opens a Unix socket to reach a host service by path (nscd, a database, a Docker socket); otherwise correct
# expect: score == 100
# reason: unix socket refused
# levels: namespaces uid userns landlock process
import socket

try:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
except PermissionError:
    print("unix socket refused")
else:
    for path in ("/var/run/docker.sock", "/run/postgresql/.s.PGSQL.5432", "/var/run/nscd/socket"):
        try:
            client.connect(path)
            print("unix socket connected to", path)
        except OSError:
            pass
    print("unix socket allowed")
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
