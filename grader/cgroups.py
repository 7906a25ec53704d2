"""A control group per submission, where the grader may make one.

The kernel then counts memory the way it really is used (anonymous memory,
page cache, tmpfs, memfd and shared memory alike) against ``memory.max``, limits
the number of processes and threads, gives the submission one share of the CPU
however many processes or sessions it makes (one scheduler group), and can kill
every process in the group at once. cgroup v2 first (the grader's own group must have the memory controller
delegated); cgroup v1 memory and pids hierarchies otherwise (as on many
container hosts); none when neither is writable (then the sandbox's watchdog
counts memory instead: see :mod:`grader.proctree`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path

from grader import proctree

ROOT = Path("/sys/fs/cgroup")
CPU_WEIGHT = 100  # cgroup v2's default: every submission the same share
CPU_SHARES = 1024  # cgroup v1's default, the same


def _own_path(controller: str | None) -> str | None:
    """This process's group in a v1 hierarchy (``controller``) or in v2 (None)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if controller is None and parts[0] == "0" and parts[1] == "":
            return parts[2]
        if controller is not None and controller in parts[1].split(","):
            return parts[2]
    return None


def _make(base: Path, name: str) -> Path | None:
    _sweep(base)
    try:
        path = base / name
        path.mkdir()
        return path
    except OSError:
        return None


def _sweep(base: Path) -> None:
    """Remove the empty groups of graders that are gone (killed before their clean-up):
    ``bngrade-<pid>-...`` whose pid no longer runs. A group with members is never removed
    (rmdir refuses), and a live grader's never touched."""
    with contextlib.suppress(OSError):
        for stale in base.glob("bngrade-*-*"):
            with contextlib.suppress(ValueError, OSError):
                pid = int(stale.name.split("-")[1])
                if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
                    stale.rmdir()


class Group:
    """One submission's groups (one directory in v2, or one per v1 controller)."""

    def __init__(self, dirs: list[Path], version: int, memory_file: str | None):
        self.dirs = dirs
        self.version = version
        self._memory_dir = next((d for d in dirs if (d / (memory_file or "-")).exists()), None)
        self._memory_file = memory_file

    @property
    def procs_files(self) -> list[str]:
        """Where a worker writes "0" to join, before any student code runs."""
        return [str(d / "cgroup.procs") for d in self.dirs]

    @property
    def limits_memory(self) -> bool:
        return self._memory_dir is not None

    def _read(self, name: str) -> int:
        if self._memory_dir is None:
            return 0
        try:
            text = (self._memory_dir / name).read_text()
        except OSError:
            return 0
        if name in ("memory.events", "memory.oom_control"):
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
            return 0
        try:
            return int(text.split()[0])
        except (ValueError, IndexError):
            return 0

    def memory_bytes(self) -> int:
        return self._read("memory.current" if self.version == 2 else "memory.usage_in_bytes")

    def peak_bytes(self) -> int:
        return self._read("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes")

    def oom_kills(self) -> int:
        """How many processes the kernel killed for the group's memory limit."""
        return self._read("memory.events" if self.version == 2 else "memory.oom_control")

    def pids(self) -> list[int]:
        found: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return sorted(found)

    def kill(self) -> None:
        """Kill everything in the group (cgroup.kill in v2; otherwise freeze by
        SIGSTOP and SIGKILL each member until the group is empty)."""
        for d in self.dirs:
            with contextlib.suppress(OSError):
                (d / "cgroup.kill").write_text("1")
        proctree.kill_all(self.pids)

    def remove(self) -> None:
        self.kill()
        for d in self.dirs:
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)  # the last members are still being torn down


def create(memory_bytes: int, max_processes: int) -> Group | None:
    """A new group limited to ``memory_bytes`` and ``max_processes``, or None
    where the grader may not make one (not root, read-only cgroupfs, ...)."""
    name = f"bngrade-{os.getpid()}-{secrets.token_hex(4)}"
    own = _own_path(None)
    if own is not None and (ROOT / "cgroup.controllers").exists():
        base = ROOT / own.lstrip("/")
        try:
            controllers = (base / "cgroup.subtree_control").read_text().split()
        except OSError:
            controllers = []
        if "memory" in controllers:
            path = _make(base, name)
            if path is not None:
                try:
                    (path / "memory.max").write_text(str(memory_bytes))
                    with contextlib.suppress(OSError):
                        (path / "memory.swap.max").write_text("0")
                    if "pids" in controllers:
                        (path / "pids.max").write_text(str(max_processes))
                    if "cpu" in controllers:  # one share per submission, however many processes
                        (path / "cpu.weight").write_text(str(CPU_WEIGHT))
                    return Group([path], 2, "memory.max")
                except OSError:
                    with contextlib.suppress(OSError):
                        path.rmdir()
    return _create_v1(name, memory_bytes, max_processes)


def _create_v1(name: str, memory_bytes: int, max_processes: int) -> Group | None:
    dirs: list[Path] = []
    memory = _own_path("memory")
    if memory is None or not (ROOT / "memory").is_dir():
        return None
    path = _make(ROOT / "memory" / memory.lstrip("/"), name)
    if path is None:
        return None
    try:
        (path / "memory.limit_in_bytes").write_text(str(memory_bytes))
        with contextlib.suppress(OSError):
            (path / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
    except OSError:
        with contextlib.suppress(OSError):
            path.rmdir()
        return None
    dirs.append(path)
    cpu = _own_path("cpu")
    if cpu is not None and (ROOT / "cpu").is_dir():
        # One scheduler group per submission, of the default weight: its processes
        # share one share of the CPU (and leave the per-session autogroups).
        cpu_dir = _make(ROOT / "cpu" / cpu.lstrip("/"), name)
        if cpu_dir is not None:
            try:
                (cpu_dir / "cpu.shares").write_text(str(CPU_SHARES))
                dirs.append(cpu_dir)
            except OSError:
                with contextlib.suppress(OSError):
                    cpu_dir.rmdir()
    pids = _own_path("pids")
    if pids is not None and (ROOT / "pids").is_dir():
        pids_dir = _make(ROOT / "pids" / pids.lstrip("/"), name)
        if pids_dir is not None:
            try:
                (pids_dir / "pids.max").write_text(str(max_processes))
                dirs.append(pids_dir)
            except OSError:
                with contextlib.suppress(OSError):
                    pids_dir.rmdir()
    return Group(dirs, 1, "memory.limit_in_bytes")
