"""What a batch decides before grading anyone, unit by unit: discovery that never
stops for one student, fingerprints over the whole file, uploads bounded before
they are read, and names printed clean."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from grader import submission
from grader.batch import Student, discover
from grader.submission import MAX_CANDIDATES, NotFound, find

REFERENCE = (Path(__file__).resolve().parents[1] / "solution" / "batchnorm.py").read_text()


def test_one_unreadable_or_doubled_student_is_a_reason_not_a_stopped_class(tmp_path):
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "batchnorm.py").write_text(REFERENCE)
    (tmp_path / "ann.py").write_text(REFERENCE)  # the same id twice
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "batchnorm.py").mkdir()  # a folder where the file should be
    (tmp_path / "cy").mkdir()
    (tmp_path / "cy" / "batchnorm.py").symlink_to(tmp_path / "gone.py")
    students = {s.id: s for s in discover(tmp_path).students}
    assert sorted(students) == ["ann", "bob", "cy"]
    assert "two submissions for this student (ann, ann.py)" in students["ann"].problem
    for sid in ("bob", "cy"):  # left to the grade, which refuses it with a sentence; the fingerprint holds
        assert len(students[sid].fingerprint("suite")) == 24


def test_the_fingerprint_sees_a_change_past_the_first_4_mib(tmp_path):
    path = tmp_path / "big.py"
    path.write_bytes(b"#" * (5 << 20))
    before = Student("ann", path).fingerprint("suite")
    with open(path, "r+b") as handle:
        handle.seek(4_600_000)
        handle.write(b"x")
    assert Student("ann", path).fingerprint("suite") != before
    with open(path, "ab") as handle:
        handle.write(b"\n")
    assert len({before, Student("ann", path).fingerprint("suite")}) == 2


def _sparse(folder: Path, count: int, size: str = "4M") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = [str(folder / f"f{i:04d}.py") for i in range(count)]
    subprocess.run(["truncate", "-s", size, *names], check=True)


def test_hundreds_of_sparse_files_are_refused_before_any_is_read(tmp_path, monkeypatch):
    """Each file costs its apparent size: 300 sparse 4 MiB files pass the total at the 17th, unread."""
    _sparse(tmp_path / "hw", 300)
    opened: list[str] = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    with pytest.raises(NotFound, match="MiB of .py and .ipynb files, more than a BatchNorm exercise needs"):
        find(tmp_path)
    assert opened == []


def test_too_many_candidates_or_entries_are_refused_by_count(tmp_path, monkeypatch):
    _sparse(tmp_path / "few", MAX_CANDIDATES + 1, size="10")
    with pytest.raises(NotFound, match=f"more than {MAX_CANDIDATES} .py and .ipynb files"):
        find(tmp_path / "few")
    monkeypatch.setattr(submission, "MAX_ENTRIES", 40)  # the same walk, a smaller bound
    many = tmp_path / "many"
    (many / "deep").mkdir(parents=True)
    for i in range(41):
        (many / "deep" / f"n{i}.txt").touch()
    with pytest.raises(NotFound, match="more than 40 files and folders"):
        find(many)


def test_a_file_past_the_size_of_a_batchnorm_is_listed_never_read(tmp_path):
    _sparse(tmp_path, 1, size="5M")
    (tmp_path / "mine.py").write_text(REFERENCE)
    assert find(tmp_path) == tmp_path / "mine.py"


@pytest.mark.parametrize("args", [
    ["grade", "\x1b]0;owned\x07\x1b[2J.py"],
    ["batch", "\x1b]52;c;ZXZpbA==\x07class", "--out", "x"],
    ["grade", "x.py", "\x1b[2Jextra"],  # argparse quotes unrecognized arguments raw
    ["selftest", "--known-wrong", "\x1b[2Jnowhere"],
])
def test_names_the_grader_prints_are_cleaned(args, capsys):
    from grader.cli import main

    try:
        code = main(args)
    except SystemExit as stopped:
        code = stopped.code
    assert code == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "grader" in err


def test_a_student_whose_files_cannot_be_written_is_still_graded_and_named(tmp_path, monkeypatch):
    from grader import batch

    monkeypatch.setattr(batch, "_OPTIONS", batch.Options(None, 10.0, None, "process", []))
    (tmp_path / "students").write_text("a file where the students' folder goes\n")
    job = batch._Job(Student("ann", tmp_path / "ann", problem="nothing was graded: empty"), "f" * 24,
                     tmp_path / "students" / "ann", "1/2")
    student_id, data, warning = batch._grade_one(job)
    assert student_id == "ann" and data["score"] == 0 and data["extra_data"]["shard"] == "1/2"
    assert warning.startswith("could not write the results of ann")


def test_the_selftest_prints_a_known_wrong_folder_name_clean(tmp_path, capsys):
    from grader.cli import main

    folder = tmp_path / "\x1b]0;owned\x07wrong"
    folder.mkdir()
    assert main(["selftest", "--known-wrong", str(folder)]) == 1
    printed = capsys.readouterr()
    assert "holds no .py" in " ".join(printed.out.split()) and "\x1b]0" not in printed.out + printed.err
