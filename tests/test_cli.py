"""The command line: exit codes, options, output formats, the practice suite."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import CORRECT, ROOT, TEST_SECRET, WRONG, run_cli

REFERENCE = ROOT / "solution" / "batchnorm.py"
NO_GUARD = next(p for p in WRONG if p.stem == "init_no_guard")


def test_missing_path_is_a_usage_error_with_one_line(tmp_path):
    run = run_cli("grade", str(tmp_path / "nope.py"))
    assert run.code == 2
    assert run.stderr.strip().count("\n") == 0 and "does not exist" in run.stderr
    assert "Traceback" not in run.stderr


def test_folder_without_a_submission_is_a_usage_error(tmp_path):
    run = run_cli("grade", str(tmp_path))
    assert run.code == 2 and "no file defines MyBatchNorm or init_and_apply" in run.stderr


def test_unreadable_secret_file_is_a_usage_error(tmp_path):
    run = run_cli("grade", str(REFERENCE), "--secret-file", str(tmp_path / "missing"))
    assert run.code == 2 and "cannot read secret file" in run.stderr
    empty = tmp_path / "empty"
    empty.write_text("\n")
    run = run_cli("grade", str(REFERENCE), "--secret-file", str(empty))
    assert run.code == 2 and "is empty" in run.stderr


@pytest.mark.parametrize("args", [["--timeout", "0"], ["--timeout", "soon"], ["--fail-under", "120"], ["--memory-mb", "-1"]])
def test_bad_option_values_are_usage_errors(args):
    run = run_cli("grade", str(REFERENCE), *args)
    assert run.code == 2 and "Traceback" not in run.stderr


def test_folder_holding_batchnorm_py_is_graded(tmp_path):
    shutil.copy(CORRECT[0], tmp_path / "batchnorm.py")
    run = run_cli("grade", str(tmp_path), "--quiet", results=tmp_path / "r.json")
    assert run.code == 0 and run.results["score"] == 100


def test_without_a_secret_the_practice_suite_runs_and_says_so(tmp_path):
    run = run_cli("grade", str(REFERENCE), results=tmp_path / "r.json")
    assert run.code == 0
    assert run.results["extra_data"]["suite"] == "practice"
    assert "Practice suite" in run.stdout
    assert "Score: 100/100" in run.stdout


def test_secret_file_selects_the_hidden_suite_and_never_leaks(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("a-very-distinctive-secret-value\n")
    run = run_cli("grade", str(NO_GUARD), "--secret-file", str(secret), results=tmp_path / "r.json")
    assert run.results["extra_data"]["suite"] == "hidden"
    everything = run.stdout + run.stderr + (tmp_path / "r.json").read_text()
    assert "a-very-distinctive-secret-value" not in everything


def test_fail_under_exits_1_below_and_0_at_or_above(tmp_path):
    env = {"GRADER_SECRET": TEST_SECRET}
    # The missing guard costs its own check, 10 points: the score is exactly 90.
    below = run_cli("grade", str(NO_GUARD), "--quiet", "--fail-under", "95", env=env)
    assert below.code == 1
    at = run_cli("grade", str(NO_GUARD), "--quiet", "--fail-under", "90", env=env)
    assert at.code == 0


def test_results_json_follows_gradescope_format(grade_file):
    data = grade_file(NO_GUARD).results
    assert isinstance(data["score"], float) and data["max_score"] == 100.0
    assert isinstance(data["execution_time"], float)
    assert data["visibility"] == "visible" and data["stdout_visibility"] in ("visible", "hidden")
    assert sum(t["max_score"] for t in data["tests"]) == 100.0
    assert sum(t["score"] for t in data["tests"]) == data["score"]
    for test in data["tests"]:
        assert set(test) == {"name", "score", "max_score", "status", "output", "tags", "visibility", "output_format",
                             "name_format"}
        assert test["output_format"] == test["name_format"] == "text"  # never Gradescope's HTML default
        assert test["status"] in ("passed", "failed")
        assert test["tags"] == [] or test["status"] == "failed"
    guard = next(t for t in data["tests"] if "init_updates_stats" in t["tags"])
    assert "is_initializing" in guard["output"]


def test_results_never_show_hidden_values(grade_file):
    """Failure messages summarize (max error, where), never print arrays of inputs."""
    data = grade_file(next(p for p in WRONG if p.stem == "momentum_reversed")).results
    text = json.dumps(data)
    assert "[[" not in text and "array(" not in text


def test_untouched_stub_reports_not_implemented_in_the_terminal():
    run = run_cli("grade", str(ROOT / "exercise" / "batchnorm.py"))
    assert run.code == 0
    assert "not implemented yet" in run.stdout and "Score: 0/100" in run.stdout


def test_examples_command_prints_a_table_of_scores_and_diagnoses():
    run = run_cli("examples", "examples")
    assert run.code == 0, run.stderr
    assert "reference.py" in run.stdout and "100/100" in run.stdout
    assert "init_updates_stats" in run.stdout


def test_results_file_is_replaced_whole(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    run_cli("grade", str(REFERENCE), "--quiet", results=target)
    assert json.loads(target.read_text())["score"] == 100.0
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_submission_that_does_not_import_scores_zero_with_a_reason(tmp_path):
    broken = tmp_path / "batchnorm.py"
    broken.write_text("import flax.linen as nn\nclass MyBatchNorm(nn.Module:\n    pass\n")
    run = run_cli("grade", str(broken), "--quiet", results=tmp_path / "r.json")
    assert run.code == 0 and run.results["score"] == 0
    assert "SyntaxError" in run.results["output"]


def test_submission_missing_a_name_scores_zero_and_names_it(tmp_path):
    partial = tmp_path / "batchnorm.py"
    partial.write_text(Path(REFERENCE).read_text().split("def init_and_apply")[0])
    run = run_cli("grade", str(partial), "--quiet", results=tmp_path / "r.json")
    assert run.code == 0 and run.results["score"] == 0
    assert "init_and_apply" in run.results["output"]
