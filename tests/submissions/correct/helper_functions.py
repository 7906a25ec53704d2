"""Statistics in a helper; the flow unpacks variables with dict methods."""
import flax.linen as nn
import jax
import jax.numpy as jnp


def _moments(x):
    mean = jnp.mean(x, axis=0)
    var = jnp.mean(jnp.square(x - mean), axis=0)
    return mean, var


def _ema(old, new, momentum):
    return momentum * old + (1.0 - momentum) * new


class MyBatchNorm(nn.Module):
    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        shape = (x.shape[-1],)
        gamma = self.param("gamma", nn.initializers.constant(1.0), shape)
        beta = self.param("beta", nn.initializers.constant(0.0), shape)
        stats = {
            "running_mean": self.variable("batch_stats", "running_mean", lambda: jnp.zeros(shape)),
            "running_var": self.variable("batch_stats", "running_var", lambda: jnp.ones(shape)),
        }
        if use_running_average:
            mean, var = stats["running_mean"].value, stats["running_var"].value
        else:
            mean, var = _moments(x)
            if not self.is_initializing():
                stats["running_mean"].value = _ema(stats["running_mean"].value, mean, self.momentum)
                stats["running_var"].value = _ema(stats["running_var"].value, var, self.momentum)
        return gamma * (x - mean) * jax.lax.rsqrt(var + self.eps) + beta


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    variables = dict(model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=False))
    params = variables.pop("params")
    batch_stats = variables.pop("batch_stats")
    output, mutated = model.apply(
        {"params": params, "batch_stats": batch_stats}, x,
        use_running_average=bool(use_running_average), mutable=["batch_stats"],
    )
    del mutated
    return jnp.reshape(output, (-1,))
