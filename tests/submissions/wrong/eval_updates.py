# pitfall: eval_updates_stats
import flax.linen as nn
import jax
import jax.numpy as jnp


class MyBatchNorm(nn.Module):
    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        features = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones, (features,))
        beta = self.param("beta", nn.initializers.zeros, (features,))
        ra_mean = self.variable("batch_stats", "running_mean", lambda: jnp.zeros((features,)))
        ra_var = self.variable("batch_stats", "running_var", lambda: jnp.ones((features,)))

        batch_mean = jnp.mean(x, axis=0)
        batch_var = jnp.mean(jnp.square(x - batch_mean), axis=0)
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            mean, var = batch_mean, batch_var
        y = gamma * (x - mean) / jnp.sqrt(var + self.eps) + beta

        # keep the running statistics fresh (after using them)
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * batch_mean
            ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * batch_var
        return y


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    variables = model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=False)
    out, _ = model.apply({"params": variables["params"], "batch_stats": variables["batch_stats"]}, x,
                         use_running_average=bool(use_running_average), mutable=["batch_stats"])
    return out.reshape(-1)
