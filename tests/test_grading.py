"""Every bundled submission graded end to end through the CLI, in a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.pitfalls import TAGS
from tests.conftest import CORRECT, REDTEAM, ROOT, WRONG, declared_pitfalls

pytestmark = pytest.mark.slow
ADVISORY_TAGS = {"not_jittable"}


@pytest.mark.parametrize("path", CORRECT + [ROOT / "solution" / "batchnorm.py"], ids=lambda p: p.stem)
def test_correct_submission_scores_100_with_no_tag(path: Path, grade_file):
    run = grade_file(path)
    assert run.code == 0, run.stderr
    assert run.stderr == ""
    assert run.results["score"] == 100, [t for t in run.results["tests"] if t["status"] != "passed"]
    assert all(not t["tags"] for t in run.results["tests"])
    assert run.results["extra_data"]["suite"] == "hidden"


@pytest.mark.parametrize("path", WRONG, ids=lambda p: p.stem)
def test_wrong_submission_is_caught_and_named_exactly(path: Path, grade_file):
    """Every declared mistake is named (two mistakes: both tags), and nothing else."""
    tags = declared_pitfalls(path)
    assert set(tags) <= set(TAGS)
    run = grade_file(path)
    assert run.code == 0, run.stderr
    assert "internal error" not in run.stderr
    if not set(tags) <= ADVISORY_TAGS:  # advice costs nothing: the grader cannot verify it
        assert run.results["score"] < 100
    assert sorted(run.results["extra_data"]["tags"]) == sorted(tags)
    for tag in tags:
        failed = [t for t in run.results["tests"] if tag in t["tags"]]
        assert failed and all(t["status"] == "failed" for t in failed)
        assert "Hint:" in failed[0]["output"] and "Expected:" in failed[0]["output"]


@pytest.mark.parametrize("path", [p for p in WRONG if len(declared_pitfalls(p)) == 1], ids=lambda p: p.stem)
def test_one_cause_costs_one_check(path: Path, grade_file):
    """A single mistake is charged by the one check that owns it: the others run
    (a dependency skips them only when they cannot be evaluated) and pass, with a
    note where the mistake shows through them too."""
    run = grade_file(path)
    charged = [t["name"] for t in run.results["tests"] if t["max_score"] > 0 and t["score"] < t["max_score"]]
    if declared_pitfalls(path) == ["not_jittable"]:  # advice: the grader cannot verify it, so it costs nothing
        assert charged == [] or charged == ["Gradients flow through the batch statistics"]
    else:
        assert len(charged) == 1, charged


def test_readme_names_every_pitfall_and_no_other():
    import re

    table = (ROOT / "README.md").read_text().split("### Pitfalls the grader names", 1)[1].split("\n### ", 1)[0]
    assert set(re.findall(r"^\| `([a-z0-9_]+)` \|", table, flags=re.M)) == set(TAGS)


def test_readme_rubric_follows_the_checks_table():
    """Points, order, advice and whether a check depends on another: as declared."""
    from grader.checks import CHECKS

    table = (ROOT / "README.md").read_text().split("### Rubric (100 points)", 1)[1].split("\n\n", 2)[1]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    assert [r[1] for r in rows] == ["advice" if c.advisory else str(c.weight) for c in CHECKS]
    assert [bool(r[2]) for r in rows] == [bool(c.depends) for c in CHECKS]
    assert sum(c.weight for c in CHECKS) == 100


def test_every_pitfall_tag_has_a_wrong_submission():
    assert {tag for p in WRONG for tag in declared_pitfalls(p)} == set(TAGS)


def test_two_mistakes_cost_more_than_either_alone(grade_file):
    by_name = {p.stem: grade_file(p).results["score"] for p in WRONG}
    assert by_name["two_mistakes_guard_momentum"] < min(by_name["init_no_guard"], by_name["momentum_reversed"])


def test_untouched_stub_scores_zero_and_says_not_implemented(grade_file):
    run = grade_file(ROOT / "exercise" / "batchnorm.py")
    assert run.code == 0
    assert run.results["score"] == 0
    text = " ".join(t["output"] for t in run.results["tests"])
    assert "not implemented yet" in text
    assert "internal error" not in run.stderr


def test_output_only_comparison_misses_most_wrong_submissions(grade_file, capsys):
    """What a naive grader (compare init_and_apply's output) would have let through."""
    passed_naive = [p.stem for p in WRONG if grade_file(p).results["extra_data"]["output_only_would_pass"]]
    with capsys.disabled():
        print(f"\noutput-only comparison would give full marks to {len(passed_naive)} of {len(WRONG)} "
              f"wrong submissions: {', '.join(passed_naive)}")
    assert len(passed_naive) >= len(WRONG) // 3


FLOW_ONLY = ("flow_not_flat", "flow_returns_tuple", "flow_no_mutable", "flow_always_trains", "seed_not_cast")


@pytest.mark.parametrize("name", FLOW_ONLY)
def test_a_flow_mistake_costs_the_flow_check_only(name: str, grade_file):
    """One cause, one charge: end to end repeats the flow, so it is not charged again."""
    run = grade_file(ROOT / "tests" / "submissions" / "wrong" / f"{name}.py")
    flow = next(t for t in run.results["tests"] if t["name"].startswith("init_and_apply: init"))
    assert flow["status"] == "failed"
    assert run.results["score"] == 100 - flow["max_score"]


def _text(run) -> str:  # noqa: ANN001 - a CliRun
    return "\n".join(t["output"] for t in run.results["tests"])


def test_each_message_says_what_that_code_did(grade_file):
    """A student changes the line a message points at: it must be true for their
    code, and a lookalike mistake gets its own words (from the shared batch)."""
    wrong = ROOT / "tests" / "submissions" / "wrong"
    assert "eps = 0.001 inside the square root" in _text(grade_file(wrong / "eps_keras_default.py"))
    assert "eps outside the square root" in _text(grade_file(wrong / "eps_outside_sqrt.py"))
    from_batch = _text(grade_file(wrong / "stats_init_from_batch.py"))
    assert "the batch mean itself" in from_batch and "is_initializing()` is false" not in from_batch
    assert "0.1 x the batch mean: init ran the update" in _text(grade_file(wrong / "init_no_guard.py"))
    assert "flattened together with the 2 x D" in _text(grade_file(wrong / "flow_flattens_updates.py"))
    typo = grade_file(wrong / "collection_typo_everywhere.py").results
    assert typo["score"] == 92 and "batch_stat/running_mean" in _text(grade_file(wrong / "collection_typo_everywhere.py"))


def test_no_message_shows_a_grader_path_or_prints_a_traceback_twice(grade_file):
    for path in [*CORRECT, *WRONG]:
        run = grade_file(path)
        text = _text(run)
        assert "/tmp/" not in text and "bngrade" not in text and "site-packages" not in text, path.name
        raised = [t["output"] for t in run.results["tests"] if "Observed:" in t["output"] and " raised " in t["output"]]
        firsts = [o.split("Observed:", 1)[1].split("\n", 1)[0] for o in raised]
        assert len(firsts) == len(set(firsts)), (path.name, firsts)


@pytest.mark.parametrize("path", REDTEAM, ids=lambda p: p.stem)
def test_red_team_submission_gets_its_score_and_loses_its_one_check(path: Path, grade_file):
    from grader.checks import CHECKS

    score, check = path.read_text().splitlines()[0].removeprefix("# expect: ").split(", ")
    run = grade_file(path)
    charged = [t["name"] for t in run.results["tests"] if t["max_score"] > 0 and t["score"] < t["max_score"]]
    assert run.results["score"] == float(score), [t["output"][:300] for t in run.results["tests"]
                                                  if t["status"] != "passed"]
    assert charged == [{c.id: c.name for c in CHECKS}[check]]
