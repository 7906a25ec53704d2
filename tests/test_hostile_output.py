"""What hostile submissions print, and what they leave in the kernel, graded
through the CLI: terminal control sequences never reach the terminal, the
results or the JUnit file; plain prints always reach the results; a kernel key
added by a worker does not outlive the grade."""

from __future__ import annotations

import ctypes
import json
import os
import platform
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from grader.isolation import available_levels
from tests.conftest import HOSTILE, run_cli
from tests.levels import LEVELS, USER_LEVELS, available_as_nobody, run_cli_as

pytestmark = pytest.mark.slow

HOSTILE_DIR = HOSTILE[0].parent if HOSTILE else Path(__file__).parent / "submissions" / "hostile"
ESCAPES = HOSTILE_DIR / "terminal_escapes.py"
MARKER = HOSTILE_DIR / "prints_marker.py"
KEYRING = HOSTILE_DIR / "kernel_keyring.py"
CONTROL = ("\x1b", "\x9b", "\r")


def _strings(value: object):
    """Every string inside decoded JSON."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@pytest.mark.parametrize("level", ["process", "auto"])
def test_terminal_escapes_reach_neither_terminal_nor_reports(level: str, tmp_path: Path):
    results, junit = tmp_path / "results.json", tmp_path / "junit.xml"
    run = run_cli("grade", str(ESCAPES), "--timeout", "30", "--isolation", level, "--junit", str(junit),
                  results=results)
    assert run.code == 0, run.stderr
    assert run.results is not None and run.results["score"] == 100
    raw = results.read_text(encoding="utf-8")
    junit_text = junit.read_text(encoding="utf-8")
    places = {"stdout": run.stdout, "stderr": run.stderr, "results.json (raw)": raw,
              "results.json (decoded)": "\n".join(_strings(json.loads(raw))), "junit": junit_text}
    for where, text in places.items():
        for char in CONTROL:
            assert char not in text, f"{char!r} reached {where}"
    junit_tree = ET.parse(junit)
    decoded = "\n".join(t or "" for e in junit_tree.iter() for t in (e.text, e.tail, *e.attrib.values()))
    for char in CONTROL:
        assert char not in decoded, f"{char!r} reached the parsed JUnit file"
    # the student still sees that they printed something
    assert "100/100" in run.results["output"]


def test_plain_prints_reach_the_results_every_time(tmp_path: Path):
    for attempt in range(3):
        results = tmp_path / f"results-{attempt}.json"
        run = run_cli("grade", str(MARKER), "--quiet", "--timeout", "30", "--isolation", "process", results=results)
        assert run.code == 0, run.stderr
        assert run.results is not None and run.results["score"] == 100
        output = run.results["output"]
        assert "MARKER-IMPORT-5b1e imported" in output, f"run {attempt + 1}: the import print is missing"
        assert "MARKER-CALL-77c2 in __call__" in output, f"run {attempt + 1}: the __call__ print is missing"


# --- kernel keys ---------------------------------------------------------------------

KEYCTL = {"x86_64": 250, "aarch64": 219}.get(platform.machine())
SEARCH_HELPER = r"""
import ctypes, sys
KEYCTL, SEARCH = int(sys.argv[1]), 10
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
found = []
for ring in (-4, -5, -3):  # @u, @us, @s
    for name in sys.argv[2:]:
        serial = libc.syscall(KEYCTL, SEARCH, ctypes.c_int(ring), b"user", name.encode(), 0)
        if serial >= 0:
            found.append(f"{name} in {ring}")
print("|".join(found))
"""
KEY_NAMES = ("bngrade-hostile-key-user", "bngrade-hostile-key-session")


def _key_users() -> dict[int, str]:
    out = {}
    for line in Path("/proc/key-users").read_text().splitlines():
        uid, rest = line.split(":", 1)
        out[int(uid)] = rest.split()[1]  # nkeys/nikeys
    return out


def _keys_of(uid: int) -> str:
    argv = [sys.executable, "-I", "-c", SEARCH_HELPER, str(KEYCTL), *KEY_NAMES]
    if uid != os.geteuid():
        argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return proc.stdout.strip()


def _key_cases() -> list:
    """A root level, an unprivileged one, and process, where seccomp alone defends."""
    cases = []
    for level in ("uid", "userns", "process"):
        here = available_as_nobody() if level in USER_LEVELS else available_levels()
        marks = [] if level in here else [pytest.mark.skip(reason=f"isolation level {level} is not available here")]
        cases.append(pytest.param(level, id=level, marks=marks))
    return cases


@pytest.mark.skipif(KEYCTL is None or not Path("/proc/key-users").exists() or os.geteuid() != 0,
                    reason="needs Linux keys and root to look at every user's keyring")
@pytest.mark.parametrize("level", _key_cases())
def test_kernel_key_does_not_outlive_the_grade(level: str, tmp_path: Path):
    before = _key_users()
    user = "nobody" if level in USER_LEVELS else "root"
    if user == "nobody":  # pytest's own folders are private to root
        tmp_path = Path(tempfile.mkdtemp(prefix="keys-"))
        tmp_path.chmod(0o755)
    submission = tmp_path / "batchnorm.py"
    submission.write_text(KEYRING.read_text())
    submission.chmod(0o644)
    run = run_cli_as(user, tmp_path, "grade", str(submission), "--quiet", "--timeout", "30", "--isolation", level,
                     results=tmp_path / "out" / "results.json", timeout=120)
    assert run.code == 0, run.stderr
    assert run.results is not None and run.results["score"] == 100
    after = _key_users()
    # the worker's uid: nobody, root, or a dedicated uid (new in the list)
    uids = {0, 65534} | {uid for uid, count in after.items() if before.get(uid) != count}
    left = {uid: found for uid in sorted(uids) if (found := _keys_of(uid))}
    assert not left, f"keys left behind: {left}; the worker said: {run.results['output'][:300]}"
