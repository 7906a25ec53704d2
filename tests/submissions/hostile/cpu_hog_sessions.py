# hostile: sixteen busy children, each trying a session of its own (a scheduler group each), to take the CPU from a classmate graded beside it; otherwise correct (graded beside the reference by test_a_classmate_keeps_its_score_beside_a_cpu_hog only)
# expect: score >= 0
# reason: 
# levels: beside-a-classmate
import os
import time

for _ in range(16):
    if os.fork() == 0:
        try:
            os.setsid()
        except OSError:
            pass  # refused by seccomp: one session, one share, for all sixteen
        end = time.time() + 600  # long past any grade
        while time.time() < end:
            pass
time.sleep(0.05)
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
