"""First code in a submission's worker: confine the process, then run the child.

Runs as ``python -I -u -c BOOT CONFIG IN OUT`` from a copy of the runtime in the
scratch folder, before any student code, in this order:

0. at the namespace levels, where it starts as the PID namespace's init: fork,
   and leave the parent behind to reap orphans (see ``_be_init``);
1. join the cgroups the grader made for this submission (memory, processes, CPU);
2. at the namespace levels (already inside new mount, PID, network, IPC and UTS
   namespaces made by ``unshare``): move into a new root that holds only
   allow-listed folders, read-only, with a size-capped tmpfs as home, /tmp and
   /dev/shm;
3. drop privileges: to the grader's dedicated uid (namespaces and uid
   levels), or to no capabilities at all (userns);
4. Landlock (uid and landlock levels) and seccomp (every level, on Linux);
5. resource limits.

This module and everything it imports use the standard library only.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import sys
from collections.abc import Callable

from . import _confine

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
# statvfs flag -> mount flag: flags a bind mount inherits and, inside a user
# namespace, may not drop when it is remounted read-only.
_LOCKED = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
           (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))
CAPSET = {"x86_64": 126, "aarch64": 91}
DEVICES = ("null", "zero", "random", "urandom")


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
        kept = 0
        for st_flag, ms_flag in _LOCKED:
            if os.statvfs(target).f_flag & st_flag:
                kept |= ms_flag
        _mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | kept)


def _bind_allowed(config: dict, inside: Callable[[str], str]) -> None:
    """The system folders and Python, read-only, in the new root."""
    for path in config["system"]:
        if os.path.islink(path):
            os.symlink(os.readlink(path), inside(path))
        elif os.path.isdir(path):
            os.makedirs(inside(path), exist_ok=True)
            _bind(path, inside(path))
    for path in config["python"]:
        os.makedirs(inside(path), exist_ok=True)
        _bind(path, inside(path))


def _confine_filesystem(config: dict) -> None:
    """Build a new root holding only what the worker needs, and chroot into it.

    Allow-listed and read-only: the system folders (/usr, /etc, ...), the Python
    installation and the virtualenv, the scratch folder (runtime copy and
    submission). Writable: one tmpfs of a fixed size and inode count, seen as
    home, /tmp, /var/tmp and /dev/shm, gone with the namespace. Fresh: /proc
    (this PID namespace only) and four device files. Everything else, the
    grader's sources, the solution, the secret and other students' code included,
    does not exist in the worker's world.
    """
    new_root = config["new_root"]
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")

    def inside(path: str) -> str:
        return os.path.join(new_root, path.lstrip("/"))

    # The writable space: a tmpfs, so its size and file count are capped and
    # nothing the submission writes lands on the host's disk.
    uid = config["uid"] if config["uid"] is not None else 0
    space = inside("/.writable")
    os.makedirs(space)
    _mount("tmpfs", space, "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={config['scratch_mb']}m,nr_inodes={config['scratch_inodes']},mode=700,uid={uid},gid={uid}")
    # /tmp first: the scratch folder usually lies in it, and so may the
    # virtualenv (a fresh clone in /tmp); they are bound on top of it below.
    mounts = [("tmp", "/tmp"), ("tmp", "/var/tmp"), ("tmp", "/dev/shm"), ("system", None),
              (None, config["scratch"]), ("home", config["home"])]
    for name, where in mounts:
        if name == "system":
            _bind_allowed(config, inside)
            continue
        os.makedirs(inside(where), exist_ok=True)
        if name is None:
            _bind(where, inside(where))
            continue
        os.makedirs(os.path.join(space, name), mode=0o700, exist_ok=True)
        os.chown(os.path.join(space, name), uid, uid)
        _mount(os.path.join(space, name), inside(where), None, MS_BIND)
    for device in DEVICES:
        target = inside(f"/dev/{device}")
        open(target, "w").close()
        _mount(f"/dev/{device}", target, None, MS_BIND)
    scratch = config["scratch"].rstrip("/") + "/"
    for path in config["hide"]:  # anything private that an allowed folder holds
        if scratch.startswith(path.rstrip("/") + "/"):
            continue  # e.g. results in /tmp: the new root's /tmp is a fresh tmpfs anyway
        target = inside(path)
        if os.path.isdir(target):
            _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=555")
        elif os.path.exists(target):
            _mount("/dev/null", target, None, MS_BIND)
    os.makedirs(inside("/proc"), exist_ok=True)
    try:
        _mount("proc", inside("/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass  # a user namespace under a masked /proc may not mount one: the worker goes without
    os.chdir(new_root)
    os.chroot(".")
    _mount("none", "/", None, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_RDONLY)
    os.chdir("/")


def _drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid:
        raise OSError("could not drop privileges")


def _drop_capabilities() -> None:
    """No capabilities left, even as root of a user namespace (capset to zero)."""
    number = CAPSET.get(platform.machine())
    if number is None:
        raise OSError("capset: unknown architecture")

    class Header(ctypes.Structure):
        _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))

    class Data(ctypes.Structure):
        _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32))

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()
    if libc.syscall(number, ctypes.byref(header), ctypes.byref(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def _join_cgroups(paths: list[str]) -> None:
    for path in paths:
        with open(path, "w") as handle:
            handle.write("0")  # this process; every child it starts inherits


def _carve(allowed: list[str], hidden: list[str]) -> list[str]:
    """``allowed`` without ``hidden``: Landlock only allows, so a folder that holds
    a private path is replaced by its entries, minus that path, level by level
    down to it (e.g. a secret file kept in /etc)."""
    out = []
    for path in allowed:
        prefix = path.rstrip("/") + "/"
        if any(path.rstrip("/") == h.rstrip("/") for h in hidden):
            continue  # private itself (a listed folder inside a private one stays allowed: it was listed)
        inner = [h for h in hidden if h.startswith(prefix)]
        if not inner:
            out.append(path)
            continue
        try:
            children = sorted(os.listdir(path))
        except OSError:
            continue
        out += _carve([os.path.join(path, child) for child in children], inner)
    return out


def _allow_lists(config: dict) -> tuple[list[str], list[str]]:
    """Landlock's allow-lists: read the system, Python and the runtime; write home.
    Private paths that lie inside an allowed folder are carved out."""
    read_only = [*config["system"], *config["python"], config["scratch"], "/proc",
                 *(f"/dev/{d}" for d in DEVICES)]
    return _carve(read_only, config["hide"]), [config["home"], "/dev/null"]


def _limit(config: dict) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    size = config["max_file_bytes"]
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    cpu = config["max_cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = 1024 if hard == resource.RLIM_INFINITY else min(hard, 1024)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, cap) if soft != resource.RLIM_INFINITY else cap, cap))
    if config.get("max_processes"):
        count = config["max_processes"]
        resource.setrlimit(resource.RLIMIT_NPROC, (count, count))


def confine(config: dict) -> None:
    level = config["level"]
    _join_cgroups(config.get("cgroup_procs") or [])
    if level in ("namespaces", "userns"):
        _confine_filesystem(config)
    if level == "namespaces":
        _drop_privileges(config["uid"], config["gid"])
    elif level == "uid":
        os.chdir(config["home"])  # before the switch: the scratch root is not listable by the uid
        _drop_privileges(config["uid"], config["gid"])
    elif level == "userns":
        _drop_capabilities()
    os.umask(0o077)
    if sys.platform == "linux":
        # Every level, process included, gets the seccomp filter where the
        # kernel has one: no network, ptrace, kernel keys or SysV IPC.
        _confine.no_new_privs()
        if level in ("uid", "landlock"):
            read_only, read_write = _allow_lists(config)
            _confine.restrict_filesystem(read_only, read_write)
        _confine.install_seccomp()
    _limit(config)


def _be_init(fds: list[int]) -> None:
    """At the namespace levels this process is the PID namespace's init, which
    orphans re-parent to: fork the worker, and stay behind only to reap them (a
    process that forks and exits every 2 ms would otherwise pile up zombies, and
    use up the machine's pids, for as long as the grade lasts). When the worker
    ends, so does init, with its status (a signal as 128 + its number), and the
    kernel kills whatever is left in the namespace."""
    worker = os.fork()
    if worker == 0:
        return
    for fd in fds:  # the channel is the worker's alone: its end is seen as soon as it ends
        try:
            os.close(fd)
        except OSError:
            pass
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            os._exit(1)
        if pid == worker:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


def main(argv: list[str]) -> int:
    with open(argv[0], encoding="utf-8") as handle:
        config = json.load(handle)
    if config["level"] in ("namespaces", "userns") and os.getpid() == 1:
        _be_init([int(fd) for fd in argv[1:3]])
    confine(config)
    os.chdir(config["home"])
    from ._child import main as child_main

    return child_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
