"""Uses jnp.var and mutable="batch_stats" (a string works like the list)."""
import flax.linen as nn
import jax
import jax.numpy as jnp


class MyBatchNorm(nn.Module):
    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        features = x.shape[1]
        scale = self.param("gamma", lambda k, s: jnp.ones(s), (features,))
        shift = self.param("beta", lambda k, s: jnp.zeros(s), (features,))
        rm = self.variable("batch_stats", "running_mean", jnp.zeros, (features,))
        rv = self.variable("batch_stats", "running_var", jnp.ones, (features,))
        if not use_running_average:
            m, v = x.mean(axis=0), jnp.var(x, axis=0)
            if not self.is_initializing():
                rm.value = self.momentum * rm.value + (1.0 - self.momentum) * m
                rv.value = self.momentum * rv.value + (1.0 - self.momentum) * v
        else:
            m, v = rm.value, rv.value
        return (x - m) / jnp.sqrt(v + self.eps) * scale + shift


def init_and_apply(seed, x, use_running_average):
    bn = MyBatchNorm(momentum=0.9, eps=1e-5)
    x = jnp.asarray(x, jnp.float32)
    v = bn.init({"params": jax.random.PRNGKey(int(seed))}, x, use_running_average=False)
    y, _ = bn.apply({"params": v["params"], "batch_stats": v["batch_stats"]}, x,
                    use_running_average=use_running_average == 1.0, mutable="batch_stats")
    return y.reshape(-1)
