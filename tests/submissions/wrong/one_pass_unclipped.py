# pitfall: variance_not_clipped
import flax.linen as nn
import jax
import jax.numpy as jnp


class MyBatchNorm(nn.Module):
    """The one-pass variance of early Flax versions, without the clip at zero."""

    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        d = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones, (d,))
        beta = self.param("beta", nn.initializers.zeros, (d,))
        ra_mean = self.variable("batch_stats", "running_mean", lambda: jnp.zeros((d,), jnp.float32))
        ra_var = self.variable("batch_stats", "running_var", lambda: jnp.ones((d,), jnp.float32))
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            mean = jnp.mean(x, axis=0)
            mean2 = jnp.mean(jnp.square(x), axis=0)
            var = mean2 - jnp.square(mean)  # can be slightly negative
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        y = (x - mean) * jax.lax.rsqrt(var + self.eps)
        return y * gamma + beta


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    variables = model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=False)
    y, _ = model.apply(variables, x, use_running_average=bool(use_running_average), mutable=["batch_stats"])
    return y.reshape(-1)
