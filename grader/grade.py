"""Grading one submission: cases -> submission's processes -> checks -> result."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from typing import TYPE_CHECKING

from grader.isolation import choose_level
from grader.protocol import GRADER_KINDS
from grader.sandbox import MEMORY_POLL_SECONDS, RunResult, Session, read_submission

if TYPE_CHECKING:
    from grader.checks import CheckResult
    from grader.exercises import Exercise
    from grader.results import GradeResult

DEFAULT_TIMEOUT = 60.0


def _own_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _refusal(submission: Path, err: OSError) -> str:
    """Why a submission path is not graded; never quotes the file's contents."""
    if os.path.islink(submission):
        return (f"{submission.name} is a symbolic link; upload the file itself (links are never followed, "
                "so that a submission cannot be graded as somebody else's file)")
    if os.path.exists(submission):
        return f"{submission.name} is not a regular file that can be read; upload the .py file itself"
    return f"{submission.name} does not exist"


_WORKER_FILE = re.compile(r"\bbatchnorm\.py, line (\d+)")
_LINE = re.compile(r"\(line (\d+)\)")


def as_uploaded(text: str, name: str, where: Callable[[int], str | None] | None = None) -> str:
    """``text`` with the worker's own file name (the submission is always copied in as
    batchnorm.py) replaced by the name the student uploaded ("dave_broken.py, line 4"),
    and, for a notebook (``where``), each line by its cell ("hw.ipynb, cell 3, line 2")."""
    def place(match: re.Match[str], prefix: str) -> str:
        line = int(match.group(1))
        return f"{prefix}{(where and where(line)) or f'line {line}'}"

    if name != "batchnorm.py" or where:
        text = _WORKER_FILE.sub(lambda m: place(m, f"{name}, "), text)
    if where:
        text = _LINE.sub(lambda m: f"({place(m, '')})", text)
    return text


def _nothing_ran_is_not_advice(checks: list[CheckResult]) -> list[CheckResult]:
    """Advice that passed only because nothing of the module ran (no call was seen, so
    nothing was wrong) is shown as skipped: a stub never gets a green check."""
    from grader.results import GATE

    if not checks or checks[0].id != GATE or checks[0].status == "passed":
        return checks
    return [dataclasses.replace(c, status="skipped", notes=(), observed=f"not checked: {checks[0].name} failed")
            if c.advisory and c.status == "passed" else c for c in checks]


def wrong_exercise(source: bytes, chosen: Exercise) -> str:
    """One line when ``source`` fits another registered exercise better than ``chosen`` (read
    from the text by each exercise's markers, never run). It is still graded as ``chosen``
    (a marker is a guess, and a hostile file stays as confined as any); where that fails or
    scores nothing, this line is the reason, instead of a zero with a TypeError."""
    from grader.exercises import fits_better

    found = fits_better(source.decode("utf-8", "replace"), chosen)
    if found is None:
        return ""
    other, evidence = found
    shown = ", ".join(list(dict.fromkeys(" ".join(e.split()) for e in evidence))[:3])
    return (f"this looks like the {other.short or other.name} exercise ({shown}), not the "
            f"{chosen.short or chosen.name} one: grade with --exercise {other.name}")


def default_workers() -> int:
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def _end_to_end_passes(evidence: Evidence) -> bool:
    """Whether init_and_apply's outputs alone look right (False where they cannot be judged)."""
    from grader.checks import Skip, end_to_end

    try:
        return end_to_end(evidence).passed
    except Skip:
        return False


def grade(
    submission: Path,
    secret: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    memory_mb: int | None = None,
    workers: int | None = None,
    isolation: str | None = None,
    hide: list[Path] | None = None,
    note: str = "",
    exercise: str | None = None,
) -> GradeResult:
    """Grade ``submission`` (a batchnorm.py, any .py, or a notebook's code cells)
    on the hidden suite for ``secret``, or on the practice suite without one.
    ``hide``: more paths the submission must not read (the secret file, where
    results go). ``note``: how the file was chosen, for the student."""
    from grader.exercises import get

    chosen = get(exercise)
    started = time.monotonic()
    notes = [note] if note else []
    try:
        if submission.suffix.lower() == ".ipynb":
            from grader.submission import MAX_NOTEBOOK_BYTES, read_bytes

            # One byte past the cap: enough to refuse it, never the whole upload in memory.
            source = read_bytes(submission, MAX_NOTEBOOK_BYTES + 1)
        else:
            source = read_submission(submission)
    except OSError as err:
        source, refused = None, _refusal(submission, err)
    where = None  # a notebook's line -> "cell 3, line 2"
    if source is not None and submission.suffix.lower() == ".ipynb":
        from grader.submission import read_notebook

        try:
            notebook = read_notebook(source, submission.name)
            source, where = notebook.source, notebook.where
            notes.append(notebook.note)
        except ValueError as err:
            source, refused = None, f"{err}; upload the notebook as saved by Jupyter or Colab, or a .py file"
    # Read from the text only, before anything runs; said only if grading as ``chosen`` fails.
    better = wrong_exercise(source, chosen) if source is not None else ""
    if source is None:
        from grader.cases import build_suite

        suite = build_suite(secret)
        run = RunResult(import_error={"type": "refused", "message": refused}, probes={}, stdout="", stderr="",
                        isolation=choose_level(isolation), seconds=0.0)
    else:
        # Start the submission's processes first: their imports overlap building the suite.
        with Session(source, timeout=timeout, workers=workers or default_workers(), memory_mb=memory_mb,
                     level=isolation, hide=[submission.parent, *(hide or [])], adapter=chosen.adapter,
                     required=chosen.required) as session:
            # Imported only now: NumPy and the checks load while the workers import JAX.
            from grader.cases import build_suite, prepare_expectations

            suite = build_suite(secret)
            run = session.run(list(suite.probes), while_waiting=lambda: prepare_expectations(suite))
        if not run.memory_by_kernel:  # SECURITY.md: the limit is then not enforced by the kernel
            notes.append(f"Memory was sampled every {MEMORY_POLL_SECONDS * 1000:g} ms, not capped by the kernel "
                         "(no cgroup could be made here).")
    import numpy as np

    from grader.checks import end_to_end, evaluate
    from grader.evidence import Evidence, compared_cases
    from grader.results import GradeResult

    name = submission.name or "the submission"
    if run.import_error is not None:  # the worker compiles it as batchnorm.py: name the file as uploaded
        run.import_error = {**run.import_error, "message": as_uploaded(run.import_error["message"], name, where)}
    evidence = Evidence(suite, run)
    # The oracle runs on whatever state the submission reported (NaN, inf, 3e38):
    # NumPy's warnings about it are noise in a student's terminal, not findings.
    with np.errstate(all="ignore"):
        checks = _nothing_ran_is_not_advice(evaluate(evidence, chosen.checks, chosen.pitfalls))
        # What a grader that only compares init_and_apply's output would conclude.
        output_only = run.import_error is None and _end_to_end_passes(evidence)
    checks = [dataclasses.replace(c, observed=as_uploaded(c.observed, name, where)) for c in checks]
    problem = ""
    if run.import_error is not None:
        err = run.import_error
        if err["type"] == "missing":
            problem = f"the submission does not define {err['message']}"
        elif err["type"] == "refused":
            problem = err["message"]
        elif err["type"] in GRADER_KINDS:
            problem = f"the submission's process failed while importing: {err['message']}"
        else:
            problem = f"importing the submission raised {err['type']}: {err['message']}"
    elif run.timed_out:
        problem = f"time limit of {timeout:g} s exceeded; checks that did not finish score 0"
    elif run.memory_exceeded:
        problem = "memory limit exceeded; checks that did not finish score 0"
    if better and (problem or not checks or checks[0].status != "passed" or not sum(c.score for c in checks)):
        # The fact that explains the zero first, then what happened (the checks show it too).
        problem = f"{better}; {problem}" if problem else better
    return GradeResult(
        submission=str(submission),
        score=sum(c.score for c in checks),
        max_score=chosen.max_score,
        checks=checks,
        exercise=chosen.name,
        suite=suite.name,
        cases=suite.case_count,
        cases_compared=compared_cases(evidence),
        shapes=len(suite.shapes),
        isolation=run.isolation,
        seconds=time.monotonic() - started,
        stdout=run.stdout,
        stderr=run.stderr,
        problem=problem,
        output_only_pass=output_only,
        notes=notes,
        # The workers' sampled peak plus this process's own: all of grading together.
        peak_rss_mb=run.peak_rss_mb + _own_peak_mb(),
    )
