# One-pass variance E[x^2] - E[x]^2, like flax.linen.BatchNorm's default.
import flax.linen as nn
import jax
import jax.numpy as jnp


class MyBatchNorm(nn.Module):
    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        n_features = x.shape[-1]
        g = self.param("gamma", nn.initializers.ones, (n_features,))
        b = self.param("beta", nn.initializers.zeros, (n_features,))
        running_mean = self.variable("batch_stats", "running_mean", lambda: jnp.zeros(n_features))
        running_var = self.variable("batch_stats", "running_var", lambda: jnp.ones(n_features))
        if use_running_average:
            mean, var = running_mean.value, running_var.value
        else:
            mean = jnp.mean(x, axis=0)
            mean_sq = jnp.mean(x * x, axis=0)
            var = jnp.maximum(0.0, mean_sq - mean * mean)
            if not self.is_initializing():
                running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
                running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var
        y = (x - mean) * (1.0 / jnp.sqrt(var + self.eps))
        return y * g + b


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    key = jax.random.PRNGKey(int(seed))
    variables = model.init(key, x, use_running_average=False)
    params, batch_stats = variables["params"], variables["batch_stats"]
    out, new_state = model.apply({"params": params, "batch_stats": batch_stats}, x,
                                 use_running_average=bool(use_running_average), mutable=["batch_stats"])
    return out.flatten()
