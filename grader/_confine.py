"""Last confinement of a worker, applied by the worker itself before student code runs.

Linux only (x86_64 and aarch64), standard library only (``ctypes``), so that the
worker's runtime copy can carry it. Three kernel mechanisms, each of which an
unprivileged process may apply to itself and never undo:

- ``no_new_privs``: nothing the process executes afterwards (a set-user-ID
  binary, file capabilities) can gain privileges. Seccomp and Landlock require it.
- A **seccomp** filter (classic BPF, built below by hand) that makes these system
  calls fail with ``EPERM``, which Python raises as ``PermissionError``:

  - network: ``socket`` for every family, ``AF_UNIX`` included (no TCP, no UDP,
    no raw or routing sockets, and no Unix socket with a path, which would reach
    host services Landlock does not cover); ``socketpair`` only for ``AF_UNIX``
    (a connected pair, as multiprocessing uses, reaches nothing else);
  - the grader's memory and processes: ``ptrace``, ``process_vm_readv/writev``,
    ``kcmp``;
  - kernel key rings (where credentials may be cached): ``keyctl``, ``add_key``,
    ``request_key``;
  - namespace and mount escapes: ``unshare``, ``setns``, ``clone`` with any
    ``CLONE_NEW*`` flag, ``mount``, ``umount2``, ``pivot_root`` and the new mount
    API (``fsopen``, ``fsconfig``, ``fsmount``, ``fspick``, ``move_mount``,
    ``open_tree``, ``mount_setattr``), ``open_by_handle_at`` and
    ``name_to_handle_at`` (which reach files by handle, bypassing the paths);
  - the machine: kernel modules, ``kexec``, ``reboot``, swap;
  - System V IPC and POSIX message queues (machine-wide objects that outlive the
    worker and let submissions talk to each other), and ``chroot``;
  - large kernel attack surface nobody's BatchNorm needs: ``bpf``,
    ``perf_event_open``, ``userfaultfd``, ``io_uring_setup``.

  ``clone3`` fails with ``ENOSYS`` instead, because its flags live in memory a
  filter cannot read; the C library then falls back to ``clone``, whose flags it
  can. Any other architecture's system calls (i386 through ``int 0x80``, or the
  x32 ABI on x86_64) kill the process or fail, so the table cannot be bypassed.
- **Landlock** (Linux 5.13+): file access only below an allow-list of paths,
  read-only or read-write; with ABI 4+ no TCP bind or connect at all; with ABI 6+
  no signals to processes outside the worker's own domain (the grader, other
  workers) and no connection to abstract Unix sockets outside it.

What this does **not** defend: kernel vulnerabilities; resource exhaustion (that is
the resource limits' and the grader's job); files and sockets already open when the
restriction starts (Landlock checks opening, not inherited descriptors); reading anything the allow-list does hold; threads
that existed before Landlock was applied (which is why ``restrict_filesystem``
refuses to run in a multi-threaded process); kernels without seccomp or Landlock,
where the functions report that nothing was applied so that the caller can record
it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
import sys
import threading

__all__ = [
    "ConfinementError",
    "apply",
    "install_seccomp",
    "landlock_abi",
    "no_new_privs",
    "restrict_filesystem",
]


class ConfinementError(RuntimeError):
    """A confinement cannot be applied as asked (not "unavailable": that is reported)."""


# --- prctl, seccomp ---------------------------------------------------------------------------

PR_SET_NO_NEW_PRIVS = 38
PR_GET_SECCOMP = 21
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2  # prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog)
SECCOMP_SET_MODE_FILTER = 1  # seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_FILTER_FLAG_TSYNC = 1  # apply to every thread of the process, not just the caller

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
RET_EPERM = SECCOMP_RET_ERRNO | errno.EPERM
RET_ENOSYS = SECCOMP_RET_ERRNO | errno.ENOSYS

# struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
SECCOMP_DATA_NR = 0
SECCOMP_DATA_ARCH = 4
SECCOMP_DATA_ARG0_LOW = 16  # low 32 bits of args[0] (both architectures are little-endian)

# Classic BPF opcodes (linux/bpf_common.h).
BPF_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
BPF_JGE_K = 0x05 | 0x30 | 0x00  # BPF_JMP | BPF_JGE | BPF_K
BPF_JSET_K = 0x05 | 0x40 | 0x00  # BPF_JMP | BPF_JSET | BPF_K
BPF_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7
X32_SYSCALL_BIT = 0x40000000

AF_UNIX = 1
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NAMESPACE_FLAGS = (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
                         | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWTIME)  # 0x7E020080

# System call numbers. x86_64: arch/x86/entry/syscalls/syscall_64.tbl (the "common"
# and "64" rows); aarch64 has no table of its own: include/uapi/asm-generic/unistd.h
# (no legacy calls such as open or fork there). Checked against both headers by the tests.
DENIED_X86_64 = {
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
    "keyctl": 250, "add_key": 248, "request_key": 249,
    "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425,
    "mount": 165, "umount2": 166, "pivot_root": 155, "unshare": 272, "setns": 308,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "mount_setattr": 442,
    "open_by_handle_at": 304, "name_to_handle_at": 303,
    "kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313,
    "delete_module": 176, "swapon": 167, "swapoff": 168, "reboot": 169,
    # SysV IPC and POSIX message queues: machine-wide objects that outlive the
    # worker where there is no IPC namespace; chroot: the way out of a chroot
    # for a process that is root in its own user namespace.
    "shmget": 29, "shmat": 30, "shmctl": 31, "semget": 64, "semop": 65, "semctl": 66,
    "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71, "semtimedop": 220, "mq_open": 240,
    "chroot": 161,
    # A new session is a new scheduler group (autogroup): sixteen children in sixteen
    # sessions would take sixteen shares of the CPU from a classmate graded beside them.
    "setsid": 112,
    # Descriptors sent over a socket pair and never received are held by no process:
    # an unlinked file or a memfd parked that way is invisible to any watchdog.
    "sendmsg": 46, "sendmmsg": 307,
}
DENIED_AARCH64 = {
    "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272,
    "keyctl": 219, "add_key": 217, "request_key": 218,
    "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425,
    "mount": 40, "umount2": 39, "pivot_root": 41, "unshare": 97, "setns": 268,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "mount_setattr": 442,
    "open_by_handle_at": 265, "name_to_handle_at": 264,
    "kexec_load": 104, "kexec_file_load": 294, "init_module": 105, "finit_module": 273,
    "delete_module": 106, "swapon": 224, "swapoff": 225, "reboot": 142,
    "shmget": 194, "shmat": 196, "shmctl": 195, "semget": 190, "semop": 193, "semctl": 191,
    "msgget": 186, "msgsnd": 189, "msgrcv": 188, "msgctl": 187, "semtimedop": 192, "mq_open": 180,
    "chroot": 51,
    "setsid": 157,
    "sendmsg": 211, "sendmmsg": 269,
}
# Calls the filter looks at more closely, and the ones this module makes itself.
SPECIAL_X86_64 = {"socket": 41, "socketpair": 53, "clone": 56, "clone3": 435, "seccomp": 317}
SPECIAL_AARCH64 = {"socket": 198, "socketpair": 199, "clone": 220, "clone3": 435, "seccomp": 277}

ARCHES = {
    # platform.machine(): (AUDIT_ARCH, denied, special, reject the x32 bit)
    "x86_64": (AUDIT_ARCH_X86_64, DENIED_X86_64, SPECIAL_X86_64, True),
    "aarch64": (AUDIT_ARCH_AARCH64, DENIED_AARCH64, SPECIAL_AARCH64, False),
}

# --- Landlock ---------------------------------------------------------------------------------

SYS_LANDLOCK_CREATE_RULESET = 444  # the same on both architectures
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_RULE_PATH_BENEATH = 1

LANDLOCK_ACCESS_FS_EXECUTE = 1 << 0
LANDLOCK_ACCESS_FS_WRITE_FILE = 1 << 1
LANDLOCK_ACCESS_FS_READ_FILE = 1 << 2
LANDLOCK_ACCESS_FS_READ_DIR = 1 << 3
LANDLOCK_ACCESS_FS_REMOVE_DIR = 1 << 4
LANDLOCK_ACCESS_FS_REMOVE_FILE = 1 << 5
LANDLOCK_ACCESS_FS_MAKE_CHAR = 1 << 6
LANDLOCK_ACCESS_FS_MAKE_DIR = 1 << 7
LANDLOCK_ACCESS_FS_MAKE_REG = 1 << 8
LANDLOCK_ACCESS_FS_MAKE_SOCK = 1 << 9
LANDLOCK_ACCESS_FS_MAKE_FIFO = 1 << 10
LANDLOCK_ACCESS_FS_MAKE_BLOCK = 1 << 11
LANDLOCK_ACCESS_FS_MAKE_SYM = 1 << 12
LANDLOCK_ACCESS_FS_REFER = 1 << 13  # ABI 2
LANDLOCK_ACCESS_FS_TRUNCATE = 1 << 14  # ABI 3
LANDLOCK_ACCESS_FS_IOCTL_DEV = 1 << 15  # ABI 5
LANDLOCK_ACCESS_NET_BIND_TCP = 1 << 0  # ABI 4
LANDLOCK_ACCESS_NET_CONNECT_TCP = 1 << 1  # ABI 4
LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
LANDLOCK_SCOPE_SIGNAL = 1 << 1  # ABI 6

FS_RIGHTS_V1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM, the 13 rights of ABI 1
# The only rights a rule on a file (not a directory) may grant.
FS_FILE_RIGHTS = (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE
                  | LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV)
FS_READ_ONLY = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR


class _SockFilter(ctypes.Structure):
    """struct sock_filter: one classic BPF instruction."""

    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    """struct sock_fprog: the program handed to the kernel."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


class _RulesetAttr(ctypes.Structure):
    """struct landlock_ruleset_attr (grows with the ABI: only a prefix is passed)."""

    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    """struct landlock_path_beneath_attr, which the kernel declares packed: 12 bytes."""

    _pack_ = 1
    _layout_ = "ms"  # what _pack_ means everywhere; newer Pythons ask for it explicitly
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


# --- system calls -----------------------------------------------------------------------------

_libc_handle: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    """The C library, with errno kept; a private handle, so that setting restype is ours alone."""
    global _libc_handle
    if _libc_handle is None:
        handle = ctypes.CDLL(None, use_errno=True)
        handle.syscall.restype = ctypes.c_long
        handle.prctl.restype = ctypes.c_int
        _libc_handle = handle
    return _libc_handle


def _arg(value: object) -> object:
    """Variadic C arguments must have their full width: plain ints become ``long``."""
    return ctypes.c_long(value) if isinstance(value, int) else value


def _syscall(number: int, *args: object) -> tuple[int, int]:
    """``syscall(number, args...)``: (result, errno); errno is 0 on success."""
    ctypes.set_errno(0)
    result = _libc().syscall(ctypes.c_long(number), *(_arg(a) for a in args))
    return result, (ctypes.get_errno() if result == -1 else 0)


def _prctl(option: int, *args: int) -> tuple[int, int]:
    ctypes.set_errno(0)
    values = [ctypes.c_ulong(a & 0xFFFFFFFFFFFFFFFF) for a in args] + [ctypes.c_ulong(0)] * (4 - len(args))
    result = _libc().prctl(ctypes.c_int(option), *values)
    return result, (ctypes.get_errno() if result == -1 else 0)


def _machine() -> str | None:
    """The architecture key of ``ARCHES``, or None where this module has no tables."""
    if not sys.platform.startswith("linux"):
        return None
    machine = platform.machine()
    return machine if machine in ARCHES else None


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # no /proc: only Python's own threads can be counted
        return threading.active_count()


# --- no_new_privs -----------------------------------------------------------------------------

def no_new_privs() -> None:
    """Set no_new_privs: execve can no longer grant privileges (set-user-ID, capabilities).

    Needed by seccomp and Landlock for unprivileged processes; inherited by children
    and irreversible. Raises OSError if the kernel refuses.
    """
    if not sys.platform.startswith("linux"):
        raise OSError(errno.ENOSYS, "no_new_privs needs Linux")
    result, err = _prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if result != 0:
        raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(err)}")


# --- seccomp ----------------------------------------------------------------------------------

Instruction = tuple[int, int, int, int]  # (code, jt, jf, k)


def _assemble(items: list[object]) -> list[Instruction]:
    """Resolve symbolic jump targets: ``items`` holds instructions and label strings.

    A jump offset is the number of instructions skipped, forward only, at most 255.
    """
    labels: dict[str, int] = {}
    count = 0
    for item in items:
        if isinstance(item, str):
            labels[item] = count
        else:
            count += 1
    program: list[Instruction] = []
    for item in items:
        if isinstance(item, str):
            continue
        code, jt, jf, k = item  # type: ignore[misc]
        here = len(program)

        def offset(target: int | str) -> int:
            if isinstance(target, int):
                return target
            skip = labels[target] - here - 1
            if not 0 <= skip <= 255:
                raise ConfinementError(f"seccomp jump to {target} out of range: {skip}")
            return skip

        program.append((code, offset(jt), offset(jf), k))
    return program


def _filter_program(machine: str) -> list[Instruction]:
    """The seccomp program for ``machine`` ("x86_64" or "aarch64"), as instructions.

    Order: wrong architecture -> kill; x32 numbers -> EPERM; listed calls -> EPERM;
    socket -> EPERM; socketpair -> allowed for AF_UNIX only; clone -> EPERM with namespace flags;
    clone3 -> ENOSYS; everything else allowed.
    """
    audit_arch, denied, special, reject_x32 = ARCHES[machine]
    items: list[object] = [
        (BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        (BPF_JEQ_K, 0, "kill", audit_arch),
        (BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
    ]
    if reject_x32:
        items.append((BPF_JGE_K, "eperm", 0, X32_SYSCALL_BIT))
    items += [(BPF_JEQ_K, "eperm", 0, number) for number in sorted(denied.values())]
    items += [
        # socket(): refused for every family, AF_UNIX included: a Unix socket
        # with a path reaches host services Landlock does not cover.
        (BPF_JEQ_K, "eperm", 0, special["socket"]),
        (BPF_JEQ_K, "socket", 0, special["socketpair"]),
        (BPF_JEQ_K, "clone", 0, special["clone"]),
        (BPF_JEQ_K, "enosys", 0, special["clone3"]),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        "socket",  # socketpair: the domain is args[0], an int; a connected pair touches nothing else
        (BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARG0_LOW),
        (BPF_JEQ_K, "allow", "eperm", AF_UNIX),
        "clone",  # the flags are args[0] on both architectures; the kernel reads 32 bits
        (BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARG0_LOW),
        (BPF_JSET_K, "eperm", "allow", CLONE_NAMESPACE_FLAGS),
        "allow", (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        "eperm", (BPF_RET_K, 0, 0, RET_EPERM),
        "enosys", (BPF_RET_K, 0, 0, RET_ENOSYS),
        "kill", (BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
    ]
    return _assemble(items)


def _seccomp_filter_supported(seccomp_nr: int) -> bool:
    """Whether the kernel has seccomp filters at all (only asked after a refusal)."""
    if _prctl(PR_GET_SECCOMP)[1] == errno.EINVAL:  # built without CONFIG_SECCOMP
        return False
    action = ctypes.c_uint32(SECCOMP_RET_ERRNO)
    return _syscall(seccomp_nr, SECCOMP_GET_ACTION_AVAIL, 0, ctypes.byref(action))[0] == 0


def seccomp_available() -> bool:
    """Whether this kernel and architecture can take the filter (asked by the
    grader when it chooses an isolation level)."""
    return _machine() is not None and _prctl(PR_GET_SECCOMP)[1] != errno.EINVAL


def install_seccomp() -> bool:
    """Install the seccomp filter on every thread of this process (sets no_new_privs first).

    Refused calls fail with EPERM (never a kill, so student code gets a Python
    exception it can be graded with). Returns True when installed, False when this
    kernel or architecture has no seccomp filters; raises OSError on other failures.
    Filters stack and are inherited: calling it twice only filters twice.
    """
    machine = _machine()
    if machine is None:
        return False
    no_new_privs()
    program = _filter_program(machine)
    filters = (_SockFilter * len(program))(*(_SockFilter(*instruction) for instruction in program))
    prog = _SockFprog(len(program), filters)
    seccomp_nr = ARCHES[machine][2]["seccomp"]
    result, err = _syscall(seccomp_nr, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(prog))
    if result > 0:  # TSYNC names the thread it could not synchronise
        raise OSError(errno.EBUSY, f"seccomp: thread {result} has a different filter")
    if err == errno.ENOSYS:  # kernel before 3.17: no seccomp(2); prctl filters this thread only
        if _thread_count() > 1:
            raise ConfinementError("seccomp via prctl would leave other threads unfiltered")
        result, err = _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))
    if result == 0:
        return True
    if err == errno.EINVAL and not _seccomp_filter_supported(seccomp_nr):
        return False
    raise OSError(err, f"seccomp filter refused: {os.strerror(err)}")


# --- Landlock ---------------------------------------------------------------------------------

def landlock_abi() -> int:
    """The Landlock ABI version of this kernel, 0 when Landlock is absent or disabled."""
    if not sys.platform.startswith("linux"):
        return 0
    result, err = _syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.c_void_p(None), 0, LANDLOCK_CREATE_RULESET_VERSION)
    if result >= 0:
        return result
    # ENOSYS: not built in; EOPNOTSUPP: disabled at boot; EPERM: only ever a container's
    # own seccomp profile refusing the call (Landlock itself never answers it here).
    if err in (errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return 0
    raise OSError(err, f"landlock_create_ruleset(VERSION): {os.strerror(err)}")


def _fs_rights(abi: int) -> int:
    """Every filesystem right that ``abi`` knows (so that all of them are handled)."""
    rights = FS_RIGHTS_V1
    if abi >= 2:
        rights |= LANDLOCK_ACCESS_FS_REFER
    if abi >= 3:
        rights |= LANDLOCK_ACCESS_FS_TRUNCATE
    if abi >= 5:
        rights |= LANDLOCK_ACCESS_FS_IOCTL_DEV
    return rights


def _ruleset_attr_size(abi: int) -> int:
    """How much of struct landlock_ruleset_attr this ABI reads."""
    if abi >= 6:
        return 24  # + scoped
    if abi >= 4:
        return 16  # + handled_access_net
    return 8


def _add_path_rule(ruleset_fd: int, path: str, rights: int) -> bool:
    """Allow ``rights`` below ``path`` (file rights only for a file); False if it is not there."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return False  # unreachable paths need no rule: access there stays denied
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= FS_FILE_RIGHTS
        attr = _PathBeneathAttr(rights, fd)
        result, err = _syscall(SYS_LANDLOCK_ADD_RULE, ruleset_fd, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(attr), 0)
        if result != 0:
            raise OSError(err, f"landlock_add_rule({path}): {os.strerror(err)}")
    finally:
        os.close(fd)
    return True


def restrict_filesystem(read_only: list[str], read_write: list[str], *, scope: bool = True) -> int:
    """Allow file access only below ``read_only`` (execute, read) and ``read_write`` (all).

    Every filesystem right this kernel's Landlock knows is handled, hence denied
    outside the rules; with ABI 4+ TCP bind and connect are handled with no rule
    (all refused); with ABI 6+ and ``scope``, signals and abstract Unix sockets stay
    inside this process's domain (its own children), away from the grader. Paths that
    do not exist are skipped. Applies to this thread and its future children only,
    so it refuses (ConfinementError) when the process already has other threads.
    Sets no_new_privs. Returns the ABI used; 0 when Landlock is unavailable and
    nothing was applied.
    """
    abi = landlock_abi()
    if abi == 0:
        return 0
    threads = _thread_count()
    if threads > 1:
        raise ConfinementError(f"Landlock applies to the calling thread only, and this process has {threads}: "
                               "restrict before starting threads (or importing libraries that start them)")
    fs_rights = _fs_rights(abi)
    attr = _RulesetAttr(
        handled_access_fs=fs_rights,
        handled_access_net=(LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP) if abi >= 4 else 0,
        scoped=(LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL) if abi >= 6 and scope else 0,
    )
    ruleset_fd, err = _syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), _ruleset_attr_size(abi), 0)
    if ruleset_fd < 0:
        raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
    try:
        for path in read_only:
            _add_path_rule(ruleset_fd, path, FS_READ_ONLY & fs_rights)
        for path in read_write:
            _add_path_rule(ruleset_fd, path, fs_rights)
        no_new_privs()
        result, err = _syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset_fd, 0)
        if result != 0:
            raise OSError(err, f"landlock_restrict_self: {os.strerror(err)}")
    finally:
        os.close(ruleset_fd)
    return abi


# --- all together -----------------------------------------------------------------------------

def apply(read_only: list[str], read_write: list[str], *, scope: bool = True) -> dict[str, object]:
    """no_new_privs, then Landlock (where available), then seccomp: what the worker needs.

    Returns what was applied, for the caller to record, e.g.
    ``{"no_new_privs": True, "landlock": 7, "seccomp": True}`` (landlock is the ABI
    used, 0 for none). Raises (OSError, ConfinementError) when something available
    could not be applied: the caller should then not run the student's code.
    """
    if not sys.platform.startswith("linux"):
        return {"no_new_privs": False, "landlock": 0, "seccomp": False}
    no_new_privs()
    landlock = restrict_filesystem(read_only, read_write, scope=scope)
    seccomp = install_seccomp()
    return {"no_new_privs": True, "landlock": landlock, "seccomp": seccomp}
