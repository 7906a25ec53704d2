# hostile: raises KeyboardInterrupt from the module: graded (0: a flow is judged against the module, which never runs), the interrupt reported
# expect: score == 0
# reason: KeyboardInterrupt
import jax
import flax.linen as nn


class MyBatchNorm(nn.Module):
    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        raise KeyboardInterrupt


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    v = model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=False)
    y, _ = model.apply(v, x, use_running_average=bool(use_running_average), mutable=["batch_stats"])
    return y.reshape(-1)
