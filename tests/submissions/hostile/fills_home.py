# hostile: fills its home with 60 MiB files until something stops it; otherwise correct (the home is a capped tmpfs at the namespace levels and at uid where the grader may mount one, as here; watched on the host's disk at landlock)
# expect: score == 100
# reason: home full
# expect landlock: score == 0
# reason landlock: exceed 256 MiB
# expect process: score == 0
# reason process: exceed 256 MiB
# levels: namespaces uid userns landlock process
import os
import signal
import time

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
chunk = b"\x5a" * (4 << 20)
try:
    for n in range(12):  # 720 MiB, written over about two seconds
        with open(os.path.join(os.path.expanduser("~"), f"fill-{n}"), "wb") as handle:
            for _ in range(15):
                handle.write(chunk)
        time.sleep(0.15)
except OSError as err:
    print("home full:", type(err).__name__)
time.sleep(1.5)  # long enough for a watchdog that looks twice a second
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
