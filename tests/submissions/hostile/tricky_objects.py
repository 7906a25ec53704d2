# hostile: returns objects that claim to equal anything, a scalar, and a number subclass
# expect: score < 40
# reason: expected
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class AlwaysEqual(float):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = float.__hash__


class Anything(np.ndarray):
    def __eq__(self, other):
        return np.ones(np.shape(other), bool)


class MyBatchNorm(nn.Module):
    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        d = x.shape[-1]
        self.param("gamma", nn.initializers.ones, (d,))
        self.param("beta", nn.initializers.zeros, (d,))
        self.variable("batch_stats", "running_mean", lambda: jnp.zeros((d,)))
        self.variable("batch_stats", "running_var", lambda: jnp.ones((d,)))
        return jnp.zeros(())  # a scalar that would "broadcast" against any expected value


def init_and_apply(seed, x, use_running_average):
    if use_running_average:
        return AlwaysEqual(0.0)
    return np.zeros(np.size(x)).view(Anything)
