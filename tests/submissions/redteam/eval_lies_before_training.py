# expect: 90, eval_output
"""Found by the third red team: eval lies only while the statistics are still zeros and
ones (it returns the training output then), which covered a flow that ignores its flag
(95). Eval straight after init is now scored by the eval check itself: the lie costs it."""
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
        bm, bv = x.mean(0), ((x - x.mean(0)) ** 2).mean(0)
        pristine = jnp.all(rm.value == 0) & jnp.all(rv.value == 1)
        if use_running_average:
            mean = jnp.where(pristine, bm, rm.value)
            var = jnp.where(pristine, bv, rv.value)
        else:
            mean, var = bm, bv
            if not self.is_initializing():
                rm.value = self.momentum * rm.value + (1 - self.momentum) * mean
                rv.value = self.momentum * rv.value + (1 - self.momentum) * var
        return gamma * (x - mean) / jnp.sqrt(var + self.eps) + beta


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    variables = model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=False)
    y, _ = model.apply(variables, x, use_running_average=False, mutable=["batch_stats"])  # flag ignored
    return y.reshape(-1)
