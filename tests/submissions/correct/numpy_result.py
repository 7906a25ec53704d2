import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class MyBatchNorm(nn.Module):
    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        d = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones, (d,))
        beta = self.param("beta", nn.initializers.zeros, (d,))
        running_mean = self.variable("batch_stats", "running_mean", jnp.zeros, (d,))
        running_var = self.variable("batch_stats", "running_var", jnp.ones, (d,))

        if use_running_average:
            mean = running_mean.value
            var = running_var.value
        else:
            mean = x.mean(axis=0)
            var = ((x - mean) ** 2).mean(axis=0)
            if not self.is_initializing():
                momentum = self.momentum
                running_mean.value = momentum * running_mean.value + (1.0 - momentum) * mean
                running_var.value = momentum * running_var.value + (1.0 - momentum) * var

        normalized = (x - mean) / jnp.sqrt(var + self.eps)
        return normalized * gamma + beta


def init_and_apply(seed, x, use_running_average):
    seed = int(seed)
    train = use_running_average == 0.0
    x = np.asarray(x, dtype=np.float32)
    model = MyBatchNorm()
    variables = model.init({"params": jax.random.PRNGKey(seed)}, x, use_running_average=False)
    params = variables["params"]
    batch_stats = variables["batch_stats"]
    y, updates = model.apply({"params": params, "batch_stats": batch_stats}, x,
                             use_running_average=not train, mutable=["batch_stats"])
    return np.asarray(y).ravel()
