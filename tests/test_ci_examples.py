"""The GitHub Actions examples: which side holds the secret, pinned installs, and
the student workflow's own commands run on a real kit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from tests.conftest import ROOT, run_cli

EXAMPLES = ROOT / "ci-examples"


def _steps(name: str) -> list[dict]:
    workflow = yaml.safe_load((EXAMPLES / name).read_text())
    (job,) = workflow["jobs"].values()
    return job["steps"]


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


def test_the_student_workflow_runs_on_a_real_kit(tmp_path):
    """The kit folder and commands the workflow names exist and grade (pip install
    skipped: this test's interpreter already has the pinned versions)."""
    kit_zip = tmp_path / "kit.zip"
    assert run_cli("handout", "--out", str(kit_zip)).code == 0
    repo = tmp_path / "repo"
    with zipfile.ZipFile(kit_zip) as archive:
        archive.extractall(repo)
    steps = _steps("student-practice.yml")
    grade = next(s for s in steps if "grader grade" in s.get("run", ""))
    kit = repo / grade["working-directory"]
    assert (kit / "requirements.txt").is_file() and (kit / "batchnorm.py").is_file()
    shutil.copy(ROOT / "solution" / "batchnorm.py", kit / "batchnorm.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    run = subprocess.run(["bash", "-c", grade["run"].replace("python ", f"{sys.executable} ", 1)], cwd=kit, env=env,
                         capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    assert (repo / "results.json").is_file() and (repo / "junit.xml").is_file()
