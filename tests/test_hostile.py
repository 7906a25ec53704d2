"""Hostile submissions, graded end to end at every isolation level: as root with
and without namespaces, and as an unprivileged user with user namespaces or
Landlock (the grader then runs as ``nobody`` from a readable copy).

Each file in tests/submissions/hostile/ declares in its header what it does, the
score it must get and a word of the reason it must be given; ``# levels:``
restricts it to the levels that can defend against it (see SECURITY.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from grader.isolation import available_levels
from grader.proctree import remove_tree
from tests.conftest import HOSTILE, ROOT
from tests.levels import LEVELS, USER_LEVELS, available_as_nobody, run_cli_as

pytestmark = pytest.mark.slow

# The per-submission time limit: 8 s on a quiet machine, scaled up from a measured
# baseline (one correct grading) when other graders share the cores.
QUIET_TIMEOUT = 8.0
QUIET_BASELINE = 3.0  # seconds one correct grading takes on a quiet 2-core machine


_LIMITS: dict[tuple[str, str | None], float] = {}  # the limit each level's batch was given


def _timeout() -> float:
    """Measured anew for each batch: the load of a shared machine changes within a
    session, and a limit measured at its start may not fit its end."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "grader", "grade", str(ROOT / "solution" / "batchnorm.py"), "--quiet",
                    "--isolation", "process"], cwd=ROOT, capture_output=True, timeout=600, stdin=subprocess.DEVNULL)
    return QUIET_TIMEOUT * max(1.0, (time.monotonic() - started) / QUIET_BASELINE)


SECRET = "hostile-suite-secret-Zq7"
# Every file runs at the strongest level (namespaces). The other levels run the
# files that test confinement itself (and those whose "# levels:" line names
# them); the rest (hangs, exits, garbage, forged frames) exercise the session
# loop, which is the same code at every level, and would only repeat it.
FULL_LEVELS = {"namespaces"}
CONFINEMENT = {"steals_reference", "steals_secret", "network_and_kill", "fake_results", "leftover_daemon",
               "memory_bomb", "garbage_on_channel", "noisy_but_correct"}


def _header(path: Path, level: str | None = None) -> dict[str, str]:
    """The file's declarations; ``expect LEVEL:`` and ``reason LEVEL:`` lines
    override the plain ones at that level."""
    fields = {}
    for line in path.read_text().splitlines():
        match = re.match(r"# (hostile|expect|reason|levels|expect \w+|reason \w+): ?(.*)$", line)
        if not match:
            break
        fields[match.group(1)] = match.group(2).strip()
    assert {"hostile", "expect", "reason"} <= set(fields), f"{path.name} needs hostile/expect/reason lines"
    for key in ("expect", "reason"):
        if level is not None and f"{key} {level}" in fields:
            fields[key] = fields[f"{key} {level}"]
    return fields


def _cases() -> list:
    cases = []
    for path in HOSTILE:
        levels = _header(path).get("levels", "both")
        for level in LEVELS:
            marks = []
            here = available_as_nobody() if level in USER_LEVELS else available_levels()
            if level not in here:
                marks.append(pytest.mark.skip(reason=f"isolation level {level} is not available on this machine"))
            if level not in FULL_LEVELS and path.stem not in CONFINEMENT and levels == "both":
                continue
            if levels != "both" and level not in levels.split():
                continue  # SECURITY.md: this level does not defend against it
            cases.append(pytest.param(path, level, id=f"{path.stem}-{level}", marks=marks))
    return cases


def _repo_state() -> str:
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                            capture_output=True, text=True)
    return status.stdout if status.returncode == 0 else ""


def _leftovers(since_ticks: int, token: str) -> list[str]:
    """Processes this test started that are still alive: the grader's workers and
    their children carry ``token`` in their PATH (other graders on a busy machine
    do not); a daemon that scrubbed its environment still carries the hostile
    files' marker 987654 in its command line."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            started = int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19])
            if started < since_ticks:
                continue
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:
            environ = ""
        if "987654" in cmdline or ("bngrader_rt" in cmdline and token in environ):
            found.append(cmdline)
    return found


class _Listener:
    """A TCP server on loopback that records whatever reaches it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.received.append(conn.recv(100) or b"<connected>")
                except OSError:
                    self.received.append(b"<connected>")

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.sock.close()


@dataclasses.dataclass
class LevelRun:
    """One class of hostile submissions graded with ``batch`` at one level."""

    results: dict[str, dict]  # file stem -> its results.json
    printed: str  # everything the grader printed
    code: int
    leftovers: list[str]
    repo_changed: bool
    received: list[bytes]  # what reached the loopback listener


_RUNS: dict[tuple[str, str | None], LevelRun] = {}


def _files_at(level: str) -> list[Path]:
    return [param.values[0] for param in _cases() if param.values[1] == level]


def _grade_level(level: str, exercise: str | None = None) -> LevelRun:
    """Grade every hostile file of ``level`` in one batch (two at a time, as an
    instructor would), once per test session; each file's test then checks its own
    results. Leftovers, the repository and the network are checked for the batch.
    With another ``exercise``: the files that test confinement, graded in it."""
    if (level, exercise) in _RUNS:
        return _RUNS[level, exercise]
    user = "nobody" if level in USER_LEVELS else "root"
    folder = Path(tempfile.mkdtemp(prefix=f"hostile-{level}-"))
    folder.chmod(0o755)
    submissions = folder / "submissions"
    submissions.mkdir(mode=0o755)
    listener = _Listener()
    files = _files_at(level) if exercise is None else [p for p in HOSTILE if p.stem in CONFINEMENT]
    for path in files:
        target = submissions / path.stem / "batchnorm.py"
        target.parent.mkdir(mode=0o755)
        target.write_text(path.read_text().replace("PORT = 9 ", f"PORT = {listener.port} "))
        target.chmod(0o644)
    secret_file = folder / "secret.txt"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o644)  # the grader, as nobody, must read it (its workers must not)
    out = folder / "out"
    out.mkdir()
    out.chmod(0o777)
    limit = _LIMITS[level, exercise] = _timeout()
    before = _repo_state()
    since = _ticks_now()
    token = f"/nonexistent-{folder.name}"
    env = {"PATH": f"{os.environ.get('PATH', '/usr/bin:/bin')}:{token}"}
    try:
        run = run_cli_as(user, folder, "batch", str(submissions), "--out", str(out), "--jobs", "2",
                         "--timeout", f"{limit:.1f}", "--memory-mb", "1500", "--isolation", level,
                         "--secret-file", str(secret_file), *(("--exercise", exercise) if exercise else ()),
                         env=env, timeout=60 * 20)
    finally:
        listener.close()
    results = {}
    for student in submissions.iterdir():
        path = out / "students" / student.name / "results.json"
        if path.exists():
            results[student.name] = json.loads(path.read_text())
    _RUNS[level, exercise] = LevelRun(results, run.stdout + run.stderr, run.code, _leftovers(since, token),
                                      _repo_state() != before, listener.received)
    return _RUNS[level, exercise]


@pytest.mark.parametrize(("path", "level"), _cases())
def test_hostile_submission_is_graded_safely(path: Path, level: str):
    header = _header(path, level)
    run = _grade_level(level)
    assert run.code == 0, run.printed[-3000:]
    assert "Traceback" not in run.printed
    data = run.results.get(path.stem)
    assert data is not None, f"no results.json for {path.stem}: {run.printed[-2000:]}"
    score = data["score"]
    assert eval(header["expect"], {"score": score}), f"score {score} breaks '{header['expect']}': {data['output'][:500]}"  # noqa: S307
    text = data["output"] + "\n".join(t["output"] for t in data["tests"])
    assert header["reason"].lower() in text.lower()
    assert data["extra_data"]["isolation"] == level
    # bounded: the timeout plus start-up and reporting, not a speed target
    assert data["execution_time"] < _LIMITS[level, None] * 3.5
    assert SECRET not in json.dumps(data) and SECRET not in run.printed


@pytest.mark.parametrize("level", LEVELS)
def test_a_hostile_class_leaves_nothing_behind(level: str):
    """Checked once per level, after every hostile file of it was graded."""
    if level not in (available_as_nobody() if level in USER_LEVELS else available_levels()):
        pytest.skip(f"isolation level {level} is not available on this machine")
    run = _grade_level(level)
    assert not run.leftovers
    assert not run.repo_changed
    if level != "process":
        assert run.received == []


def test_confinement_holds_in_the_nnx_exercise():
    """The files that attack confinement, graded in the NNX exercise at the strongest
    level here: its worker imports another adapter, nothing else may change. (Their
    scores are Linen's business; here: no traceback, a result each, the secret in
    none, nothing left running or on disk, the repository unchanged, no network.)"""
    level = next(lvl for lvl in LEVELS if lvl in available_levels())
    run = _grade_level(level, "batchnorm_nnx")
    assert run.code == 0, run.printed[-3000:]
    assert "Traceback" not in run.printed
    assert set(run.results) == CONFINEMENT
    for stem, data in run.results.items():
        assert data["extra_data"]["exercise"] == "batchnorm_nnx" and data["extra_data"]["isolation"] == level, stem
        assert SECRET not in json.dumps(data), stem
    assert SECRET not in run.printed
    assert not run.leftovers and not run.repo_changed
    if level != "process":
        assert run.received == []


def test_a_classmate_keeps_its_score_beside_a_cpu_hog():
    """Fair share: the reference graded in one ``batch --jobs 2`` beside a submission
    whose sixteen busy children each try a session of their own (a scheduler group
    each), at the strongest level here; the classmate keeps its full score, and
    none of the sixteen outlives the batch."""
    level = next(lvl for lvl in LEVELS if lvl in (available_as_nobody() if lvl in USER_LEVELS else available_levels()))
    user = "nobody" if level in USER_LEVELS else "root"
    folder = Path(tempfile.mkdtemp(prefix="fair-share-"))
    folder.chmod(0o755)
    submissions = folder / "submissions"
    for name, source in (("classmate", ROOT / "solution" / "batchnorm.py"),
                         ("hog", ROOT / "tests" / "submissions" / "hostile" / "cpu_hog_sessions.py")):
        (submissions / name).mkdir(parents=True, mode=0o755)
        (submissions / name / "batchnorm.py").write_text(source.read_text())
        (submissions / name / "batchnorm.py").chmod(0o644)
    submissions.chmod(0o755)
    out = folder / "out"
    out.mkdir()
    out.chmod(0o777)
    limit = _timeout()
    since = _ticks_now()
    token = f"/nonexistent-{folder.name}"
    try:
        run = run_cli_as(user, folder, "batch", str(submissions), "--out", str(out), "--jobs", "2", "--timeout",
                         f"{limit:.1f}", "--isolation", level,
                         env={"PATH": f"{os.environ.get('PATH', '/usr/bin:/bin')}:{token}"}, timeout=60 * 10)
        classmate = json.loads((out / "students" / "classmate" / "results.json").read_text())
    finally:
        remove_tree(str(folder))
    assert run.code == 0, (run.stdout + run.stderr)[-3000:]
    assert classmate["extra_data"]["isolation"] == level
    assert classmate["score"] == classmate["max_score"], classmate["output"][:1500]
    assert not _leftovers(since, token)


def _ticks_now() -> int:
    """Now, in the clock ticks since boot that /proc/PID/stat counts starts in."""
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return int(uptime * os.sysconf("SC_CLK_TCK")) - 1


def test_every_hostile_file_declares_its_expectations():
    assert len(HOSTILE) >= 15
    for path in HOSTILE:
        _header(path)
