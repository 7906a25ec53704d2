"""Gradescope's setup.sh: which Python it picks, and the bundle in a fresh root.

Fast tests (always run) put fake interpreters, a fake apt and a fake uv
download on an otherwise empty PATH and read setup.sh's decisions from its log.

The platform test (``-m platform``, ``make gradescope-test``; root, network to
Debian's archive and PyPI, minutes) builds a Debian 12 minbase root with no
Python at all (debootstrap, cached in build/), and runs the bundle's setup.sh
and run_autograder there as Gradescope does, chrooted, under a cgroup of
768 MiB and half a CPU (Gradescope's default limits), then checks the
results file against Gradescope's specification and against the same grade
made on this machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import ROOT, WRONG

SETUP_SH = ROOT / "grader" / "scripts" / "gradescope_setup.sh"
NO_GUARD = next(p for p in WRONG if p.stem == "init_no_guard")
UV_VERSION = "0.13.9"
UV_PYTHON = "3.11.18"

# ---------------------------------------------------------------------------
# Fast: setup.sh's choices, with fake interpreters on PATH.
# ---------------------------------------------------------------------------

# What setup.sh may run besides the fakes; nothing else from this machine is on its PATH.
TOOLS = ("bash", "sh", "env", "readlink", "rm", "mkdir", "sed", "head", "tail", "grep", "cut", "seq",
         "uname", "cat", "chmod", "mv", "cp", "ls", "dirname", "touch")

FAKE_PYTHON = r"""#!/bin/sh
# A fake interpreter: reports VERSION; "-m venv" makes a venv whose python logs what it is asked.
echo "$0 $*" >> "$FAKE_LOG"
case "$1" in
-c)
    case "$2" in
    *version_info*) echo "@VERSION@" ;;
    esac
    exit 0 ;;
-m)
    if [ "$2" = venv ]; then
        if [ -n "@NEEDS@" ] && [ ! -e "@NEEDS@" ]; then
            echo "The virtual environment was not created successfully because ensurepip is not" >&2
            echo "available.  On Debian/Ubuntu systems, you need to install the python3-venv" >&2
            exit 1
        fi
        mkdir -p "$3/bin"
        echo "$0" > "$3/made-by"
        cat > "$3/bin/python" <<'EOF'
#!/bin/sh
echo "venv $*" >> "$FAKE_LOG"
case "$*" in
*jax.__version__*) echo "Python @VERSION@, jax 0.10.2, flax 0.12.8, numpy 2.4.6" ;;
esac
exit 0
EOF
        chmod +x "$3/bin/python"
        exit 0
    fi
    exit 1 ;;
-)
    # setup.sh's uv-wheel fetcher: URL SHA256 OUT
    cat > /dev/null
    echo "fetch-wheel $2" >> "$FAKE_LOG"
    cat > "$4" <<'EOF'
#!/bin/sh
exec "$FAKE_UV" "$@"
EOF
    chmod +x "$4"
    exit 0 ;;
esac
exit 1
"""

FAKE_UV = r"""#!/bin/sh
# A fake uv: "python install" makes a fake standalone CPython under UV_PYTHON_INSTALL_DIR.
echo "uv $*" >> "$FAKE_LOG"
case "$1" in
--version) echo "uv @UV_VERSION@ (fake)" ;;
python)
    dir="$UV_PYTHON_INSTALL_DIR/cpython-$4-linux-x86_64-gnu/bin"
    case "$2" in
    install) mkdir -p "$dir" && cp "$FAKE_STANDALONE" "$dir/python3.11" ;;
    find) echo "$dir/python3.11" ;;
    esac ;;
esac
"""

FAKE_CURL = r"""#!/bin/sh
# A fake curl: serves a fake uv installer that honours UV_UNMANAGED_INSTALL.
echo "curl $*" >> "$FAKE_LOG"
out=""; url=""
while [ $# -gt 0 ]; do
    case "$1" in -o) out="$2"; shift ;; http*) url="$1" ;; esac
    shift
done
cat > "$out" <<'EOF'
#!/bin/sh
mkdir -p "$UV_UNMANAGED_INSTALL"
printf '#!/bin/sh\nexec "$FAKE_UV" "$@"\n' > "$UV_UNMANAGED_INSTALL/uv"
chmod +x "$UV_UNMANAGED_INSTALL/uv"
EOF
"""

FAKE_APT_GET = r"""#!/bin/sh
# A fake apt-get: "install" runs each package's action from $FAKE_APT/PACKAGE (missing: fails).
echo "apt-get $*" >> "$FAKE_LOG"
[ "$1" = install ] || exit 0
for arg in "$@"; do
    case "$arg" in install|-*) continue ;; esac
    [ -f "$FAKE_APT/$arg" ] || { echo "E: Unable to locate package $arg" >&2; exit 100; }
done
for arg in "$@"; do
    case "$arg" in install|-*) continue ;; esac
    sh "$FAKE_APT/$arg"
done
"""

FAKE_APT_CACHE = r"""#!/bin/sh
# A fake apt-cache: "policy PACKAGE" prints the candidate in $FAKE_APT/PACKAGE.candidate.
echo "apt-cache $*" >> "$FAKE_LOG"
if [ -f "$FAKE_APT/$2.candidate" ]; then
    echo "$2:"; echo "  Installed: (none)"; echo "  Candidate: $(cat "$FAKE_APT/$2.candidate")"
fi
"""


class FakeMachine:
    """An empty PATH with a few tools, plus whatever fakes a test adds."""

    def __init__(self, base: Path):
        self.base = base
        self.bin = base / "bin"
        self.tools = base / "tools"
        self.apt = base / "apt"
        self.root = base / "autograder"
        self.log = base / "calls.log"
        for folder in (self.bin, self.tools, self.apt, self.root / "source"):
            folder.mkdir(parents=True)
        (self.root / "source" / "requirements.txt").write_text("jax==0.10.2\n")
        self.log.touch()
        for tool in TOOLS:
            found = shutil.which(tool)
            assert found, tool
            (self.tools / tool).symlink_to(found)
        self.uv = self._script(base / "fake-uv", FAKE_UV.replace("@UV_VERSION@", UV_VERSION))
        self.standalone = self.python(base / "standalone" / "python3.11", f"{UV_PYTHON} final", on_path=False)

    def _script(self, path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)
        return path

    def python(self, name: str | Path, version: str, *, needs: Path | None = None, on_path: bool = True) -> Path:
        """A fake interpreter reporting ``version`` ("3.12.3 final"); with ``needs``, its
        venv works only once that file exists (as ensurepip after pythonX.Y-venv)."""
        path = Path(name) if not on_path else self.bin / str(name)
        text = FAKE_PYTHON.replace("@VERSION@", version).replace("@NEEDS@", str(needs or ""))
        return self._script(path, text)

    def with_apt(self, packages: dict[str, str], candidates: dict[str, str] | None = None) -> None:
        """A fake apt: ``packages`` maps a package name to the shell run when it is installed."""
        self._script(self.bin / "apt-get", FAKE_APT_GET)
        self._script(self.bin / "apt-cache", FAKE_APT_CACHE)
        for name, action in packages.items():
            (self.apt / name).write_text(action + "\n")
        for name, version in (candidates or {}).items():
            (self.apt / f"{name}.candidate").write_text(version + "\n")

    def with_curl(self) -> None:
        self._script(self.bin / "curl", FAKE_CURL)

    def run(self) -> subprocess.CompletedProcess:
        env = {"PATH": f"{self.bin}:{self.tools}", "HOME": str(self.base), "AUTOGRADER_ROOT": str(self.root),
               "FAKE_LOG": str(self.log), "FAKE_APT": str(self.apt), "FAKE_UV": str(self.uv),
               "FAKE_STANDALONE": str(self.standalone), "LC_ALL": "C"}
        return subprocess.run([self.tools / "bash", str(SETUP_SH)], env=env, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)

    @property
    def venv_made_by(self) -> str | None:
        made_by = self.root / "venv" / "made-by"
        return made_by.read_text().strip() if made_by.exists() else None

    @property
    def calls(self) -> str:
        return self.log.read_text()


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    return FakeMachine(tmp_path)


def _ready(run: subprocess.CompletedProcess) -> None:
    assert run.returncode == 0, run.stdout + run.stderr
    assert "setup.sh: ready:" in run.stdout


def test_the_newest_supported_python_is_preferred(machine):
    py312 = machine.python("python3.12", "3.12.3 final")
    machine.python("python3.11", "3.11.9 final")
    (machine.bin / "python3").symlink_to(py312)
    run = machine.run()
    _ready(run)
    assert f"setup.sh: using {py312} (3.12.3)" in run.stdout
    assert machine.venv_made_by == str(py312)
    assert "venv -m pip install" in machine.calls and "-r " in machine.calls


def test_a_release_candidate_and_an_old_python3_are_rejected_ubuntu_22_04(machine):
    """Ubuntu 22.04: python3 is 3.10, apt's python3.11 is 3.11.0~rc1: uv's standalone
    CPython, uv fetched from PyPI with the Python that is there."""
    rc = machine.python("python3.11", "3.11.0 candidate")
    old = machine.python("python3", "3.10.12 final")
    machine.with_apt({"python3.11": "true", "python3.11-venv": "true"},
                     {"python3.11": "3.11.0~rc1-1~22.04", "python3": "3.10.6-1~22.04"})
    run = machine.run()
    _ready(run)
    assert f"skipping {rc} (3.11.0 candidate): need a final release" in run.stdout
    assert f"skipping {old} (3.10.12 final): need a final release" in run.stdout
    assert "not using apt's python3.11 3.11.0~rc1-1~22.04: not a final release" in run.stdout
    assert "apt-get install" not in machine.calls  # the RC is never installed
    assert f"fetching uv {UV_VERSION} from PyPI" in run.stdout
    assert "fetch-wheel https://files.pythonhosted.org/" in machine.calls
    standalone = machine.root / "uv" / "python" / f"cpython-{UV_PYTHON}-linux-x86_64-gnu" / "bin" / "python3.11"
    assert f"uv python install --no-bin {UV_PYTHON}" in machine.calls
    assert f"setup.sh: using {standalone} ({UV_PYTHON})" in run.stdout
    assert machine.venv_made_by == str(standalone)


def test_a_python_without_its_venv_package_gets_it_from_apt(machine):
    """The observed failure: python3.11 there, python3.11-venv not: install it, don't give up."""
    marker = machine.base / "ensurepip-installed"
    py311 = machine.python("python3.11", "3.11.2 final", needs=marker)
    machine.with_apt({"python3.11-venv": f"touch {marker}"})
    run = machine.run()
    _ready(run)
    assert f"{py311} (3.11.2) cannot make a venv (ensurepip is not available): installing python3.11-venv" in run.stdout
    assert "apt-get install -y -qq --no-install-recommends python3.11-venv" in machine.calls
    assert f"setup.sh: using {py311} (3.11.2)" in run.stdout
    assert machine.venv_made_by == str(py311)


def test_no_python_but_apt_with_a_final_release_debian_12(machine):
    installed = machine.bin / "python3.11"
    fake = machine.python(machine.base / "apt-python3.11", "3.11.2 final", on_path=False)
    machine.with_apt({"python3.11": f"cp {fake} {installed}", "python3.11-venv": "true"},
                     {"python3.11": "3.11.2-6+deb12u6"})
    run = machine.run()
    _ready(run)
    assert "installing apt's python3.11 3.11.2-6+deb12u6" in run.stdout
    assert f"setup.sh: using {installed} (3.11.2)" in run.stdout
    assert "uv python" not in machine.calls and "fetch-wheel" not in machine.calls


def test_no_apt_and_no_python_takes_uv_through_astrals_installer(machine):
    machine.with_curl()
    run = machine.run()
    _ready(run)
    assert "no apt-get here" in run.stdout
    assert f"installing uv {UV_VERSION} with astral's installer (curl)" in run.stdout
    assert f"curl -LsSf --retry 3 -o {machine.root}/uv/install.sh https://astral.sh/uv/{UV_VERSION}/install.sh" in machine.calls
    assert f"installing a standalone CPython {UV_PYTHON} with uv {UV_VERSION}" in run.stdout
    assert machine.venv_made_by.endswith("/bin/python3.11")
    assert not (machine.root / "uv" / "install.sh").exists()


def test_a_too_new_python_is_skipped(machine):
    machine.python("python3", "3.14.0 final")
    machine.with_curl()
    run = machine.run()
    _ready(run)
    assert "(3.14.0 final): need a final release of Python 3.11 to 3.13" in run.stdout


def test_nothing_to_work_with_fails_with_a_clear_message(machine):
    run = machine.run()
    assert run.returncode == 1
    assert "setup.sh: ERROR: no Python 3.11 to 3.13 with a working venv could be set up" in run.stderr
    assert "no apt-get here" in run.stderr and "no Python, curl or wget to fetch uv with" in run.stderr
    assert not (machine.root / "venv").exists()


def test_a_python_whose_venv_cannot_be_fixed_without_apt_falls_back_to_uv(machine):
    py = machine.python("python3.12", "3.12.3 final", needs=machine.base / "never")
    run = machine.run()
    _ready(run)
    assert f"skipping {py} (3.12.3): cannot make a venv (ensurepip is not available)" in run.stdout
    assert f"fetching uv {UV_VERSION} from PyPI (wheel checked by sha256) with {py}" in run.stdout
    assert machine.venv_made_by.endswith(f"cpython-{UV_PYTHON}-linux-x86_64-gnu/bin/python3.11")


# ---------------------------------------------------------------------------
# Gradescope's results.json specification, as assertions.
# ---------------------------------------------------------------------------

VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}
OUTPUT_FORMATS = {"text", "html", "simple_format", "md", "ansi"}
TOP_KEYS = {"score", "max_score", "execution_time", "output", "output_format", "test_output_format",
            "test_name_format", "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
TEST_KEYS = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format",
             "tags", "visibility", "extra_data"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def assert_gradescope_results(data: Any) -> None:
    """https://gradescope-autograders.readthedocs.io/en/latest/specs/ (results.json), plus
    what this grader always writes: every test has name, score, max_score, status, output."""
    assert isinstance(data, dict), type(data)
    assert set(data) <= TOP_KEYS, set(data) - TOP_KEYS
    tests = data.get("tests", [])
    assert isinstance(tests, list)
    # "score": optional, but required if not on each test case; a number.
    assert "score" in data or all("score" in t for t in tests)
    for key in ("score", "max_score", "execution_time"):
        if key in data:
            assert _is_number(data[key]), (key, data[key])
    assert data.get("execution_time", 0) >= 0
    for key in ("output",):
        assert isinstance(data.get(key, ""), str)
    for key in ("output_format", "test_output_format", "test_name_format"):
        assert data.get(key, "simple_format") in OUTPUT_FORMATS, (key, data[key])
    for key in ("visibility", "stdout_visibility"):
        assert data.get(key, "visible") in VISIBILITIES, (key, data[key])
    assert isinstance(data.get("extra_data", {}), dict)
    for test in tests:
        assert isinstance(test, dict) and set(test) <= TEST_KEYS, set(test) - TEST_KEYS
        assert {"name", "score", "max_score", "status", "output"} <= set(test), test
        assert isinstance(test["name"], str) and test["name"]
        assert _is_number(test["score"]) and _is_number(test["max_score"]), test
        assert 0 <= test["score"] <= test["max_score"], test
        assert test["status"] in ("passed", "failed"), test
        assert isinstance(test["output"], str)
        assert test.get("visibility", "visible") in VISIBILITIES, test
        assert test.get("output_format", "simple_format") in OUTPUT_FORMATS, test
        assert test.get("name_format", "text") in OUTPUT_FORMATS, test
        assert isinstance(test.get("number", ""), str)
        assert isinstance(test.get("tags", []), list) and all(isinstance(t, str) for t in test.get("tags", []))
        assert isinstance(test.get("extra_data", {}), dict)
    if tests and "score" in data:  # the top-level score overrides the tests' sum: they must agree
        assert abs(data["score"] - sum(t["score"] for t in tests)) < 1e-6, data["score"]
        if "max_score" in data:
            assert abs(data["max_score"] - sum(t["max_score"] for t in tests)) < 1e-6
    for entry in data.get("leaderboard", []):
        assert isinstance(entry, dict) and isinstance(entry.get("name"), str) and "value" in entry
        assert entry.get("order", "desc") in ("asc", "desc")
    json.dumps(data, allow_nan=False)  # plain JSON: no NaN or Infinity


def test_the_spec_rules_reject_what_gradescope_rejects():
    good = {"score": 3.0, "tests": [{"name": "a", "score": 1.0, "max_score": 1.0, "status": "passed", "output": ""},
                                    {"name": "b", "score": 2.0, "max_score": 4.0, "status": "failed", "output": "x"}]}
    assert_gradescope_results(good)
    assert_gradescope_results({"score": 0, "output": "no file", "tests": []})
    bad = [{**good, "score": "3"}, {**good, "score": 2.0}, {**good, "visibility": "public"},
           {**good, "output_format": "markdown"}, {**good, "tests": [{**good["tests"][0], "status": "ok"}]},
           {**good, "tests": [{**good["tests"][0], "score": True}]}, {"tests": [{"name": "a", "status": "passed"}]}]
    for data in bad:
        with pytest.raises(AssertionError):
            assert_gradescope_results(data)


# ---------------------------------------------------------------------------
# Platform: the bundle in a fresh Debian root with no Python, under Gradescope's limits.
# ---------------------------------------------------------------------------

CACHE = ROOT / "build" / "gradescope-platform"
BASE = CACHE / "bookworm-minbase"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
MEMORY_BYTES = 768 * 1024 * 1024
CPU_QUOTA_US, CPU_PERIOD_US = 50_000, 100_000  # half a CPU
CHROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
              "LANG": "C.UTF-8", "TERM": "dumb"}
SETUP_TIMEOUT = 1800
GRADE_TIMEOUT = 600


def _platform_skip_reason() -> str | None:
    if sys.platform != "linux":
        return "needs Linux"
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot, mounts, cgroups)"
    if shutil.which("chroot") is None or shutil.which("mount") is None:
        return "needs chroot and mount"
    return None


@pytest.fixture(scope="session")
def debian_root() -> Path:
    """Debian 12 minbase (no Python), made once with debootstrap and kept in build/."""
    reason = _platform_skip_reason()
    if reason:
        pytest.skip(reason)
    if (BASE / ".complete").is_file():
        return BASE
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        pytest.skip("needs debootstrap: apt-get install debootstrap (make gradescope-test does)")
    CACHE.mkdir(parents=True, exist_ok=True)
    building = CACHE / f".building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    log = CACHE / "debootstrap.log"
    with log.open("w") as out:
        made = subprocess.run([debootstrap, "--variant=minbase", "bookworm", str(building), MIRROR],
                              stdout=out, stderr=subprocess.STDOUT, timeout=1800, stdin=subprocess.DEVNULL)
    if made.returncode != 0:
        _remove_unmounted(building)
        pytest.fail(f"debootstrap failed (exit {made.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    # What a fresh image has: no downloaded packages, no package lists.
    shutil.rmtree(building / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (building / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
    for lists in (building / "var" / "lib" / "apt" / "lists").glob("*_*"):
        lists.unlink()
    assert not list((building / "usr" / "bin").glob("python*")), "a minbase root should have no Python"
    (building / ".complete").write_text(f"debootstrap --variant=minbase bookworm {MIRROR}\n")
    shutil.rmtree(BASE, ignore_errors=True)
    os.replace(building, BASE)
    return BASE


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return points


def _remove_unmounted(path: Path) -> None:
    """rmtree, but never through a mount point that is still there."""
    if not path.exists():
        return
    left = _mounts_under(path)
    if left:
        raise RuntimeError(f"not removing {path}: still mounted: {left}")
    shutil.rmtree(path)


class Mounts:
    """Mounts made for one run, undone in reverse order (lazily if busy)."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    def mount(self, *args: str, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *args, str(target)], check=True, capture_output=True, text=True)
        self.points.append(target)

    def undo(self) -> list[str]:
        problems = []
        for point in reversed(self.points):
            if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
                if subprocess.run(["umount", "-l", str(point)], capture_output=True).returncode != 0:
                    problems.append(str(point))
        self.points.clear()
        return problems


def _cgroup_mounts() -> dict[str, Path]:
    """Controller ("memory", "cpu", or "" for cgroup v2) -> its mount point."""
    found: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _, options = right.split()[:3]
        point = Path(left.split()[4])
        if fstype == "cgroup2":
            found.setdefault("", point)
        elif fstype == "cgroup":
            for option in options.split(","):
                if option in ("memory", "cpu"):
                    found.setdefault(option, point)
    return found


def _own_cgroup(controller: str) -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        number, controllers, path = line.split(":", 2)
        if controller == "" and number == "0" and controllers == "":
            return path
        if controller and controller in controllers.split(","):
            return path
    raise LookupError(controller)


class Limits:
    """A cgroup (v2, else v1 memory + cpu) of 768 MiB and half a CPU; the command
    it runs joins it before exec, so every process inside is counted and killable."""

    def __init__(self, dirs: list[Path], version: int):
        self.dirs = dirs
        self.version = version

    @classmethod
    def make(cls) -> "Limits":
        name = f"bn-gradescope-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        mounts = _cgroup_mounts()
        problems = []
        if "" in mounts:
            try:
                parent = mounts[""] / _own_cgroup("").lstrip("/")
                enabled = (parent / "cgroup.subtree_control").read_text().split()
                if {"memory", "cpu"} <= set(enabled):
                    group = parent / name
                    group.mkdir()
                    limits = cls([group], 2)
                    try:
                        (group / "memory.max").write_text(str(MEMORY_BYTES))
                        if (group / "memory.swap.max").exists():
                            (group / "memory.swap.max").write_text("0")
                        (group / "cpu.max").write_text(f"{CPU_QUOTA_US} {CPU_PERIOD_US}")
                    except OSError:
                        limits.remove()
                        raise
                    return limits
                problems.append(f"cgroup v2 at {parent} has no memory+cpu delegated ({' '.join(enabled)})")
            except (OSError, LookupError) as error:
                problems.append(f"cgroup v2: {error}")
        if "memory" in mounts and "cpu" in mounts:
            made: list[Path] = []
            try:
                for controller in ("memory", "cpu"):
                    group = mounts[controller] / _own_cgroup(controller).lstrip("/") / name
                    group.mkdir()
                    made.append(group)
                memory, cpu = made
                (memory / "memory.limit_in_bytes").write_text(str(MEMORY_BYTES))
                if (memory / "memory.memsw.limit_in_bytes").exists():
                    (memory / "memory.memsw.limit_in_bytes").write_text(str(MEMORY_BYTES))
                (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                (cpu / "cpu.cfs_quota_us").write_text(str(CPU_QUOTA_US))
                return cls(made, 1)
            except (OSError, LookupError, ValueError) as error:
                cls(made, 1).remove()
                problems.append(f"cgroup v1: {error}")
        else:
            problems.append("no cgroup v1 memory and cpu hierarchies")
        pytest.skip("no cgroup control to impose Gradescope's 768 MiB / half a CPU: " + "; ".join(problems))

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv``, started after its shell has joined every group."""
        joins = "; ".join(f"echo $$ > {shlex.quote(str(d / 'cgroup.procs'))}" for d in self.dirs)
        return ["/bin/sh", "-c", f'{joins}; exec "$@"', "sh", *argv]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for group in self.dirs:
            with contextlib.suppress(OSError):
                found |= {int(p) for p in (group / "cgroup.procs").read_text().split()}
        return found

    def kill_all(self) -> None:
        deadline = time.monotonic() + 20
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def peak_memory(self) -> int:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        with contextlib.suppress(OSError, ValueError):
            return int((self.dirs[0] / name).read_text())
        return 0

    def drop_cache_and_reset_peak(self) -> None:
        """Between two steps (no process inside): reclaim the page cache the last
        step left charged to the group, so that the next peak is its own."""
        memory = self.dirs[0]
        with contextlib.suppress(OSError):
            if self.version == 1:
                (memory / "memory.force_empty").write_text("0")
                (memory / "memory.max_usage_in_bytes").write_text("0")
            else:
                (memory / "memory.reclaim").write_text(str(MEMORY_BYTES))
                (memory / "memory.peak").write_text("0")

    def oom_kills(self) -> int:
        """Processes the kernel killed for exceeding the memory limit."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        with contextlib.suppress(OSError):
            for line in (self.dirs[0] / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def cpu_throttled(self) -> int:
        stat = self.dirs[-1] / "cpu.stat"
        with contextlib.suppress(OSError):
            for line in stat.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "nr_throttled":
                    return int(value)
        return 0

    def remove(self) -> list[str]:
        self.kill_all()
        problems = []
        for group in reversed(self.dirs):
            for _ in range(50):
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                problems.append(str(group))
        return problems


def _clean_stale_runs() -> None:
    """Runs of a test process that died before its clean-up (SIGKILL): unmount, remove."""
    for run_dir in (CACHE / "runs").glob("*-*"):
        pid = run_dir.name.split("-")[0]
        if pid.isdigit() and Path(f"/proc/{pid}").exists():
            continue  # a run in progress, maybe another session's
        for point in sorted(_mounts_under(run_dir), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        _remove_unmounted(run_dir)


@contextlib.contextmanager
def fresh_root(base: Path) -> Iterator[Path]:
    """A throw-away copy of ``base`` (an overlay, else a copy) with /proc, /sys (read-only)
    and a 64 MiB /dev/shm as in Docker; the download caches of build/ bound in, so that a
    warm run does not fetch the same packages again. Everything is unmounted and removed
    on the way out, whatever happened."""
    mounts = Mounts()
    _clean_stale_runs()
    run_dir = CACHE / "runs" / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    root = run_dir / "root"
    try:
        for folder in (run_dir / "upper", run_dir / "work", root):
            folder.mkdir(parents=True)
        try:
            mounts.mount("-t", "overlay", "overlay", "-o",
                         f"lowerdir={base},upperdir={run_dir / 'upper'},workdir={run_dir / 'work'}", target=root)
        except subprocess.CalledProcessError:
            subprocess.run(["cp", "-a", f"{base}/.", str(root)], check=True)
        for name in ("pip", "apt-archives"):
            (CACHE / "downloads" / name / "partial").mkdir(parents=True, exist_ok=True)
        mounts.mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", target=root / "proc")
        mounts.mount("-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", target=root / "sys")
        mounts.mount("-t", "tmpfs", "-o", "nosuid,nodev,size=64m,mode=1777", "shm", target=root / "dev" / "shm")
        mounts.mount("-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620", "devpts", target=root / "dev" / "pts")
        mounts.mount("--bind", str(CACHE / "downloads" / "pip"), target=root / "root" / ".cache" / "pip")
        mounts.mount("--bind", str(CACHE / "downloads" / "apt-archives"), target=root / "var" / "cache" / "apt" / "archives")
        shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
        # This machine may reach PyPI through a TLS proxy whose CA only its own store
        # has: hand that store to pip inside (on Gradescope pip's own certifi suffices).
        store = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
        if store.is_file():
            (root / "etc" / "ssl").mkdir(parents=True, exist_ok=True)
            shutil.copy(store, root / "etc" / "ssl" / "this-machine-ca.crt")
        yield root
    finally:
        left = mounts.undo()
        assert not left, f"could not unmount {left}"
        _remove_unmounted(run_dir)


def _extract(bundle: Path, into: Path) -> None:
    """As Gradescope does: the zip into /autograder/source, run_autograder to /autograder."""
    with zipfile.ZipFile(bundle) as archive:
        for info in archive.infolist():
            target = into / "source" / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(info))
            target.chmod((info.external_attr >> 16) & 0o777 or 0o644)
    shutil.copy2(into / "source" / "run_autograder", into / "run_autograder")


def _in_root(limits: Limits, root: Path, script: str, log: Path, timeout: float) -> tuple[int, float]:
    argv = limits.wrap(["/usr/sbin/chroot", str(root), "/bin/bash", "-c", script])
    env = dict(CHROOT_ENV)
    if (root / "etc" / "ssl" / "this-machine-ca.crt").is_file():
        env["PIP_CERT"] = env["SSL_CERT_FILE"] = "/etc/ssl/this-machine-ca.crt"
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            limits.kill_all()
            process.wait()
            code = -1
    return code, time.monotonic() - started


SECRET = "platform-test-secret-4471"


@pytest.fixture(scope="module")
def bundle_and_expected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """autograder.zip, and the submission graded here outside any root: the answer to compare with."""
    folder = tmp_path_factory.mktemp("bundle")
    secret = folder / "secret.txt"
    secret.write_text(SECRET + "\n")
    bundle = folder / "autograder.zip"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
    built = subprocess.run([sys.executable, "-m", "grader", "gradescope", "--secret-file", str(secret), "--out",
                            str(bundle)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    expected_file = folder / "expected.json"
    here = subprocess.run([sys.executable, "-m", "grader", "grade", str(NO_GUARD), "--quiet", "--secret-file",
                           str(secret), "--results", str(expected_file)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    expected = json.loads(expected_file.read_text())
    assert expected["extra_data"]["suite"] == "hidden", here.stderr
    assert_gradescope_results(expected)
    return bundle, expected


# What the root has before setup.sh: nothing (no Python at all), or the observed failure
# of issue 10: python3.11 installed without python3.11-venv ("ensurepip is not available").
BEFORE = {
    "no-python": ("", ["setup.sh: installing apt's python3.11 3.11.2"]),
    "python-without-venv": ("apt-get update -qq && apt-get install -y -qq --no-install-recommends python3.11",
                            ["setup.sh: /usr/bin/python3.11 (3.11.2) cannot make a venv (ensurepip is not "
                             "available): installing python3.11-venv"]),
}


@pytest.mark.platform
@pytest.mark.parametrize("before", list(BEFORE))
def test_the_bundle_installs_and_grades_in_a_fresh_debian_root(debian_root, bundle_and_expected, tmp_path, before):
    prepare, decisions = BEFORE[before]
    bundle, expected = bundle_and_expected
    started = time.monotonic()
    limits = Limits.make()
    timings: dict[str, float] = {}
    try:
        with fresh_root(debian_root) as root:
            timings["root ready"] = time.monotonic() - started
            assert not list((root / "usr" / "bin").glob("python*")) and not (root / "usr" / "local" / "bin" / "python3").exists()
            if prepare:
                code, timings["preparing"] = _in_root(limits, root, prepare, tmp_path / "prepare.log", SETUP_TIMEOUT)
                assert code == 0, (tmp_path / "prepare.log").read_text()
                limits.drop_cache_and_reset_peak()
            _extract(bundle, root / "autograder")
            (root / "autograder" / "submission").mkdir()
            shutil.copy(NO_GUARD, root / "autograder" / "submission" / "batchnorm.py")

            setup_log = tmp_path / "setup.log"
            code, timings["setup.sh"] = _in_root(limits, root, "cd /autograder/source && bash ./setup.sh",
                                                 setup_log, SETUP_TIMEOUT)
            setup_text = setup_log.read_text(errors="replace")
            assert code == 0, f"setup.sh failed (exit {code}):\n{setup_text[-4000:]}"
            for decision in decisions:
                assert decision in setup_text, setup_text[-4000:]
            assert "setup.sh: using /usr/bin/python3.11 (3.11.2)" in setup_text, setup_text[-4000:]
            assert "setup.sh: ready: /autograder/venv (Python 3.11.2, jax 0.10.2, flax 0.12.8" in setup_text
            setup_peak = limits.peak_memory()
            limits.drop_cache_and_reset_peak()

            graded = {}
            # As the root is (root may unshare here: the namespaces level), then as under
            # Docker's default seccomp profile, where unshare fails: the uid level.
            for attempt in ("as is", "without unshare"):
                if attempt == "without unshare":
                    (root / "usr" / "bin" / "unshare").rename(root / "usr" / "bin" / "unshare.hidden")
                limits.drop_cache_and_reset_peak()
                run_log = tmp_path / f"run_autograder-{attempt.replace(' ', '-')}.log"
                code, timings[f"run_autograder {attempt}"] = _in_root(limits, root, "/autograder/run_autograder",
                                                                      run_log, GRADE_TIMEOUT)
                run_text = run_log.read_text(errors="replace")
                assert code == 0, f"run_autograder failed (exit {code}):\n{run_text[-4000:]}"
                results_file = root / "autograder" / "results" / "results.json"
                assert results_file.is_file(), run_text[-4000:]
                data = json.loads(results_file.read_text(encoding="utf-8"))
                graded[attempt] = (data, run_text, limits.peak_memory(), limits.pids())
            throttled, oom_kills = limits.cpu_throttled(), limits.oom_kills()
            cleanup_started = time.monotonic()
    finally:
        problems = limits.remove()
    assert not problems, f"could not remove cgroups {problems}"
    timings["cleanup"] = time.monotonic() - cleanup_started
    timings["total"] = time.monotonic() - started

    assert SECRET not in setup_text
    levels = []
    for attempt, (data, run_text, peak, leftovers) in graded.items():
        assert_gradescope_results(data)
        assert data["tests"], data.get("output")
        assert data["extra_data"]["suite"] == "hidden"
        assert SECRET not in run_text + json.dumps(data)
        # Graded as here: same score, same verdict per test.
        assert data["score"] == expected["score"] and data["max_score"] == expected["max_score"], attempt
        assert [(t["name"], t["status"], t["score"]) for t in data["tests"]] == \
            [(t["name"], t["status"], t["score"]) for t in expected["tests"]], attempt
        assert not leftovers, f"processes left in the cgroup after run_autograder ({attempt}): {leftovers}"
        levels.append(f"{data['extra_data']['isolation']} ({attempt}: {peak / 2**20:.0f} MiB in the cgroup, "
                      f"grader's own peak {data['extra_data'].get('peak_memory_mb')} MB)")
    # The grader refused nothing weaker than a dedicated uid, and said which level it used.
    assert graded["as is"][0]["extra_data"]["isolation"] in ("namespaces", "uid")
    assert graded["without unshare"][0]["extra_data"]["isolation"] == "uid"
    assert throttled > 0, "the CPU limit never applied"
    assert oom_kills == 0, f"the kernel killed {oom_kills} processes for exceeding 768 MiB"
    summary = (f"gradescope platform test [{before}]: score {expected['score']}/{expected['max_score']} as "
               f"outside the root; isolation {', '.join(levels)}; setup.sh peak {setup_peak / 2**20:.0f} MiB "
               f"(page cache included); CPU throttled {throttled} times; "
               + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    print(summary)
    with (CACHE / "timings.log").open("a") as log:
        log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {summary}\n")
