# correct: Flax's docstring flow: mutable=["batch_stats"] only when training, a plain apply in eval
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
        ra_mean = self.variable("batch_stats", "running_mean", jnp.zeros, (d,))
        ra_var = self.variable("batch_stats", "running_var", jnp.ones, (d,))
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            mean = jnp.mean(x, axis=0)
            var = jnp.var(x, axis=0)
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * var
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * gamma + beta


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    variables = model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=False)
    train = not bool(use_running_average)
    if train:
        y, _ = model.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    else:
        y = model.apply(variables, x, use_running_average=True)
    return jnp.reshape(y, (-1,))
