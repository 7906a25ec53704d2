"""Sharding a class and merging the shards, on synthetic result folders (no grading):
the partition, the engines' variables, and every merge that must be refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grader.batch import STUDENTS, Roster, Student, _write_student, student_folders, write_manifest
from grader.shard import Shard, ShardError, merge, resolve_shard, shard_of

ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)


@given(st.sets(ids, max_size=60), st.integers(1, 9), st.sets(ids, max_size=20))
def test_the_partition_is_complete_disjoint_and_does_not_move_when_the_roster_grows(roster, count, newcomers):
    owners = {sid: shard_of(sid, count) for sid in roster}
    assert all(1 <= k <= count for k in owners.values())
    shards = [{sid for sid in roster if Shard(k, count).owns(sid)} for k in range(1, count + 1)]
    assert sum(len(s) for s in shards) == len(roster) and set().union(*shards) == roster
    grown = {sid: shard_of(sid, count) for sid in sorted(roster | newcomers, reverse=True)}
    assert all(grown[sid] == owners[sid] for sid in roster)


def test_the_partition_is_the_documented_hash():
    """Stable across machines and Python versions (not Python's salted hash())."""
    assert [shard_of(sid, 4) for sid in ("ada", "bob", "josé")] == [shard_of(sid, 4) for sid in ("ada", "bob", "josé")]
    import hashlib

    assert shard_of("ada", 7) == int.from_bytes(hashlib.sha256(b"ada").digest()[:8], "big") % 7 + 1


@given(st.lists(ids, max_size=40, unique=True))
def test_student_folders_are_unique_even_ignoring_case(students):
    folders = student_folders(students)
    assert len({f.lower() for f in folders.values()}) == len(students)
    assert all("/" not in f and f not in ("", ".", "..") for f in folders.values())


@pytest.mark.parametrize(("given", "count", "env", "expected"), [
    ("2/4", None, {}, "2/4"),
    (None, None, {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "3",
                  "SLURM_ARRAY_TASK_COUNT": "4"}, "1/4"),
    (None, None, {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "4",
                  "SLURM_ARRAY_TASK_COUNT": "4"}, "4/4"),
    (None, 3, {"JOB_COMPLETION_INDEX": "2"}, "3/3"),
    (None, None, {"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "5"}, "2/5"),
    ("1/2", None, {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}, "1/2"),  # --shard wins
    (None, None, {}, None),
])
def test_the_shard_comes_from_the_flag_or_the_engine(given, count, env, expected):
    shard = resolve_shard(given, count, env)
    assert (shard.label if shard else None) == expected


@pytest.mark.parametrize(("given", "count", "env", "message"), [
    ("5/4", None, {}, "1 <= K <= N"),
    ("two", None, {}, "expected K/N"),
    ("1/4", 3, {}, "disagree"),
    (None, None, {"JOB_COMPLETION_INDEX": "0"}, "--shards N"),
    (None, 4, {}, "needs this run's index"),
    (None, None, {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "6",
                  "SLURM_ARRAY_TASK_STEP": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, "consecutive"),
])
def test_a_shard_that_cannot_be_chosen_says_why(given, count, env, message):
    with pytest.raises(ShardError, match=message):
        resolve_shard(given, count, env)


# --- merge, on folders shaped as batch writes them ----------------------------------------

CLASS = [f"s{i:03d}" for i in range(16)] + ["josé", "report.html"]


def _result(sid: str, score: float, shard: str) -> dict:
    return {"score": score, "max_score": 100.0, "output": "", "tests": [],
            "extra_data": {"student": sid, "shard": shard, "exercise": "batchnorm_linen", "suite": "hidden",
                           "status": "complete" if score == 100 else "partial", "tags": [], "problem": ""}}


def _shard(root: Path, k: int, n: int, *, suite: str = "suite-a", exercise: str = "batchnorm_linen",
           score: float = 100.0, graded: int | None = None, name: str | None = None) -> Path:
    """The folder `batch --shard k/n` would write for CLASS (fake scores, real layout and manifest)."""
    out = root / (name or f"shard{k}")
    shard = Shard(k, n)
    mine = [Student(sid, Path(sid)) for sid in CLASS if shard.owns(sid)]
    folders = student_folders(s.id for s in mine)
    for student in mine:
        _write_student(out / STUDENTS / folders[student.id], student.id, _result(student.id, score, shard.label))
    write_manifest(out, shard, Roster(mine, sorted(CLASS)), suite, exercise,
                   graded=len(mine) if graded is None else graded)
    return out


def test_merge_gives_one_gradebook_of_the_whole_class(tmp_path):
    shards = [_shard(tmp_path, k, 3) for k in (1, 2, 3)]
    graded = merge(shards, tmp_path / "class")
    assert sorted(graded) == sorted(CLASS)
    rows = (tmp_path / "class" / "gradebook.csv").read_text().splitlines()
    assert len(rows) == len(CLASS) + 1
    manifest = json.loads((tmp_path / "class" / "shard.json").read_text())
    assert manifest["complete"] and manifest["merged_from"] == ["1/3", "2/3", "3/3"]
    assert (tmp_path / "class" / STUDENTS / "report.html" / "results.json").is_file()


@pytest.mark.parametrize(("changes", "message"), [
    ({"suite": "suite-b"}, r"different suites \(secrets\)"),
    ({"exercise": "batchnorm_nnx"}, "different exercises"),
    ({"graded": 0}, r"shard 2/3 in .* is incomplete \(0 of \d+ students graded"),
])
def test_merge_refuses_shards_graded_apart_or_unfinished_and_writes_nothing(tmp_path, changes, message):
    shards = [_shard(tmp_path, 1, 3), _shard(tmp_path, 2, 3, **changes), _shard(tmp_path, 3, 3)]
    with pytest.raises(ShardError, match=message):
        merge(shards, tmp_path / "class")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard1", "shard2", "shard3"]


def test_merge_refuses_another_grader_version(tmp_path):
    shards = [_shard(tmp_path, k, 2) for k in (1, 2)]
    manifest = json.loads((shards[1] / "shard.json").read_text())
    manifest["grader"]["version"] = "0.0.9"
    (shards[1] / "shard.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="different grader versions"):
        merge(shards, tmp_path / "class")


def test_merge_names_a_missing_shard_and_refuses_one_given_twice(tmp_path):
    one, three = _shard(tmp_path, 1, 3), _shard(tmp_path, 3, 3)
    with pytest.raises(ShardError, match="shard 2/3 is missing"):
        merge([one, three], tmp_path / "class")
    again = _shard(tmp_path, 1, 3, name="shard1-again")
    with pytest.raises(ShardError, match="shard 1/3 is given twice"):
        merge([one, again, three], tmp_path / "class")


def test_merge_refuses_a_shard_whose_results_are_missing(tmp_path):
    shards = [_shard(tmp_path, k, 2) for k in (1, 2)]
    victim = next((shards[0] / STUDENTS).iterdir())
    (victim / "results.json").unlink()
    with pytest.raises(ShardError, match="incomplete: the results of"):
        merge(shards, tmp_path / "class")


def test_a_rerun_shard_replaces_only_its_own_students(tmp_path):
    shards = [_shard(tmp_path, k, 2) for k in (1, 2)]
    merge(shards, tmp_path / "class")
    _shard(tmp_path, 2, 2, score=50.0)  # shard 2 graded again (a rubric change, say)
    graded = merge(shards, tmp_path / "class")
    assert {sid: d["score"] for sid, d in graded.items()} == {sid: 50.0 if shard_of(sid, 2) == 2 else 100.0
                                                              for sid in CLASS}
    book = (tmp_path / "class" / "gradebook.csv").read_text()
    assert book.count(",50,") == sum(1 for sid in CLASS if shard_of(sid, 2) == 2)


@pytest.mark.parametrize("damage", [{"shard": None}, {"students": "everyone"}, {"format": 99}, "not json"])
def test_a_damaged_manifest_is_a_sentence_not_a_traceback(tmp_path, damage):
    shards = [_shard(tmp_path, k, 2) for k in (1, 2)]
    path = shards[1] / "shard.json"
    if isinstance(damage, dict):
        path.write_text(json.dumps({**json.loads(path.read_text()), **damage}))
    else:
        path.write_text(damage)
    with pytest.raises(ShardError, match="shard.json"):
        merge(shards, tmp_path / "class")
    assert not (tmp_path / "class").exists()


def test_merge_never_replaces_a_folder_that_is_not_a_batch_output(tmp_path):
    shards = [_shard(tmp_path, k, 2) for k in (1, 2)]
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work\n")
    with pytest.raises(ShardError, match="not a batch's output"):
        merge(shards, home)
    assert (home / "thesis.tex").read_text() == "years of work\n"
