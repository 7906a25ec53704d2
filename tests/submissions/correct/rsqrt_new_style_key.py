import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


class MyBatchNorm(nn.Module):
    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        D = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones_init(), (D,))
        beta = self.param("beta", nn.initializers.zeros_init(), (D,))
        initializing = self.is_initializing()
        mean_var = self.variable("batch_stats", "running_mean", lambda s: jnp.zeros(s, jnp.float32), (D,))
        var_var = self.variable("batch_stats", "running_var", lambda s: jnp.ones(s, jnp.float32), (D,))
        if use_running_average:
            mu, sigma2 = mean_var.value, var_var.value
        else:
            mu = x.mean(0)
            centered = x - mu
            sigma2 = (centered * centered).mean(0)
            if not initializing:
                mean_var.value = self.momentum * mean_var.value + (1 - self.momentum) * mu
                var_var.value = self.momentum * var_var.value + (1 - self.momentum) * sigma2
        inv = lax.rsqrt(sigma2 + self.eps)
        return (x - mu) * inv * gamma + beta


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    rngs = {"params": jax.random.key(int(seed))}
    variables = model.init(rngs, x, use_running_average=False)
    params = variables["params"]
    stats = variables["batch_stats"]
    y, mutated = model.apply({"params": params, "batch_stats": stats}, x,
                             use_running_average=bool(use_running_average),
                             mutable=["batch_stats"])
    return y.reshape((-1,))
