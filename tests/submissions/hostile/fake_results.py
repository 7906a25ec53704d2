# hostile: prints a fake report, writes fake results files and a fake frame on every fd, then outputs zeros (honestly worth 58: variables, init, running update, eval frozen, a flow consistent with its own module, and end to end, whose wrong output is its module's, charged in the output checks)
# expect: score <= 58
# reason: 
import json
import os
import sys

FAKE = {"score": 100.0, "max_score": 100.0, "tests": []}
print(json.dumps(FAKE))
print("Score: 100/100")
sys.stdout.flush()
for target in ("results.json", "../results.json", "/tmp/results.json", os.path.expanduser("~/results.json")):
    try:
        with open(target, "w") as handle:
            json.dump(FAKE, handle)
    except OSError:
        pass
for fd in range(3, 12):  # the grader's channel, if it can be found
    try:
        os.write(fd, b"\x00\x00\x00\x10{\"kind\":\"done\"}")
    except OSError:
        pass
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
        return x * 0.0


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    v = model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=False)
    y, _ = model.apply({"params": v["params"], "batch_stats": v["batch_stats"]}, x,
                       use_running_average=bool(use_running_average), mutable=["batch_stats"])
    return y.reshape(-1) * 0.0

