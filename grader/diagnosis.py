"""Explaining a failed comparison by the mistake that reproduces it.

A check compares observed arrays with the oracle's contract. When they differ,
the same comparison is repeated against the oracle with each candidate mistake,
then with pairs of them; the mistakes whose model reproduces every observed
case are the diagnosis. Nothing matching means "wrong, for a reason we cannot
name", which is reported as such rather than guessed.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence

import numpy as np

from grader.compare import Mismatch, within, worst
from grader.oracle import CONTRACT, Variant

# (tag, how the oracle models it). Several models may share a tag.
MISTAKES: tuple[tuple[str, dict[str, object]], ...] = (
    ("stats_over_features", {"axis": "features"}),
    ("stats_over_features", {"axis": "features_broadcast"}),
    ("stats_over_features", {"axis": "all"}),
    ("variance_uncentered", {"variance": "uncentered"}),
    ("unbiased_variance", {"norm_ddof": 1, "update_ddof": 1}),
    ("unbiased_variance", {"norm_ddof": 1}),
    ("unbiased_variance", {"update_ddof": 1}),
    ("eps_misplaced", {"eps": "outside"}),
    ("eps_misplaced", {"eps": "none"}),
    ("train_uses_running_stats", {"train_stats": "running_old"}),
    ("train_uses_running_stats", {"train_stats": "running_new"}),
    ("eval_uses_batch_stats", {"eval_stats": "batch"}),
    ("train_skips_update", {"update_in_train": False}),
    ("eval_updates_stats", {"update_in_eval": True}),
    ("momentum_reversed", {"momentum_reversed": True}),
    ("momentum_value", {"momentum": 0.99}),  # flax.linen.BatchNorm's default
    ("momentum_value", {"momentum": 0.999}),
    ("momentum_value", {"momentum": 0.95}),
    ("momentum_value", {"momentum": 0.81}),  # the update applied twice per step
    ("ema_debiased", {"update_rule": "debiased"}),
    ("ema_first_overwrite", {"update_rule": "first_overwrite"}),
    ("eps_misplaced", {"eps_value": 1e-3}),  # Keras's default
    ("eps_misplaced", {"eps_value": 1e-8}),
    ("affine_misapplied", {"affine": "none"}),
    ("affine_misapplied", {"affine": "swapped"}),
    ("affine_misapplied", {"affine": "no_gamma"}),
    ("affine_misapplied", {"affine": "no_beta"}),
    ("affine_misapplied", {"affine": "minus_beta"}),
    ("affine_misapplied", {"affine": "one_plus_gamma"}),
    ("variance_not_clipped", {"variance": "unclipped"}),
)


@dataclasses.dataclass(frozen=True)
class Item:
    """One observed array and how to compute what it should be under a variant."""

    label: str  # where, for the student: "training step 1 on 8x3 (tiny_variance)"
    observed: np.ndarray  # (cases, ...)
    expected: Callable[[Variant], np.ndarray]
    tol: np.ndarray | Callable[[Variant], np.ndarray]  # fixed, or per model
    families: Sequence[str] = ()

    def tolerance(self, variant: Variant) -> np.ndarray:
        return self.tol(variant) if callable(self.tol) else self.tol


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    passed: bool
    tags: tuple[str, ...] = ()
    mismatch: Mismatch | None = None
    where: str = ""
    models: tuple[Variant, ...] = ()  # the models that reproduce every item


def _matches(items: Sequence[Item], variant: Variant, loose: bool) -> bool:
    for item in items:
        try:
            expected = item.expected(variant)
        except ValueError:  # the mistake cannot even run on this shape (N != D)
            return False
        if expected.shape != item.observed.shape:
            return False
        tol = item.tolerance(variant)
        if loose:  # a diagnosis may be a little looser than the verdict
            tol = 4.0 * tol
        if not within(item.observed, expected, tol, undefined_ok=loose).all():
            return False
    return True


def _changes(items: Sequence[Item], variant: Variant, without: Variant) -> bool:
    """Whether ``variant`` predicts anything other than ``without`` for some item."""
    for item in items:
        try:
            a, b = item.expected(variant), item.expected(without)
        except ValueError:
            return True
        if a.shape != b.shape:
            return True
        with np.errstate(invalid="ignore"):
            tol = item.tolerance(without)
            if not within(a, b, tol, undefined_ok=True).all() or not within(b, a, tol, undefined_ok=True).all():
                return True
    return False


def _first_failure(items: Sequence[Item]) -> tuple[Mismatch | None, str]:
    for item in items:
        expected = item.expected(CONTRACT)
        miss = worst(item.observed, expected, item.tolerance(CONTRACT))
        if miss is not None:
            family = f", {item.families[miss.case]} inputs" if item.families else ""
            return miss, f"{item.label}{family}"
    return None, ""


def diagnose(items: Sequence[Item], tags: Sequence[str]) -> Diagnosis:
    """Pass if every item matches the contract; otherwise name the mistakes among
    ``tags`` whose models reproduce all items (single mistakes first, then pairs)."""
    if not items or _matches(items, CONTRACT, loose=False):
        return Diagnosis(passed=True)
    mismatch, where = _first_failure(items)
    candidates = [(tag, Variant(**fields)) for tag, fields in MISTAKES if tag in tags]  # type: ignore[arg-type]
    # A mistake that predicts what the contract predicts explains nothing here.
    candidates = [(tag, v) for tag, v in candidates if _changes(items, v, CONTRACT)]
    models = [(tag, variant) for tag, variant in candidates if _matches(items, variant, loose=True)]
    if not models:
        for (tag_a, a), (tag_b, b) in itertools.combinations(candidates, 2):
            if tag_a == tag_b or a.differs_in() & b.differs_in():
                continue
            merged = dataclasses.replace(a, **{f: getattr(b, f) for f in b.differs_in()})
            # Both halves must matter here: a mistake that changes nothing in these
            # items (an update-only mistake, for an output) is no explanation.
            if _changes(items, merged, a) and _changes(items, merged, b) and _matches(items, merged, loose=True):
                models += [(tag_a, merged), (tag_b, merged)]
    found = {tag for tag, _ in models}
    ordered = tuple(t for t in dict.fromkeys(tag for tag, _ in MISTAKES) if t in found)
    return Diagnosis(passed=False, tags=ordered, mismatch=mismatch, where=where,
                     models=tuple(dict.fromkeys(variant for _, variant in models)))
