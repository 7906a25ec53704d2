"""Forgiving uploads: any file name, folders inside zips, Jupyter notebooks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from grader.submission import MAX_DEPTH, NotFound, find, notebook_source
from tests.conftest import ROOT, TEST_SECRET, run_cli

REFERENCE = (ROOT / "solution" / "batchnorm.py").read_text()
NOTES = "# just notes\nx = 1\n"


def _notebook(cells: list[tuple[str, str]]) -> str:
    """A notebook as Jupyter saves it (nbformat 4), sources split into lines."""
    return json.dumps({
        "nbformat": 4, "nbformat_minor": 5, "metadata": {},
        "cells": [{"cell_type": kind, "metadata": {}, "source": text.splitlines(keepends=True),
                   **({"outputs": [], "execution_count": None} if kind == "code" else {})}
                  for kind, text in cells],
    })


def _student_notebook() -> str:
    return _notebook([
        ("markdown", "# BatchNorm homework\n"),
        ("code", "%pip install flax\n!nvidia-smi\n"),
        ("code", REFERENCE),
        ("code", "%%time\ny = init_and_apply(0.0, __import__('numpy').ones((4, 3), 'float32'), 0.0)\n"),
        ("code", "%%bash\necho not python\n"),
    ])


@pytest.mark.parametrize("relative", ["BatchNorm.py", "batchnorm (1).py", "hw3/batchnorm.py", "a/b/c/mine.py",
                                      "hw3/BatchNorm.ipynb"])
def test_the_one_file_that_defines_the_contract_is_found(tmp_path, relative):
    target = tmp_path / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_student_notebook() if relative.endswith(".ipynb") else REFERENCE)
    (tmp_path / "helpers.py").write_text(NOTES)
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "._batchnorm.py").write_text(REFERENCE)  # macOS zip debris: never a candidate
    assert find(tmp_path) == target


def test_batchnorm_py_at_the_top_wins(tmp_path):
    (tmp_path / "batchnorm.py").write_text(REFERENCE)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "attempt.py").write_text(REFERENCE)
    assert find(tmp_path) == tmp_path / "batchnorm.py"


def test_several_candidates_are_refused_by_name(tmp_path):
    (tmp_path / "v1.py").write_text(REFERENCE)
    (tmp_path / "v2.ipynb").write_text(_student_notebook())
    with pytest.raises(NotFound, match=r"several files .*v1\.py, v2\.ipynb"):
        find(tmp_path)


def test_no_candidate_says_what_was_found(tmp_path):
    (tmp_path / "notes.py").write_text(NOTES)
    with pytest.raises(NotFound, match=r"found notes\.py, none of which defines them"):
        find(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NotFound, match="found no .py or .ipynb file"):
        find(empty)


def test_links_and_deep_folders_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "batchnorm_elsewhere.py").write_text(REFERENCE)
    upload = tmp_path / "upload"
    upload.mkdir()
    os.symlink(outside, upload / "linked")
    os.symlink(outside / "batchnorm_elsewhere.py", upload / "linked.py")
    deep = upload.joinpath(*[f"d{i}" for i in range(MAX_DEPTH + 1)])
    deep.mkdir(parents=True)
    (deep / "too_deep.py").write_text(REFERENCE)
    with pytest.raises(NotFound):
        find(upload)


def test_notebook_code_cells_become_the_source():
    source, note = notebook_source(_student_notebook().encode(), "hw.ipynb")
    text = source.decode()
    assert "class MyBatchNorm" in text and "y = init_and_apply" in text  # %%time's body is Python
    assert "pip install" not in text and "nvidia-smi" not in text and "echo not python" not in text
    assert "%%time" not in text
    compile(text, "hw.ipynb", "exec")
    assert note == "Graded the 4 code cells of hw.ipynb; 5 IPython magic or shell lines (% or !) left out."


@pytest.mark.parametrize("data", [b"not json", b"\xff\xfe", b"[1, 2]", b'{"cells": 3}', b"[" * 100000])
def test_a_broken_notebook_is_a_message(data):
    with pytest.raises(ValueError, match="notebook"):
        notebook_source(data, "hw.ipynb")


@pytest.mark.slow
def test_a_notebook_is_graded_like_the_same_code_in_a_py_file(tmp_path):
    notebook = tmp_path / "upload" / "hw3" / "BatchNorm.ipynb"
    notebook.parent.mkdir(parents=True)
    notebook.write_text(_student_notebook())
    results = tmp_path / "results.json"
    run = run_cli("grade", str(tmp_path / "upload"), env={"GRADER_SECRET": TEST_SECRET}, results=results)
    assert run.code == 0, run.stderr
    assert run.results is not None and run.results["score"] == 100
    assert "Graded the 4 code cells of BatchNorm.ipynb" in run.stdout


def test_an_upload_without_a_file_to_grade_still_gets_a_result(tmp_path):
    upload = tmp_path / "upload"
    upload.mkdir()
    (upload / "notes.py").write_text(NOTES)
    results = tmp_path / "results.json"
    run = run_cli("grade", str(upload), results=results)
    assert run.code == 2 and "none of which defines them" in run.stderr
    assert run.results is not None and run.results["score"] == 0
    assert "notes.py, none of which defines them" in run.results["output"]


@pytest.mark.slow
def test_batch_finds_each_students_file_and_grades_an_empty_upload_zero(tmp_path):
    folder = tmp_path / "class"
    (folder / "ada" / "hw3").mkdir(parents=True)
    (folder / "ada" / "hw3" / "BatchNorm.ipynb").write_text(_student_notebook())
    (folder / "bob").mkdir()
    (folder / "bob" / "notes.py").write_text(NOTES)
    (folder / "cy.ipynb").write_text(_student_notebook())
    out = tmp_path / "out"
    run = run_cli("batch", str(folder), "--out", str(out), "--jobs", "2", env={"GRADER_SECRET": TEST_SECRET},
                  timeout=300)
    assert run.code == 0, run.stderr
    scores = {sid: json.loads((out / "students" / sid / "results.json").read_text()) for sid in ("ada", "bob", "cy")}
    assert scores["ada"]["score"] == 100 and scores["cy"]["score"] == 100
    assert scores["bob"]["score"] == 0 and "none of which defines them" in scores["bob"]["output"]
    assert "internal error" not in run.stderr


# --- notebooks as students write them ------------------------------------------------------

def test_a_future_import_in_a_later_cell_is_moved_to_the_top_and_lines_map_to_cells():
    from grader.submission import read_notebook

    notebook = read_notebook(_notebook([("code", "import numpy as np\nx = 1\n"), ("markdown", "# the module\n"),
                                        ("code", REFERENCE)]).encode(), "hw.ipynb")
    text = notebook.source.decode()
    compile(text, "hw.ipynb", "exec")  # Python alone refused it before: a __future__ line after code
    assert text.startswith("from __future__ import annotations\n")
    assert notebook.note.endswith("1 from __future__ line (cell 3) moved to the top.")
    lines = text.splitlines()
    where = {notebook.where(n): lines[n - 1] for n in range(1, len(lines) + 1)}
    assert where["cell 1, line 2"] == "x = 1"
    assert where["cell 3, line 1"] == REFERENCE.splitlines()[0]
    assert notebook.where(len(lines) + 5) is None


def test_a_writefile_cell_is_graded_as_the_file_it_writes():
    from grader.submission import read_notebook

    notebook = read_notebook(_notebook([("code", "%%writefile batchnorm.py\n# first try\n"),
                                        ("code", "%%writefile batchnorm.py\n" + REFERENCE),
                                        ("code", "!./check.sh\nprint('checked')\n")]).encode(), "hw.ipynb")
    assert notebook.source.decode().strip() == REFERENCE.strip()  # the last write wins, as in Jupyter
    assert notebook.note == ("Graded batchnorm.py as %%writefile in cell 2 of hw.ipynb writes it "
                             "(the other cells are not the submission).")
    assert notebook.where(1) == "cell 2, line 2"  # the magic is line 1 of its cell


def test_colab_only_lines_are_left_out_with_a_note():
    from grader.submission import read_notebook

    colab = ("from google.colab import drive\ndrive.mount('/content/drive')\n"
             "try:\n    import google.colab\nexcept ImportError:\n    pass\n")
    notebook = read_notebook(_notebook([("code", colab), ("code", REFERENCE)]).encode(), "hw.ipynb")
    text = notebook.source.decode()
    compile(text, "hw.ipynb", "exec")  # a block that held only a Colab line still parses
    assert "google.colab" not in text.replace("# left out: Colab only", "") and "drive.mount" not in text
    assert "3 Colab-only lines (google.colab, drive.mount) left out" in notebook.note


def test_an_error_in_a_notebook_names_its_cell(tmp_path):
    notebook = tmp_path / "hw.ipynb"
    notebook.write_text(_notebook([("code", "import numpy as np\n"), ("markdown", "hi\n"), ("code", "x = 1\ny = (2,\n")]))
    results = tmp_path / "results.json"
    run = run_cli("grade", str(notebook), "--quiet", results=results)
    assert run.code == 0, run.stderr
    assert "(hw.ipynb, cell 3, line 2)" in run.results["extra_data"]["reason"], run.results["extra_data"]


def test_errors_name_the_file_as_uploaded():
    from grader.grade import as_uploaded

    message = "SyntaxError: '(' was never closed (batchnorm.py, line 4)"
    assert as_uploaded(message, "dave_broken.py") == "SyntaxError: '(' was never closed (dave_broken.py, line 4)"
    assert as_uploaded(message, "batchnorm.py") == message
    cells = {4: "cell 3, line 2", 9: "cell 5, line 1"}.get
    assert as_uploaded(message + "; raised (line 9)", "hw.ipynb", cells) == (
        "SyntaxError: '(' was never closed (hw.ipynb, cell 3, line 2); raised (cell 5, line 1)")
def test_a_notebook_too_large_to_parse_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    """The grading process parses a notebook's JSON itself: a 60 MiB one (1.6 GB to
    parse) is refused with a way out, and its JSON is never parsed."""
    from grader import submission
    from grader.grade import grade

    notebook = tmp_path / "hw.ipynb"
    notebook.write_text(_student_notebook())
    with open(notebook, "r+b") as handle:
        handle.truncate(60 << 20)  # sparse: 60 MiB to read, nothing on disk

    def parse(*args, **kwargs):
        raise AssertionError("the notebook was parsed")

    monkeypatch.setattr(submission.json, "loads", parse)
    result = grade(notebook)
    assert result.score == 0
    assert "hw.ipynb is larger than 8 MiB" in result.problem and "clear its outputs" in result.problem
