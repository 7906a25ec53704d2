# hostile: prints terminal control sequences (clear screen, OSC 52 clipboard, a fake score after \r, bidi overrides); otherwise correct
# expect: score == 100
# reason: 
import sys

ESC = "\x1b"
print(ESC + "[2J" + ESC + "[H" + ESC + "[3J", end="")  # clear the screen and the scrollback
print(ESC + "]52;c;ZWNobyBwd25lZA==" + "\x07", end="")  # OSC 52: put "echo pwned" in the clipboard
print(ESC + "]0;Score: 100/100" + "\x07", end="")  # window title
print("Import failed: 0/100" + "\r" + "Score: 100/100 (all checks passed)      ")
print("\x9b" + "31m" + "C1 CSI in red" + "\x9b" + "0m")  # 8-bit CSI
print(ESC + "[1A" + ESC + "[2K" + "line above erased")
print("grade = 'F' \u202e\u2066 ;'A+' = grade\u2069\u202c")  # bidi override
print("\x08\x08\x08\x08100/100\x00\x07\x7f")
sys.stderr.write(ESC + "[31mTraceback (most recent call last):" + ESC + "[0m\r\n")
sys.stderr.write("raw bytes follow\n")
sys.stderr.flush()
sys.stderr.buffer.write(b"\xff\xfe\x1b[5m blink \x1b[0m\xc2\x9b2J\r\n")
sys.stderr.buffer.flush()
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
