# hostile: builds a 3,000-level folder tree in its home and fills /tmp and /dev/shm with files of a few hundred MB; otherwise correct (home is a capped tmpfs at the namespace levels and at uid where the grader may mount one, as here; on the host's disk at landlock, where a tree deeper than a path can name is charged as disk abuse)
# expect: score == 100
# reason: 
# expect landlock: score < 100
# reason landlock: exceed 256 MiB or 20000 entries
# levels: namespaces uid userns landlock
import os
import signal

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the file size limit: EFBIG, not death
home = os.open(os.path.expanduser("~"), os.O_RDONLY | os.O_DIRECTORY)
try:
    os.chdir(home)
    for _ in range(3000):  # 6,000+ characters of path: beyond PATH_MAX for whoever cleans up
        os.mkdir(f"d{os.getpid()}")
        os.chdir(f"d{os.getpid()}")
    with open("leaf-987654", "w") as handle:
        handle.write("deep")
except OSError as err:
    print("tree stopped:", type(err).__name__)
finally:
    os.chdir(home)
chunk = b"\xa5" * (8 << 20)
for folder in ("/tmp", "/dev/shm"):
    for n in range(3):  # three files of up to 64 MiB each per folder
        try:
            with open(os.path.join(folder, f"bngrade-hostile-{os.getpid()}-{n}"), "wb") as handle:
                for _ in range(8):
                    handle.write(chunk)
        except OSError as err:
            print("write stopped in", folder, type(err).__name__)
            break
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
            mu, var = rm.value, rv.value
        else:
            mu = jnp.mean(x, axis=0)
            var = jnp.mean((x - mu) ** 2, axis=0)
            if not self.is_initializing():
                rm.value = self.momentum * rm.value + (1 - self.momentum) * mu
                rv.value = self.momentum * rv.value + (1 - self.momentum) * var
        return gamma * (x - mu) / jnp.sqrt(var + self.eps) + beta


def init_and_apply(seed, x, use_running_average):
    model = MyBatchNorm()
    v = model.init(jax.random.PRNGKey(int(seed)), x, use_running_average=False)
    y, _ = model.apply({"params": v["params"], "batch_stats": v["batch_stats"]}, x,
                       use_running_average=bool(use_running_average), mutable=["batch_stats"])
    return y.reshape(-1)
