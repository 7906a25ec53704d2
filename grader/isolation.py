"""How a submission's worker is confined: the level, its command line, its limits.

Five levels, strongest first; the grader picks the strongest the machine allows
and records it (SECURITY.md says what each one defends):

- ``namespaces``: root with a working ``unshare`` (a privileged container, CI).
  New mount, PID, network, IPC and UTS namespaces; a new root built from an
  allow-list, read-only, with a size-capped tmpfs as the only writable place
  (home, /tmp, /dev/shm); a dedicated unprivileged uid; seccomp; a cgroup where
  one can be made.
- ``userns``: not root, but unprivileged user namespaces work (a student's
  laptop, a CI runner). The same namespaces and new root, as the namespace's
  mapped root, which is the invoking user outside; seccomp.
- ``uid``: root without namespaces (Gradescope, Docker's default seccomp
  profile). The worker runs as a dedicated unprivileged uid that owns nothing
  but its home; Landlock allows reads of an allow-list only; seccomp blocks
  network sockets, ptrace, kernel keys and SysV IPC; a process-count limit; a
  cgroup where one can be made; everything the uid owns is killed and removed.
- ``landlock``: not root, no user namespaces: Landlock and seccomp as the same user.
- ``process``: rlimits, a separate session, and seccomp where the kernel has it.

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

from grader.protocol import ADAPTERS

LEVELS = ("namespaces", "userns", "uid", "landlock", "process")
# How much each level confines; --min-isolation compares these.
STRENGTH = {"namespaces": 4, "userns": 3, "uid": 3, "landlock": 2, "process": 1}
RUNTIME_PACKAGE = "bngrader_rt"
RUNTIME_MODULES = ("_launch.py", "_child.py", "_confine.py", "protocol.py", "wire.py",
                   *(f"{adapter}.py" for adapter in ADAPTERS))
MAX_FILE_BYTES = 64 * 1024 * 1024
SCRATCH_MB = 256  # the worker's whole writable space (home, /tmp, /dev/shm) where it is a tmpfs
SCRATCH_INODES = 20000
MAX_PROCESSES = 512  # threads count: JAX starts a few dozen
# Dedicated uids of the "uid" level: one per grading process (pid-derived), so
# that concurrent graders' workers cannot touch each other's files.
UID_BASE = 1_900_000_000
UID_SPAN = 4_000_000
BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); del sys.argv[1]; "
    f"from {RUNTIME_PACKAGE}._launch import main; sys.exit(main(sys.argv[1:]))"
)
GRADER_DIR = Path(__file__).resolve().parent
PROJECT_DIR = GRADER_DIR.parent
# Project folders a submission must not read (whichever exist).
PROTECTED_PROJECT_DIRS = ("grader", "solution", "tests", "examples", "bench", ".git", ".ci")
NAMESPACE_FLAGS = ("--mount", "--pid", "--net", "--ipc", "--uts", "--fork", "--kill-child")


class IsolationError(RuntimeError):
    """The requested isolation level cannot run here."""


def _unshare() -> str | None:
    return shutil.which("unshare")


def _try(argv: list[str]) -> bool:
    try:
        probe = subprocess.run(argv, capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@functools.lru_cache(maxsize=1)
def available_levels() -> tuple[str, ...]:
    """Every level this process can run, strongest first. Tried afresh by each
    grading process (a few milliseconds): nothing on disk can vouch for it."""
    if sys.platform != "linux":
        return ("process",)
    from grader import _confine

    root = os.geteuid() == 0
    unshare = _unshare()
    levels = []
    if root and unshare and _try([unshare, *NAMESPACE_FLAGS, "true"]):
        levels.append("namespaces")
    if not root and unshare and _try([unshare, "--user", "--map-root-user", *NAMESPACE_FLAGS, "true"]):
        levels.append("userns")
    if root:
        levels.append("uid")
    if not root and _confine.landlock_abi() > 0 and _confine.seccomp_available():
        levels.append("landlock")
    levels.append("process")
    return tuple(levels)


def namespaces_available() -> bool:
    return "namespaces" in available_levels()


def choose_level(requested: str | None, minimum: str | None = None) -> str:
    """The requested level if it can run here; by default (None or "auto") the
    strongest available, refused if weaker than ``minimum``."""
    for name in (requested, minimum):
        if name not in (None, "auto") and name not in LEVELS:
            raise IsolationError(f"unknown isolation level {name!r}; choose one of {', '.join(LEVELS)} or auto")
    available = available_levels()
    if requested not in (None, "auto"):
        if requested not in available:
            raise IsolationError(f"isolation level {requested!r} cannot run here ({_why_not(requested)}); "
                                 f"available: {', '.join(available)}")
        level = requested
    else:
        level = available[0]
    if minimum not in (None, "auto") and STRENGTH[level] < STRENGTH[minimum]:
        raise IsolationError(f"the strongest isolation available here is {level!r}, weaker than the required "
                             f"{minimum!r} ({_why_not(minimum)})")
    return level


def _why_not(level: str) -> str:
    return {
        "namespaces": "needs root on Linux with a working unshare of mount, PID, network, IPC and UTS namespaces",
        "userns": "needs a non-root user on Linux with unprivileged user namespaces",
        "uid": "needs root on Linux",
        "landlock": "needs a non-root user on a Linux kernel with Landlock and seccomp",
        "process": "always available",
    }[level]


def worker_uid(level: str) -> int | None:
    """The uid the worker runs as, where the grader chooses one: a uid of its
    own per grading process (pid-derived), so that the process-count limit,
    files and signals are this grade's alone even beside other graders."""
    if level in ("namespaces", "uid"):
        return UID_BASE + os.getpid() % UID_SPAN
    return None


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
    new_root: Path  # mount point of the worker's root (namespace levels)


def prepare_scratch(root: Path, source: bytes, level: str) -> Scratch:
    """Lay out the worker's folder. ``source``: the submission's bytes, read by
    the caller from a regular file (never through a link)."""
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
    copy.write_bytes(source)
    home = root / "home"
    home.mkdir()
    root.chmod(0o711)
    for path in (runtime, package, cache, copy.parent):
        path.chmod(0o755)
    for path in [copy, *package.glob("*.py"), *cache.iterdir()]:
        path.chmod(0o644)
    uid = worker_uid(level)
    if uid is not None:
        os.chown(home, uid, uid)
        home.chmod(0o700)
    # Outside the scratch folder, which is bound into the new root recursively.
    new_root = Path(tempfile.mkdtemp(prefix="bngrade-root-"))
    return Scratch(root, runtime, copy, home, root / "launch.json", new_root)


def mount_home(scratch: Scratch, uid: int) -> bool:
    """At the ``uid`` level, where the grader is root and may mount: the worker's home
    becomes a tmpfs of SCRATCH_MB and SCRATCH_INODES, so that the kernel caps its disk
    (files unlinked while still open included) and charges its pages to the worker's
    memory cgroup. False where mounting is refused (Docker's default profile): the
    watchdog measures the home instead. Unmounted by the clean-up's remove_tree."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    options = f"size={SCRATCH_MB}m,nr_inodes={SCRATCH_INODES},mode=700,uid={uid},gid={uid}"
    flags = 2 | 4 | 8  # MS_NOSUID | MS_NODEV | MS_NOEXEC
    return libc.mount(b"tmpfs", str(scratch.home).encode(), b"tmpfs", ctypes.c_ulong(flags),
                      options.encode()) == 0


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


def protect(paths: list[str], scratch: Path) -> None:
    """At the ``uid`` level on a kernel without Landlock, make private paths
    unreadable to other users before any student code runs. (Where Landlock
    runs, its allow-list already denies them, and the modes are left alone.)"""
    for path in paths:
        try:
            mode = os.stat(path, follow_symlinks=False).st_mode
            if mode & 0o1000 or scratch.is_relative_to(path):
                continue  # a shared sticky folder such as /tmp, or one the worker must cross
            os.chmod(path, mode & 0o7700, follow_symlinks=False)
        except (OSError, NotImplementedError):
            pass


def make_traversable(paths: list[str]) -> None:
    """At the ``uid`` level the worker's own uid must reach the interpreter and
    the virtualenv: give their ancestor folders search permission (o+x, never
    read) where they lack it, e.g. a Python installed under /root."""
    for path in paths:
        for folder in [Path(path), *Path(path).parents]:
            try:
                mode = folder.stat().st_mode
                if not mode & 0o001:
                    folder.chmod((mode & 0o7777) | 0o001)
            except OSError:
                continue


def write_config(scratch: Scratch, level: str, hide: list[str], cpu_seconds: int,
                 cgroup_procs: list[str]) -> None:
    uid = worker_uid(level)
    config = {
        "level": level,
        "scratch": str(scratch.root),
        "home": str(scratch.home),
        "hide": hide,
        "new_root": str(scratch.new_root),
        "system": list(SYSTEM_DIRS),
        "python": _python_dirs(),
        "uid": uid,
        "gid": uid,
        "max_file_bytes": MAX_FILE_BYTES,
        "max_cpu_seconds": cpu_seconds,
        "max_processes": MAX_PROCESSES if level in ("uid", "namespaces") else None,
        "scratch_mb": SCRATCH_MB,
        "scratch_inodes": SCRATCH_INODES,
        "cgroup_procs": cgroup_procs,
    }
    scratch.config.write_text(json.dumps(config))
    scratch.config.chmod(0o644)


def command(scratch: Scratch, level: str, job_fd: int, result_fd: int) -> list[str]:
    # -u: the student's prints reach the captured files at once, whatever happens next.
    python = [sys.executable, "-I", "-u", "-c", BOOT, str(scratch.runtime), str(scratch.config), str(job_fd), str(result_fd)]
    unshare = _unshare() or "unshare"
    if level == "namespaces":
        return [unshare, *NAMESPACE_FLAGS, "--", *python]
    if level == "userns":
        return [unshare, "--user", "--map-root-user", *NAMESPACE_FLAGS, "--", *python]
    return python
