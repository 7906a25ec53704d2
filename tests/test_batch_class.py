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
import yaml

from tests.conftest import ROOT, TEST_SECRET

pytestmark = pytest.mark.slow
EXAMPLES = ROOT / "examples"
LARGE = ROOT / "ci-examples" / "large-courses"
JOSE_ESCAPED = "jos_-" + hashlib.sha256("josé".encode()).hexdigest()[:16]  # josé's folder name


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("GRADER_", "SLURM_", "JOB_COMPLETION", "CI_NODE"))}
    full["GRADER_SECRET"] = TEST_SECRET
    return {**full, **(extra or {})}


def run_grader(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True, env=_env(env),
                          cwd=ROOT, timeout=600, stdin=subprocess.DEVNULL)


def start(argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(env), cwd=cwd,
                            stdin=subprocess.DEVNULL)


def _class(folder: Path) -> Path:
    """Four bundled examples, plus students that used to stop a batch or overwrite
    each other: batchnorm.py a folder, a dangling link, ids naming the summaries,
    and an id spelled as another's escaped folder name."""
    folder.mkdir(parents=True)
    for name in ("reference", "init_no_guard", "stub", "momentum_reversed"):
        shutil.copy(EXAMPLES / f"{name}.py", folder / f"{name}.py")
    (folder / "folder_not_file" / "batchnorm.py").mkdir(parents=True)
    (folder / "dangling").mkdir()
    (folder / "dangling" / "batchnorm.py").symlink_to(folder / "nowhere.py")
    # The rest are refused before a worker starts (cheap): a folder with no candidate,
    # notebooks that are not JSON.
    (folder / "report.html").mkdir()
    (folder / "report.html" / "notes.txt").write_text("my notes\n")
    for stem in ("gradebook.csv", "josé", JOSE_ESCAPED):
        (folder / f"{stem}.ipynb").write_text("{not json")
    return folder


def _k8s_command() -> str:
    """The Indexed Job's container command (sh -c SCRIPT)."""
    (container,) = _manifest()["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["sh", "-c"]
    return container["command"][2]


def _manifest() -> dict:
    return yaml.safe_load((LARGE / "grade-indexed-job.yaml").read_text())


def _workflow() -> dict:
    return yaml.safe_load((LARGE / "grade-matrix.yml").read_text())


def _step(job: str, words: str) -> dict:
    return next(s for s in _workflow()["jobs"][job]["steps"] if words in s.get("run", ""))


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The class graded whole (``all``), and as 3 shards side by side, each by one engine
    example's own command run here with that engine's variables: shard 1/3 by the sbatch
    script (SLURM array 0-2), 2/3 by the Indexed Job's command (JOB_COMPLETION_INDEX=1),
    3/3 by the GitHub matrix step (shard 3 of 3); then merged by merge.sbatch."""
    root = tmp_path_factory.mktemp("sharding")
    folder = _class(root / "github" / "submissions")  # where the workflow's steps put it
    shards = root / "shards"
    secret = root / "secret.txt"
    secret.write_text(TEST_SECRET)
    python = sys.executable
    slurm = {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "2",
             "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_CPUS_PER_TASK": "1", "SLURM_SUBMIT_DIR": str(root),
             "PYTHON": python, "SUBMISSIONS": str(folder), "SHARDS_DIR": str(shards), "SECRET_FILE": str(secret)}
    k8s = (_k8s_command().replace("python ", f"{python} ", 1).replace("/data/submissions", str(folder))
           .replace("/data/shards", str(shards)).replace("/run/secrets/bn-grader/secret.txt", str(secret))
           .replace("--jobs 2", "--jobs 1"))
    github = (_step("grade", "grader batch")["run"].replace("python ", f"{python} ", 1)
              .replace("${{ matrix.shard }}", "3").replace("${{ strategy.job-total }}", "3")
              .replace("--jobs 2", "--jobs 1"))
    started = {
        "s1": start(["bash", str(LARGE / "grade-array.sbatch")], env=slurm),
        "s2": start(["sh", "-c", k8s], env={"JOB_COMPLETION_INDEX": "1", "SHARDS": "3"}),
        "s3": start(["bash", "-c", github], cwd=root / "github"),
    }
    runs = {"all": run_grader("batch", str(folder), "--out", str(root / "all"), "--jobs", "1")}
    for name, proc in started.items():
        stdout, stderr = proc.communicate(timeout=600)
        runs[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    for name, run in runs.items():
        assert run.returncode == 0, f"{name}: {run.stderr}"
        assert "Traceback" not in run.stderr
    shutil.move(root / "github" / "shard-3", shards / "shard-3")  # as the merge job downloads it
    merged = start(["bash", str(LARGE / "merge.sbatch")],
                   env={"SLURM_SUBMIT_DIR": str(root), "PYTHON": python, "SHARDS_DIR": str(shards),
                        "GRADED_DIR": str(root / "class-out")})
    stdout, stderr = merged.communicate(timeout=600)
    assert merged.returncode == 0, stderr
    return {"root": root, "all": root / "all", "s1": shards / "0", "s2": shards / "1", "s3": shards / "shard-3",
            "merged": root / "class-out"}


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
    run = run_grader("batch", str(graded["root"] / "github" / "submissions"), "--out", str(out), "--jobs", "1")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("(unchanged, kept)") == 10


def test_each_shard_grades_only_its_own_students_and_says_so(graded):
    from grader.shard import shard_of

    owned = []
    for k, name in ((1, "s1"), (2, "s2"), (3, "s3")):
        manifest = json.loads((graded[name] / "shard.json").read_text())
        assert manifest["shard"] == f"{k}/3" and manifest["complete"] and manifest["class"]["size"] == 10
        assert TEST_SECRET not in json.dumps(manifest)
        assert all(shard_of(sid, 3) == k for sid in manifest["students"])
        results = list((graded[name] / "students").glob("*/results.json"))
        assert len(results) == len(manifest["students"])
        assert {json.loads(p.read_text())["extra_data"]["shard"] for p in results} <= {f"{k}/3"}
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
    run = run_grader("merge", str(graded["s1"]), str(graded["s3"]), "--out", str(out))
    assert run.returncode == 2 and "shard 2/3 is missing" in run.stderr
    assert not out.exists() and not list(graded["root"].glob(".refused*"))


# --- the engine examples: what each engine needs, beyond the commands run above -----------

def test_the_indexed_job_is_indexed_unprivileged_and_states_its_minimum_isolation():
    manifest = _manifest()
    assert manifest["apiVersion"] == "batch/v1" and manifest["kind"] == "Job"
    spec = manifest["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] >= 2 and spec["parallelism"] >= 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure") and pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["privileged"] is False
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    command = _k8s_command()
    assert "$JOB_COMPLETION_INDEX" in command and "--min-isolation landlock" in command
    shards = next(e for e in container["env"] if e["name"] == "SHARDS")
    assert '--shards "$SHARDS"' in command and int(shards["value"]) == spec["completions"]
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts == {v["name"] for v in pod["volumes"]}


def test_the_image_is_built_from_the_repository_and_runs_unprivileged():
    lines = [line.strip() for line in (LARGE / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    assert any("-c constraints.txt" in line for line in lines)
    user = [line for line in lines if line.startswith("USER ")]
    assert user and user[-1] not in ("USER root", "USER 0")


def test_the_matrix_feeds_every_shard_and_the_merge_waits_for_them(tmp_path):
    workflow = _workflow()
    matrix = workflow["jobs"]["grade"]["strategy"]["matrix"]["shard"]
    assert matrix == list(range(1, len(matrix) + 1))
    grade = _step("grade", "grader batch")
    assert "--shard ${{ matrix.shard }}/${{ strategy.job-total }}" in grade["run"]
    assert grade["env"]["GRADER_SECRET"] == "${{ secrets.GRADER_SECRET }}"
    assert workflow["jobs"]["merge"]["needs"] == "grade"
    download = next(s for s in workflow["jobs"]["merge"]["steps"] if "download-artifact" in s.get("uses", ""))
    merge = _step("merge", "grader merge")["run"]
    assert download["with"]["pattern"] == "shard-*" and f"{download['with']['path']}/shard-*" in merge
    assert "GRADER_SECRET" not in str(workflow["jobs"]["merge"])  # merging needs no secret
