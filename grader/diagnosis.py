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
from grader.pitfalls import PITFALLS

# (tag, how the oracle models it). Several models may share a tag.
# (finding, how the oracle models it), from the pitfalls that own the models;
# several models may share a tag.
MISTAKES: tuple[tuple[str, dict[str, object]], ...] = tuple(
    (pitfall.tag, dict(model)) for pitfall in PITFALLS.values() for model in pitfall.models)


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
    detail: str = ""  # what a fitted model found, for the student ("momentum 0.99")


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
            with np.errstate(invalid="ignore"):
                # A model may leave a few elements undefined (a division by zero that float32
                # code turns into anything); one undefined nearly everywhere matches anything.
                # (The unclipped variance is NaN-or-right by design, on whole constant features.)
                if variant.variance != "unclipped" and \
                        (~np.isfinite(expected) & np.isfinite(item.observed)).mean() > UNDEFINED_SHARE:
                    return False
        if not within(item.observed, expected, tol, undefined_ok=loose).all():
            return False
    return True


UNDEFINED_SHARE = 0.1


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
            if tag_a == tag_b or a.differs_in() & b.differs_in() or "unclipped" in (a.variance, b.variance):
                continue  # (the unclipped model allows NaN anywhere it cancels: no half of a pair)
            merged = dataclasses.replace(a, **{f: getattr(b, f) for f in b.differs_in()})
            # Both halves must matter here: a mistake that changes nothing in these
            # items (an update-only mistake, for an output) is no explanation.
            if _changes(items, merged, a) and _changes(items, merged, b) and _matches(items, merged, loose=True):
                models += [(tag_a, merged), (tag_b, merged)]
    detail = ""
    if not models:
        models, detail = _fitted(items, tags)
    if not models:  # a fitted number beside another named mistake (momentum 0.97 and N - 1)
        for tag, base in candidates:
            if tag in FITTED:
                continue
            fitted, words = _fitted(items, tags, base)
            if fitted and all(_changes(items, v, base) for _, v in fitted):
                models, detail = [(tag, v) for _, v in fitted] + fitted, words
                break
    elif not detail:
        detail = "; ".join(dict.fromkeys(w for _, v in models if (w := describe(v))))
    found = {tag for tag, _ in models}
    ordered = tuple(t for t in dict.fromkeys([tag for tag, _ in MISTAKES] + list(FITTED)) if t in found)
    return Diagnosis(passed=False, tags=ordered, mismatch=mismatch, where=where,
                     models=tuple(dict.fromkeys(variant for _, variant in models)), detail=detail)


def describe(variant: Variant) -> str:
    """What a model of a mistake computes, where its tag alone leaves it open (which
    eps, which momentum): the words a student can check against their code."""
    said = []
    if variant.eps == "outside":
        said.append("the output is what sqrt(var) + eps gives, eps outside the square root")
    elif variant.eps == "none":
        said.append("the output is what no eps at all gives")
    elif variant.eps_value != CONTRACT.eps_value:
        said.append(f"the output is what eps = {variant.eps_value:.3g} inside the square root gives")
    if variant.momentum != CONTRACT.momentum:
        said.append(f"it moves as momentum = {variant.momentum:.3g} would")
    return "; ".join(said)


# Mistakes whose model has a number in it that is read off the observed values
# (then checked like any other model: it must reproduce every item).
FITTED = ("momentum_value", "update_weights", "eps_misplaced")
# eps values tried when eps is neither missing nor misplaced but another number:
# decades and halves, and the momentum's values (the two constants confused).
EPS_GRID = tuple(sorted({m * 10.0 ** k for k in range(-10, 2) for m in (1.0, 2.0, 5.0)} | {0.9, 0.99, 0.1}))


def _fitted(items: Sequence[Item], tags: Sequence[str], base: Variant = CONTRACT
            ) -> tuple[list[tuple[str, Variant]], str]:
    """A model with a fitted number that reproduces every item, with its words
    (fitted on top of ``base``: the contract, or another mistake's model)."""
    if "momentum_value" in tags or "update_weights" in tags:
        for with_constant in (False, True):  # the simpler rule first
            weights = _fit_update(items, with_constant, base)
            if weights is None or not _matches(items, variant := dataclasses.replace(base, update_weights=weights),
                                               loose=True):
                continue
            keep, take, constant = weights
            if abs(take) < 0.05:  # the batch statistic hardly reaches it: a rule about something else
                continue
            if not with_constant and abs(keep + take - 1.0) < 1e-4:
                return [("momentum_value", variant)], f"it moves as momentum = {keep:.3g} would"
            if "update_weights" in tags:
                const = f" {'+' if constant >= 0 else '-'} {abs(constant):.3g}" if with_constant else ""
                return [("update_weights", variant)], (
                    f"it behaves like running = {keep:.3g} * running {'+' if take >= 0 else '-'} "
                    f"{abs(take):.3g} * batch{const}")
    if "eps_misplaced" in tags and items:
        first = items[0]
        for value in EPS_GRID:
            variant = dataclasses.replace(base, eps_value=value)
            if _matches([first], variant, loose=True) and _changes(items, variant, CONTRACT) \
                    and _matches(items, variant, loose=True):
                return [("eps_misplaced", variant)], f"the output is what eps = {value:.3g} gives"
    return [], ""


def _fit_update(items: Sequence[Item], with_constant: bool, base: Variant = CONTRACT
                ) -> tuple[float, float, float] | None:
    """Least-squares keep, take (and constant) of running = keep * running + take *
    batch + constant over every observed statistic, each weighted by its
    tolerance (None where they are not determined, e.g. items that are outputs)."""
    weights = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)) + (((0.0, 0.0, 1.0),) if with_constant else ())
    columns, observed, scales = [], [], []
    for item in items:
        try:
            basis = [item.expected(dataclasses.replace(base, update_weights=w)) for w in weights]
        except ValueError:
            return None
        if any(b.shape != item.observed.shape for b in basis):
            return None
        columns.append(np.stack([b.reshape(-1) for b in basis], axis=1))
        observed.append(item.observed.reshape(-1))
        scales.append(np.broadcast_to(item.tolerance(CONTRACT), item.observed.shape).reshape(-1))
    if not columns:
        return None
    a, y, tol = np.concatenate(columns), np.concatenate(observed), np.concatenate(scales)
    keep = np.isfinite(a).all(axis=1) & np.isfinite(y) & np.isfinite(tol) & (tol > 0)
    if keep.sum() < 6:
        return None
    w = 1.0 / tol[keep]
    a, y = a[keep] * w[:, None], y[keep] * w
    if np.linalg.matrix_rank(a, tol=1e-9 * max(1.0, float(np.abs(a).max()))) < len(weights):
        return None
    solution = [float(v) for v in np.linalg.lstsq(a, y, rcond=None)[0]]
    return solution[0], solution[1], solution[2] if with_constant else 0.0
