"""The words of the grader <-> worker protocol, in one place, for both sides.

The worker receives a copy of this module (standard library only), so both
processes spell every frame kind and failure kind from the same enums instead of
matching strings or English text across the boundary. Frames themselves are
encoded by :mod:`grader.wire`.
"""

from __future__ import annotations

import enum


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
