"""The exercise registry: one engine, several exercises, each its own checks and words."""

from __future__ import annotations

import dataclasses
import re

import pytest

from grader import exercises
from grader.checks import CHECKS, Check
from grader.exercises import EXERCISES, Exercise, get
from grader.selftest import known_wrong
from grader.grade import grade
from grader.pitfalls import PITFALLS
from tests.conftest import ROOT, SUBMISSIONS, TEST_SECRET

# A third exercise, defined here and nowhere else: only the training output counts.
TINY_CHECKS: tuple[Check, ...] = tuple(
    dataclasses.replace(c, weight={"train_output": 100}.get(c.id, 0), depends=c.depends[:1])
    for c in CHECKS if c.id in ("module_runs", "train_output"))


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> str:
    linen = EXERCISES["batchnorm_linen"]
    entry = dataclasses.replace(linen, name="tiny", title="Training output only",
                                checks_table="tests.test_exercises:TINY_CHECKS",
                                pitfalls={t: PITFALLS[t] for t in ("eps_misplaced", "stats_over_features")})
    monkeypatch.setitem(EXERCISES, "tiny", entry)
    get.cache_clear()
    yield "tiny"
    get.cache_clear()


@pytest.mark.slow
def test_an_exercise_defined_in_one_entry_grades_with_its_own_checks_and_words(tiny):
    ok = grade(ROOT / "solution" / "batchnorm.py", TEST_SECRET, exercise=tiny, isolation="process")
    assert (ok.score, ok.max_score, ok.exercise) == (100, 100, "tiny")
    assert [c.id for c in ok.checks] == ["module_runs", "train_output"]
    # Its table has no init guard: a module without one is right here.
    assert grade(SUBMISSIONS / "wrong" / "init_no_guard.py", TEST_SECRET, exercise=tiny, isolation="process").score == 100
    wrong = grade(SUBMISSIONS / "wrong" / "eps_missing.py", TEST_SECRET, exercise=tiny, isolation="process")
    assert wrong.score == 0 and wrong.tags == ("eps_misplaced",)
    # A tag the exercise does not know is never given, even when a model reproduces it.
    affine = grade(SUBMISSIONS / "wrong" / "affine_swapped.py", TEST_SECRET, exercise=tiny, isolation="process")
    assert affine.score == 0 and affine.tags == ()


def test_every_exercise_is_complete():
    # one folder each, declaring EXERCISE under its own name, and one registry line each
    assert list(EXERCISES) == list(exercises.REGISTERED)
    for name in exercises.REGISTERED:
        assert (ROOT / "grader" / "exercises" / name / "__init__.py").is_file()
        assert EXERCISES[name].name == name
    for exercise in EXERCISES.values():
        assert isinstance(exercise, Exercise)
        assert any(known_wrong(exercise.name)), exercise.name  # what `selftest` grades
        assert exercise.max_score == 100
        assert exercise.adapter in exercises.ADAPTERS
        assert (ROOT / "grader" / f"{exercise.adapter}.py").is_file()
        for path in (exercise.stub, exercise.instructions, exercise.reference):
            assert path.is_file(), path
        ids = [c.id for c in exercise.checks]
        assert len(ids) == len(set(ids))
        for check in exercise.checks:
            assert {d.id for d in check.depends} <= set(ids[: ids.index(check.id)])


def test_every_pitfall_is_declared_by_a_check_that_may_name_it():
    """The declarations agree: a check names only findings that exist, each
    exercise's pitfalls are all reachable, and the models behind a numeric finding
    are owned by its pitfall (diagnosis.MISTAKES is built from them)."""
    from grader.diagnosis import MISTAKES

    for exercise in EXERCISES.values():
        findings = {p.finding for p in exercise.pitfalls.values()}
        declared = {name for check in exercise.checks for name in check.names}
        assert findings <= declared, (exercise.name, findings - declared)
    engine = set(PITFALLS) | {p.finding for e in EXERCISES.values() for p in e.pitfalls.values()}
    assert {name for e in EXERCISES.values() for c in e.checks for name in c.names} <= engine
    assert {tag for tag, _ in MISTAKES} == {tag for tag, p in PITFALLS.items() if p.models}
    assert all(dict(model) in [m for t, m in MISTAKES if t == tag] for tag, p in PITFALLS.items() for model in p.models)


def test_nnx_words_never_point_at_linen_apis():
    linen_words = re.compile(r"is_initializing|mutable|\.value\b|self\.variable|flax\.linen|apply\(")
    for tag, pitfall in get("batchnorm_nnx").pitfalls.items():
        assert not linen_words.search(pitfall.why + " " + pitfall.hint), tag
    names = " ".join(c.name + " " + c.expected for c in get("batchnorm_nnx").checks)
    assert "batch_stats" not in names and "nnx.BatchStat" in names


def test_unknown_exercise_is_refused_with_the_choices():
    with pytest.raises(exercises.UnknownExercise, match="batchnorm_linen, batchnorm_nnx"):
        get("batchnorm_pytorch")


def test_readme_nnx_rubric_and_pitfalls_follow_the_declarations():
    """The README's NNX rubric (points, order, advice, dependencies) and its pitfall
    lists are the NNX exercise's own declarations."""
    text = (ROOT / "README.md").read_text()
    rubric = text.split("#### The NNX rubric (100 points)", 1)[1].split("\n\n", 2)[1]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in rubric.splitlines()[2:]]
    nnx = get("batchnorm_nnx")
    assert [r[1] for r in rows] == ["advice" if c.advisory else str(c.weight) for c in nnx.checks]
    assert [bool(r[2]) for r in rows] == [bool(c.depends) for c in nnx.checks]
    section = text.split("#### Pitfalls NNX names", 1)[1].split("\n### ", 1)[0]
    own = set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M))
    shared = set(re.findall(r"`([a-z_]+)`", section.split("And every Linen tag", 1)[1].split("(`init_updates", 1)[0]))
    assert own == {t for t in nnx.pitfalls if t not in PITFALLS}
    assert shared == {t for t in nnx.pitfalls if t in PITFALLS}
    renamed = {p.finds for p in nnx.pitfalls.values() if p.finds}
    assert set(PITFALLS) - shared - renamed == {"init_updates_stats", "apply_not_mutable", "flow_collections"}


def test_the_instructions_name_only_tags_the_grader_gives():
    """Students read '[tag]' in the instructions and then in the grader's output."""
    for exercise in EXERCISES.values():
        named = set(re.findall(r"\[`([a-z_]+)`\]", exercise.instructions.read_text()))
        assert named <= set(exercise.pitfalls), (exercise.name, named - set(exercise.pitfalls))
    nnx = get("batchnorm_nnx")
    assert {t for t in nnx.pitfalls if t not in PITFALLS} <= set(
        re.findall(r"\[`([a-z_]+)`\]", nnx.instructions.read_text()))
