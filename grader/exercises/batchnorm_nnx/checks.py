"""The NNX exercise's checks table: the engine's, in NNX's words."""

from __future__ import annotations

import dataclasses
import functools

from grader.checks import CHECKS as ENGINE_CHECKS
from grader.checks import Check, flow

# The engine's checks (grader.checks.CHECKS) in NNX words: the worker's adapter
# reports the same arrays, so only the words change, and what NNX has no part of:
# there is no init pass to guard and no `mutable` to spell. Its 10 points go to
# the two ideas NNX teaches: BatchStat beside Param, and train()/eval() with nnx.jit.
_NNX_WORDS: dict[str, dict[str, object]] = {
    "module_runs": {"name": "MyBatchNorm(D, rngs=...) builds and calls"},
    "variables": {"name": "Variables: nnx.Param gamma/beta, nnx.BatchStat running_mean/running_var", "weight": 13,
                  "expected": "nnx.Param gamma and beta, nnx.BatchStat running_mean and running_var, each of shape (D,)"},
    "initial_values": {"name": "After construction: ones, zeros, zeros, ones, and training mode",
                       "expected": "gamma ones, beta zeros, running_mean zeros, running_var ones, and "
                                   "use_running_average=False (a new model trains) after construction"},
    "jit": {"name": "MyBatchNorm builds and calls under jax.jit (advice, no points)",
            "expected": "construction and calls trace under jax.jit (and jax.vmap), advisory"},
    "flow": {"name": "init_and_apply: construct, train()/eval(), nnx.jit, flatten", "weight": 15,
             # its worker reports the state of the model the flow built: a training flow
             # must leave that model's statistics updated (a plain jax.jit over the model
             # drops the update silently), and a flow that never builds one is no flow
             "run": functools.partial(flow, judge_model=True),
             "expected": "init_and_apply(seed: float, x, flag: float): MyBatchNorm(D, rngs=nnx.Rngs(int(seed))), "
                         "model.eval() or model.train() as the flag says, one call through nnx.jit, N*D values "
                         "in 1-D"},
}
CHECKS: tuple[Check, ...] = tuple(
    dataclasses.replace(c, **_NNX_WORDS.get(c.id, {}))  # type: ignore[arg-type]
    for c in ENGINE_CHECKS if c.id not in ("init_guard", "mutable_true"))
