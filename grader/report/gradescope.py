"""Gradescope's results.json, written atomically by the grading process only.

JSON escaping keeps the file valid whatever the submission printed, but its
texts are shown on a Gradescope page and read with ``cat``: they go through
:func:`~grader.safetext.clean` too (no terminal escapes, no control characters).

Every text is plain text and says so: ``output_format`` (top level and per
test), ``test_output_format``, ``test_name_format`` and each test's
``name_format`` are ``"text"``. Gradescope's default, ``simple_format``, renders
HTML, so a student's ``print("<N, D>")`` or ``<b>`` would be interpreted as
markup, and Markdown would eat the ``*`` of ``0.9 * running``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypedDict

from grader.exercises import get as get_exercise
from grader.report.text import check_message
from grader.results import GradeResult
from grader.safetext import clean

FORMAT_VERSION = 1
PRINTED_CHARS = 4000
# Gradescope's "Output String Formatting": text, html, simple_format (its default), md, ansi.
TEXT_FORMAT = "text"


class TestEntry(TypedDict):
    name: str
    score: float
    max_score: float
    status: str
    output: str
    tags: list[str]
    visibility: str
    output_format: str
    name_format: str


def results_json(result: GradeResult) -> dict[str, Any]:
    tests: list[TestEntry] = []
    for check in result.checks:
        tests.append({
            "name": clean(check.name),
            "score": float(check.score),
            "max_score": float(check.weight),
            "status": "passed" if check.status == "passed" else "failed",
            "output": check_message(check, get_exercise(result.exercise).pitfalls),
            "tags": [clean(t) for t in check.tags],
            "visibility": "visible",
            "output_format": TEXT_FORMAT,
            "name_format": TEXT_FORMAT,
        })
    summary = f"{result.score}/{result.max_score} on the {result.suite} suite ({result.cases_compared} of {result.cases} cases compared, {result.shapes} shapes)."
    if result.reason:  # every zero says why, first
        reason = clean(result.reason)
        summary = f"{reason[:1].upper()}{reason[1:]}. {summary}"
    for note in result.notes:  # how the upload was read (a notebook's cells, say)
        summary += f"\n{clean(note)}"
    printed = clean(result.stdout + result.stderr).strip()
    if printed:
        summary += f"\n\nYour code printed (last {PRINTED_CHARS} characters at most):\n{printed[-PRINTED_CHARS:]}"
    return {
        "score": float(result.score),
        "max_score": float(result.max_score),
        "execution_time": round(result.seconds, 3),
        "output": clean(summary),
        "output_format": TEXT_FORMAT,
        "test_output_format": TEXT_FORMAT,
        "test_name_format": TEXT_FORMAT,
        "visibility": "visible",
        "stdout_visibility": "visible",
        "tests": tests,
        "extra_data": {
            "format_version": FORMAT_VERSION,
            "exercise": result.exercise,
            "suite": clean(result.suite),
            "cases": result.cases,
            "cases_compared": result.cases_compared,
            "shapes": result.shapes,
            "isolation": clean(result.isolation),
            "status": result.status,
            "problem": clean(result.problem),
            "reason": clean(result.reason),  # the problem, or why the module never ran
            "notes": [clean(n) for n in result.notes],
            "tags": [clean(t) for t in result.tags],
            # Each test's check as the grader saw it (skipped is not failed), for the class's JUnit file.
            "checks": [{"id": c.id, "status": c.status, "summary": _first_line(c.observed or c.expected)}
                       for c in result.checks],
            "output_only_would_pass": result.output_only_pass,
            "peak_memory_mb": round(result.peak_rss_mb, 1),
        },
    }


def _first_line(text: str) -> str:
    return clean(text).strip().split("\n", 1)[0][:200]


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new, never half."""
    write_atomically_bytes(path, text.encode("utf-8"))


def write_atomically_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_results(path: Path, result: GradeResult) -> None:
    write_atomically(path, json.dumps(results_json(result), indent=2) + "\n")
