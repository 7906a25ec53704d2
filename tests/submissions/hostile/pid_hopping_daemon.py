# hostile: starts a daemon (setsid, re-executed with 987654 in its command line) that forks a new child and exits every few ms for 30 s; otherwise correct
# expect: score == 100
# reason: 
# levels: namespaces uid userns landlock
import os
import sys
import time

HOP = r"""
import os, sys, time
end = time.monotonic() + 30
while time.monotonic() < end:
    if os.fork():
        os._exit(0)  # the parent goes; its child carries on under a new pid
    try:
        with open("/tmp/bngrade-hopper-987654", "a") as log:
            log.write(f"{os.getpid()}\n")
    except OSError:
        pass
    time.sleep(0.003)
"""

if os.fork() == 0:
    try:
        try:
            os.setsid()
        except OSError:
            pass  # refused by seccomp (a new session is a new CPU share): a daemon all the same
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-I", "-c", HOP, "987654"])
    finally:
        os._exit(0)
time.sleep(0.2)
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
