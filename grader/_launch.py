"""First code in a submission's worker: confine the process, then run the child.

Runs as ``python -I -c BOOT CONFIG IN OUT`` from a copy of the runtime in the
scratch folder. With the "namespaces" level it starts as root inside new mount,
PID and network namespaces (made by ``unshare``), hides every protected path
behind an empty tmpfs or /dev/null, gives the worker fresh /tmp, /var/tmp and
/dev/shm, keeps only the scratch folder writable, and drops to an unprivileged
user. At every level it sets resource limits before any student code runs.
This module and everything it imports use the standard library only.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                        ctypes.c_ulong(flags), data.encode() if data else None)
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _confine_filesystem(config: dict) -> None:
    scratch = config["scratch"]
    # Handles on what must stay visible, taken before anything is covered.
    scratch_fd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY)
    keep_fds = [(item, os.open(item["keep"], os.O_RDONLY | os.O_DIRECTORY)) for item in config["expose"]]
    # Python installs inside /tmp & co (e.g. a virtualenv in a fresh clone there).
    rebind_fds = [(path, os.open(path, os.O_RDONLY | os.O_DIRECTORY)) for path in config["rebind"]]
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    for path in config["hide"]:
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=555")
        elif os.path.exists(path):
            _mount("/dev/null", path, None, MS_BIND)
    # A private home for the interpreter: e.g. /root (mode 700) becomes an empty
    # tmpfs holding only the Python installation, read-only.
    for item, fd in keep_fds:
        _mount("tmpfs", item["mask"], "tmpfs", MS_NOSUID | MS_NODEV, "size=4k,mode=755")
        os.makedirs(item["keep"], exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", item["keep"], None, MS_BIND | MS_REC)
        _mount("none", item["keep"], None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        os.close(fd)
    # The world-writable places become empty and read-only; only scratch is writable.
    for path in config["emptied"]:
        if os.path.isdir(path) and not os.path.islink(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=4k,mode=755")
    os.makedirs(scratch, exist_ok=True)
    _mount(f"/proc/self/fd/{scratch_fd}", scratch, None, MS_BIND)
    os.close(scratch_fd)
    for path, fd in rebind_fds:
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        _mount("none", path, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        os.close(fd)
    for path in config["emptied"]:
        if os.path.isdir(path) and not os.path.islink(path):
            _mount("none", path, None, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_RDONLY)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV)


def _drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    os.umask(0o077)
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError("could not drop privileges")


def _limit(config: dict) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    size = config["max_file_bytes"]
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    cpu = config["max_cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def main(argv: list[str]) -> int:
    with open(argv[0], encoding="utf-8") as handle:
        config = json.load(handle)
    if config["level"] == "namespaces":
        _confine_filesystem(config)
        _drop_privileges(config["uid"], config["gid"])
    os.chdir(config["home"])
    _limit(config)
    from ._child import main as child_main

    return child_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
