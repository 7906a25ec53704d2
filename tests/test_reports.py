"""What the class report, the gradebook and the feedback page tell an instructor."""

from __future__ import annotations

import csv
import io

from grader.report.html import class_report, feedback_page
from grader.report.table import gradebook_csv
from tests.conftest import run_cli


def _data(score: float, suite: str = "hidden", tags: tuple[str, ...] = (), problem: str = "") -> dict:
    return {"score": score, "max_score": 100.0, "output": "", "tests": [],
            "extra_data": {"suite": suite, "tags": list(tags), "problem": problem,
                           "status": "error" if problem else "partial"}}


def test_a_zero_without_pitfalls_shows_its_reason_in_report_and_gradebook():
    graded = {"ann": _data(90, tags=("init_updates_stats",)),
              "ben": _data(0, problem="importing the submission raised SyntaxError: invalid syntax")}
    report = class_report(graded, {})
    assert "importing the submission raised SyntaxError" in report
    rows = {r["student_id"]: r for r in csv.DictReader(io.StringIO(gradebook_csv(graded)))}
    assert rows["ben"]["reason"].startswith("importing the submission raised SyntaxError")
    assert rows["ann"]["reason"] == "" and rows["ann"]["pitfalls"] == "init_updates_stats"


def test_practice_suite_grades_are_flagged_as_not_final():
    practice = {"ann": _data(100, suite="practice"), "ben": _data(80, suite="hidden")}
    report = class_report(practice, {})
    assert "1 of 2 graded on the practice suite" in report and "not final" in report
    assert "practice suite" not in class_report({"ben": _data(80)}, {})
    rows = list(csv.DictReader(io.StringIO(gradebook_csv(practice))))
    assert {r["suite"] for r in rows} == {"practice", "hidden"}


def test_feedback_table_headers_all_have_names():
    page = feedback_page("ann", {**_data(90), "tests": [{"name": "x", "status": "passed", "tags": [], "output": "",
                                                          "score": 1.0, "max_score": 1.0}]})
    assert "<th></th>" not in page and "<th>result</th>" in page


def test_an_unloadable_submission_gives_its_reason_once(tmp_path):
    broken = tmp_path / "batchnorm.py"
    broken.write_text("def broken(:\n")
    run = run_cli("grade", str(broken), results=tmp_path / "r.json")
    assert run.code == 0 and run.results is not None
    outputs = [t["output"] for t in run.results["tests"]]
    assert sum("SyntaxError" in o for o in outputs) == 1
    assert all("see the first check" in o for o in outputs[1:])
    assert run.results["extra_data"]["problem"].startswith("importing the submission raised SyntaxError")
