# pitfall: init_updates_stats, momentum_reversed
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
        mean_state = self.variable("batch_stats", "running_mean", lambda: jnp.zeros(d))
        var_state = self.variable("batch_stats", "running_var", lambda: jnp.ones(d))
        if use_running_average:
            mean, var = mean_state.value, var_state.value
        else:
            mean, var = x.mean(0), x.var(0)
            mean_state.value = self.momentum * mean + (1 - self.momentum) * mean_state.value
            var_state.value = self.momentum * var + (1 - self.momentum) * var_state.value
        return gamma * (x - mean) / jnp.sqrt(var + self.eps) + beta


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    variables = model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=False)
    y, _ = model.apply({"params": variables["params"], "batch_stats": variables["batch_stats"]}, x,
                       use_running_average=bool(use_running_average), mutable=["batch_stats"])
    return y.reshape(-1)
