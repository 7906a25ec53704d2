# hostile: recurses without end inside the module
# expect: score == 0
# reason: 
import sys

import flax.linen as nn
import jax

sys.setrecursionlimit(100000)


def _deeper(n):
    return _deeper(n + 1) + 1


class MyBatchNorm(nn.Module):
    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        sys.setrecursionlimit(3000)
        return _deeper(0)


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    v = model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=False)
    y, _ = model.apply(v, x, use_running_average=bool(use_running_average), mutable=["batch_stats"])
    return y.reshape(-1)
