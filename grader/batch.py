"""Grading a whole class: one folder of submissions in, a gradebook and a report out.

``DIR`` holds one folder per student (the folder name is the student id) with a
``batchnorm.py``, or ``.py`` files (the file stem is the id). For each student
``OUT/students/<id>/results.json`` and ``OUT/students/<id>/feedback.html`` are
written atomically as soon as that student is graded, then ``OUT/gradebook.csv``
and ``OUT/report.html`` summarize everyone graded so far. Students live under
``students/`` so that no id (``report.html``, ``gradebook.csv``) can name a
summary, and each one's folder name is checked unique after it is derived.

Every step for one student (finding the file, fingerprinting it, grading it,
writing its results) happens inside one boundary: whatever goes wrong becomes
that student's graded 0 with a reason, and the class goes on.

Re-runs are incremental: a student whose submission, suite and grader are
unchanged keeps the results already written (``--force`` regrades everyone), so
an interrupted batch (Ctrl-C) is finished by running the same command again.

Submissions are graded by a pool of ``--jobs`` grading processes, one
submission at a time each (a submission's own isolation is that of
:mod:`grader.sandbox`); each process builds the suite once. A large class is
split into shards graded apart and merged: see :mod:`grader.shard`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader import __version__
from grader.isolation import MAX_FILE_BYTES
from grader.report.gradescope import results_json, write_atomically
from grader.safetext import clean
from grader.submission import SUFFIXES, NotFound, file_digest, find

if TYPE_CHECKING:
    from grader.shard import Shard



STUDENTS = "students"  # OUT/students/<folder>/: beside the summaries, never one of them


@dataclasses.dataclass(frozen=True)
class Student:
    id: str
    path: Path
    problem: str = ""  # nothing to grade: graded 0 with this reason

    def fingerprint(self, suite_digest: str) -> str:
        """Changes when the submission (its size and every byte the grade reads),
        the suite or the grader (its code) does. Never raises: an unreadable file
        is fingerprinted by why, and the grade itself refuses it with a sentence."""
        digest = hashlib.sha256()
        if self.problem:
            digest.update(b"problem\0" + self.problem.encode("utf-8", "surrogateescape"))
        else:
            try:
                digest.update(file_digest(self.path, MAX_FILE_BYTES).encode())
            except OSError as err:
                digest.update(f"unreadable\0{err.strerror or err}".encode("utf-8", "surrogateescape"))
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


@dataclasses.dataclass(frozen=True)
class Roster:
    """The students to grade here (a shard's own, or everyone), and the whole
    class they were taken from (every id, so that shards can prove they
    partition one class)."""

    students: list[Student]
    class_ids: list[str]


def discover(folder: Path, keep: Callable[[str], bool] | None = None) -> Roster:
    """Students in ``folder``, sorted by id; ``keep(id)`` says which ones to look
    into (a shard's). Nothing about one student stops the others: an entry that
    cannot be read, or two entries with one id, is that student's 0 with a reason."""
    if not folder.is_dir():
        raise BatchError(f"submissions folder {clean(str(folder))} does not exist")
    entries: dict[str, list[Path]] = {}
    try:
        listing = sorted(folder.iterdir())
    except OSError as err:
        raise BatchError(f"cannot list the submissions folder {clean(str(folder))}: {err.strerror or err}") from err
    for entry in listing:
        student_id = _entry_id(entry)
        if student_id is not None:
            entries.setdefault(student_id, []).append(entry)
    if not entries:
        raise BatchError(f"{clean(str(folder))} holds no submissions (one folder per student, or .py/.ipynb files)")
    students = [_student(sid, paths) for sid, paths in sorted(entries.items()) if keep is None or keep(sid)]
    return Roster(students, sorted(entries))


def _entry_id(entry: Path) -> str | None:
    """The student id an entry of the class folder stands for, or None if it is no submission."""
    try:
        if entry.name.startswith(".") or entry.is_symlink():
            return None
        if entry.is_dir():
            return entry.name
        if entry.is_file() and entry.suffix.lower() in SUFFIXES:
            return entry.stem
    except OSError:
        return entry.name  # it is there but cannot be looked at: the student still counts
    return None


def _student(student_id: str, paths: list[Path]) -> Student:
    """One student, found inside the boundary: any failure is a reason, not a crash."""
    if len(paths) > 1:
        names = ", ".join(clean(p.name) for p in paths)
        return Student(student_id, paths[0], problem=f"nothing was graded: two submissions for this student ({names}); "
                                                     "keep one")
    (path,) = paths
    try:
        if path.is_dir() and not path.is_symlink():
            return Student(student_id, find(path))
        return Student(student_id, path)
    except NotFound as err:
        return Student(student_id, path, problem=f"nothing was graded: {err}")
    except Exception as err:  # noqa: BLE001 - one student never stops the class
        return Student(student_id, path, problem=f"nothing was graded: the upload could not be read ({_why(err)})")


def _why(err: BaseException) -> str:
    return clean(f"{type(err).__name__}: {getattr(err, 'strerror', None) or err}")[:300]


_ESCAPED = re.compile(r"-[0-9a-f]{16}\Z")


def _safe_id(student_id: str) -> str:
    """A folder name for a student: the id itself when it is safe, else a safe
    spelling plus a hash of the id, so that "li wei" and "li_wei" never share
    (and overwrite) one folder. An id that already looks like an escaped one
    (``jos_-<16 hex>``) is escaped too, so that it cannot name another's folder."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.@") else "_" for c in student_id).strip(".") or "_"
    if safe == student_id and not _ESCAPED.search(student_id):
        return safe
    return f"{safe[:80]}-{hashlib.sha256(student_id.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}"


def student_folders(ids: Iterable[str]) -> dict[str, str]:
    """Each id's folder under ``OUT/students/``, unique after derivation (and
    regardless of case, for a copy on macOS or Windows): a clash, which only a
    hash collision or letter case can cause, gets ``~2``, ``~3``..., a character
    no derived name holds. A pure function of the set of ids, so a shard, a
    merge and a whole-class batch name every folder alike."""
    folders: dict[str, str] = {}
    taken: set[str] = set()
    for student_id in sorted(ids):
        base = folder = _safe_id(student_id)
        n = 1
        while folder.lower() in taken:
            n += 1
            folder = f"{base}~{n}"
        taken.add(folder.lower())
        folders[student_id] = folder
    return folders


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


@dataclasses.dataclass(frozen=True)
class _Job:
    student: Student
    fingerprint: str
    folder: Path  # OUT/students/<folder>
    shard: str | None  # "K/N" when this batch is one shard of a class


def _grade_one(job: _Job) -> tuple[str, dict[str, Any], str]:
    """Grade in a pool process and write the student's files; returns the
    student id, results.json data and why its files could not be written ("" if they were).
    Never raises: whatever fails is this student's graded 0 with the reason."""
    global _GRADING
    _GRADING = True
    try:
        result = _grade_student(job.student)
    except Exception as err:  # noqa: BLE001 - one submission never stops the class
        result = _ungraded(job.student, _why(err))
    finally:
        _GRADING = False
    try:
        data = _result_data(result, job)
    except Exception as err:  # noqa: BLE001
        data = _result_data(_ungraded(job.student, _why(err)), job)
    try:
        _write_student(job.folder, job.student.id, data)
    except Exception as err:  # noqa: BLE001 - graded: the gradebook still has it
        return job.student.id, data, f"could not write the results of {clean(job.student.id)} ({_why(err)})"
    return job.student.id, data, ""


def _grade_student(student: Student):  # noqa: ANN202 - a GradeResult
    from grader.grade import grade

    assert _OPTIONS is not None
    if student.problem:
        return _ungraded(student, student.problem, internal=False)
    return grade(student.path, _OPTIONS.secret, timeout=_OPTIONS.timeout, memory_mb=_OPTIONS.memory_mb,
                 workers=1, isolation=_OPTIONS.isolation, hide=_OPTIONS.hide, exercise=_OPTIONS.exercise)


def _result_data(result, job: _Job) -> dict[str, Any]:  # noqa: ANN001 - a GradeResult
    result.submission = job.student.id
    data = results_json(result)
    data["extra_data"]["fingerprint"] = job.fingerprint
    data["extra_data"]["student"] = job.student.id
    if job.shard is not None:
        data["extra_data"]["shard"] = job.shard
    return data


def _write_student(folder: Path, student_id: str, data: dict[str, Any]) -> None:
    from grader.report.html import feedback_page

    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / "results.json", json.dumps(data, indent=2) + "\n")
    write_atomically(folder / "feedback.html", feedback_page(student_id, data))


def _ungraded(student: Student, reason: str, internal: bool = True):  # noqa: ANN202 - a GradeResult
    """A zero result: the grader itself failed on this submission (``internal``),
    or there was nothing to grade (``reason`` says why)."""
    from grader.cases import build_suite
    from grader.exercises import get as get_exercise
    from grader.results import GradeResult

    assert _OPTIONS is not None
    if internal:
        print(f"grader: internal error grading {clean(student.id)}: {clean(reason)}", file=sys.stderr)
        reason = f"the grader failed on this submission ({reason}); please report it to your instructor"
    return GradeResult(submission=student.id, score=0, max_score=get_exercise(_OPTIONS.exercise).max_score, checks=[], suite=build_suite(
        _OPTIONS.secret).name, cases=0, shapes=0, isolation=str(_OPTIONS.isolation), seconds=0.0, problem=reason,
        exercise=_OPTIONS.exercise)


def _previous(folder: Path, student: Student, fingerprint: str) -> dict[str, Any] | None:
    """The results already written for this very student and fingerprint, if any."""
    try:
        data = json.loads((folder / "results.json").read_text())
        extra = data["extra_data"]
        if extra.get("fingerprint") == fingerprint and extra.get("student") == student.id:
            return data
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def suite_digest(options: Options) -> str:
    """What the results depend on besides the submission: the suite (so the
    secret, never itself) and the exercise."""
    from grader.cases import build_suite

    return build_suite(options.secret).digest + options.exercise  # another exercise: regrade


def run_batch(folder: Path, out: Path, options: Options, *, jobs: int, force: bool,
              progress: Callable[[str, dict[str, Any], bool], None], shard: Shard | None = None,
              roster: Roster | None = None, warn: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Grade everyone (or ``shard``'s students) not already graded; returns
    {student id: results.json data}. ``roster``: the discovery already made."""
    if roster is None:
        roster = discover(folder, shard.owns if shard else None)
    students = roster.students
    digest = suite_digest(options)
    folders = student_folders(s.id for s in students)
    (out / STUDENTS).mkdir(parents=True, exist_ok=True)
    write_manifest(out, shard, roster, digest, options.exercise, graded=0)
    done: dict[str, dict[str, Any]] = {}
    unwritten: set[str] = set()  # graded, but its files could not be written: not complete
    todo: list[_Job] = []
    for student in students:
        job = _Job(student, student.fingerprint(digest), out / STUDENTS / folders[student.id],
                   shard.label if shard else None)
        previous = None if force else _previous(job.folder, student, job.fingerprint)
        if previous is not None:
            done[student.id] = previous
            progress(student.id, previous, True)
        else:
            todo.append(job)
    if todo:
        context = multiprocessing.get_context("spawn")
        with _sticky_interrupt() as interrupted:
            pool = context.Pool(processes=max(1, min(jobs, len(todo))), initializer=_init_pool,
                                initargs=(options,), maxtasksperchild=50)
            try:
                for student_id, data, warning in pool.imap_unordered(_grade_one, todo):
                    done[student_id] = data
                    if warning:
                        unwritten.add(student_id)
                        if warn is not None:
                            warn(warning)
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
    graded = {s.id: done[s.id] for s in students if s.id in done}
    write_summaries(out, graded)
    write_manifest(out, shard, roster, digest, options.exercise, graded=len(graded.keys() - unwritten))
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

    folders = student_folders(graded)
    write_atomically(out / "gradebook.csv", gradebook_csv(graded))
    write_atomically(out / "report.html", class_report(graded, {sid: f"{STUDENTS}/{folders[sid]}/feedback.html"
                                                                for sid in graded}))
    write_class_junit(out, graded)


# --- the manifest: what an output folder holds, for grader.shard's merge ----------------

MANIFEST = "shard.json"
MANIFEST_FORMAT = 1


def class_digest(ids: list[str]) -> str:
    """Tells two classes apart (shards of one class must agree on it)."""
    digest = hashlib.sha256()
    for student_id in sorted(ids):
        digest.update(student_id.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()[:24]


def write_manifest(out: Path, shard: Shard | None, roster: Roster, suite: str, exercise: str, graded: int) -> None:
    """``OUT/shard.json``: which students this folder owns and what graded them.
    Written incomplete before grading, complete once every owned student is written."""
    owned = [s.id for s in roster.students]
    manifest = {
        "format": MANIFEST_FORMAT,
        "shard": shard.label if shard else "1/1",
        "sharded": shard is not None,
        "students": owned,
        "class": {"size": len(roster.class_ids), "digest": class_digest(roster.class_ids)},
        "exercise": exercise,
        "suite": suite,  # a digest of the cases: tells secrets apart, never reveals one
        "grader": {"version": __version__, "code": _grader_digest()[:24]},
        "graded": graded,
        "complete": graded == len(owned),
    }
    write_atomically(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")


def default_jobs() -> int:
    import os

    return max(1, min(os.cpu_count() or 1, 8))


if sys.platform == "darwin":  # pragma: no cover - fork is unsafe with threads there too
    multiprocessing.set_start_method("spawn", force=True)
