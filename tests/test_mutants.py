"""Issue 9: generated mutants of the reference prove the grader.

A fixed sample (two mutants of every kind) is classified by behaviour, independently
of the grader, then graded in one batch: a mutant that behaves differently must lose
points, one that behaves like the reference must score 100. ``make mutants`` runs
every mutant and writes the full report.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import TEST_SECRET
from tests.mutation import KINDS, REFERENCE, Mutant, classify, generate, grade, sample, summarize

# The salt picks which two mutants of each kind: this one gives a sample that holds
# mutants of both directions (equivalent ones, and different ones named and unnamed).
SAMPLE_SALT = "s8"


@pytest.fixture(scope="module")
def mutants() -> list[Mutant]:
    return generate()


def test_generation_is_deterministic_and_deduplicated(mutants: list[Mutant]):
    assert [m.id for m in generate()] == [m.id for m in mutants]
    assert len({m.id for m in mutants}) == len(mutants)
    assert len({m.slug for m in mutants}) == len(mutants)  # one batch folder each
    sources = [ast.unparse(ast.parse(m.source)) for m in mutants]
    assert len(set(sources)) == len(sources)
    assert ast.unparse(ast.parse(REFERENCE.read_text())) not in sources
    assert {m.kind for m in mutants} == set(KINDS)


def test_mutants_touch_only_the_module_and_the_flow(mutants: list[Mutant]):
    """Imports, docstrings and other definitions stay as they are in every mutant."""
    def untouched(source: str) -> list[str]:
        tree = ast.parse(source)
        return [ast.unparse(n) for n in tree.body if not isinstance(n, (ast.ClassDef, ast.FunctionDef))] + [
            ast.get_docstring(n) or "" for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))]

    expected = untouched(REFERENCE.read_text())
    assert all(untouched(m.source) == expected for m in mutants)


@pytest.mark.slow
def test_sampled_mutants_lose_points_exactly_when_they_behave_differently(mutants: list[Mutant], tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]):
    chosen = sample(mutants, per_kind=2, salt=SAMPLE_SALT)
    verdicts = classify(chosen, jobs=2)
    summary = summarize(chosen, verdicts, grade(chosen, tmp_path, TEST_SECRET, jobs=2, timeout=600))
    for o in summary.outcomes:  # shown when the test fails
        print(f"{o.mutant.id:45} {o.verdict.cls:10} {o.graded.score:5g}  {', '.join(o.graded.tags) or '-'}")
    with capsys.disabled():
        print(f"\nmutants, sample of {len(chosen)}: {summary.share_line()}")
    assert summary.of("equivalent") and summary.of("different"), f"salt {SAMPLE_SALT!r} no longer samples both directions"
    assert not summary.survivors, [(o.mutant.id, o.verdict.detail) for o in summary.survivors]
    assert not summary.charged_equivalents, [(o.mutant.id, o.graded.charged) for o in summary.charged_equivalents]
