"""The isolation level each kind of machine gets, and what holds at it.

Root without a working unshare is how Gradescope and Docker's default seccomp
profile run the grader: CI runs it on every change through a PATH whose
``unshare`` fails. An unprivileged user (a laptop, a CI runner) gets user
namespaces or Landlock. Links in a submission are never followed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli
from tests.levels import (_as_nobody, available_as_nobody, can_run_as_nobody, failing_unshare, run_cli_as,
                          user_workdir)

pytestmark = pytest.mark.slow
SOLUTION = ROOT / "solution" / "batchnorm.py"


def _copy(tmp_path: Path, source: Path = SOLUTION) -> Path:
    target = tmp_path / "sub" / "batchnorm.py"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source.read_text())
    return target


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_root_without_unshare_grades_as_a_dedicated_uid(tmp_path: Path):
    env = failing_unshare(tmp_path)
    run = run_cli("grade", str(_copy(tmp_path)), "--quiet", "--min-isolation", "uid", env=env,
                  results=tmp_path / "out" / "results.json")
    assert run.code == 0, run.stderr
    assert run.results["extra_data"]["isolation"] == "uid"
    assert run.results["score"] == 100


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_a_required_level_that_cannot_run_is_refused(tmp_path: Path):
    run = run_cli("grade", str(_copy(tmp_path)), "--quiet", "--min-isolation", "namespaces",
                  env=failing_unshare(tmp_path))
    assert run.code == 2
    assert "weaker than the required 'namespaces'" in run.stderr


@pytest.mark.skipif(not can_run_as_nobody(), reason="needs root and setpriv to become an unprivileged user")
def test_an_unprivileged_user_gets_the_strongest_level_it_can(tmp_path: Path):
    levels = available_as_nobody()
    assert levels and levels[-1] == "process"
    tmp_path = Path(tempfile.mkdtemp(prefix="levels-"))  # pytest's folders are private to root
    tmp_path.chmod(0o755)
    submission = _copy(tmp_path)
    submission.parent.chmod(0o755)
    submission.chmod(0o644)
    run = run_cli_as("nobody", tmp_path, "grade", str(submission), "--quiet",
                     results=tmp_path / "out" / "results.json")
    assert run.code == 0, run.stderr
    assert run.results["extra_data"]["isolation"] == levels[0]
    assert run.results["score"] == 100
    # Without a cgroup of its own (no delegated subtree), the result says memory was only sampled.
    code = "from grader import cgroups; g = cgroups.create(1 << 30, 16); print(g is not None); g and g.remove()"
    probe = subprocess.run(_as_nobody([sys.executable, "-c", code]), cwd=user_workdir(Path(tempfile.mkdtemp(
        prefix="levels-", dir=tmp_path))), capture_output=True, text=True, timeout=60)
    sampled = any("not capped by the kernel" in note for note in run.results["extra_data"]["notes"])
    assert sampled == (probe.stdout.strip() == "False"), probe.stderr


@pytest.mark.parametrize("target", ["solution", "proc", "secret"])
def test_a_linked_submission_is_refused_and_never_read(tmp_path: Path, target: str):
    secret = tmp_path / "secret.txt"
    secret.write_text("firstwordofthesecret and more")
    link = tmp_path / "sub" / "batchnorm.py"
    link.parent.mkdir()
    link.symlink_to({"solution": SOLUTION, "proc": Path("/proc/self/cwd/solution/batchnorm.py"),
                     "secret": secret}[target])
    for path in (link, link.parent):  # the file itself, and a folder holding it
        run = run_cli("grade", str(path), "--quiet", "--secret-file", str(secret),
                      results=tmp_path / f"out-{path.name}" / "results.json")
        assert run.code == 0, run.stderr
        assert run.results["score"] == 0
        assert "symbolic link" in run.results["output"]
        everything = run.stdout + run.stderr + str(run.results)
        assert "firstwordofthesecret" not in everything


def test_landlock_allow_list_is_carved_around_private_paths(tmp_path: Path):
    from grader._launch import _carve

    allowed = tmp_path / "etc"
    (allowed / "course" / "private").mkdir(parents=True)
    for name in ("hosts", "course/notes", "course/private/secret.txt", "course/private/other"):
        (allowed / name).write_text(name)
    secret = str(allowed / "course" / "private" / "secret.txt")
    carved = _carve([str(allowed), "/usr"], [secret])
    assert "/usr" in carved and str(allowed) not in carved
    assert secret not in carved and not any(secret.startswith(p + "/") for p in carved)
    assert {str(allowed / "hosts"), str(allowed / "course" / "notes"), str(allowed / "course" / "private" / "other")} <= set(carved)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to keep a secret in /etc")
def test_a_secret_kept_in_an_allowed_system_folder_stays_unreadable_at_uid(tmp_path: Path):
    """Landlock allows all of /etc; a secret an instructor keeps there is carved out."""
    folder = Path(tempfile.mkdtemp(prefix="bngrade-test-", dir="/etc"))
    try:
        secret = folder / "secret.txt"
        secret.write_text("carved-out-secret-Qx81")
        secret.chmod(0o644)
        thief = tmp_path / "sub" / "batchnorm.py"
        thief.parent.mkdir()
        thief.write_text(f"try:\n    print('stolen:', open({str(secret)!r}).read())\nexcept OSError as err:\n"
                         f"    print('refused:', type(err).__name__)\n" + SOLUTION.read_text().replace(
                             "from __future__ import annotations\n", ""))
        run = run_cli("grade", str(thief), "--quiet", "--isolation", "uid", "--secret-file", str(secret),
                      results=tmp_path / "out" / "results.json")
        assert run.code == 0, run.stderr
        assert run.results["score"] == 100
        assert "refused: PermissionError" in run.results["output"]
        assert "carved-out-secret-Qx81" not in run.stdout + run.stderr + str(run.results)
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
