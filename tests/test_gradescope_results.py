"""results.json against Gradescope's autograder specification.

The spec's rules ("Output format", "Controlling Test Case Visibility", "Output
String Formatting" in https://gradescope-autograders.readthedocs.io/en/latest/specs/)
are written out in :func:`assert_follows_gradescope_spec`, which any test can
use on a results file. On top of the spec, this grader's own rule: every text
says how it is formatted, and it is plain text, because Gradescope's default
(``simple_format``) renders HTML and the texts quote what students print.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from grader.checks import CheckResult
from grader.exercises import Exercise
from grader.report.gradescope import results_json
from grader.results import GradeResult
from tests.conftest import TEST_SECRET, WRONG_EXAMPLE, exercise_args, run_cli

VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}
FORMATS = {"text", "html", "simple_format", "md", "ansi"}
STATUSES = {"passed", "failed"}
TOP_LEVEL = {"score": (int, float), "execution_time": (int, float), "output": str, "output_format": str,
             "test_output_format": str, "test_name_format": str, "visibility": str, "stdout_visibility": str,
             "extra_data": dict, "tests": list, "leaderboard": list}
PER_TEST = {"score": (int, float), "max_score": (int, float), "status": str, "name": str, "name_format": str,
            "number": str, "output": str, "output_format": str, "tags": list, "visibility": str, "extra_data": dict}
# Not in the spec, and ignored by Gradescope; this grader documents a top-level max_score in its README.
OURS = {"max_score": (int, float)}
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def assert_follows_gradescope_spec(data: dict[str, Any], *, plain_text: bool = True) -> None:
    """Gradescope's rules for results.json; with ``plain_text``, also this grader's: every text is "text"."""
    assert isinstance(data, dict)
    assert set(data) <= set(TOP_LEVEL) | set(OURS), set(data) - set(TOP_LEVEL) - set(OURS)
    for key, kind in {**TOP_LEVEL, **OURS}.items():
        if key in data:
            value = data[key]
            assert _number(value) if kind == (int, float) else isinstance(value, kind), (key, value)
    for key in ("visibility", "stdout_visibility"):
        assert data.get(key, "visible") in VISIBILITIES, (key, data.get(key))
    for key in ("output_format", "test_output_format", "test_name_format"):
        assert data.get(key, "simple_format") in FORMATS, (key, data.get(key))
    tests = data.get("tests", [])
    # "score": optional, but required if not on each test case.
    assert "score" in data or (tests and all("score" in t for t in tests)), "no score anywhere"
    for test in tests:
        assert isinstance(test, dict) and set(test) <= set(PER_TEST), set(test) - set(PER_TEST)
        for key, kind in PER_TEST.items():
            if key in test:
                value = test[key]
                assert _number(value) if kind == (int, float) else isinstance(value, kind), (key, value)
        assert test.get("status", "passed") in STATUSES, test.get("status")
        assert test.get("visibility", "visible") in VISIBILITIES
        for key in ("output_format", "name_format"):
            assert test.get(key, "simple_format") in FORMATS, (key, test.get(key))
        assert all(isinstance(tag, str) for tag in test.get("tags", []))
        if "max_score" in test and "score" in test:
            assert 0 <= test["score"] <= test["max_score"], test
    # The top-level score overrides the tests' total: where both exist they must agree.
    if "score" in data and tests and all("score" in t for t in tests):
        assert data["score"] == pytest.approx(sum(t["score"] for t in tests)), "score is not the sum of the tests"
        if "max_score" in data and all("max_score" in t for t in tests):
            assert data["max_score"] == pytest.approx(sum(t["max_score"] for t in tests))
    if plain_text:
        assert data.get("output_format") == "text" or "output" not in data, "student text rendered as HTML"
        if tests:
            assert data.get("test_output_format") == "text" and data.get("test_name_format") == "text"
        for test in tests:
            assert test.get("output_format") == "text" and test.get("name_format") == "text", test
        texts = [data.get("output", ""), *(t.get("output", "") for t in tests), *(t.get("name", "") for t in tests)]
        for text in texts:
            assert "\x1b" not in text and not CONTROL.search(text), ascii(text)


# --- what a student prints, through the CLI ---------------------------------------------

MARKUP = ["<N, D>", "<b>bold</b>", "<script>alert(1)</script>", "**not bold**", "&amp;", "<br>"]
PRINTS = f'''
print("shape is", {MARKUP[0]!r}, "then", {" ".join(MARKUP[1:])!r})
print("\\x1b[1;31mcoloured\\x1b[0m \\x1b]0;title\\x07 bell\\x07 nul\\x00 done")
'''


def test_results_from_a_noisy_submission_follow_the_spec(tmp_path: Path, exercise: Exercise):
    """A graded result: the exercise's reference, printing markup and escapes."""
    submission = tmp_path / "batchnorm.py"
    submission.write_text(exercise.reference.read_text() + PRINTS)
    run = run_cli("grade", str(submission), "--quiet", *exercise_args(exercise), env={"GRADER_SECRET": TEST_SECRET},
                  results=tmp_path / "r.json")
    assert run.code == 0, run.stderr
    data = run.results
    assert data is not None and data["score"] == data["max_score"] == exercise.max_score
    assert data["extra_data"]["exercise"] == exercise.name
    assert_follows_gradescope_spec(data)
    # Markup is shown as written (Gradescope escapes "text"), escapes are gone, the words stay.
    for piece in MARKUP:
        assert piece in data["output"], piece
    assert "coloured" in data["output"] and "title" not in data["output"]
    raw = (tmp_path / "r.json").read_text()
    assert "\\u001b" not in raw and "\\u0000" not in raw


def test_results_of_every_kind_follow_the_spec():
    """A failing check with tags, a skipped one, a passed one with a note: the file follows the spec."""
    checks = [CheckResult(id="variables", name="Variables <D,>", weight=8, status="failed", expected="<(D,)>",
                          observed="raised \x1b[31m<b>\x00", tags=("variable_shape",)),
              CheckResult(id="flow", name="flow", weight=10, status="skipped", observed="not checked: <x>"),
              CheckResult(id="eval_output", name="eval", weight=10, status="passed", notes=("a *note*",))]
    result = GradeResult(submission="s", score=10, max_score=28, checks=checks, suite="hidden", cases=3, shapes=1,
                         isolation="process", seconds=0.5, stdout="<i>\x1b[2J", problem="")
    assert_follows_gradescope_spec(results_json(result))


def test_results_of_a_wrong_and_an_unloadable_submission_follow_the_spec(tmp_path: Path, exercise: Exercise):
    """Failed results: the exercise's wrong example (its checks' failures, its pitfalls' words) and a file that
    does not even parse."""
    wrong = run_cli("grade", str(WRONG_EXAMPLE[exercise.name]), "--quiet", *exercise_args(exercise),
                    env={"GRADER_SECRET": TEST_SECRET}, results=tmp_path / "wrong.json")
    data = wrong.results
    assert wrong.code == 0 and data is not None, wrong.stderr
    assert 0 < data["score"] < data["max_score"] == exercise.max_score
    tags = data["extra_data"]["tags"]
    assert tags and set(tags) <= set(exercise.pitfalls)
    assert {t for test in data["tests"] if test["status"] == "failed" for t in test["tags"]} == set(tags)
    assert_follows_gradescope_spec(data)
    broken = tmp_path / "batchnorm.py"
    broken.write_text("import flax.linen as nn\nclass MyBatchNorm(nn.Module:\n    pass\n")
    run = run_cli("grade", str(broken), "--quiet", *exercise_args(exercise), results=tmp_path / "r.json")
    assert run.results is not None and run.results["score"] == 0
    assert len(run.results["tests"]) == len(exercise.checks) and run.results["extra_data"]["exercise"] == exercise.name
    assert_follows_gradescope_spec(run.results)


def test_run_autograders_fallbacks_follow_the_spec(tmp_path: Path, exercise: Exercise):
    """When the grader cannot even start, run_autograder writes the result itself; when the upload holds
    nothing to grade, the grader writes a zero that says why, for the bundle's exercise. Both follow the spec."""
    bundle = tmp_path / "autograder.zip"
    secret = tmp_path / "secret"
    secret.write_text("s\n")
    assert run_cli("gradescope", "--secret-file", str(secret), "--out", str(bundle), *exercise_args(exercise)).code == 0
    root = tmp_path / "autograder"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(root / "source")
    (root / "submission").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
    env.update(AUTOGRADER_ROOT=str(root), PYTHON="/bin/false")  # a grader that cannot run at all
    run = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    data = json.loads((root / "results" / "results.json").read_text())
    assert data["score"] == 0
    assert_follows_gradescope_spec(data)
    env["PYTHON"] = sys.executable  # the bundle's grader, on an upload without a file to grade
    run = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    data = json.loads((root / "results" / "results.json").read_text())
    assert data["score"] == 0 and "no file defines MyBatchNorm" in data["output"]
    assert data["max_score"] == exercise.max_score and data["extra_data"]["exercise"] == exercise.name
    assert_follows_gradescope_spec(data)


@pytest.mark.parametrize("bad", [
    {"visibility": "sometimes"},
    {"output_format": "rich"},
    {"score": "100"},
    {"score": 99.0},  # not the sum of the tests
    {"tests": [{"name": "x", "score": 1.0, "status": "ok"}]},
])
def test_the_spec_check_rejects_what_gradescope_would(bad: dict[str, Any]):
    data = {"score": 1.0, "output": "x", "output_format": "text", "test_output_format": "text",
            "test_name_format": "text",
            "tests": [{"name": "x", "score": 1.0, "max_score": 1.0, "status": "passed", "output_format": "text",
                       "name_format": "text"}]}
    assert_follows_gradescope_spec(data)
    with pytest.raises(AssertionError):
        assert_follows_gradescope_spec({**data, **bad})
