"""The words of the grader <-> worker protocol, in one place, for both sides.

The worker receives a copy of this module (standard library only), so both
processes spell every frame kind and failure kind from the same enums instead of
matching strings or English text across the boundary. Frames themselves are
encoded by :mod:`grader.wire`.
"""

from __future__ import annotations

import enum


# The exercises' worker-side modules (``grader/<name>.py``): the only ones the worker
# imports as an adapter, and (with the core below) the runtime copied for it.
ADAPTERS = ("probes", "probes_nnx")

# Output keys an adapter may add beside the contract's arrays, named once for the
# worker that writes them and the checks that read them (each can only cost points).
NEW_MODEL_Y = "new/y"  # the first call of a model nobody switched to train() or eval()
RESHAPED_WRITE = "reshaped_write"  # the probe ran with keepdims-shaped Variable writes reshaped
MODEL_PREFIX = "model"  # a flow's report of the state of the model it built: model/<collection>/<path>
MODEL_UNREADABLE = f"{MODEL_PREFIX}/unreadable"  # that model lived and died inside a trace of the flow's own


class Frame(str, enum.Enum):
    """Kinds of frames. Grader -> worker: JOB, PROBE, END. Worker -> grader:
    READY (after importing the submission), START (a probe or group begins),
    RESULT (one probe's outputs), DONE (nothing more will come)."""

    JOB = "job"
    PROBE = "probe"
    END = "end"
    READY = "ready"
    START = "start"
    RESULT = "result"
    DONE = "done"


class Failure(str, enum.Enum):
    """Why a probe, or the whole submission, produced no usable result.

    The first group is decided by the grading process from what it observed
    (never claimed by the worker); the second is reported by the worker about
    the student's code.
    """

    # observed by the grader
    CRASH = "crash"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    PROTOCOL = "protocol"
    MISSING_RESULT = "no_result"
    DISK = "disk"
    OUTPUT_FLOOD = "flood"
    # reported by the worker
    IMPORT = "import"
    MISSING_NAMES = "missing"
    TYPE = "type"
    OUTPUT = "output"
    GRADER = "grader"


# Failure kinds a worker may report about a probe; anything else it sends is
# treated as a plain exception name from the student's code.
GRADER_ONLY = frozenset({Failure.CRASH, Failure.TIMEOUT, Failure.MEMORY, Failure.PROTOCOL, Failure.MISSING_RESULT,
                         Failure.DISK, Failure.OUTPUT_FLOOD})
GRADER_KINDS = frozenset(kind.value for kind in GRADER_ONLY)  # the same, as the strings frames carry


# How a variable's name says which of the contract's four it plays, for both
# sides: the worker places the grader's values there, the grader reads them back.
# Flax's own layer says scale/bias/mean/var.
PARAM_ROLES = (("gamma", ("gamma", "scale", "weight")), ("beta", ("beta", "bias", "shift", "offset")))
STAT_ROLES = (("running_mean", ("mean",)), ("running_var", ("var",)))


def role_of(path: tuple[str, ...]) -> str | None:
    """The contract role of a variable at ``path`` (collection, ..., name), if any."""
    if len(path) < 2:
        return None
    name = path[-1].lower()
    # Running statistics declared as params are still found (and charged once,
    # by the variables check); params are never looked for outside params.
    for roles in (PARAM_ROLES, STAT_ROLES) if path[0] == "params" else (STAT_ROLES,):
        found = [role for role, words in roles if any(w in name for w in words)]
        if found:
            return found[0] if len(found) == 1 else None
    return None


def match_roles(paths: list[str], roles: set[str] | dict) -> dict[str, str] | None:
    """{path: role} when every one of ``roles`` is played by exactly one of
    ``paths`` (slash-separated, collection first); None otherwise."""
    placed: dict[str, str] = {}
    for path in paths:
        role = role_of(tuple(path.strip("/").split("/")))
        if role is not None:
            if role in placed.values():
                return None
            placed[path] = role
    return placed if set(placed.values()) == set(roles) else None
