"""Shared helpers: paths to the bundled submissions and a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from grader.exercises import DEFAULT, EXERCISES, Exercise, get

ROOT = Path(__file__).resolve().parent.parent
SUBMISSIONS = Path(__file__).resolve().parent / "submissions"
CORRECT = sorted((SUBMISSIONS / "correct").glob("*.py"))
WRONG = sorted((SUBMISSIONS / "wrong").glob("*.py"))
HOSTILE = sorted((SUBMISSIONS / "hostile").glob("*.py"))
# Found by red-teaming the grader: wrong in ways with no tag; each header says the score
# it must get and the one check it must lose ("# expect: 90, eval_output").
REDTEAM = sorted((SUBMISSIONS / "redteam").glob("*.py"))
TEST_SECRET = "tests-hidden-suite-secret"
SUBMISSIONS_NNX = Path(__file__).resolve().parent / "submissions_nnx"
# One known-wrong submission per exercise, each costing one check: the Linen tests' own
# choice, and its counterpart among the NNX exercise's wrong submissions.
WRONG_EXAMPLE = {"batchnorm_linen": SUBMISSIONS / "wrong" / "init_no_guard.py",
                 "batchnorm_nnx": SUBMISSIONS_NNX / "wrong" / "momentum_reversed.py"}


@pytest.fixture(scope="module", params=list(EXERCISES))
def exercise(request: pytest.FixtureRequest) -> Exercise:
    """Each registered exercise in turn (test ids are their names): a test or fixture that takes it
    runs once per exercise, on that exercise's reference, stub and wrong example."""
    return get(request.param)


def exercise_args(exercise: Exercise) -> tuple[str, ...]:
    """The CLI arguments choosing ``exercise``: none for the default one, so that the default stays tested."""
    return () if exercise.name == DEFAULT else ("--exercise", exercise.name)


def declared_pitfalls(path: Path) -> list[str]:
    """The tags a wrong submission declares in its first line: '# pitfall: TAG[, TAG]'."""
    first = path.read_text().splitlines()[0]
    assert first.startswith("# pitfall: "), f"{path.name} must start with '# pitfall: TAG'"
    return [tag.strip() for tag in first.removeprefix("# pitfall: ").split(",")]


@dataclass
class CliRun:
    code: int
    stdout: str
    stderr: str
    results: dict[str, Any] | None


def run_cli(*args: str, env: dict[str, str] | None = None, results: Path | None = None, timeout: float = 120) -> CliRun:
    """``python -m grader ARGS`` in a subprocess, as a user would run it."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
    full_env.update(env or {})
    argv = [sys.executable, "-m", "grader", *args]
    if results is not None:
        argv += ["--results", str(results)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=timeout, stdin=subprocess.DEVNULL)
    data = json.loads(results.read_text()) if results is not None and results.exists() else None
    return CliRun(proc.returncode, proc.stdout, proc.stderr, data)


REFERENCE_FILE = ROOT / "solution" / "batchnorm.py"


def _grade_bundled_in_one_batch(folder: Path) -> dict[Path, CliRun]:
    """Every bundled correct and wrong submission (and the reference), graded by one
    `batch` run on the hidden test suite: the same grading as `grade`, one process
    pool, two at a time. A student's internal-error line on stderr goes to its run."""
    import shutil

    paths = [*CORRECT, *WRONG, *REDTEAM, REFERENCE_FILE]
    ids = {path: f"{path.parent.name}-{path.stem}" for path in paths}
    class_dir, out = folder / "class", folder / "batch-out"
    class_dir.mkdir()
    for path, sid in ids.items():
        shutil.copy(path, class_dir / f"{sid}.py")
    run = run_cli("batch", str(class_dir), "--out", str(out), "--jobs", "2", env={"GRADER_SECRET": TEST_SECRET},
                  timeout=1800)
    assert run.code == 0, run.stderr
    assert "internal error" not in run.stderr, run.stderr  # no check may fail to judge a submission
    runs = {}
    for path, sid in ids.items():
        data = json.loads((out / "students" / sid / "results.json").read_text())
        stderr = "".join(line + "\n" for line in run.stderr.splitlines() if sid in line)
        runs[path] = CliRun(0, "", stderr, data)
    return runs


@pytest.fixture(scope="session")
def grade_file(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """Grade one file on the hidden test suite through the CLI (once per session).
    The bundled submissions are graded together, by one `batch` run, on first use."""
    folder = tmp_path_factory.mktemp("graded")
    cache: dict[tuple[Path, tuple[str, ...], str | None], CliRun] = {}
    bundled: dict[Path, CliRun] = {}

    def grade(path: Path, *extra: str, secret: str | None = TEST_SECRET) -> CliRun:
        key = (path, extra, secret)
        if key not in cache and not extra and secret == TEST_SECRET and path in (*CORRECT, *WRONG, *REDTEAM, REFERENCE_FILE):
            if not bundled:
                bundled.update(_grade_bundled_in_one_batch(folder))
            cache[key] = bundled[path]
        if key not in cache:
            env = {"GRADER_SECRET": secret} if secret else {}
            out = folder / f"{path.parent.name}-{path.stem}-{len(cache)}.json"
            cache[key] = run_cli("grade", str(path), "--quiet", *extra, env=env, results=out)
        return cache[key]

    return grade
