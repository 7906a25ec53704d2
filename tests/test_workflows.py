"""Instructor and CI workflows: batch, handout, Gradescope bundle, JUnit, self-test."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from tests.conftest import CORRECT, ROOT, TEST_SECRET, WRONG, run_cli

pytestmark = pytest.mark.slow
REFERENCE = ROOT / "solution" / "batchnorm.py"
NO_GUARD = next(p for p in WRONG if p.stem == "init_no_guard")
UNBIASED = next(p for p in WRONG if p.stem == "unbiased_everywhere")


def _class(folder: Path) -> Path:
    """alice (folder), bob.py (file), carol (folder, pitfall), dave.py (does not import)."""
    (folder / "alice").mkdir(parents=True)
    shutil.copy(CORRECT[0], folder / "alice" / "batchnorm.py")
    shutil.copy(NO_GUARD, folder / "bob.py")
    (folder / "carol").mkdir()
    shutil.copy(UNBIASED, folder / "carol" / "batchnorm.py")
    (folder / "dave.py").write_text("this is not python\n")
    (folder / "notes.txt").write_text("ignored\n")
    return folder


def _batch(folder: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
    env["GRADER_SECRET"] = TEST_SECRET
    return subprocess.run([sys.executable, "-m", "grader", "batch", str(folder), "--out", str(out), "--jobs", "2", *extra],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, stdin=subprocess.DEVNULL)


def test_batch_writes_results_gradebook_and_report_then_reuses_them(tmp_path):
    folder, out = _class(tmp_path / "class"), tmp_path / "out"
    first = _batch(folder, out)
    assert first.returncode == 0, first.stderr
    assert "graded 4 submissions" in first.stdout
    for student, score in (("alice", 100), ("bob", 90), ("dave", 0)):
        data = json.loads((out / "students" / student / "results.json").read_text())
        assert data["score"] == score and data["extra_data"]["student"] == student
        assert (out / "students" / student / "feedback.html").read_text().startswith("<!doctype html>")
    rows = list(csv.DictReader(io.StringIO((out / "gradebook.csv").read_text())))
    assert [r["student_id"] for r in rows] == ["alice", "bob", "carol", "dave"]
    assert list(rows[0]) == ["student_id", "score", "max_score", "status", "pitfalls", "suite", "reason"]
    assert {r["suite"] for r in rows} == {"hidden"}
    assert rows[1]["pitfalls"] == "init_updates_stats" and rows[2]["pitfalls"] == "unbiased_variance"
    report = (out / "report.html").read_text()
    assert "<svg" in report and "http" not in report.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "25% running statistics change during init" in report
    assert 'href="students/alice/feedback.html"' in report

    again = _batch(folder, out)
    assert again.stdout.count("(unchanged, kept)") == 4

    shutil.copy(CORRECT[1], folder / "bob.py")  # bob fixes his code
    third = _batch(folder, out)
    assert third.stdout.count("(unchanged, kept)") == 3
    assert json.loads((out / "students" / "bob" / "results.json").read_text())["score"] == 100
    forced = _batch(folder, out, "--force")
    assert "(unchanged, kept)" not in forced.stdout


def test_batch_interrupted_leaves_complete_files_and_next_run_finishes(tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    for i in range(8):
        # Each takes half a second more to import, so that the interrupt surely lands
        # while the class is still being graded, even on a busy machine.
        source = CORRECT[i % len(CORRECT)].read_text()
        (folder / f"s{i}.py").write_text(("import time\ntime.sleep(0.5)\n" if i else "") + source)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
    env["GRADER_SECRET"] = TEST_SECRET
    proc = subprocess.Popen([sys.executable, "-m", "grader", "batch", str(folder), "--out", str(out), "--jobs", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    first_line = proc.stdout.readline()
    assert first_line.startswith("[1/8]")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "run the same command again" in stderr, stderr[-2000:]
    written = sorted(out.glob("students/*/results.json"))
    assert 1 <= len(written) < 8
    for path in written:
        json.loads(path.read_text())  # complete, never half-written
    assert not list(out.rglob(".*"))  # no leftover temporary files
    rerun = _batch(folder, out)
    assert rerun.returncode == 0
    assert rerun.stdout.count("(unchanged, kept)") == len(written)
    assert len(list(out.glob("students/*/results.json"))) == 8


def test_batch_usage_errors(tmp_path):
    assert run_cli("batch", str(tmp_path / "missing"), "--out", str(tmp_path / "o")).code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    run = run_cli("batch", str(empty), "--out", str(tmp_path / "o"))
    assert run.code == 2 and "holds no submissions" in run.stderr


def test_handout_has_the_kit_and_nothing_secret(tmp_path):
    for out in (tmp_path / "kit", tmp_path / "kit.zip"):
        run = run_cli("handout", "--out", str(out))
        assert run.code == 0, run.stderr
    with zipfile.ZipFile(tmp_path / "kit.zip") as archive:  # one folder, holding what --out DIR writes
        names = {n.removeprefix("batchnorm-kit/") for n in archive.namelist() if not n.endswith("/")}
    kit = tmp_path / "kit"
    files = {p.relative_to(kit).as_posix() for p in kit.rglob("*") if p.is_file()}
    assert files == names
    assert {"batchnorm.py", "INSTRUCTIONS.md", "README.md", "check.sh", "requirements.txt", "grader/cli.py"} <= files
    assert not any(n.startswith(("solution/", "tests/", "examples/")) for n in files)
    reference = REFERENCE.read_text()
    distinctive = [line.strip() for line in reference.splitlines() if "running_mean.value = m *" in line or "Reference BatchNorm" in line]
    assert distinctive
    for path in kit.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert reference not in text
            assert not any(line in text for line in distinctive), path
            assert TEST_SECRET not in text
    assert os.access(kit / "check.sh", os.X_OK)
    run = subprocess.run([sys.executable, "-m", "grader", "grade", "batchnorm.py", "--isolation", "process",
                          "--results", "r.json"], cwd=kit, capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if not k.startswith("GRADER_")})
    data = json.loads((kit / "r.json").read_text())
    assert data["score"] == 0 and data["extra_data"]["suite"] == "practice"
    assert "not implemented yet" in run.stdout


def test_gradescope_bundle_grades_a_submission_where_gradescope_reads_it(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("course-secret-9917\n")
    bundle = tmp_path / "autograder.zip"
    assert run_cli("gradescope", "--secret-file", str(secret), "--out", str(bundle)).code == 0
    root = tmp_path / "autograder"
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
        assert {"setup.sh", "run_autograder", "requirements.txt", "constraints.txt", "secret.txt"} <= set(names)
        assert not any(n.startswith(("solution/", "tests/")) for n in names)
        for name in ("setup.sh", "run_autograder"):
            assert (archive.getinfo(name).external_attr >> 16) & 0o111
        requirements = archive.read("requirements.txt").decode()
        archive.extractall(root / "source")
    assert all("==" in line for line in requirements.splitlines() if not line.startswith("-c "))
    assert "-c constraints.txt" in requirements.splitlines()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
    env.update(AUTOGRADER_ROOT=str(root), PYTHON=sys.executable)
    (root / "submission").mkdir()
    shutil.copy(NO_GUARD, root / "submission" / "batchnorm.py")
    run = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    data = json.loads((root / "results" / "results.json").read_text())
    assert data["score"] == 90 and data["extra_data"]["suite"] == "hidden"  # the missing guard: 10 points
    assert "course-secret-9917" not in run.stdout + run.stderr + json.dumps(data)
    # Uploaded under another name, inside a folder (a zip's): found and graded the same.
    (root / "submission" / "hw3").mkdir()
    (root / "submission" / "batchnorm.py").rename(root / "submission" / "hw3" / "BatchNorm (1).py")
    (root / "results" / "results.json").unlink()
    subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True, timeout=180)
    assert json.loads((root / "results" / "results.json").read_text())["score"] == 90
    # An upload with nothing to grade still gets a results file with the reason.
    (root / "submission" / "hw3" / "BatchNorm (1).py").write_text("print('my notes')\n")
    subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True, timeout=180)
    data = json.loads((root / "results" / "results.json").read_text())
    assert data["score"] == 0 and "no file defines MyBatchNorm or init_and_apply" in data["output"]


def test_junit_agrees_with_results_json(tmp_path):
    run = run_cli("grade", str(NO_GUARD), "--quiet", "--junit", str(tmp_path / "j.xml"),
                  env={"GRADER_SECRET": TEST_SECRET}, results=tmp_path / "r.json")
    suite = ET.parse(tmp_path / "j.xml").getroot()
    cases = suite.findall("testcase")
    assert len(cases) == len(run.results["tests"])
    failed = {c.get("classname") for c in cases if c.find("failure") is not None}
    # Named by the file graded, not "bn-grader" for everyone: merged files keep students apart.
    assert suite.get("name") == NO_GUARD.name and failed == {f"{NO_GUARD.name.replace('.', '_')}.init_guard"}
    assert int(suite.get("failures")) == sum(t["status"] == "failed" and not t["output"].startswith("Not checked")
                                             for t in run.results["tests"])
    failure = suite.find("testcase/failure")
    assert failure.get("type") == "init_updates_stats" and "is_initializing" in failure.text


@pytest.mark.parametrize(("exercise", "files"), [
    ("batchnorm_linen", ("init_no_guard.py", "two_mistakes_guard_momentum.py")),
    ("batchnorm_nnx", ("momentum_reversed.py", "stats_as_params.py")),
])
def test_selftest_says_the_grader_holds(exercise: str, files: tuple[str, ...], tmp_path: Path):
    """Reference, stub and a course's own known-wrong folder, in the exercise's terms.
    (Every bundled wrong submission's tag is proven by the grading tests; here the
    command itself, on two of them.)"""
    folder = ROOT / "tests" / ("submissions" if exercise == "batchnorm_linen" else "submissions_nnx") / "wrong"
    for name in files:
        shutil.copy(folder / name, tmp_path / name)
    run = run_cli("selftest", "--exercise", exercise, "--known-wrong", str(tmp_path), env={"COLUMNS": "200"},
                  timeout=600)
    assert run.code == 0, run.stdout[-2000:]
    assert "The grader holds." in run.stdout and "BROKEN" not in run.stdout
    assert exercise in run.stdout and all(name in run.stdout for name in files)


def test_selftest_reports_a_known_wrong_file_the_grader_no_longer_names(tmp_path: Path):
    text = NO_GUARD.read_text().splitlines()
    (tmp_path / "mislabelled.py").write_text("\n".join(["# pitfall: momentum_reversed", *text[1:]]) + "\n")
    run = run_cli("selftest", "--known-wrong", str(tmp_path), timeout=600)
    assert run.code == 1 and "BROKEN" in run.stdout and "no longer holds" in run.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("selftest", "--known-wrong", str(empty)).code == 1
    assert run_cli("selftest", "--known-wrong", str(tmp_path / "absent")).code == 2


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux script for a terminal")
def test_batch_on_a_terminal_shows_a_progress_bar(tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    shutil.copy(CORRECT[0], folder / "ann.py")
    shutil.copy(NO_GUARD, folder / "ben.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
    env.update(GRADER_SECRET=TEST_SECRET, COLUMNS="100", TERM="xterm")
    command = f"{sys.executable} -m grader batch {folder} --out {tmp_path / 'out'} --jobs 2"
    run = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "grading" in run.stdout and "2/2" in run.stdout
    assert "[1/2]" not in run.stdout  # the plain lines are for pipes and logs
    assert "graded 2 submissions" in run.stdout
