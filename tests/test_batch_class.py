"""A batch finishes for any class, and a class graded in shards then merged is the
class graded at once: one small real class, graded whole and as 2 shards (the
SLURM and Kubernetes variables), shared by every assertion."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TEST_SECRET

pytestmark = pytest.mark.slow
EXAMPLES = ROOT / "examples"
JOSE_ESCAPED = "jos_-" + hashlib.sha256("josé".encode()).hexdigest()[:16]  # josé's folder name


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("GRADER_", "SLURM_", "JOB_COMPLETION", "CI_NODE"))}
    full["GRADER_SECRET"] = TEST_SECRET
    return {**full, **(extra or {})}


def run_grader(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True, env=_env(env),
                          cwd=ROOT, timeout=600, stdin=subprocess.DEVNULL)


def start_grader(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "grader", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(env), cwd=ROOT, stdin=subprocess.DEVNULL)


def _class(folder: Path) -> Path:
    """Four bundled examples, plus students that used to stop a batch or overwrite
    each other: batchnorm.py a folder, a dangling link, ids naming the summaries,
    and an id spelled as another's escaped folder name."""
    folder.mkdir()
    for name in ("reference", "init_no_guard", "stub", "momentum_reversed"):
        shutil.copy(EXAMPLES / f"{name}.py", folder / f"{name}.py")
    (folder / "folder_not_file" / "batchnorm.py").mkdir(parents=True)
    (folder / "dangling").mkdir()
    (folder / "dangling" / "batchnorm.py").symlink_to(folder / "nowhere.py")
    (folder / "report.html").mkdir()
    (folder / "report.html" / "batchnorm.py").write_text("def broken(:\n")
    (folder / "gradebook.csv.py").write_text("def broken(:\n")
    (folder / "josé.py").write_text("def broken(:\n")
    (folder / f"{JOSE_ESCAPED}.py").write_text("def broken(:\n")
    return folder


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The class graded whole (``all``), as shards 1/2 (SLURM) and 2/2 (Kubernetes), and merged."""
    root = tmp_path_factory.mktemp("sharding")
    folder = _class(root / "class")
    slurm = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "2",
             "SLURM_ARRAY_TASK_COUNT": "2"}
    # The two shards run side by side, as an array's tasks would.
    shards = {"s1": start_grader("batch", str(folder), "--out", str(root / "s1"), "--jobs", "1", env=slurm),
              "s2": start_grader("batch", str(folder), "--out", str(root / "s2"), "--jobs", "1", "--shards", "2",
                                 env={"JOB_COMPLETION_INDEX": "1"})}
    runs = {"all": run_grader("batch", str(folder), "--out", str(root / "all"), "--jobs", "1")}
    for name, proc in shards.items():
        stdout, stderr = proc.communicate(timeout=600)
        runs[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    for name, run in runs.items():
        assert run.returncode == 0, f"{name}: {run.stderr}"
        assert "Traceback" not in run.stderr
    merged = run_grader("merge", str(root / "s1"), str(root / "s2"), "--out", str(root / "class-out"))
    assert merged.returncode == 0, merged.stderr
    return {"root": root, "all": root / "all", "s1": root / "s1", "s2": root / "s2", "merged": root / "class-out"}


def _gradebook(out: Path) -> dict[str, dict[str, str]]:
    return {r["student_id"]: r for r in csv.DictReader(io.StringIO((out / "gradebook.csv").read_text()))}


def test_every_student_is_graded_even_when_batchnorm_py_is_a_folder_or_a_dangling_link(graded):
    book = _gradebook(graded["all"])
    assert len(book) == 10
    assert book["folder_not_file"]["score"] == "0" and "not a regular file" in book["folder_not_file"]["reason"]
    assert book["dangling"]["score"] == "0" and "symbolic link" in book["dangling"]["reason"]
    assert book["reference"]["score"] == "100" and book["init_no_guard"]["pitfalls"] == "init_updates_stats"


def test_students_named_like_the_summaries_do_not_touch_them(graded):
    out = graded["all"]
    assert (out / "gradebook.csv").is_file() and (out / "report.html").is_file()
    for sid in ("report.html", "gradebook.csv"):
        data = json.loads((out / "students" / sid / "results.json").read_text())
        assert data["extra_data"]["student"] == sid
    assert 'href="students/report.html/feedback.html"' in (out / "report.html").read_text()


def test_an_id_spelled_as_anothers_escaped_folder_gets_a_folder_of_its_own(graded):
    students = graded["all"] / "students"
    owners = {json.loads(p.read_text())["extra_data"]["student"]: p.parent.name for p in students.glob("*/results.json")}
    assert "josé" in owners and JOSE_ESCAPED in owners
    assert owners["josé"] != owners[JOSE_ESCAPED]
    assert len(set(owners.values())) == len(owners) == 10


def test_a_second_run_keeps_everyone_and_still_finishes(graded, tmp_path):
    """The next run over the same output (which used to fail at mkdir) keeps every result."""
    out = tmp_path / "again"
    shutil.copytree(graded["all"], out)
    run = run_grader("batch", str(graded["root"] / "class"), "--out", str(out), "--jobs", "1")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("(unchanged, kept)") == 10


def test_each_shard_grades_only_its_own_students_and_says_so(graded):
    from grader.shard import shard_of

    owned = []
    for k, name in ((1, "s1"), (2, "s2")):
        manifest = json.loads((graded[name] / "shard.json").read_text())
        assert manifest["shard"] == f"{k}/2" and manifest["complete"] and manifest["class"]["size"] == 10
        assert TEST_SECRET not in json.dumps(manifest)
        assert all(shard_of(sid, 2) == k for sid in manifest["students"])
        results = list((graded[name] / "students").glob("*/results.json"))
        assert len(results) == len(manifest["students"])
        assert {json.loads(p.read_text())["extra_data"]["shard"] for p in results} == {f"{k}/2"}
        owned += manifest["students"]
    assert sorted(owned) == sorted(_gradebook(graded["all"]))


def test_merged_shards_give_the_unsharded_gradebook_and_report_byte_for_byte(graded):
    merged, whole = graded["merged"], graded["all"]
    assert (merged / "gradebook.csv").read_bytes() == (whole / "gradebook.csv").read_bytes()
    assert (merged / "report.html").read_bytes() == (whole / "report.html").read_bytes()
    assert sorted(p.relative_to(merged) for p in (merged / "students").rglob("*")) == \
        sorted(p.relative_to(whole) for p in (whole / "students").rglob("*"))


def test_a_refused_merge_writes_nothing_and_names_the_missing_shard(graded):
    out = graded["root"] / "refused"
    run = run_grader("merge", str(graded["s1"]), "--out", str(out))
    assert run.returncode == 2 and "shard 2/2 is missing" in run.stderr
    assert not out.exists() and not list(graded["root"].glob(".refused*"))
