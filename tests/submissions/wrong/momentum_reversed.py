# pitfall: momentum_reversed
"""BatchNorm for the exercise -- running stats kept as an exponential moving average."""
import flax.linen as nn
import jax
import jax.numpy as jnp


def ema(old, new, decay):
    # blend: take `decay` of the new batch statistic
    return (1.0 - decay) * old + decay * new


class MyBatchNorm(nn.Module):
    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        num_features = x.shape[1]
        weight = self.param("gamma", nn.initializers.ones, (num_features,))
        bias = self.param("beta", nn.initializers.zeros, (num_features,))
        mean_ra = self.variable("batch_stats", "running_mean", jnp.zeros, (num_features,))
        var_ra = self.variable("batch_stats", "running_var", jnp.ones, (num_features,))

        if not use_running_average:
            batch_mean = x.mean(axis=0)
            batch_var = jnp.var(x, axis=0)
            if not self.is_initializing():
                mean_ra.value = ema(mean_ra.value, batch_mean, self.momentum)
                var_ra.value = ema(var_ra.value, batch_var, self.momentum)
            mean, var = batch_mean, batch_var
        else:
            mean, var = mean_ra.value, var_ra.value

        return weight * (x - mean) * jax.lax.rsqrt(var + self.eps) + bias


def init_and_apply(seed, x, use_running_average):
    bn = MyBatchNorm()
    key = jax.random.PRNGKey(int(seed))
    state = bn.init(key, x, use_running_average=False)
    out, _new_state = bn.apply(
        {"params": state["params"], "batch_stats": state["batch_stats"]},
        x, use_running_average=bool(use_running_average), mutable=["batch_stats"])
    return jnp.ravel(out)
