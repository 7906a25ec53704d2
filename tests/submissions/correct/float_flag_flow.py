# correct: passes the float flag straight through; `if use_running_average:` treats 0.0/1.0 like False/True
import flax.linen as nn
import jax
import jax.numpy as jnp


class MyBatchNorm(nn.Module):
    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average):
        d = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones, (d,))
        beta = self.param("beta", nn.initializers.zeros, (d,))
        running_mean = self.variable("batch_stats", "running_mean", lambda: jnp.zeros((d,)))
        running_var = self.variable("batch_stats", "running_var", lambda: jnp.ones((d,)))
        if use_running_average:
            mean, var = running_mean.value, running_var.value
        else:
            mean = x.mean(axis=0)
            var = ((x - mean) ** 2).mean(axis=0)
            if not self.is_initializing():
                running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
                running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var
        return gamma * (x - mean) / jnp.sqrt(var + self.eps) + beta


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    variables = model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=use_running_average)
    y, _ = model.apply(variables, x, use_running_average=use_running_average, mutable=["batch_stats"])
    return y.ravel()
