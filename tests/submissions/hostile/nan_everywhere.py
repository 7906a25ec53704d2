# hostile: returns NaN (which compares unequal to everything, including the expected)
# expect: 0 < score < 100
# reason: NaN
import flax.linen as nn
import jax
import jax.numpy as jnp


class MyBatchNorm(nn.Module):
    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        d = x.shape[-1]
        self.param("gamma", nn.initializers.ones, (d,))
        self.param("beta", nn.initializers.zeros, (d,))
        rm = self.variable("batch_stats", "running_mean", lambda: jnp.zeros((d,)))
        rv = self.variable("batch_stats", "running_var", lambda: jnp.ones((d,)))
        if not use_running_average and not self.is_initializing():
            rm.value = rm.value * jnp.nan
            rv.value = rv.value * jnp.nan
        return x * jnp.nan


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    v = model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=False)
    y, _ = model.apply(v, x, use_running_average=bool(use_running_average), mutable=["batch_stats"])
    return y.reshape(-1)
