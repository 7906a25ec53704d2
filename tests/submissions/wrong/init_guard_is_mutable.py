# pitfall: init_updates_stats
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
        ra_mean = self.variable("batch_stats", "running_mean", lambda: jnp.zeros((d,)))
        ra_var = self.variable("batch_stats", "running_var", lambda: jnp.ones((d,)))
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            mean = x.mean(axis=0)
            var = jnp.var(x, axis=0)
            # "only update when we are allowed to write" -- but init can write too
            if self.is_mutable_collection("batch_stats"):
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return gamma * (x - mean) / jnp.sqrt(var + self.eps) + beta


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    v = model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=False)
    y, _ = model.apply({"params": v["params"], "batch_stats": v["batch_stats"]}, x,
                       use_running_average=bool(use_running_average), mutable=["batch_stats"])
    return y.ravel()
