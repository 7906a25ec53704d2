"""Process trees, users' processes and files: finding, measuring, killing, removing.

Used by the grading process on what its workers left behind. Nothing here
recurses or trusts what a worker built: deep folders, mount points, links,
unreadable modes and processes that fork while being killed are all expected.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterable

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MNT_DETACH = 2


def become_subreaper() -> None:
    """Orphans of our workers (double forks, setsid) re-parent to us, not to init,
    so that walking our descendants still finds them."""
    if sys.platform == "linux":
        try:
            ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        except (OSError, AttributeError):
            pass


def _stat_fields(pid: int | str) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def scan() -> dict[int, tuple[int, bytes]]:
    """Parent and state (b"Z": a zombie) of every process, from one pass over /proc."""
    found = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit() and (fields := _stat_fields(entry)):
            try:
                found[int(entry)] = (int(fields[1]), fields[0])
            except (IndexError, ValueError):
                continue
    return found


def _parents(zombies: bool = False, scanned: dict[int, tuple[int, bytes]] | None = None) -> dict[int, int]:
    """Parent of every live process (zombies, already dead, are left out unless asked for)."""
    scanned = scan() if scanned is None else scanned
    return {pid: parent for pid, (parent, state) in scanned.items() if zombies or state != b"Z"}


def process_children(scanned: dict[int, tuple[int, bytes]] | None = None) -> dict[int, list[int]]:
    """Every live process's children, from one scan of /proc (``scanned``: one to reuse)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents(scanned=scanned).items():
        children.setdefault(ppid, []).append(pid)
    return children


def descendants(root: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """``root`` and every process below it (``children``: a scan to reuse)."""
    children = process_children() if children is None else children
    found, stack, seen = [], [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def is_live(pid: int) -> bool:
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != b"Z"


def reap(keep: Iterable[int] = (), scanned: dict[int, tuple[int, bytes]] | None = None) -> None:
    """Collect orphans that re-parented to us (as subreaper) and have exited, so
    that no zombie piles up; ``keep``: children someone else waits for (a worker's
    Popen, whose exit status would otherwise be lost)."""
    keep = set(keep)
    if not keep:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
    me = os.getpid()
    for pid, (parent, state) in (scan() if scanned is None else scanned).items():
        if parent == me and pid not in keep and state == b"Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue


def sweep_descendants(keep: Iterable[int] = (), seconds: float = 10.0) -> None:
    """Kill everything below this process (a subreaper) but ``keep`` and what is
    below it, however fast it forks, and reap it.

    A process that forks and exits every few milliseconds outruns a scan of /proc
    (a few ms for a hundred processes): by the time its line is read it is a
    zombie, and its child is not in the listing yet, so a scan never even sees it
    alive. So every descendant is stopped as soon as it is found, and after the
    first pass only the pids that appeared since are read: a new process is ours
    if its parent is (or we are, as subreaper, when that parent already exited).
    When two passes in a row find nothing new and all of ours stopped, nothing of
    ours can fork any more: all are killed together and reaped, and it starts
    over until a pass finds none of ours alive.
    """
    me = os.getpid()
    keep = set(keep)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ours, alive = _stop_descendants(me, keep, deadline)
        if not alive:
            reap(keep)
            return
        for pid in ours:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.01)
        reap(keep)


def _stop_descendants(me: int, keep: set[int], deadline: float) -> tuple[set[int], bool]:
    """Stop every process below ``me`` (not below ``keep``): (their pids, whether any was alive)."""
    parents: dict[int, int] = {}
    ours: set[int] = set()
    alive = False
    quiet = 0
    while quiet < 2 and time.monotonic() < deadline:
        try:
            listed = sorted(int(e) for e in os.listdir("/proc") if e.isdigit())
        except OSError:
            break
        new = False
        for pid in listed:
            if pid in parents:
                continue
            fields = _stat_fields(pid)
            try:
                parents[pid] = int(fields[1]) if fields else -1
            except (IndexError, ValueError):
                parents[pid] = -1
            if pid != me and pid not in keep and (parents[pid] == me or parents[pid] in ours):
                ours.add(pid)
                new = True
                if fields and fields[0] != b"Z":
                    _signal(pid, signal.SIGSTOP)
                    alive = True
        # A child listed before its parent (pids wrap around): ours too, now.
        grown = True
        while grown:
            grown = False
            for pid, parent in parents.items():
                if parent in ours and pid not in ours and pid not in keep:
                    ours.add(pid)
                    _signal(pid, signal.SIGSTOP)
                    alive = grown = new = True
        settled = all((fields := _stat_fields(pid)) is None or fields[0] in (b"T", b"t", b"Z", b"X")
                      for pid in ours)
        quiet = quiet + 1 if not new and settled else 0
    return ours, alive


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_all(find: Callable[[], Iterable[int]], rounds: int = 50) -> None:
    """SIGKILL whatever ``find()`` returns until it returns nothing. SIGSTOP first
    in each round, so that a process forking new pids cannot outrun the kills."""
    me = os.getpid()
    for attempt in range(rounds):
        pids = [p for p in find() if p != me and is_live(p)]
        if not pids:
            return
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        reap()
        if attempt:
            time.sleep(0.01)


def kill_tree(root: int) -> None:
    """SIGKILL ``root``'s whole tree, repeatedly, until none of it is left."""
    kill_all(lambda: descendants(root))


def pids_of_uid(uid: int) -> list[int]:
    """Every live process whose real or effective uid is ``uid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as handle:
                for line in handle:
                    if line.startswith(b"Uid:"):
                        real, effective = line.split()[1:3]
                        if uid in (int(real), int(effective)):
                            found.append(int(entry))
                        break
        except (OSError, ValueError, IndexError):
            continue
    return found


def kill_uid(uid: int) -> None:
    """Kill every process of ``uid`` (a uid the grader dedicated to one worker)."""
    kill_all(lambda: pids_of_uid(uid))


def resident_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                total += int(handle.read().split()[1]) * PAGE_BYTES
        except (OSError, IndexError, ValueError):
            continue
    return total


def shared_memory_bytes(pids: Iterable[int], uid: int | None) -> int:
    """Memory a process holds without it being resident in its own map: memfd
    and tmpfs files it keeps open (counted once each), and, for a dedicated
    ``uid``, its files in /dev/shm and its SysV segments."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if not (target.startswith(("/memfd:", "/dev/shm/")) or "(deleted)" in target):
                    continue
                info = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    if uid is not None:
        total += _dev_shm_bytes(uid, seen) + _sysv_bytes(uid)
    return total


def _dev_shm_bytes(uid: int, seen: set[tuple[int, int]]) -> int:
    total = 0
    try:
        entries = list(os.scandir("/dev/shm"))
    except OSError:
        return 0
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if info.st_uid == uid and (info.st_dev, info.st_ino) not in seen:
            total += info.st_blocks * 512
    return total


def _sysv_bytes(uid: int) -> int:
    total = 0
    try:
        with open("/proc/sysvipc/shm") as handle:
            lines = handle.read().splitlines()[1:]
    except OSError:
        return 0
    for line in lines:
        fields = line.split()
        try:
            if int(fields[7]) == uid:  # key shmid perms size cpid lpid nattch uid ...
                total += int(fields[3])
        except (IndexError, ValueError):
            continue
    return total


def tree_usage(path: str, max_entries: int) -> tuple[int, int]:
    """Bytes allocated and entries below ``path``, without recursion or following
    links; counting stops after ``max_entries`` + 1 entries (the caller's limit).
    Unreadable folders are opened up to be measured."""
    used, entries, stack = 0, 0, [path]
    while stack and entries <= max_entries:
        folder = stack.pop()
        try:
            try:
                listing = os.scandir(folder)
            except PermissionError:
                # A folder its owner made unreadable (mode 0300) is still measured:
                # the grader owns it too (same user). The folder itself, never a
                # link swapped in for it: opened without following, changed through
                # that descriptor.
                _open_up(folder)
                listing = os.scandir(folder)
            with listing as scan:
                for entry in scan:
                    entries += 1
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError as err:
                        if err.errno == errno.ENAMETOOLONG:
                            return used, max_entries + 1
                        continue
                    used += info.st_blocks * 512
                    if stat.S_ISDIR(info.st_mode):
                        stack.append(entry.path)
                    if entries > max_entries:
                        break
        except OSError as err:
            if err.errno == errno.ENAMETOOLONG:
                return used, max_entries + 1  # deeper than a path can say: over any limit
            continue
    return used, entries


def _open_up(folder: str) -> None:
    fd = os.open(folder, getattr(os, "O_PATH", os.O_RDONLY) | os.O_NOFOLLOW | os.O_DIRECTORY)
    try:
        os.chmod(f"/proc/self/fd/{fd}", 0o700)
    finally:
        os.close(fd)


def _unmount_below(path: str) -> None:
    """Lazily detach any mount at or below ``path`` (deepest first)."""
    try:
        with open("/proc/self/mountinfo") as handle:
            points = [line.split()[4] for line in handle]
    except OSError:
        return
    prefix = path.rstrip("/") + "/"
    libc = ctypes.CDLL(None, use_errno=True)
    for point in sorted((p for p in points if p == path or p.startswith(prefix)), key=len, reverse=True):
        libc.umount2(point.encode().decode("unicode_escape").encode(), MNT_DETACH)


def remove_tree(path: str) -> None:
    """Delete ``path`` and everything below it, however deep, following no links.

    Mounts below it are detached first. Then, working only with names relative
    to open folders (never a long path), every sub-folder's own sub-folders are
    moved up to the top before the sub-folder is emptied and removed, so depth
    never grows beyond two and nothing recurses. Folders whose mode forbids it
    are opened up first. What cannot be removed (a busy mount point) is left,
    and the loop still ends.
    """
    try:
        top = os.lstat(path)
    except OSError:
        return
    if not stat.S_ISDIR(top.st_mode):
        _unlink(path)
        return
    _unmount_below(path)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        os.chmod(path, 0o700)
        top_fd = os.open(path, flags)
    except OSError:
        return
    token = f".rm-{os.getpid()}-{time.monotonic_ns()}"
    moved = 0
    try:
        while True:
            try:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in os.scandir(top_fd)]
            except OSError:
                break
            if not entries:
                break
            progress = False
            for name, is_dir in entries:
                if not is_dir:
                    progress |= _unlink_at(name, top_fd)
                    continue
                try:
                    os.chmod(name, 0o700, dir_fd=top_fd)
                    sub_fd = os.open(name, flags, dir_fd=top_fd)
                except OSError:
                    continue
                try:
                    for child in os.scandir(sub_fd):
                        if child.is_dir(follow_symlinks=False):
                            try:
                                os.rename(child.name, f"{token}-{moved}", src_dir_fd=sub_fd, dst_dir_fd=top_fd)
                                moved += 1
                                progress = True
                            except OSError:
                                continue
                        else:
                            progress |= _unlink_at(child.name, sub_fd)
                except OSError:
                    pass
                finally:
                    os.close(sub_fd)
                try:
                    os.rmdir(name, dir_fd=top_fd)
                    progress = True
                except OSError:
                    pass
            if not progress:
                break
    finally:
        os.close(top_fd)
    try:
        os.rmdir(path)
    except OSError:
        pass


def _unlink_at(name: str, dir_fd: int) -> bool:
    try:
        os.unlink(name, dir_fd=dir_fd)
        return True
    except OSError:
        return False


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def remove_owned(uid: int, folders: Iterable[str] = ("/tmp", "/var/tmp", "/dev/shm")) -> None:
    """Remove what ``uid`` (a uid dedicated to one worker) left in shared
    temporary folders, and its SysV IPC objects."""
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    remove_tree(entry.path)
            except OSError:
                continue
    for kind, flag in (("shm", "-m"), ("msg", "-q"), ("sem", "-s")):
        try:
            with open(f"/proc/sysvipc/{kind}") as handle:
                lines = handle.read().splitlines()[1:]
        except OSError:
            continue
        column = {"shm": 7, "msg": 7, "sem": 4}[kind]
        for line in lines:
            fields = line.split()
            try:
                if int(fields[column]) == uid:
                    _ipc_remove(kind, int(fields[1]))
            except (IndexError, ValueError):
                continue


def _ipc_remove(kind: str, ident: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    ipc_rmid = 0
    if kind == "shm":
        libc.shmctl(ident, ipc_rmid, None)
    elif kind == "msg":
        libc.msgctl(ident, ipc_rmid, None)
    else:
        libc.semctl(ident, 0, ipc_rmid)
