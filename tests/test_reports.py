"""What the class report, the gradebook and the feedback page tell an instructor."""

from __future__ import annotations

import csv
import io
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from grader.exercises import Exercise
from grader.report.html import class_report, escape, feedback_page
from grader.report.table import gradebook_csv
from tests.conftest import TEST_SECRET, WRONG_EXAMPLE, exercise_args, run_cli

CLASS = ("ann", "ben", "cat", "dan", "eve")


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, exercise: Exercise) -> Path:
    """A small class of the exercise, graded by one `batch` run on the hidden suite: its reference (ann),
    its stub (ben), its wrong example (cat), a folder with nothing to grade (dan), a file that does not parse
    (eve). Returns the --out folder."""
    folder = tmp_path_factory.mktemp("class")
    shutil.copy(exercise.reference, folder / "ann.py")
    shutil.copy(exercise.stub, folder / "ben.py")
    shutil.copy(WRONG_EXAMPLE[exercise.name], folder / "cat.py")
    (folder / "dan").mkdir()
    (folder / "dan" / "notes.txt").write_text("my notes\n")
    (folder / "eve.py").write_text("def broken(:\n")
    out = tmp_path_factory.mktemp("graded")
    run = run_cli("batch", str(folder), "--out", str(out), "--jobs", "2", *exercise_args(exercise),
                  env={"GRADER_SECRET": TEST_SECRET}, timeout=600)
    assert run.code == 0, run.stderr
    return out


def test_a_batch_gives_gradebook_report_and_feedback_in_its_exercise(batch: Path, exercise: Exercise):
    results = {sid: json.loads((batch / "students" / sid / "results.json").read_text()) for sid in CLASS}
    for data in results.values():
        assert data["extra_data"]["exercise"] == exercise.name and data["max_score"] == exercise.max_score
    rows = {r["student_id"]: r for r in csv.DictReader(io.StringIO((batch / "gradebook.csv").read_text()))}
    assert set(rows) == set(CLASS)
    for sid, row in rows.items():  # the gradebook says what each results.json says
        data = results[sid]
        assert (row["score"], row["max_score"]) == (f"{data['score']:g}", f"{exercise.max_score:g}")
        assert row["pitfalls"] == ";".join(data["extra_data"]["tags"]) and row["suite"] == "hidden"
    assert (rows["ann"]["score"], rows["ann"]["status"], rows["ann"]["pitfalls"]) == ("100", "complete", "")
    assert rows["ben"]["score"] == "0"
    # Every zero says why: the stub never ran (not "partial" with a blank reason), the syntax error
    # names the file as uploaded (the worker's own copy is batchnorm.py).
    assert rows["ben"]["status"] == "not graded" and "NotImplementedError" in rows["ben"]["reason"], rows["ben"]
    assert rows["eve"]["status"] == "error" and "(eve.py, line 1)" in rows["eve"]["reason"], rows["eve"]
    assert "batchnorm.py" not in rows["eve"]["reason"]
    ben_page = (batch / "students" / "ben" / "feedback.html").read_text()
    assert "never ran: NotImplementedError" in ben_page and "(not graded)" in ben_page
    # Advice that passed only because nothing ran is not shown as passed.
    assert [t["name"] for t in results["ben"]["tests"] if t["status"] == "passed"] == []
    # The class in one JUnit file: a suite per student, named by id; the stub's has no passed testcase.
    suites = {suite.get("name"): suite for suite in ET.parse(batch / "junit.xml").getroot()}
    assert sorted(suites) == sorted(CLASS)
    assert all(len(case) == 1 for case in suites["ben"].findall("testcase")), "a check of the stub shows as passed"
    tags = results["cat"]["extra_data"]["tags"]
    assert tags and set(tags) <= set(exercise.pitfalls) and 0 < results["cat"]["score"] < exercise.max_score
    assert rows["dan"]["status"] == "error" and rows["dan"]["reason"].startswith("nothing was graded")
    assert rows["eve"]["reason"].startswith("importing the submission raised SyntaxError")
    report = (batch / "report.html").read_text()
    assert f"{len(CLASS)} submissions graded" in report
    assert "<strong>not graded</strong>: MyBatchNorm never ran: NotImplementedError" in report
    for tag in tags:  # what the class missed, in the exercise's own words: 1 student of 5
        assert f"20% {escape(exercise.pitfalls[tag].title)}" in report, tag
    for sid in CLASS:
        assert f'href="students/{sid}/feedback.html"' in report and (batch / "students" / sid / "feedback.html").is_file()


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


def test_an_unloadable_submission_gives_its_reason_once(batch: Path, exercise: Exercise):
    data = json.loads((batch / "students" / "eve" / "results.json").read_text())
    outputs = [t["output"] for t in data["tests"]]
    assert len(outputs) == len(exercise.checks)
    assert sum("SyntaxError" in o for o in outputs) == 1
    assert all("see the first check" in o for o in outputs[1:])
    assert data["extra_data"]["problem"].startswith("importing the submission raised SyntaxError")
