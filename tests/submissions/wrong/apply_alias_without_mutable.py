# pitfall: apply_not_mutable
"""Found by the third red team: apply called through an alias taken at import, without
mutable, on a module that skips its update when batch_stats is not mutable. The
recorder wraps flax.linen.Module.apply before the import, so the alias is recorded too."""
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
        rm = self.variable("batch_stats", "running_mean", lambda: jnp.zeros((d,)))
        rv = self.variable("batch_stats", "running_var", lambda: jnp.ones((d,)))
        if use_running_average:
            mean, var = rm.value, rv.value
        else:
            mean = x.mean(0)
            var = ((x - mean) ** 2).mean(0)
            if not self.is_initializing() and self.is_mutable_collection("batch_stats"):
                rm.value = self.momentum * rm.value + (1 - self.momentum) * mean
                rv.value = self.momentum * rv.value + (1 - self.momentum) * var
        return gamma * (x - mean) / jnp.sqrt(var + self.eps) + beta


_apply = MyBatchNorm.apply


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    variables = model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=False)
    y = _apply(model, variables, x, use_running_average=bool(use_running_average))
    return y.reshape(-1)
