"""The flagship: BatchNorm with mutable ``batch_stats`` in ``flax.linen``.

Its checks table is the engine's own (:data:`grader.checks.CHECKS`) and its
pitfalls are :data:`grader.pitfalls.PITFALLS`; the worker runs it with
:mod:`grader.probes`. Its stub and reference stay at the repository's top level.
"""

from __future__ import annotations

from grader.exercises import PROJECT, Exercise
from grader.pitfalls import PITFALLS

EXERCISE = Exercise(
    name="batchnorm_linen",
    title="BatchNorm with mutable batch_stats (flax.linen)",
    stub=PROJECT / "exercise" / "batchnorm.py",
    instructions=PROJECT / "exercise" / "README.md",
    reference=PROJECT / "solution" / "batchnorm.py",
    adapter="probes",
    required=("MyBatchNorm", "init_and_apply"),
    checks_table="grader.checks:CHECKS",
    pitfalls=PITFALLS,
    known_wrong=(PROJECT / "tests" / "submissions" / "wrong", PROJECT / "examples"),
    short="Linen",
    markers=(r"\bflax\.linen\b|\bfrom\s+flax\s+import\s+linen\b", r"\bnn\.Module\b", r"\bnn\.compact\b",
             r"\bself\.variable\s*\(", r"\bself\.param\s*\(", r"\bis_initializing\s*\(", r"\bmutable\s*="),
)
