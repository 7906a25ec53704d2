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

ROOT = Path(__file__).resolve().parent.parent
SUBMISSIONS = Path(__file__).resolve().parent / "submissions"
CORRECT = sorted((SUBMISSIONS / "correct").glob("*.py"))
WRONG = sorted((SUBMISSIONS / "wrong").glob("*.py"))
HOSTILE = sorted((SUBMISSIONS / "hostile").glob("*.py"))
TEST_SECRET = "tests-hidden-suite-secret"


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


@pytest.fixture(scope="session")
def grade_file(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """Grade one file on the hidden test suite through the CLI (once per session)."""
    folder = tmp_path_factory.mktemp("graded")
    cache: dict[tuple[Path, tuple[str, ...], str | None], CliRun] = {}

    def grade(path: Path, *extra: str, secret: str | None = TEST_SECRET) -> CliRun:
        key = (path, extra, secret)
        if key not in cache:
            env = {"GRADER_SECRET": secret} if secret else {}
            out = folder / f"{path.parent.name}-{path.stem}-{len(cache)}.json"
            cache[key] = run_cli("grade", str(path), "--quiet", *extra, env=env, results=out)
        return cache[key]

    return grade
