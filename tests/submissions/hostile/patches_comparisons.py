# hostile: patches NumPy and JAX comparison helpers to say "equal", then returns zeros (worth 43 at most: the declared variables and their initial values, statistics it never moves, a flow consistent with its module, end to end charged in the output checks; the patched helpers change nothing: the grader compares in its own process)
# expect: score <= 43
# reason: expected
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import numpy.testing


def _yes(*args, **kwargs):
    return True


np.allclose = _yes
np.array_equal = _yes
np.isclose = lambda a, b, *args, **kwargs: np.ones(np.shape(a), bool)
numpy.testing.assert_allclose = lambda *a, **k: None
jnp.allclose = _yes


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
        return jnp.zeros_like(x)


def init_and_apply(seed, x, use_running_average):
    return jnp.zeros(x.size)
