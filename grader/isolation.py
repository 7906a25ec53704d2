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
import subprocess
import sys
import tempfile
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


def _probe_cache() -> Path | None:
    """Where a successful probe is remembered until the next boot (root's own cache)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bn-grader"
    return base / f"namespaces-ok-{boot}"


@functools.lru_cache(maxsize=1)
def namespaces_available() -> bool:
    """Root, Linux and a working ``unshare`` (tried once per boot: a success is
    remembered in root's cache folder, a failure is tried again next time)."""
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    cache = _probe_cache()
    try:
        if cache is not None and cache.stat().st_uid == 0 and not cache.stat().st_mode & 0o022:
            return True
    except OSError:
        pass
    try:
        probe = subprocess.run(["unshare", "--mount", "--pid", "--net", "--fork", "--kill-child", "true"],
                               capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if probe.returncode != 0:
        return False
    if cache is not None:
        try:
            cache.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            cache.write_text("unshare of mount, PID and network namespaces works\n")
            cache.chmod(0o644)
        except OSError:
            pass
    return True


def choose_level(requested: str | None) -> str:
    """The strongest level available, or the requested one if it can run."""
    if requested is None or requested == "auto":
        return "namespaces" if namespaces_available() else "process"
    if requested not in LEVELS:
        raise IsolationError(f"unknown isolation level {requested!r}; choose one of {', '.join(LEVELS)} or auto")
    if requested == "namespaces" and not namespaces_available():
        raise IsolationError("isolation level 'namespaces' needs root on Linux with a working unshare")
    return requested


SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/sys")


def _python_dirs() -> list[str]:
    """The interpreter's installation and the virtualenv, as the worker needs them."""
    dirs = {str(Path(sys.base_prefix).resolve()), str(Path(sys.prefix).resolve())}
    for path in sys.path:  # site folders outside both prefixes (rare, e.g. a system site)
        resolved = Path(path).resolve() if path else None
        if resolved and resolved.is_dir() and "site-packages" in resolved.parts and not any(
                resolved.is_relative_to(d) for d in dirs):
            dirs.add(str(resolved))
    return sorted(dirs)


@dataclasses.dataclass
class Scratch:
    """The worker's folder: runtime copy and submission (read-only), home (writable)."""

    root: Path
    runtime: Path
    submission: Path
    home: Path
    config: Path
    new_root: Path  # mount point of the worker's root (namespaces level)


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
    new_root = Path(tempfile.mkdtemp(prefix="bngrade-root-"))
    return Scratch(root, runtime, copy, home, root / "launch.json", new_root)


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


def write_config(scratch: Scratch, level: str, hide: list[str], cpu_seconds: int) -> None:
    config = {
        "level": level,
        "scratch": str(scratch.root),
        "home": str(scratch.home),
        "hide": hide,
        "new_root": str(scratch.new_root),
        "system": list(SYSTEM_DIRS),
        "python": _python_dirs(),
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
