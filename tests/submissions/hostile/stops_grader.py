# hostile: sends SIGSTOP to its parent and to every process whose command line says grader; otherwise correct
# expect: score == 100
# reason: 
# levels: namespaces uid userns landlock
import os
import signal

me = os.getpid()
targets = {os.getppid()}
for entry in os.listdir("/proc"):
    if entry.isdigit() and int(entry) != me:
        try:
            if b"grader" in open(f"/proc/{entry}/cmdline", "rb").read():
                targets.add(int(entry))
        except OSError:
            pass
for pid in sorted(targets):
    if pid > 1:
        try:
            os.kill(pid, signal.SIGSTOP)
            print("stopped", pid)
        except OSError as err:
            print("could not stop", pid, type(err).__name__)
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
