"""The exercises the engine grades: one folder each, one registry line each.

Each exercise is a package here (``grader/exercises/<name>/``) whose ``EXERCISE``
names its student-facing files (stub, instructions, reference), the worker-side
module that runs the student's code and reports plain arrays (its *adapter*: the
same probes and output keys for every BatchNorm, whatever the framework), its
checks table, the words of its pitfalls and its known-wrong submissions.
Everything else (cases, sandbox, wire, evidence, oracle, diagnosis, reports,
batch, bundles) is shared. Adding an exercise: its folder, its name in
:data:`REGISTERED`, and, when no existing adapter reads it, an adapter module in
``grader/`` named in ``grader.protocol.ADAPTERS`` (the worker imports and receives
only those, copied flat into its runtime).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import re
from collections.abc import Mapping
from pathlib import Path

from grader.pitfalls import Pitfall
from grader.protocol import ADAPTERS  # noqa: F401 - an exercise's adapter must be one of these

PROJECT = Path(__file__).resolve().parent.parent.parent
DEFAULT = "batchnorm_linen"


@dataclasses.dataclass(frozen=True)
class Exercise:
    name: str
    title: str
    stub: Path  # what the student fills in; handed out as batchnorm.py
    instructions: Path  # handed out as INSTRUCTIONS.md
    reference: Path  # never handed out
    adapter: str  # grader/<adapter>.py runs the student's code in the worker
    required: tuple[str, ...]  # names the submission must define
    checks_table: str  # "module:attribute" of its tuple of checks (loaded when grading)
    pitfalls: Mapping[str, Pitfall]  # the tags it can name, in its own words
    known_wrong: tuple[Path, ...] = ()  # its known-wrong submissions for `selftest` (the first that has any)
    # What its submissions say in code (regular expressions, read from the text, never run): a
    # submission that matches another exercise's markers more than these is still graded as
    # chosen, and where that fails, its reason names the exercise it fits (see :func:`fits_better`).
    markers: tuple[str, ...] = ()
    short: str = ""  # its name in a sentence: "the NNX exercise"

    @property
    def checks(self) -> tuple:  # tuple[Check, ...]; imported late: the CLI starts without NumPy
        module, attribute = self.checks_table.split(":")
        return getattr(__import__(module, fromlist=[attribute]), attribute)

    @property
    def max_score(self) -> int:
        return sum(c.weight for c in self.checks)


# The registry: one line per exercise, each a package in this folder defining EXERCISE.
REGISTERED = (
    "batchnorm_linen",
    "batchnorm_nnx",
)
EXERCISES: dict[str, Exercise] = {
    name: importlib.import_module(f"{__name__}.{name}").EXERCISE for name in REGISTERED
}


class UnknownExercise(ValueError):
    pass


@functools.cache
def get(name: str | None = None) -> Exercise:
    """The exercise called ``name`` (the default one without a name)."""
    try:
        return EXERCISES[name or DEFAULT]
    except KeyError:
        raise UnknownExercise(f"unknown exercise {name!r}; choose one of {', '.join(EXERCISES)}") from None


_COMMENT = re.compile(r"#[^\n]*")


def _matches(exercise: Exercise, code: str) -> list[str]:
    return [m.group() for m in (re.search(marker, code) for marker in exercise.markers) if m]


def fits_better(source: str, chosen: Exercise) -> tuple[Exercise, list[str]] | None:
    """The registered exercise that ``source`` fits better than ``chosen`` (more of its markers
    found, comments aside), with what was found; None when ``chosen`` fits as well as any."""
    code = _COMMENT.sub("", source)
    own = len(_matches(chosen, code))
    best = None
    for other in EXERCISES.values():
        found = _matches(other, code) if other.name != chosen.name else []
        if len(found) > own and (best is None or len(found) > len(best[1])):
            best = (other, found)
    return best
