# pitfall: unbiased_variance
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class MyBatchNorm(nn.Module):
    """Normalizes over the batch; sample statistics like in my stats class."""

    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        D = x.shape[-1]
        g = self.param("gamma", lambda rng, shape: jnp.ones(shape), (D,))
        b = self.param("beta", lambda rng, shape: jnp.zeros(shape), (D,))
        running_mean = self.variable("batch_stats", "running_mean", lambda: jnp.zeros(D))
        running_var = self.variable("batch_stats", "running_var", lambda: jnp.ones(D))
        if use_running_average:
            mu, sigma2 = running_mean.value, running_var.value
        else:
            mu = jnp.mean(x, axis=0)
            sigma2 = jnp.std(x, axis=0, ddof=1) ** 2  # sample variance
            if not self.is_initializing():
                m = self.momentum
                running_mean.value = m * running_mean.value + (1 - m) * mu
                running_var.value = m * running_var.value + (1 - m) * sigma2
        return g * (x - mu) / jnp.sqrt(sigma2 + self.eps) + b


def init_and_apply(seed, x, use_running_average):
    seed = int(seed)
    x = jnp.asarray(x)
    model = MyBatchNorm()
    variables = model.init({"params": jax.random.PRNGKey(seed)}, x, use_running_average=False)
    params, batch_stats = variables["params"], variables["batch_stats"]
    y, _ = model.apply({"params": params, "batch_stats": batch_stats}, x,
                       use_running_average=use_running_average > 0.5, mutable=["batch_stats"])
    return np.asarray(y).reshape(-1)
