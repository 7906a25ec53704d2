"""How a submission's worker is confined: the level, its command line, its limits.

Two levels (SECURITY.md says what each defends):

- ``namespaces``: as root on Linux with ``unshare`` (the Gradescope and CI
  container case). New mount, PID and network namespaces; the grader's sources,
  the solution, the tests, the secret file, results and other submissions are
  covered; only the scratch folder is writable; the worker runs as ``nobody``;
  no network, loopback included; the whole tree dies with the namespace.
- ``process``: anywhere else (a student's laptop). A separate process and
  session with resource limits and an allow-listed environment, killed as a
  tree; nothing is hidden from it.

The worker starts from a copy of the runtime modules in the scratch folder, so
that it never needs the grader's own directory, which it may not be able to see.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

LEVELS = ("namespaces", "process")
RUNTIME_PACKAGE = "bngrader_rt"
RUNTIME_MODULES = ("_launch.py", "_child.py", "probes.py", "wire.py")
MAX_FILE_BYTES = 64 * 1024 * 1024
NOBODY = 65534
BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); del sys.argv[1]; "
    f"from {RUNTIME_PACKAGE}._launch import main; sys.exit(main(sys.argv[1:]))"
)
GRADER_DIR = Path(__file__).resolve().parent
PROJECT_DIR = GRADER_DIR.parent
# Project folders a submission must not read (whichever exist).
PROTECTED_PROJECT_DIRS = ("grader", "solution", "tests", "examples", "bench", ".git", ".ci")


class IsolationError(RuntimeError):
    """The requested isolation level cannot run here."""


@functools.lru_cache(maxsize=1)
def namespaces_available() -> bool:
    """Root, Linux and a working ``unshare`` (tried once per process)."""
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    try:
        probe = subprocess.run(["unshare", "--mount", "--pid", "--net", "--fork", "--kill-child", "true"],
                               capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def choose_level(requested: str | None) -> str:
    """The strongest level available, or the requested one if it can run."""
    if requested is None or requested == "auto":
        return "namespaces" if namespaces_available() else "process"
    if requested not in LEVELS:
        raise IsolationError(f"unknown isolation level {requested!r}; choose one of {', '.join(LEVELS)} or auto")
    if requested == "namespaces" and not namespaces_available():
        raise IsolationError("isolation level 'namespaces' needs root on Linux with a working unshare")
    return requested


def _inaccessible_ancestor(path: Path) -> Path | None:
    """The topmost ancestor of ``path`` that others cannot traverse (e.g. /root)."""
    found = None
    for parent in reversed(path.parents):
        try:
            if not parent.stat().st_mode & stat.S_IXOTH:
                found = parent
                break
        except OSError:
            return None
    return found


def _interpreter_exposures() -> list[dict[str, str]]:
    """Interpreter folders that ``nobody`` could not reach, to re-expose read-only."""
    exposures: dict[str, dict[str, str]] = {}
    for prefix in {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}:
        mask = _inaccessible_ancestor(prefix)
        if mask is None:
            continue
        keep = mask / prefix.relative_to(mask).parts[0]
        exposures[str(keep)] = {"mask": str(mask), "keep": str(keep)}
    return list(exposures.values())


@dataclasses.dataclass
class Scratch:
    """The worker's folder: runtime copy and submission (read-only), home (writable)."""

    root: Path
    runtime: Path
    submission: Path
    home: Path
    config: Path


def prepare_scratch(root: Path, submission: Path, level: str) -> Scratch:
    runtime = root / "rt"
    package = runtime / RUNTIME_PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Runtime of a submission\'s worker (a copy)."""\n')
    cache = package / "__pycache__"
    cache.mkdir()
    tag = sys.implementation.cache_tag
    for name in RUNTIME_MODULES:
        # copy2 keeps the mtime, so the compiled bytecode (valid for that mtime and
        # size) comes along: the worker does not compile its runtime every time.
        shutil.copy2(GRADER_DIR / name, package / name)
        compiled = GRADER_DIR / "__pycache__" / f"{name[:-3]}.{tag}.pyc"
        if compiled.is_file():
            shutil.copy2(compiled, cache / compiled.name)
    (root / "submission").mkdir()
    copy = root / "submission" / "batchnorm.py"
    shutil.copyfile(submission, copy)
    home = root / "home"
    home.mkdir()
    for path in (root, runtime, package, cache, copy.parent):
        path.chmod(0o755)
    for path in [copy, *package.glob("*.py"), *cache.iterdir()]:
        path.chmod(0o644)
    if level == "namespaces":
        os.chown(home, NOBODY, NOBODY)
        home.chmod(0o700)
    return Scratch(root, runtime, copy, home, root / "launch.json")


def hidden_paths(extra: list[Path]) -> list[str]:
    """What the worker must not read: the project's private folders and ``extra``."""
    paths = [PROJECT_DIR / name for name in PROTECTED_PROJECT_DIRS]
    solution = Path(sys.modules["solution"].__file__).parent if "solution" in sys.modules else None
    if solution is not None:
        paths.append(solution)
    paths += extra
    keep = Path(sys.prefix).resolve()
    out = []
    for path in paths:
        path = path.resolve()
        if path.exists() and keep != path and path not in keep.parents:
            out.append(str(path))
    return sorted(set(out))


EMPTIED_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")  # replaced by empty tmpfs in the worker


def _python_dirs_in_emptied_places() -> list[str]:
    """Interpreter or virtualenv folders that live where the worker sees an empty
    tmpfs (a fresh clone in /tmp): bound back read-only."""
    found = set()
    for prefix in {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}:
        for place in EMPTIED_DIRS:
            if Path(place) in prefix.parents:
                found.add(str(prefix))
    return sorted(found)


def write_config(scratch: Scratch, level: str, hide: list[str], cpu_seconds: int) -> None:
    config = {
        "level": level,
        "scratch": str(scratch.root),
        "home": str(scratch.home),
        "hide": hide,
        "expose": _interpreter_exposures() if level == "namespaces" else [],
        "rebind": _python_dirs_in_emptied_places() if level == "namespaces" else [],
        "emptied": list(EMPTIED_DIRS),
        "uid": NOBODY,
        "gid": NOBODY,
        "max_file_bytes": MAX_FILE_BYTES,
        "max_cpu_seconds": cpu_seconds,
    }
    scratch.config.write_text(json.dumps(config))
    scratch.config.chmod(0o644)


def command(scratch: Scratch, level: str, job_fd: int, result_fd: int) -> list[str]:
    python = [sys.executable, "-I", "-c", BOOT, str(scratch.runtime), str(scratch.config), str(job_fd), str(result_fd)]
    if level == "namespaces":
        return ["unshare", "--mount", "--pid", "--net", "--fork", "--kill-child", "--", *python]
    return python
