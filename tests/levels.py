"""Running the grader at a chosen isolation level, as root or as an unprivileged
user, the way each kind of machine would: a container with or without unshare,
a laptop or CI runner with or without user namespaces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from grader import isolation
from tests.conftest import ROOT, CliRun

NOBODY = 65534
LEVELS = ("namespaces", "uid", "userns", "landlock", "process")
USER_LEVELS = frozenset({"userns", "landlock"})  # the grader runs as an unprivileged user there


def can_run_as_nobody() -> bool:
    return os.geteuid() == 0 and shutil.which("setpriv") is not None and sys.platform == "linux"


def available_as_nobody() -> tuple[str, ...]:
    """The levels an unprivileged user gets on this machine (asked as that user)."""
    if not can_run_as_nobody():
        return ()
    with tempfile.TemporaryDirectory() as folder:
        workdir = user_workdir(Path(folder))
        code = "from grader.isolation import available_levels; print(','.join(available_levels()))"
        proc = subprocess.run(_as_nobody([sys.executable, "-c", code]), cwd=workdir, capture_output=True, text=True,
                              env=_user_env(workdir), timeout=60)
        return tuple(proc.stdout.strip().split(",")) if proc.returncode == 0 else ()


def _as_nobody(argv: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


def _user_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
    env.update(HOME=str(home), TMPDIR="/tmp")
    return env


def user_workdir(folder: Path) -> Path:
    """A copy of the grader that an unprivileged user can read and run, with the
    interpreter reachable (as the uid level makes it for its own workers)."""
    folder.chmod(0o755)
    workdir = folder / "grader-copy"
    shutil.copytree(ROOT / "grader", workdir / "grader", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [workdir, *workdir.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    isolation.make_traversable([sys.executable, str(Path(sys.executable).resolve()), sys.prefix, sys.base_prefix])
    return workdir


def run_cli_as(user: str, folder: Path, *args: str, results: Path | None = None, env: dict[str, str] | None = None,
               timeout: float = 180) -> CliRun:
    """``python -m grader ARGS`` as root (from the repo) or as ``nobody`` (from a
    readable copy, with results in a folder that user may write)."""
    full_env = _user_env(folder if user == "nobody" else Path(os.environ.get("HOME", "/root")))
    full_env.update(env or {})
    argv = [sys.executable, "-m", "grader", *args]
    if results is not None:
        argv += ["--results", str(results)]
        results.parent.mkdir(parents=True, exist_ok=True)
    cwd = ROOT
    if user == "nobody":
        cwd = user_workdir(folder)
        argv = _as_nobody(argv)
        if results is not None:
            results.parent.chmod(0o777)
    proc = subprocess.run(argv, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    data = json.loads(results.read_text()) if results is not None and results.exists() else None
    return CliRun(proc.returncode, proc.stdout, proc.stderr, data)


def failing_unshare(folder: Path) -> dict[str, str]:
    """An environment in which ``unshare`` exists but fails, as under Docker's
    default seccomp profile: the grader must fall back without namespaces."""
    bin_dir = folder / "no-unshare-bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "unshare"
    fake.write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
