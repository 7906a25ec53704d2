from functools import partial

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
        rmean = self.variable("batch_stats", "running_mean", lambda: jnp.zeros((d,)))
        rvar = self.variable("batch_stats", "running_var", lambda: jnp.ones((d,)))
        if use_running_average:
            mean, var = rmean.value, rvar.value
        else:
            mean = jnp.mean(x, axis=0)
            var = jnp.var(x, axis=0)
            if not self.is_initializing():
                rmean.value = self.momentum * rmean.value + (1 - self.momentum) * mean
                rvar.value = self.momentum * rvar.value + (1 - self.momentum) * var
        return gamma * (x - mean) / jnp.sqrt(var + self.eps) + beta


@partial(jax.jit, static_argnames=("train",))
def _run(key, x, train):
    model = MyBatchNorm()
    variables = model.init(key, x, use_running_average=False)
    out, _ = model.apply(
        {"params": variables["params"], "batch_stats": variables["batch_stats"]},
        x, use_running_average=not train, mutable=["batch_stats"])
    return out.ravel()


def init_and_apply(seed, x, use_running_average):
    return _run(jax.random.PRNGKey(int(seed)), jnp.asarray(x), train=not bool(use_running_average))
