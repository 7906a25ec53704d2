# hostile: hangs in eval mode only; every module probe and the flow reference in eval mode end with eval, so nothing can be judged: 0, on time
# expect: score == 0
# reason: time limit
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
            while True:  # a Python loop at trace time: never returns
                pass
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

