"""grader._confine: no_new_privs, the seccomp filter and Landlock, tried for real.

Every confinement is applied in a child interpreter (``python -c``), which then
tries the forbidden things and prints what happened as one JSON line. Most tests
run twice: as the current user and, when the tests run as root, as ``nobody``
(through ``setpriv``), because the worker applies these without privileges.
Where a refusal could also come from elsewhere (permissions, a missing
capability), a "control" run without the confinement shows that it is the
confinement that refuses.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import platform
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader import _confine

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534
SETPRIV = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
MACHINE = platform.machine()
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or MACHINE not in _confine.ARCHES,
                                reason="confinement is for Linux on x86_64 and aarch64")

PRELUDE = '''
import ctypes, errno, importlib.util, json, os, platform, signal, socket, subprocess, sys, threading
from grader import _confine

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {**_confine.ARCHES[platform.machine()][1], **_confine.ARCHES[platform.machine()][2]}
SYSTEM = ["/usr", "/bin", "/lib", "/lib64", "/etc"]
# The interpreter as installed and as run (the binary a venv links to may lie elsewhere).
PYTHON = sorted({sys.prefix, sys.base_prefix, os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix),
                 os.path.dirname(os.path.realpath(sys.executable))})
out = {}

def name(code):
    return errno.errorcode.get(code, str(code))

def attempt(fn):
    """'ok', or the errno name of the OSError that fn raised."""
    try:
        fn()
    except OSError as err:
        return name(err.errno)
    return "ok"

def sys_errno(number, *args):
    """'ok', or the errno name of a raw system call."""
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))
    return "ok" if result != -1 else name(ctypes.get_errno())

def read(path):
    with open(path) as handle:
        handle.read()

def status(field):
    with open("/proc/self/status") as handle:
        return [line.split()[1] for line in handle if line.startswith(field + ":")][0]
'''
EPILOGUE = '\nprint("RESULT " + json.dumps(out))\n'


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@functools.lru_cache(maxsize=1)
def _nobody_python() -> str | None:
    """An interpreter user nobody can run that imports grader._confine (or None)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return None
    for candidate in (sys.executable, "/usr/bin/python3.11", "/usr/bin/python3"):
        if not os.path.exists(candidate):
            continue
        # It must also be able to start itself again as nobody (a venv's link into root's
        # home may be followed by setpriv's own exec yet refused to every later one).
        code = "import subprocess, sys, grader._confine; subprocess.run([sys.executable, '-c', ''], check=True)"
        probe = subprocess.run([*SETPRIV, candidate, "-B", "-c", code], env=_env(), cwd="/",
                               capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
        if probe.returncode == 0:
            return candidate
    return None


class Child:
    """Runs a snippet (after PRELUDE) in a fresh interpreter, as the current user or as nobody."""

    def __init__(self, user: str) -> None:
        self.user = user
        if user == "nobody":
            python = _nobody_python()
            if python is None:
                pytest.skip("needs root, setpriv and a Python that user nobody can run")
            self.prefix, self.python = SETPRIV, python
        else:
            self.prefix, self.python = [], sys.executable

    def command(self, *argv: str) -> list[str]:
        """``argv`` run as this child's user."""
        return [*self.prefix, *argv]

    def __call__(self, body: str, *args: object) -> dict:
        code = PRELUDE + textwrap.dedent(body) + EPILOGUE
        proc = subprocess.run(self.command(self.python, "-B", "-c", code, *map(str, args)), env=_env(), cwd="/",
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
        assert proc.returncode == 0, proc.stderr
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, proc.stdout + proc.stderr
        return json.loads(lines[-1].removeprefix("RESULT "))


@pytest.fixture(params=["self", "nobody"])
def child(request: pytest.FixtureRequest) -> Child:
    return Child(request.param)


@pytest.fixture
def landlock() -> int:
    abi = _confine.landlock_abi()
    if abi == 0:
        pytest.skip("this kernel has no Landlock (or it is disabled)")
    return abi


@pytest.fixture
def tree() -> Iterator[Path]:
    """ro/ and rw/ (both writable by anyone, so that only Landlock can refuse), secret/,
    two files side by side; all readable by nobody."""
    base = Path(tempfile.mkdtemp(prefix="confine-", dir="/tmp" if os.path.isdir("/tmp") else None))
    base.chmod(0o755)
    for folder, mode in (("ro", 0o777), ("rw", 0o777), ("secret", 0o755)):
        (base / folder).mkdir()
        (base / folder).chmod(mode)
    for path in ("ro/data.txt", "secret/secret.txt", "single.txt", "sibling.txt"):
        (base / path).write_text(f"{path}\n")
        (base / path).chmod(0o666)
    yield base
    shutil.rmtree(base)


# --- the program and the tables, checked without applying anything ---------------------------


def _run_filter(program: list[tuple[int, int, int, int]], nr: int, arch: int, arg0: int = 0) -> int:
    """Evaluate a classic BPF seccomp program on one struct seccomp_data, as the kernel would."""
    data = struct.pack("<IIQ6Q", nr & 0xFFFFFFFF, arch, 0, arg0, 0, 0, 0, 0, 0)
    pc, acc = 0, 0
    for _ in range(len(program)):  # forward jumps only: never more steps than instructions
        code, jt, jf, k = program[pc]
        if code == _confine.BPF_LD_W_ABS:
            acc, pc = struct.unpack_from("<I", data, k)[0], pc + 1
        elif code == _confine.BPF_JEQ_K:
            pc += 1 + (jt if acc == k else jf)
        elif code == _confine.BPF_JGE_K:
            pc += 1 + (jt if acc >= k else jf)
        elif code == _confine.BPF_JSET_K:
            pc += 1 + (jt if acc & k else jf)
        elif code == _confine.BPF_RET_K:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
    raise AssertionError("ran off the end of the program")


@pytest.mark.parametrize("machine", sorted(_confine.ARCHES))
def test_filter_program_decides_as_intended(machine: str) -> None:
    """Both architectures' programs, run by a small BPF interpreter on chosen inputs."""
    audit_arch, denied, special, x32 = _confine.ARCHES[machine]
    program = _confine._filter_program(machine)
    run = functools.partial(_run_filter, program)
    allow, eperm, enosys = _confine.SECCOMP_RET_ALLOW, _confine.RET_EPERM, _confine.RET_ENOSYS
    assert program[0] == (_confine.BPF_LD_W_ABS, 0, 0, 4)
    assert program[1][0] == _confine.BPF_JEQ_K and program[1][3] == audit_arch
    for other in (0x40000003, _confine.AUDIT_ARCH_X86_64, _confine.AUDIT_ARCH_AARCH64, 0x40000028):  # i386, arm
        if other != audit_arch:
            assert run(special["socket"], other, 1) == _confine.SECCOMP_RET_KILL_PROCESS
            assert run(0, other) == _confine.SECCOMP_RET_KILL_PROCESS
    for call, number in denied.items():
        assert run(number, audit_arch) == eperm, call
    assert run(special["socketpair"], audit_arch, socket.AF_UNIX) == allow
    assert run(special["socketpair"], audit_arch, (7 << 32) | socket.AF_UNIX) == allow  # an int: high half ignored
    for family in (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK, socket.AF_PACKET, 0, 0xFFFFFFFF):
        assert run(special["socketpair"], audit_arch, family) == eperm, family
    # socket(): every family, AF_UNIX included (a path reaches host services)
    for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK, socket.AF_PACKET, 0):
        assert run(special["socket"], audit_arch, family) == eperm, family
    thread_flags = 0x3D0F00  # what glibc's pthread_create passes
    for flags in (17, thread_flags, 0x4111):  # SIGCHLD (fork); thread; vfork-like
        assert run(special["clone"], audit_arch, flags) == allow
    for bit in (0x80, 0x20000, 0x2000000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000):
        assert run(special["clone"], audit_arch, bit | 17) == eperm, hex(bit)
    assert run(special["clone3"], audit_arch, 0) == enosys
    assert run(special["seccomp"], audit_arch) == allow
    listed = set(denied.values()) | {special["socket"], special["socketpair"], special["clone"], special["clone3"]}
    for number in range(600):
        if number not in listed:
            assert run(number, audit_arch, socket.AF_INET | 0x7E020080) == allow, number
    if x32:
        assert run(0x40000000 | 39, audit_arch) == eperm  # x32 getpid
        assert run(0xFFFFFFFF, audit_arch) == eperm
    else:
        assert run(0xFFFFFFFF, audit_arch) == allow  # the kernel answers ENOSYS itself


def _header_numbers(path: Path) -> dict[str, int]:
    text = path.read_text()
    return {m[1]: int(m[2]) for m in re.finditer(r"^#define __NR_(\w+)\s+(\d+)\s*$", text, re.MULTILINE)}


@pytest.mark.parametrize(("machine", "header"), [
    ("x86_64", "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    ("x86_64", "/usr/include/asm/unistd_64.h"),
    ("aarch64", "/usr/include/asm-generic/unistd.h"),  # aarch64's own table
])
def test_syscall_numbers_match_kernel_headers(machine: str, header: str) -> None:
    if not os.path.exists(header):
        pytest.skip(f"{header} is not installed")
    numbers = _header_numbers(Path(header))
    _, denied, special, _ = _confine.ARCHES[machine]
    for call, number in {**denied, **special}.items():
        assert numbers.get(call) == number, (machine, call)
    for call, number in (("landlock_create_ruleset", 444), ("landlock_add_rule", 445), ("landlock_restrict_self", 446)):
        assert numbers.get(call) == number


def test_struct_layouts_and_rights() -> None:
    assert ctypes.sizeof(_confine._PathBeneathAttr) == 12
    assert _confine._PathBeneathAttr.parent_fd.offset == 8
    assert ctypes.sizeof(_confine._RulesetAttr) == 24
    assert ctypes.sizeof(_confine._SockFilter) == 8
    assert ctypes.sizeof(_confine._SockFprog) == 16
    assert [_confine._ruleset_attr_size(abi) for abi in range(1, 9)] == [8, 8, 8, 16, 16, 24, 24, 24]
    assert [bin(_confine._fs_rights(abi)).count("1") for abi in range(1, 9)] == [13, 14, 15, 15, 16, 16, 16, 16]
    assert _confine.CLONE_NAMESPACE_FLAGS == 0x7E020080


def test_unknown_machine_reports_no_seccomp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_confine.platform, "machine", lambda: "riscv64")
    assert _confine.install_seccomp() is False


# --- seccomp, for real ------------------------------------------------------------------------

NETWORK = '''
mode = sys.argv[1]
if mode == "filter":
    out["installed"] = _confine.install_seccomp()
    out["status"] = [status("NoNewPrivs"), status("Seccomp")]
out["inet_stream"] = attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
out["inet_dgram"] = attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close())
out["inet6"] = attempt(lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close())
out["netlink"] = attempt(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close())
out["packet"] = attempt(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close())
out["inet_pair"] = attempt(lambda: socket.socketpair(socket.AF_INET))
try:
    socket.create_connection(("127.0.0.1", 9))
except Exception as err:
    out["connect_error"] = type(err).__name__

def unix():
    a, b = socket.socketpair(socket.AF_UNIX)
    a.sendall(b"ping")
    assert b.recv(4) == b"ping"
out["unix"] = attempt(unix)
out["unix_socket"] = attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close())
'''


def test_seccomp_refuses_every_socket_but_a_unix_pair(child: Child) -> None:
    out = child(NETWORK, "filter")
    assert out["installed"] is True
    assert out["status"] == ["1", "2"]  # no_new_privs, seccomp mode "filter"
    for key in ("inet_stream", "inet_dgram", "inet6", "netlink", "packet", "inet_pair", "unix_socket"):
        assert out[key] == "EPERM", key
    assert out["connect_error"] == "PermissionError"
    assert out["unix"] == "ok"


def test_network_control_without_filter(child: Child) -> None:
    out = child(NETWORK, "control")
    assert out["inet_stream"] == out["inet_dgram"] == out["netlink"] == "ok"
    assert out["inet_pair"] == errno.errorcode[errno.EOPNOTSUPP]  # the kernel's own answer; the filter's is EPERM
    assert out["unix"] == "ok"


KERNEL = '''
mode = sys.argv[1]
if mode == "filter":
    out["installed"] = _confine.install_seccomp()

class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

source, target = ctypes.create_string_buffer(b"grader!", 8), ctypes.create_string_buffer(8)
local, remote = Iovec(ctypes.addressof(target), 8), Iovec(ctypes.addressof(source), 8)
out["process_vm_readv"] = sys_errno(NR["process_vm_readv"], os.getpid(), ctypes.addressof(local), 1,
                                    ctypes.addressof(remote), 1, 0)
out["copied"] = target.value.decode()

if mode == "filter":  # a successful attach in the control run would stop cat: not worth it
    cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE)
    libc.ptrace.restype = ctypes.c_long
    ctypes.set_errno(0)
    result = libc.ptrace(ctypes.c_long(16), ctypes.c_long(cat.pid), None, None)  # PTRACE_ATTACH
    out["ptrace"] = [result, name(ctypes.get_errno())]
    out["ptrace_parent"] = sys_errno(NR["ptrace"], 16, os.getppid(), 0, 0)
    cat.kill()
    cat.stdin.close()
    cat.wait()

KEY_SPEC_PROCESS_KEYRING = -2
key_type, description, payload = b"user\\0", b"confine-test\\0", b"payload"
out["keyctl"] = sys_errno(NR["keyctl"], 0, KEY_SPEC_PROCESS_KEYRING, 1)  # KEYCTL_GET_KEYRING_ID, create
buffers = [ctypes.create_string_buffer(b) for b in (key_type, description, payload)]
out["add_key"] = sys_errno(NR["add_key"], *(ctypes.addressof(b) for b in buffers[:3]), len(payload),
                           KEY_SPEC_PROCESS_KEYRING)
out["request_key"] = sys_errno(NR["request_key"], ctypes.addressof(buffers[0]), ctypes.addressof(buffers[1]), 0, 0)
'''


def test_seccomp_refuses_ptrace_process_vm_and_keys(child: Child) -> None:
    out = child(KERNEL, "filter")
    assert out["installed"] is True
    assert out["ptrace"] == [-1, "EPERM"]
    assert out["ptrace_parent"] == "EPERM"
    assert out["process_vm_readv"] == "EPERM"
    assert out["copied"] == ""
    assert out["keyctl"] == out["add_key"] == out["request_key"] == "EPERM"


def test_kernel_control_without_filter(child: Child) -> None:
    out = child(KERNEL, "control")
    assert out["process_vm_readv"] == "ok" and out["copied"] == "grader!"
    assert out["keyctl"] != "EPERM"
    assert out["request_key"] != "EPERM"


NAMESPACES = '''
out["installed"] = _confine.install_seccomp()
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000

def raw_clone(flags):
    """clone(2) as fork would call it, but with extra flags."""
    ctypes.set_errno(0)
    pid = libc.syscall(ctypes.c_long(NR["clone"]), ctypes.c_long(flags | signal.SIGCHLD), *[ctypes.c_long(0)] * 4)
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
        return "ok"
    return name(ctypes.get_errno())

def unshare(flags):
    """os.unshare where Python has it (3.12+), the C library's otherwise."""
    if hasattr(os, "unshare"):
        return os.unshare(flags)
    ctypes.set_errno(0)
    if libc.unshare(ctypes.c_int(flags)) != 0:
        raise OSError(ctypes.get_errno(), "unshare")

out["unshare_user"] = attempt(lambda: unshare(CLONE_NEWUSER))
out["unshare_net"] = sys_errno(NR["unshare"], CLONE_NEWNET)
out["unshare_mount"] = sys_errno(NR["unshare"], CLONE_NEWNS)
out["setns"] = sys_errno(NR["setns"], -1, 0)
out["clone_newuser"] = raw_clone(CLONE_NEWUSER)
out["clone_newpid"] = raw_clone(CLONE_NEWPID)
out["clone_plain"] = raw_clone(0)
out["clone3"] = sys_errno(NR["clone3"], 0, 0)
out["mount"] = sys_errno(NR["mount"], 0, 0, 0, 0, 0)
'''


def test_seccomp_refuses_namespaces_and_mounts(child: Child) -> None:
    out = child(NAMESPACES)
    assert out["installed"] is True
    for key in ("unshare_user", "unshare_net", "unshare_mount", "setns", "clone_newuser", "clone_newpid", "mount"):
        assert out[key] == "EPERM", key
    assert out["clone_plain"] == "ok"
    assert out["clone3"] == "ENOSYS"  # so that the C library falls back to clone


EVERY_CALL = '''
out["installed"] = _confine.install_seccomp()
if out["installed"]:  # never make these calls unfiltered
    for call in _confine.ARCHES[platform.machine()][1]:
        out[call] = sys_errno(NR[call], -1, -1, -1, -1, -1, -1)
    if platform.machine() == "x86_64":
        out["x32_getpid"] = sys_errno(0x40000000 | 39)
'''


def test_seccomp_refuses_every_listed_call(child: Child) -> None:
    out = child(EVERY_CALL)
    assert out.pop("installed") is True
    expected = set(_confine.ARCHES[MACHINE][1]) | ({"x32_getpid"} if MACHINE == "x86_64" else set())
    assert set(out) == expected
    assert {call: result for call, result in out.items() if result != "EPERM"} == {}


THREADED_SECCOMP = '''
started, go, seen = threading.Event(), threading.Event(), {}

def worker():
    started.set()
    go.wait()
    seen["inet"] = attempt(lambda: socket.socket(socket.AF_INET).close())

thread = threading.Thread(target=worker)
thread.start()
started.wait()
out["installed"] = _confine.install_seccomp()
go.set()
thread.join()
out["thread_inet"] = seen["inet"]
'''


def test_seccomp_covers_threads_that_already_run(child: Child) -> None:
    out = child(THREADED_SECCOMP)
    assert out == {"installed": True, "thread_inet": "EPERM"}


# --- what must keep working -------------------------------------------------------------------

PROCESSES = '''
out["applied"] = _confine.apply(SYSTEM + PYTHON, [])
pid = os.fork()
if pid == 0:
    os._exit(7)
out["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
out["true"] = subprocess.run(["true"]).returncode
out["python"] = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True).stdout.strip()
grandchild = subprocess.run([sys.executable, "-c", "import socket; socket.socket()"], capture_output=True, text=True)
out["grandchild_socket"] = "PermissionError" in grandchild.stderr
results = []
threads = [threading.Thread(target=results.append, args=(i,)) for i in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
out["threads"] = sorted(results)
from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor(4) as pool:
    out["pool"] = list(pool.map(abs, [-1, -2, -3]))
'''


def test_fork_subprocess_and_threads_still_work(child: Child) -> None:
    out = child(PROCESSES)
    applied = out.pop("applied")
    assert applied == {"no_new_privs": True, "landlock": _confine.landlock_abi(), "seccomp": True}
    assert out == {"fork": 7, "true": 0, "python": "42", "grandchild_socket": True,
                   "threads": list(range(8)), "pool": [1, 2, 3]}


NUMPY = '''
if importlib.util.find_spec("numpy") is None:
    out["skip"] = f"numpy is not installed for {sys.executable}"
else:
    out["applied"] = _confine.apply(SYSTEM + PYTHON, [])
    import numpy
    a = numpy.ones((256, 256))
    out["dot"] = float((a @ a).sum())
'''


def test_numpy_still_imports_and_computes(child: Child) -> None:
    out = child(NUMPY)
    if "skip" in out:
        pytest.skip(out["skip"])
    assert out["applied"]["seccomp"] is True
    assert out["dot"] == 256.0 ** 3


# --- Landlock ---------------------------------------------------------------------------------

FILES = '''
base, mode = sys.argv[1], sys.argv[2]
ro, rw, secret = (os.path.join(base, part) for part in ("ro", "rw", "secret"))
single = os.path.join(base, "single.txt")
if mode == "restrict":
    out["abi"] = _confine.restrict_filesystem(SYSTEM + PYTHON + [ro, single, os.path.join(base, "missing")], [rw])

def rw_work():
    with open(os.path.join(rw, "out.txt"), "w") as handle:
        handle.write("written")
    os.mkdir(os.path.join(rw, "sub"))
    os.rename(os.path.join(rw, "out.txt"), os.path.join(rw, "sub", "out.txt"))
    os.remove(os.path.join(rw, "sub", "out.txt"))
    os.rmdir(os.path.join(rw, "sub"))

out["read_ro"] = attempt(lambda: read(os.path.join(ro, "data.txt")))
out["list_ro"] = attempt(lambda: os.listdir(ro))
out["read_single"] = attempt(lambda: read(single))
out["read_sibling"] = attempt(lambda: read(os.path.join(base, "sibling.txt")))
out["read_secret"] = attempt(lambda: read(os.path.join(secret, "secret.txt")))
out["read_confine_source"] = attempt(lambda: read(_confine.__file__))
out["list_base"] = attempt(lambda: os.listdir(base))
out["create_in_ro"] = attempt(lambda: open(os.path.join(ro, "new.txt"), "w").close())
out["append_ro"] = attempt(lambda: open(os.path.join(ro, "data.txt"), "a").close())
out["truncate_ro"] = attempt(lambda: os.truncate(os.path.join(ro, "data.txt"), 0))
out["mkdir_ro"] = attempt(lambda: os.mkdir(os.path.join(ro, "dir")))
out["append_single"] = attempt(lambda: open(single, "a").close())
out["rw_work"] = attempt(rw_work)
'''


def test_landlock_allows_only_the_allow_list(child: Child, landlock: int, tree: Path) -> None:
    out = child(FILES, tree, "restrict")
    assert out.pop("abi") == landlock
    expected = {
        "read_ro": "ok", "list_ro": "ok", "read_single": "ok", "rw_work": "ok",
        "read_sibling": "EACCES", "read_secret": "EACCES", "read_confine_source": "EACCES", "list_base": "EACCES",
        "create_in_ro": "EACCES", "append_ro": "EACCES", "mkdir_ro": "EACCES", "append_single": "EACCES",
        "truncate_ro": "EACCES" if landlock >= 3 else out["truncate_ro"],
    }
    assert out == expected
    assert (tree / "ro" / "data.txt").read_text() == "ro/data.txt\n"
    assert not (tree / "ro" / "new.txt").exists()


def test_landlock_control_without_restriction(child: Child, tree: Path) -> None:
    out = child(FILES, tree, "control")
    assert set(out.values()) == {"ok"}, out  # so every refusal above is Landlock's


TCP = '''
port, mode = int(sys.argv[1]), sys.argv[2]
if mode == "restrict":
    out["abi"] = _confine.restrict_filesystem(SYSTEM + PYTHON, [])  # no seccomp: Landlock alone

def bind():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))

def connect():
    with socket.socket() as s:
        s.connect(("127.0.0.1", port))

out["bind"] = attempt(bind)
out["connect"] = attempt(connect)
'''


@pytest.fixture
def tcp_listener() -> Iterator[int]:
    with socket.socket() as server:
        try:
            server.bind(("127.0.0.1", 0))
        except OSError as err:
            pytest.skip(f"no loopback here: {err}")
        server.listen(8)
        yield server.getsockname()[1]


@pytest.mark.parametrize("mode", ["restrict", "control"])
def test_landlock_refuses_tcp_bind_and_connect(child: Child, landlock: int, tcp_listener: int, mode: str) -> None:
    if landlock < 4:
        pytest.skip(f"Landlock ABI {landlock} has no network rights (4+)")
    out = child(TCP, tcp_listener, mode)
    if mode == "restrict":
        assert out == {"abi": landlock, "bind": "EACCES", "connect": "EACCES"}
    else:
        assert out == {"bind": "ok", "connect": "ok"}


SCOPE = '''
target, abstract, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
out["abi"] = _confine.restrict_filesystem(SYSTEM + PYTHON, [], scope=mode == "scope")
out["kill_target"] = attempt(lambda: os.kill(target, 0))
out["kill_parent"] = attempt(lambda: os.kill(os.getppid(), 0))
own = subprocess.Popen(["cat"], stdin=subprocess.PIPE)
out["kill_own"] = attempt(lambda: os.kill(own.pid, 0))
own.kill()
own.stdin.close()
out["own_status"] = own.wait()

def connect():
    with socket.socket(socket.AF_UNIX) as s:
        s.connect("\\0" + abstract)
out["abstract_unix"] = attempt(connect)
'''


@pytest.mark.parametrize("mode", ["scope", "control"])
def test_landlock_scope_keeps_signals_and_abstract_sockets_inside(child: Child, landlock: int, mode: str) -> None:
    """A process of the child's own user outside its domain cannot be signalled, nor the
    grader (its parent), nor an abstract socket reached; its own subprocess can be."""
    if landlock < 6:
        pytest.skip(f"Landlock ABI {landlock} has no scopes (6+)")
    name = f"bngrader-confine-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("\0" + name)
        server.listen(8)
        target = subprocess.Popen(child.command("cat"), stdin=subprocess.PIPE)
        try:
            out = child(SCOPE, target.pid, name, mode)
        finally:
            target.kill()
            target.stdin.close()
            target.wait()
    assert out["abi"] == landlock
    assert out["kill_own"] == "ok" and out["own_status"] == -9
    if mode == "scope":
        assert out["kill_target"] == out["kill_parent"] == out["abstract_unix"] == "EPERM"
    else:
        assert out["kill_target"] == out["abstract_unix"] == "ok"
        assert out["kill_parent"] == ("ok" if child.user == "self" else "EPERM")  # nobody vs the root parent


THREADED_LANDLOCK = '''
event = threading.Event()
thread = threading.Thread(target=event.wait)
thread.start()
try:
    _confine.restrict_filesystem(SYSTEM + PYTHON, [])
    out["result"] = "applied"
except _confine.ConfinementError:
    out["result"] = "refused"
event.set()
thread.join()
out["readable"] = attempt(lambda: read(_confine.__file__))
'''


def test_landlock_refuses_a_threaded_process(child: Child, landlock: int) -> None:
    """Landlock would confine the calling thread only: better to fail than half-confine."""
    assert child(THREADED_LANDLOCK) == {"result": "refused", "readable": "ok"}


NO_NEW_PRIVS = '''
out["before"] = status("NoNewPrivs")
_confine.no_new_privs()
out["after"] = status("NoNewPrivs")
out["child"] = subprocess.run(["grep", "NoNewPrivs", "/proc/self/status"], capture_output=True,
                              text=True).stdout.split()
'''


def test_no_new_privs_is_set_and_inherited(child: Child) -> None:
    assert child(NO_NEW_PRIVS) == {"before": "0", "after": "1", "child": ["NoNewPrivs:", "1"]}


def test_apply_reports_what_it_applied(child: Child, tree: Path) -> None:
    body = '''
    out["applied"] = _confine.apply(SYSTEM + PYTHON, [os.path.join(sys.argv[1], "rw")])
    out["inet"] = attempt(lambda: socket.socket().close())
    out["secret"] = attempt(lambda: read(os.path.join(sys.argv[1], "secret", "secret.txt")))
    '''
    out = child(body, tree)
    abi = _confine.landlock_abi()
    assert out == {"applied": {"no_new_privs": True, "landlock": abi, "seccomp": True},
                   "inet": "EPERM", "secret": "EACCES" if abi else "ok"}


def test_public_functions_say_why() -> None:
    for function in (_confine.no_new_privs, _confine.install_seccomp, _confine.landlock_abi,
                     _confine.restrict_filesystem, _confine.apply):
        assert function.__doc__ and len(function.__doc__.split()) > 8, function.__name__
