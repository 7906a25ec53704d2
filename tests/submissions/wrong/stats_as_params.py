# pitfall: stats_not_in_batch_stats, train_skips_update
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
        running_mean = self.param("running_mean", nn.initializers.zeros, (d,))
        running_var = self.param("running_var", nn.initializers.ones, (d,))
        if use_running_average:
            mu, var = running_mean, running_var
        else:
            mu = jnp.mean(x, axis=0)
            var = jnp.mean((x - mu) ** 2, axis=0)
        x_hat = (x - mu) / jnp.sqrt(var + self.eps)
        return gamma * x_hat + beta


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    variables = model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=False)
    params = variables["params"]
    batch_stats = variables["batch_stats"]
    out, updated = model.apply(
        {"params": params, "batch_stats": batch_stats},
        x,
        use_running_average=bool(use_running_average),
        mutable=["batch_stats"],
    )
    return out.reshape(-1)
