"""First code in a submission's worker: confine the process, then run the child.

Runs as ``python -I -c BOOT CONFIG IN OUT`` from a copy of the runtime in the
scratch folder. With the "namespaces" level it starts as root inside new mount,
PID and network namespaces (made by ``unshare``), moves into a new root that
holds only allow-listed folders, read-only, with the scratch home the one
writable place, and drops to an unprivileged user. At every level it sets
resource limits before any student code runs.
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


def _bind(source: str, target: str, writable: bool = False) -> None:
    _mount(source, target, None, MS_BIND | MS_REC)
    if not writable:
        _mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _confine_filesystem(config: dict) -> None:
    """Build a new root holding only what the worker needs, and chroot into it.

    Allow-listed and read-only: the system folders (/usr, /etc, ...), the Python
    installation and the virtualenv. Read-only: the scratch folder (runtime copy
    and submission), except its home, the one writable place. Fresh: /proc (this
    PID namespace only) and a few device files. Everything else, the grader's
    sources, the solution, other copies of either, the secret and other
    students' code included, simply does not exist in the worker's world.
    """
    new_root = config["new_root"]
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")

    def inside(path: str) -> str:
        return os.path.join(new_root, path.lstrip("/"))

    for path in config["system"]:
        if os.path.islink(path):
            os.symlink(os.readlink(path), inside(path))
        elif os.path.isdir(path):
            os.makedirs(inside(path), exist_ok=True)
            _bind(path, inside(path))
    for path in config["python"]:
        os.makedirs(inside(path), exist_ok=True)
        _bind(path, inside(path))
    os.makedirs(inside(config["scratch"]), exist_ok=True)
    _bind(config["scratch"], inside(config["scratch"]))
    _bind(config["home"], inside(config["home"]), writable=True)
    os.makedirs(inside("/dev"), exist_ok=True)
    for device in ("null", "zero", "random", "urandom"):
        target = inside(f"/dev/{device}")
        open(target, "w").close()
        _mount(f"/dev/{device}", target, None, MS_BIND)
    for path in config["hide"]:  # anything private that an allowed folder holds
        target = inside(path)
        if os.path.isdir(target):
            _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=555")
        elif os.path.exists(target):
            _mount("/dev/null", target, None, MS_BIND)
    os.makedirs(inside("/proc"), exist_ok=True)
    _mount("proc", inside("/proc"), "proc", MS_NOSUID | MS_NODEV)
    for path in ("/tmp", "/var/tmp"):
        os.makedirs(inside(path), exist_ok=True)
    os.chdir(new_root)
    os.chroot(".")
    _mount("none", "/", None, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_RDONLY)


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
