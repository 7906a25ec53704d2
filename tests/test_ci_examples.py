"""The GitHub Actions examples: which side holds the secret, pinned installs, and
the student workflow's own commands run on a real kit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from grader.exercises import EXERCISES, Exercise
from tests.conftest import ROOT, TEST_SECRET, exercise_args, run_cli

EXAMPLES = ROOT / "ci-examples"
WORKFLOWS = ("student-practice.yml", "course-grade-class.yml")


def _steps(name: str) -> list[dict]:
    workflow = yaml.safe_load((EXAMPLES / name).read_text())
    (job,) = workflow["jobs"].values()
    return job["steps"]


def _env(name: str, exercise: Exercise) -> dict[str, str]:
    """The environment a workflow's steps see, with its exercise set as a course would set it, and the
    test's interpreter first on PATH (it has the pinned packages: no pip install here)."""
    workflow = yaml.safe_load((EXAMPLES / name).read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
    env.update({k: str(v) for k, v in workflow.get("env", {}).items()}, GRADER_EXERCISE=exercise.name)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.parametrize("name", WORKFLOWS)
def test_each_workflow_names_its_exercise_once_in_one_variable(name: str):
    workflow = yaml.safe_load((EXAMPLES / name).read_text())
    assert workflow["env"]["GRADER_EXERCISE"] in EXERCISES
    (job,) = workflow["jobs"].values()
    for step in job["steps"]:
        text = str(step.get("run", "")) + str(step.get("env", ""))
        assert "--exercise" not in text and not any(e in text for e in EXERCISES), step


def test_the_student_workflow_holds_no_secret_and_installs_the_kits_pins():
    code = [line for line in (EXAMPLES / "student-practice.yml").read_text().splitlines()
            if not line.lstrip().startswith("#")]
    assert not any("secrets." in line or "GRADER_SECRET" in line for line in code)
    runs = [step.get("run", "") for step in _steps("student-practice.yml")]
    assert any("pip install -r requirements.txt" in run for run in runs)


def test_the_course_workflow_installs_with_constraints_and_grades_the_class_with_the_secret():
    steps = _steps("course-grade-class.yml")
    install = next(s["run"] for s in steps if "pip install" in s.get("run", ""))
    assert "-c constraints.txt" in install and (ROOT / "constraints.txt").is_file()
    grading = next(s for s in steps if "grader batch" in s.get("run", ""))
    assert grading["env"]["GRADER_SECRET"] == "${{ secrets.GRADER_SECRET }}"
    secret_users = [s for s in steps if "GRADER_SECRET" in str(s.get("env", {}))]
    assert secret_users == [grading]  # only the grading step sees it


def test_the_student_workflow_runs_on_a_real_kit(tmp_path, exercise: Exercise):
    """The kit folder and commands the workflow names exist and grade the kit's exercise, set in the
    workflow's one variable (pip install skipped: this test's interpreter already has the pinned versions)."""
    kit_zip = tmp_path / "kit.zip"
    assert run_cli("handout", "--out", str(kit_zip), *exercise_args(exercise)).code == 0
    repo = tmp_path / "repo"
    with zipfile.ZipFile(kit_zip) as archive:
        archive.extractall(repo)
    steps = _steps("student-practice.yml")
    grade = next(s for s in steps if "grader grade" in s.get("run", ""))
    kit = repo / grade["working-directory"]
    assert (kit / "requirements.txt").is_file() and (kit / "batchnorm.py").is_file()
    shutil.copy(exercise.reference, kit / "batchnorm.py")
    run = subprocess.run(["bash", "-c", grade["run"].replace("python ", f"{sys.executable} ", 1)], cwd=kit,
                         env=_env("student-practice.yml", exercise), capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    assert (repo / "results.json").is_file() and (repo / "junit.xml").is_file()
    results = json.loads((repo / "results.json").read_text())
    assert results["extra_data"]["exercise"] == exercise.name and results["score"] == results["max_score"]


def test_the_course_workflow_grades_its_exercise_and_names_the_other(tmp_path, exercise: Exercise):
    """The workflow's batch command, run as written with its exercise set in its one variable: a student
    who handed in the other exercise's reference is graded in the workflow's exercise, and the reason of
    the zero names the exercise the code fits. (The exercise's own reference is graded by the student
    workflow's test above.)"""
    (other,) = [e for e in EXERCISES.values() if e.name != exercise.name]
    (tmp_path / "submissions" / "bob").mkdir(parents=True)
    shutil.copy(other.reference, tmp_path / "submissions" / "bob" / "batchnorm.py")
    step = next(s for s in _steps("course-grade-class.yml") if "grader batch" in s.get("run", ""))
    env = {**_env("course-grade-class.yml", exercise), "GRADER_SECRET": TEST_SECRET}
    run = subprocess.run(["bash", "-c", step["run"].replace("python ", f"{sys.executable} ", 1)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    bob = json.loads((tmp_path / "graded" / "students" / "bob" / "results.json").read_text())
    assert bob["extra_data"]["exercise"] == exercise.name and bob["extra_data"]["suite"] == "hidden"
    assert bob["score"] == 0 and bob["extra_data"]["status"] == "error"
    assert bob["extra_data"]["reason"].startswith(f"this looks like the {other.short} exercise")
    assert f"grade with --exercise {other.name}" in bob["extra_data"]["reason"]
    assert (tmp_path / "graded" / "gradebook.csv").is_file() and (tmp_path / "graded" / "junit.xml").is_file()
