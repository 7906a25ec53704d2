"""Grading a whole class: one folder of submissions in, a gradebook and a report out.

``DIR`` holds one folder per student (the folder name is the student id) with a
``batchnorm.py``, or ``.py`` files (the file stem is the id). For each student
``OUT/<id>/results.json`` and ``OUT/<id>/feedback.html`` are written atomically
as soon as that student is graded, then ``OUT/gradebook.csv`` and
``OUT/report.html`` summarize everyone graded so far.

Re-runs are incremental: a student whose submission, suite and grader are
unchanged keeps the results already written (``--force`` regrades everyone), so
an interrupted batch (Ctrl-C) is finished by running the same command again.

Submissions are graded by a pool of ``--jobs`` grading processes, one
submission at a time each (a submission's own isolation is that of
:mod:`grader.sandbox`); each process builds the suite once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from grader import __version__
from grader.report.gradescope import results_json, write_atomically
from grader.submission import SUFFIXES, NotFound, find, read_bytes



@dataclasses.dataclass(frozen=True)
class Student:
    id: str
    path: Path
    problem: str = ""  # a folder without one file to grade: graded 0 with this reason

    def fingerprint(self, suite_digest: str) -> str:
        """Changes when the submission, the suite or the grader (its code) does."""
        digest = hashlib.sha256()
        digest.update(self.problem.encode() if self.problem else read_bytes(self.path))
        digest.update(suite_digest.encode())
        digest.update(_grader_digest().encode())
        return digest.hexdigest()[:24]


@functools.lru_cache(maxsize=1)
def _grader_digest() -> str:
    """The grader's version and sources: editing a check invalidates old results."""
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(Path(__file__).resolve().parent.rglob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class BatchError(Exception):
    """A batch that cannot start (message for people)."""


def discover(folder: Path) -> list[Student]:
    """Students in ``folder``, sorted by id; duplicates are an error."""
    if not folder.is_dir():
        raise BatchError(f"submissions folder {folder} does not exist")
    students: dict[str, Student] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.is_symlink():
            continue
        if entry.is_dir():
            try:
                student = Student(entry.name, find(entry))
            except NotFound as err:  # still a student: graded 0, with the reason
                student = Student(entry.name, entry, problem=f"nothing was graded: {err}")
        elif entry.is_file() and entry.suffix.lower() in SUFFIXES:
            student = Student(entry.stem, entry)
        else:
            continue
        if student.id in students:
            raise BatchError(f"student id {student.id!r} appears twice in {folder} (a folder and a file?)")
        students[student.id] = student
    if not students:
        raise BatchError(f"{folder} holds no submissions (one folder per student, or .py/.ipynb files)")
    return list(students.values())


def _safe_id(student_id: str) -> str:
    """A folder name for a student: the id itself when it is safe, else a safe
    spelling plus a short hash of the id, so that "li wei" and "li_wei" never
    share (and overwrite) one folder."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.@") else "_" for c in student_id).strip(".") or "_"
    if safe == student_id:
        return safe
    return f"{safe[:80]}-{hashlib.sha256(student_id.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


@dataclasses.dataclass
class Options:
    secret: str | None
    timeout: float
    memory_mb: int | None
    isolation: str | None
    hide: list[Path]
    exercise: str = "batchnorm_linen"


# --- the pool: each process grades one submission at a time ---------------------------

_OPTIONS: Options | None = None


def _init_pool(options: Options) -> None:
    global _OPTIONS
    _OPTIONS = options
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    # When it does (Pool.terminate sends SIGTERM), unwind: the grading session in
    # progress then kills its workers and removes its scratch folders.
    signal.signal(signal.SIGTERM, _stop)


_GRADING = False  # a grading session is open in this pool process


def _stop(signum: int, frame: object) -> None:
    if _GRADING:
        raise SystemExit(128 + signum)  # unwinds through the session's clean-up
    os._exit(128 + signum)  # idle (or already shutting down): nothing to clean


def _grade_one(job: tuple[Student, str, str]) -> tuple[str, dict[str, Any], str]:
    """Grade in a pool process; returns the student id, results.json data, feedback HTML."""
    from grader.grade import grade
    from grader.report.html import feedback_page

    student, fingerprint, out = job
    assert _OPTIONS is not None
    global _GRADING
    _GRADING = True
    try:
        if student.problem:
            result = _ungraded(student, student.problem, internal=False)
        else:
            result = grade(student.path, _OPTIONS.secret, timeout=_OPTIONS.timeout, memory_mb=_OPTIONS.memory_mb,
                           workers=1, isolation=_OPTIONS.isolation, hide=_OPTIONS.hide, exercise=_OPTIONS.exercise)
    except Exception as err:  # noqa: BLE001 - one submission never stops the class
        result = _ungraded(student, f"{type(err).__name__}: {err}"[:300])
    finally:
        _GRADING = False
    result.submission = student.id
    data = results_json(result)
    data["extra_data"]["fingerprint"] = fingerprint
    data["extra_data"]["student"] = student.id
    folder = Path(out) / _safe_id(student.id)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / "results.json", json.dumps(data, indent=2) + "\n")
    html = feedback_page(student.id, data)
    write_atomically(folder / "feedback.html", html)
    return student.id, data, html


def _ungraded(student: Student, reason: str, internal: bool = True):  # noqa: ANN202 - a GradeResult
    """A zero result: the grader itself failed on this submission (``internal``),
    or there was nothing to grade (``reason`` says why)."""
    from grader.cases import build_suite
    from grader.exercises import get as get_exercise
    from grader.results import GradeResult

    assert _OPTIONS is not None
    if internal:
        print(f"grader: internal error grading {student.id}: {reason}", file=sys.stderr)
        reason = f"the grader failed on this submission ({reason}); please report it to your instructor"
    return GradeResult(submission=student.id, score=0, max_score=get_exercise(_OPTIONS.exercise).max_score, checks=[], suite=build_suite(
        _OPTIONS.secret).name, cases=0, shapes=0, isolation=str(_OPTIONS.isolation), seconds=0.0, problem=reason,
        exercise=_OPTIONS.exercise)


def _previous(out: Path, student: Student, fingerprint: str) -> dict[str, Any] | None:
    path = out / _safe_id(student.id) / "results.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("extra_data", {}).get("fingerprint") != fingerprint:
        return None
    return data


def run_batch(folder: Path, out: Path, options: Options, *, jobs: int, force: bool,
              progress: Callable[[str, dict[str, Any], bool], None]) -> dict[str, dict[str, Any]]:
    """Grade everyone not already graded; returns {student id: results.json data}."""
    from grader.cases import build_suite

    students = discover(folder)
    suite_digest = build_suite(options.secret).digest + options.exercise  # another exercise: regrade
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict[str, Any]] = {}
    todo: list[tuple[Student, str, str]] = []
    for student in students:
        fingerprint = student.fingerprint(suite_digest)
        previous = None if force else _previous(out, student, fingerprint)
        if previous is not None:
            done[student.id] = previous
            progress(student.id, previous, True)
        else:
            todo.append((student, fingerprint, str(out)))
    if todo:
        context = multiprocessing.get_context("spawn")
        with _sticky_interrupt() as interrupted:
            pool = context.Pool(processes=max(1, min(jobs, len(todo))), initializer=_init_pool,
                                initargs=(options,), maxtasksperchild=50)
            try:
                for student_id, data, _ in pool.imap_unordered(_grade_one, todo):
                    done[student_id] = data
                    progress(student_id, data, False)
                    if interrupted:
                        raise KeyboardInterrupt
                if interrupted:  # the interrupt came after the last result
                    raise KeyboardInterrupt
            except BaseException:
                pool.terminate()  # interrupted: stop the grading in progress
                raise
            # Done: let the processes finish on their own. (Pool.terminate, which its
            # `with` block calls, can wait forever for a lock an idle process holds.)
            pool.close()
            pool.join()
    write_summaries(out, {s.id: done[s.id] for s in students if s.id in done})
    return done


@contextlib.contextmanager
def _sticky_interrupt() -> Iterator[list[bool]]:
    """Ctrl-C that cannot be lost: remembered as well as raised.

    A KeyboardInterrupt raised while the main thread happens to run a finalizer
    (garbage collection, a weakref callback) is printed and dropped by Python;
    the remembered flag still stops the batch after the next result.
    """
    import signal

    interrupted: list[bool] = []

    def handler(signum: int, frame: object) -> None:
        interrupted.append(True)
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def write_summaries(out: Path, graded: dict[str, dict[str, Any]]) -> None:
    """gradebook.csv, report.html and junit.xml for everyone graded so far."""
    from grader.report.html import class_report
    from grader.report.junit import write_class_junit
    from grader.report.table import gradebook_csv

    write_atomically(out / "gradebook.csv", gradebook_csv(graded))
    write_atomically(out / "report.html", class_report(graded, {sid: f"{_safe_id(sid)}/feedback.html" for sid in graded}))
    write_class_junit(out, graded)


def default_jobs() -> int:
    import os

    return max(1, min(os.cpu_count() or 1, 8))


if sys.platform == "darwin":  # pragma: no cover - fork is unsafe with threads there too
    multiprocessing.set_start_method("spawn", force=True)
