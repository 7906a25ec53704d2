"""The rubric: a declared table of checks, each with its weight and dependencies.

A check is a function from :class:`~grader.evidence.Evidence` to an
:class:`Outcome`. The runner (:func:`evaluate`) walks the table in order, skips a
check whose dependency did not pass (one root cause is reported once), and lets a
check pass with a note when the only mistakes it finds were already charged by
an earlier check, so that each mistake costs its own share of the score.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable, Mapping

import numpy as np

from grader import oracle
from grader.compare import output_tolerance, stats_tolerance, grad_tolerance, within, worst
from grader.diagnosis import Diagnosis, Item, diagnose
from grader.cases import Probe
from grader.evidence import (CONTRACT_PARAMS, CONTRACT_STATS, Evidence, Malformed, Trajectory, phase, returned_cases,
                             role_names, take)
from grader.sandbox import ProbeResult
from grader.oracle import Variant
from grader.pitfalls import PITFALLS, Pitfall
from grader.protocol import GRADER_KINDS, MODEL_PREFIX, MODEL_UNREADABLE, NEW_MODEL_Y, RESHAPED_WRITE, role_of


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a check found. ``observed`` summarizes; it never holds hidden values."""

    passed: bool
    expected: str = ""
    observed: str = ""
    tags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    models: tuple[Variant, ...] = ()  # the oracle models of the named mistake(s) that reproduce it
    # The failure is this exception of the student's code and nothing else
    # (error_signature): a later check failing on the same exception is not charged again.
    raised: str = ""


def error_signature(err: dict[str, str]) -> str:
    """An exception of the student's code, the same on every shape: its type and its
    message with the numbers (shapes, line numbers) left out."""
    return f"{err.get('type', '')}: {re.sub(r'[0-9]+', '#', err.get('message', ''))}"


class Skip(Exception):
    """The check cannot be evaluated (no points), for a reason charged elsewhere."""


@dataclasses.dataclass(frozen=True)
class Check:
    id: str
    name: str  # as the student reads it
    weight: int
    run: Callable[[Evidence], Outcome]
    # Only checks without which this one cannot be evaluated: otherwise it runs,
    # and a failure whose named mistakes were charged earlier is not charged again.
    depends: tuple[Check, ...] = ()
    advisory: bool = False
    expected: str = ""  # the contract in this exercise's words, where its run's default does not fit
    # The findings (pitfall tags, or what an exercise's pitfall `finds`) this check may
    # name: its diagnosis searches these models, and it names nothing else.
    names: tuple[str, ...] = ()


@dataclasses.dataclass
class CheckResult:
    id: str
    name: str
    weight: int
    status: str  # "passed", "failed" or "skipped"
    expected: str = ""
    observed: str = ""
    tags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    advisory: bool = False

    @property
    def score(self) -> int:
        return self.weight if self.status == "passed" else 0


# --- shared helpers ----------------------------------------------------------------

TRAIN_TAGS = ("stats_over_features", "unbiased_variance", "eps_misplaced", "train_uses_running_stats", "affine_misapplied",
              "variance_not_clipped", "variance_wrong", "std_misused", "not_centered")
UPDATE_TAGS = ("momentum_reversed", "momentum_value", "train_skips_update", "unbiased_variance", "ema_debiased",
               "ema_first_overwrite", "variance_wrong", "stats_over_features", "update_weights")
EVAL_TAGS = ("eval_uses_batch_stats", "running_stats_crossed", "eps_misplaced", "affine_misapplied", "stats_over_features", "unbiased_variance",
             "variance_wrong", "std_misused", "not_centered")
FROZEN_TAGS = ("eval_updates_stats", "momentum_reversed", "momentum_value", "unbiased_variance", "eval_uses_batch_stats")
ALL_TAGS = tuple(PITFALLS)  # what the trained-state check may find: any of them


def _from_diagnosis(diag: Diagnosis, expected: str) -> Outcome:
    if diag.passed:
        return Outcome(True, expected)
    observed = f"{diag.where}: {diag.mismatch.summary()}" if diag.mismatch else "values differ"
    if diag.detail:
        observed += f" ({diag.detail})"
    return Outcome(False, expected, observed, diag.tags, models=diag.models)


def _errors_outcome(errors: list[tuple[str, dict[str, str]]], expected: str, square_ok: bool,
                    shape_fault: bool = False) -> Outcome:
    """A failure made of errors raised by the student's code on some shapes.
    ``shape_fault``: the variables have the wrong shape (charged by the variables
    check), which explains a shape error on non-square inputs."""
    label, err = errors[0]
    shapes = ", ".join(lbl for lbl, _ in errors[:6]) + (" ..." if len(errors) > 6 else "")
    observed = f"on {shapes}: {err['type']}: {err['message']}"
    raised = error_signature(err) if len({error_signature(e) for _, e in errors}) == 1 else ""
    tags: tuple[str, ...] = ()
    shape_words = "shape" in " ".join(e["message"].lower() for _, e in errors) or any(
        e["type"] == "shape" for _, e in errors)
    if shape_fault and shape_words:
        tags = ("variable_shape",)
    elif square_ok and all(_non_square(lbl) for lbl, _ in errors) and shape_words:
        tags = ("stats_over_features",)
    return Outcome(False, expected, observed, tags, raised=raised)


def _non_square(label: str) -> bool:
    n, d = label.split("x")
    return n != d


def _complete(ev: Evidence) -> tuple[list[Trajectory], list[tuple[str, dict[str, str]]], bool]:
    """Trajectories that ran to the end, the errors of the others, and whether
    every square shape ran (a hint that the failures are about the axis)."""
    good, bad = ev.trajectories()
    complete = [t for t in good if t.result.error is None]
    errors = [(f"{p.params['shape'][0]}x{p.params['shape'][1]}", e) for p, e in bad]
    square_ok = any(t.n == t.d for t in complete)
    return complete, errors, square_ok


def _diagnose_groups(items: list[Item], tags: tuple[str, ...], group: Callable[[Item], object] | None,
                     all_named: bool = False) -> Diagnosis:
    """One diagnosis, or one per group of items whose names are then joined
    (``all_named``: none unless every failed group has its own)."""
    if group is None:
        return diagnose(items, tags)
    groups: dict[object, list[Item]] = {}
    for item in items:
        groups.setdefault(group(item), []).append(item)
    failed = [d for d in (diagnose(part, tags) for part in groups.values()) if not d.passed]
    if not failed:
        return Diagnosis(passed=True)
    named = tuple(dict.fromkeys(t for d in failed for t in d.tags))
    if all_named and not all(d.tags for d in failed):
        named = ()
    detail = "; ".join(dict.fromkeys(f"{d.where.split(' ', 1)[0]}: {d.detail}" for d in failed if d.detail))
    models = failed[0].models if len(failed) == 1 and named else ()
    return Diagnosis(False, named, failed[0].mismatch, failed[0].where, models, detail)


def _run_module_items(ev: Evidence, build: Callable[[Trajectory], list[Item]], tags: tuple[str, ...], expected: str,
                      group: Callable[[Item], object] | None = None, extra: list[Item] | None = None,
                      all_named: bool = False) -> Outcome:
    complete, errors, square_ok = _complete(ev)
    items: list[Item] = []
    for traj in complete:
        try:
            items += build(traj)
        except Malformed as err:  # wrong shapes on this input: like an error on it
            errors.append((traj.label, {"type": "shape", "message": str(err)}))
    items += extra or []  # after the module's own steps: those are named first when both fail
    square_ok = square_ok and any(label.split("x")[0] == label.split("x")[1] for label in
                                  {t.label for t in complete} - {lbl for lbl, _ in errors})
    if not items and not errors:
        raise Skip("the running statistics are NaN or infinite before every such apply "
                   "(see the running update check)")
    outcome = _from_diagnosis(_diagnose_groups(items, tags, group, all_named), expected)
    if errors and outcome.passed and not items:
        # Every input raised: nothing of this check's own part was seen to work, so an
        # earlier charge cannot excuse it ("correct apart from" would be a guess).
        return dataclasses.replace(_errors_outcome(errors, expected, square_ok, _shape_fault(ev)), tags=())
    if errors and outcome.passed:
        return _errors_outcome(errors, expected, square_ok, _shape_fault(ev))
    if errors:
        err_outcome = _errors_outcome(errors, expected, square_ok, _shape_fault(ev))
        return dataclasses.replace(outcome, tags=tuple(dict.fromkeys(outcome.tags + err_outcome.tags)),
                                   notes=(f"It also raised {err_outcome.observed}",))
    return outcome


def _families(traj: Trajectory, sel: np.ndarray | None = None) -> list[str]:
    sel = traj.scored if sel is None else sel
    return [f for f, s in zip(traj.families, sel) if s]


# --- the module checks -------------------------------------------------------------


def module_runs(ev: Evidence) -> Outcome:
    good, bad = ev.trajectories()
    expected = "MyBatchNorm(...).init and .apply run on (N, D) inputs"
    if good:
        return Outcome(True, expected)
    if not bad:
        return Outcome(False, expected, "no result came back")
    _, err = bad[0]
    return Outcome(False, expected, f"{err['type']}: {err['message']}")


def variables(ev: Evidence) -> Outcome:
    """Names and shapes: the contract's four, each (D,). The spelling is charged
    here once; the other checks find the variables by role and compare values."""
    expected = "params {gamma, beta} and batch_stats {running_mean, running_var}, each of shape (D,)"
    good, _ = ev.trajectories()
    names = good[0].names("init")
    wanted = CONTRACT_PARAMS + CONTRACT_STATS
    tags: list[str] = []
    problems: list[str] = []
    notes: list[str] = []
    misplaced = [n for n in names if n.rsplit("/", 1)[-1] in ("running_mean", "running_var") and not n.startswith("batch_stats/")]
    if misplaced:
        tags.append("stats_not_in_batch_stats")
        problems.append(f"running statistics found as {', '.join(misplaced)}")
    elif not any(n.startswith("batch_stats/") for n in names):
        tags.append("stats_not_in_batch_stats")
        problems.append("there is no batch_stats collection")
    # Plain arrays that play a running statistic (a jnp scalar momentum is no mistake).
    bare = [n for n in names if n.startswith("array/") and role_of(tuple(n.split("/"))) in ("running_mean", "running_var")]
    bare += _rebound(good[0])
    if bare:  # NNX: running statistics held (or left, after a call) as plain arrays
        tags.append("stats_not_variables")
        problems.append(f"{', '.join(bare)} {'is a' if len(bare) == 1 else 'are'} plain array"
                        f"{'' if len(bare) == 1 else 's'}, not nnx.BatchStat (assigned with `self.x = ...` "
                        "instead of `self.x[...] = ...`?)")
        misplaced = [n for n in misplaced if not n.startswith("array/")]
        if not misplaced:
            tags = [t for t in tags if t != "stats_not_in_batch_stats"]
            problems = [p for p in problems if not p.startswith("running statistics found as")]
    with_tools = [t for t in good if t.names("split") or t.names("optimizer")]  # NNX: the first probe of a group
    # NNX: gamma/beta declared as another Variable type than nnx.Param (right names, wrong type).
    params_elsewhere = [n for n in names if n.rsplit("/", 1)[-1] in ("gamma", "beta") and not n.startswith("params/")]
    if params_elsewhere and with_tools:
        tags.append("params_not_param")
        problems.append(f"gamma/beta found as {', '.join(params_elsewhere)}: not nnx.Param, so no optimizer over "
                        "nnx.Param trains them")
    tool_tags, tool_problems = _nnx_tools(with_tools[0]) if with_tools else ([], [])
    if tool_problems:
        problems.extend(tool_problems)
        # where the declared types already named a cause, the tools only show it
        stats_named = bool({"stats_not_in_batch_stats", "stats_not_variables"} & set(tags))
        params_named = "params_not_param" in tags
        tags.extend(t for t in tool_tags if not (params_named if t == "params_not_param" else stats_named))
    missing = [n for n in wanted if n not in names]
    if missing and not misplaced and not bare and not (params_elsewhere and with_tools):
        tags.append("wrong_variable_names")
        problems.append(f"found {', '.join(names) or 'no variables'}")
    extra = [n for n in names if n not in wanted]
    if extra and not missing:
        notes.append(f"MyBatchNorm also declares {', '.join(extra[:6])}: fine, as long as the contract's "
                     "four behave as specified (they are what the other checks compare).")
    shape_problem = _shape_problem(good)
    if shape_problem:
        tags.append("variable_shape")
        problems.append(shape_problem)
    changed = _shape_changes(good)
    if changed:
        tags.append("state_shape_changes")
        problems.append(changed)
    narrow = _low_precision(ev)
    if narrow:
        tags.append("dtype_not_float32")
        problems.append(f"{', '.join(narrow[:4])}{' ...' if len(narrow) > 4 else ''}: not float32 like the input")
    if problems:
        return Outcome(False, expected, "; ".join(problems), tuple(dict.fromkeys(tags)))
    return Outcome(True, expected, notes=tuple(notes))


def _nnx_tools(traj: Trajectory) -> tuple[list[str], list[str]]:
    """What NNX's own tools made of the module's variables (the NNX worker's
    optimizer/, split/ and merged/ keys; absent for Linen): tags and problems."""
    arrays = traj.result.arrays
    roles = role_names(traj.names("init"))
    stats = [name for role, name in roles.items() if role in ("running_mean", "running_var")]
    tags: list[str] = []
    problems: list[str] = []
    moved = [name for name in stats if f"optimizer/{name}" in arrays
             and np.any(np.abs(np.asarray(arrays[f"optimizer/{name}"], np.float64)) > 0)]
    if moved:
        tags.append("stats_not_in_batch_stats")
        problems.append(f"one step of nnx.Optimizer(model, optax.sgd, wrt=nnx.Param) changed {', '.join(moved)}: "
                        "an optimizer trains them")
    split = traj.names("split")
    if split:
        groups = {name.split("/", 1)[1]: name.split("/", 1)[0] for name in split}
        for name in [roles[r] for r in ("gamma", "beta") if r in roles]:
            group = groups.get(name.split("/", 1)[1])
            if group != "params":
                tags.append("params_not_param")
                problems.append(f"nnx.split(model, nnx.Param, nnx.BatchStat, ...) does not put "
                                f"{name.split('/', 1)[1]} with the params: it is no nnx.Param, so no optimizer "
                                "over nnx.Param trains it")
        for name in stats:
            group = groups.get(name.split("/", 1)[1])
            if group is None:
                tags.append("stats_not_variables")
                problems.append(f"nnx.split(model, nnx.Param, nnx.BatchStat, ...) does not see {name}: "
                                "it is not part of the model's state")
            elif group == "rest" and not name.startswith("params/"):
                problems.append(f"nnx.split(model, nnx.Param, nnx.BatchStat) leaves {name.split('/', 1)[1]} over "
                                "(it raises 'Non-exhaustive filters')")
            elif group == "params" and not moved:
                tags.append("stats_not_in_batch_stats")
                problems.append(f"nnx.split(model, nnx.Param, nnx.BatchStat, ...) puts {name.split('/', 1)[1]} "
                                "with the params: it is an nnx.Param")
        if "merged/failed" in arrays:
            tags.append("stats_not_variables")
            problems.append("the model rebuilt by nnx.merge from nnx.split(model, ...) fails to run: some of its "
                            "state is kept outside nnx Variables")
        elif "merged/y" in arrays and "eval/y" in arrays and np.shape(arrays["merged/y"]) == np.shape(
                arrays["eval/y"]) and not np.allclose(
                np.asarray(arrays["merged/y"], np.float64), np.asarray(arrays["eval/y"], np.float64),
                rtol=1e-5, atol=1e-6, equal_nan=True):
            tags.append("stats_not_variables")
            problems.append("the model rebuilt by nnx.merge from nnx.split(model, ...) evaluates differently: "
                            "some of its state is kept outside nnx Variables")
    return list(dict.fromkeys(tags)), problems


def _rebound(traj: Trajectory) -> list[str]:
    """Variables that stop being variables after a training call: reported under
    array/ (by the NNX worker) once `self.x = array` replaced the BatchStat."""
    found = []
    for name in traj.names("init"):
        if not name.startswith("batch_stats/"):
            continue
        for prefix in [*(f"train{s}" for s in range(traj.steps)), "eval"]:
            if f"{prefix}/array/{name.split('/', 1)[1]}" in traj.result.arrays:
                found.append(f"{name} (after {'an eval' if prefix == 'eval' else 'a training'} call)")
                break
    return found


def _shape_problem(good: list[Trajectory]) -> str:
    """What is wrong with the shapes of the contract's variables (found by role), if anything."""
    for t in good:
        for role, name in role_names(t.names("init")).items():
            shape = t.result.arrays[f"init/{name}"].shape[1:]
            if shape == (t.d,):
                continue
            if tuple(n for n in shape if n != 1) == tuple(n for n in (t.d,) if n != 1):
                return (f"{name} has shape {shape} for D={t.d}: the right values with an extra axis of length 1 "
                        "(keepdims=True, or a (1, D) initializer)")
            if shape == (t.n,) and t.n != t.d:
                return (f"{name} has shape {shape} on a {t.label} batch: sized by the batch (x.shape[0]), "
                        "not by the features (x.shape[-1])")
            return f"{name} has shape {shape} for D={t.d}"
    return ""


def _low_precision(ev: Evidence) -> list[str]:
    """Outputs and variables the submission made in a narrower float type than the
    float32 input (the worker sends them widened, and says which: its word can only
    cost points here)."""
    found: list[str] = []
    for probe in ev.suite.probes:
        for entry in ev.meta(probe).get("dtypes", []):
            what, _, dtype = entry.rpartition(": ")
            what = what.split("/", 1)[1] if what.count("/") >= 2 else what  # init/params/gamma -> params/gamma
            if f"{what} ({dtype})" not in found:
                found.append(f"{what} ({dtype})")
    return found


def _shape_changes(good: list[Trajectory]) -> str:
    """A variable whose shape after a training or eval call differs from the one init
    gave it (the values are still compared, with length-1 axes squeezed: the shape
    is charged here, once)."""
    for t in good:
        if RESHAPED_WRITE in t.result.arrays:  # (NNX: the grader reshaped the writes to judge the rest)
            return (f"on {t.label}, the training call writes a value of another shape into a (D,) running "
                    "statistic with [...] = (batch statistics with keepdims=True?), which raises; the grader wrote "
                    "it in the variable's shape to judge everything else")
        for name in t.names("init"):
            shape = t.result.arrays[f"init/{name}"].shape[1:]
            for prefix in [*(f"train{s}" for s in range(t.steps)), "eval"]:
                later = t.result.arrays.get(f"{prefix}/{name}")
                # (only the same values with axes of length 1 added or dropped: another
                # size, say statistics over the wrong axis, is that mistake's to charge)
                if isinstance(later, np.ndarray) and later.shape[1:] != shape and \
                        tuple(n for n in later.shape[1:] if n != 1) == tuple(n for n in shape if n != 1):
                    return (f"{name} has shape {shape} after init and {later.shape[1:]} after {phase(prefix)} "
                            f"on {t.label}: the update assigned a value of another shape")
    return ""


def _shape_fault(ev: Evidence) -> bool:
    good, _ = ev.trajectories()
    return bool(good) and bool(_shape_problem(good))


def _init_varies(traj: Trajectory) -> list[str]:
    """Names of batch_stats leaves whose value after init differs between inputs."""
    varying = []
    for name in traj.names("init"):
        if name.startswith("params/"):
            continue
        values = traj.result.arrays[f"init/{name}"].astype(np.float64)
        if values.shape[0] < 2:
            continue
        spread = np.abs(values - values[:1]).max()
        if not np.isfinite(spread) or spread > 1e-6 * (1.0 + np.abs(values[:1]).max()):
            varying.append(name)
    return varying


def init_guard(ev: Evidence) -> Outcome:
    expected = "init creates the running statistics without updating them (the same values for any input)"
    good, _ = ev.trajectories()
    roles = role_names(good[0].names("init"))
    stats = [n for n in good[0].names("init") if not n.startswith("params/") or n in
             (roles.get("running_mean"), roles.get("running_var"))]
    if not stats:
        raise Skip("MyBatchNorm declares no non-parameter variables to check (see the variables check)")
    for traj in good:
        varying = _init_varies(traj)
        if varying:
            observed = f"after init on {traj.label}, {', '.join(varying)} depend on the input batch"
            mean_name = traj.stat_name("mean")
            if mean_name in varying:
                first = traj.x_train[:, 0].astype(np.float64).mean(axis=-2)
                got = traj.result.arrays[f"init/{mean_name}"].astype(np.float64)
                if got.size == first.size and np.allclose(got.reshape(first.shape), first, rtol=1e-4, atol=1e-5):
                    # The guard may well be there: it is the variable's init function that reads x.
                    return Outcome(False, expected, observed + " (running_mean = the batch mean itself: the "
                                   "statistics start from the example batch, not from zeros and ones)",
                                   ("stats_init_from_batch",))
                if got.size == first.size and np.allclose(got.reshape(first.shape), 0.1 * first, rtol=1e-3,
                                                          atol=1e-5):
                    observed += " (running_mean = 0.1 x the batch mean: init ran the update)"
            return Outcome(False, expected, observed, ("init_updates_stats",))
    return Outcome(True, expected)


def initial_values(ev: Evidence) -> Outcome:
    expected = "gamma ones, beta zeros, running_mean zeros, running_var ones after init"
    good, _ = ev.trajectories()
    wrong, notes = [], []
    targets = {"gamma": 1.0, "beta": 0.0, "running_mean": 0.0, "running_var": 1.0}
    if not role_names(good[0].names("init")):
        raise Skip("none of gamma, beta, running_mean, running_var could be found (see the variables check)")
    for traj in good:
        guard_ok = not _init_varies(traj)
        for role, name in role_names(traj.names("init")).items():
            if not name.startswith("params/") and not guard_ok:
                continue
            try:
                got = traj.get("init", name)
            except Malformed:  # its shape is charged by the variables check
                continue
            if not np.all(np.abs(got - targets[role]) <= 1e-6):
                wrong.append(name.rsplit("/", 1)[-1])
        if not guard_ok:
            notes.append("The running statistics' initial values could not be checked: init changed them.")
    mode = _mode_after_construction(good)
    if wrong:
        observed = f"{', '.join(dict.fromkeys(wrong))} start from other values"
        tags: tuple[str, ...] = ("wrong_initial_values",)
        if mode:
            observed, tags = f"{observed}; {mode}", tags + ("built_in_eval_mode",)
        return Outcome(False, expected, observed, tags)
    if mode:
        return Outcome(False, expected, mode, ("built_in_eval_mode",))
    return Outcome(True, expected, notes=tuple(dict.fromkeys(notes)))


def _mode_after_construction(good: list[Trajectory]) -> str:
    """What is wrong with the mode a new model is in (NNX reports ``new/y``: a model
    called right after construction must train, as ``train0/y`` of the same seed and
    input does), or ''."""
    for traj in good:
        if NEW_MODEL_Y not in traj.result.arrays:
            continue
        try:
            shape = (traj.cases, traj.n, traj.d)
            new, trained, fresh = (take(traj.result.arrays, k, shape, k) for k in (NEW_MODEL_Y, "train0/y", "fresh/y"))
        except Malformed:
            continue
        if _close(new.reshape(-1), trained.reshape(-1)):
            continue
        if _close(new.reshape(-1), fresh.reshape(-1)):
            return (f"on {traj.label}, a model called right after construction normalizes with its running "
                    "statistics, as in eval mode: it is constructed in eval mode, and trains only where a caller "
                    "first calls model.train()")
        return (f"on {traj.label}, a model called right after construction gives another output than after "
                "model.train(): a new model must be in training mode")
    return ""


def _output_tol(x: np.ndarray, g: np.ndarray, b: np.ndarray, rm: np.ndarray, rv: np.ndarray,
                train: bool, t: int = 1) -> Callable[[Variant], np.ndarray]:
    """The tolerance of an output under a model: it depends on which statistics
    the model normalizes with (the batch's carry cancellation error)."""
    cache: dict[object, np.ndarray] = {}

    def tol(v: Variant) -> np.ndarray:
        source = v.train_stats if train else v.eval_stats
        # Only a model that normalizes with the updated statistics needs them all.
        shape = {"center": v.center, "gain": v.scale}  # another normalization: its own amplification
        key: object = (source, v) if source == "running_new" else (source, v.eps, v.affine, v.center, v.scale)
        if key not in cache:
            scale = _scale_of(v, g, b)
            if source == "batch":
                cache[key] = output_tolerance(x, scale, b, eps=v.eps, **shape)
            elif source == "running_new":
                try:
                    new = oracle.step(x, g, b, rm, rv, True, v, output=False, t=t)
                except ValueError:  # the model has no statistics to store: it cannot match anyway
                    new = oracle.Step(np.empty(0), rm, rv)
                cache[key] = output_tolerance(x, scale, b, new.running_mean, new.running_var, eps=v.eps, **shape)
            elif source in ("crossed", "mean_twice", "var_twice"):
                mean = rv if source in ("crossed", "var_twice") else rm
                var = rm if source in ("crossed", "mean_twice") else rv
                cache[key] = output_tolerance(x, scale, b, mean, var, eps=v.eps, **shape)
            else:
                cache[key] = output_tolerance(x, scale, b, rm, rv, eps=v.eps, **shape)
        return cache[key]

    return tol


def _scale_of(v: Variant, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    """What multiplies the normalized input under a model (rounding error scales with it)."""
    if v.affine == "none":
        return np.ones_like(g)
    if v.affine == "swapped":
        return b
    if v.affine == "one_plus_gamma":
        return 1.0 + g
    if v.affine == "beta_both":
        return b
    return g


def _pooled_when_all(tol: np.ndarray) -> Callable[[Variant], np.ndarray]:
    """A statistic's tolerance under a model: one over every element (no axis)
    rounds like the largest feature, so each feature gets the largest tolerance."""
    pooled = np.broadcast_to(tol.max(axis=-1, keepdims=True), tol.shape)
    return lambda v: pooled if v.axis == "all" or v.variance == "pooled" else tol


def _finite_state(traj: Trajectory, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Scored cases whose running statistics after ``prefix`` are finite (and the
    variance not negative), as a mask over all cases and over the scored ones. A
    check that starts from the module's own state skips the others: they were
    charged where the state went wrong, and no output from them can be right."""
    mean, var = traj.state(prefix)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(mean).all(axis=-1) & np.isfinite(var).all(axis=-1) & (var >= 0).all(axis=-1)
    sel = traj.scored & finite
    if not sel.any():
        return None
    return sel, finite[traj.scored]


def _subset(array: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return array if keep.all() else array[keep]


@dataclasses.dataclass(frozen=True)
class _Apply:
    """One apply's scored cases: which ones, their input, params and prior state."""

    sel: np.ndarray
    x: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray


def _apply_from_own_state(traj: Trajectory, step: int | None, before: str) -> _Apply | None:
    """The inputs of a training step (None: the eval apply) that starts from the
    module's own state after ``before``; None if that state is NaN everywhere."""
    selection = _finite_state(traj, before)
    if selection is None:
        return None
    sel, keep = selection
    gamma, beta = traj.params()
    mean, var = traj.state(before)
    return _Apply(sel, _subset(traj.scored_input(step), keep), gamma[sel], beta[sel], mean[sel], var[sel])


def _require_running_stats(ev: Evidence) -> None:
    good, _ = ev.trajectories()
    if good and (good[0].stat_name("mean") is None or good[0].stat_name("var") is None):
        raise Skip("no running mean/variance found in batch_stats (see the variables check)")


def _prefix_before(step: int) -> str:
    return "init" if step == 0 else f"train{step - 1}"


def train_output(ev: Evidence) -> Outcome:
    expected = "training mode: gamma * (x - mean) / sqrt(var + eps) + beta with this batch's mean and biased variance over axis 0"

    def build(traj: Trajectory) -> list[Item]:
        gamma, beta = traj.params()
        items = []
        for s in range(traj.steps):
            mean, var = traj.state(_prefix_before(s))
            sel = traj.scored
            g, b, rm, rv, xs = gamma[sel], beta[sel], mean[sel], var[sel], traj.scored_input(s)
            items.append(Item(
                label=f"training step {s + 1} on {traj.label}",
                observed=traj.output(f"train{s}")[sel],
                expected=lambda v, xs=xs, g=g, b=b, rm=rm, rv=rv, t=s + 1: oracle.step(xs, g, b, rm, rv, True, v, t=t).y,
                tol=_output_tol(xs, g, b, rm, rv, train=True, t=s + 1),
                families=_families(traj),
            ))
        return items

    return _run_module_items(ev, build, TRAIN_TAGS, expected)


def running_update(ev: Evidence) -> Outcome:
    expected = "after each training apply: running = 0.9 * running + 0.1 * batch statistic (mean, biased variance)"
    _require_running_stats(ev)

    def build(traj: Trajectory) -> list[Item]:
        items = []
        for s in range(traj.steps):
            a = _apply_from_own_state(traj, s, _prefix_before(s))
            if a is None:
                continue
            new_mean, new_var = traj.state(f"train{s}")
            tol_mean, tol_var = stats_tolerance(a.x, a.mean, a.var)
            for which, observed, tol in (("mean", new_mean[a.sel], tol_mean), ("var", new_var[a.sel], tol_var)):
                items.append(Item(
                    label=f"running_{which} after training step {s + 1} on {traj.label}",
                    observed=observed,
                    expected=lambda v, a=a, which=which, t=s + 1: getattr(
                        oracle.step(a.x, a.gamma, a.beta, a.mean, a.var, True, v, output=False, t=t), f"running_{which}"),
                    tol=_pooled_when_all(tol),
                    families=_families(traj, a.sel),
                ))
        return items

    # The mean and the variance are diagnosed apart: a mistake in one update only
    # (the variance's divisor, a forgotten assignment) is named too. The updates
    # from grader-chosen statistics count as well: from a fresh module's zeros and
    # ones, some wrong updates look like none at all.
    given = _updates_from_given_state(ev)
    outcome = _run_module_items(ev, build, UPDATE_TAGS, expected, group=lambda item: item.label.split(" ", 1)[0],
                                extra=given)
    if outcome.passed or outcome.tags or not given:
        return outcome
    # No one mistake explains both: the module's own steps and the grader-chosen ones
    # apart. A layer right with its defaults but not when momentum=0.9 is passed by
    # name (PyTorch's convention: momentum=0.1, the update reversed) is named from the latter.
    apart = _run_module_items(ev, build, UPDATE_TAGS, expected,
                              group=lambda item: (item.label.split(" ", 1)[0], "grader-chosen" in item.label),
                              extra=given, all_named=True)  # every part it fails must have its own name
    return apart if apart.tags else outcome


def _updates_from_given_state(ev: Evidence) -> list[Item]:
    """The training updates of the trained-state probe, as running_update items
    (none where that probe failed: the trained-state check says why)."""
    only_updates = set(_STATE_PARTS.values()) - {"running_update"}
    items = []
    for probe in ev.suite.module_probes("state"):
        result = ev.result(probe)
        if result.error is not None:
            continue
        try:
            items += _state_items(probe, result, only_updates, stats_in_params=False)
        except Malformed:
            continue
    return items


def eval_output(ev: Evidence) -> Outcome:
    expected = "eval mode: gamma * (x - running_mean) / sqrt(running_var + eps) + beta"

    def build(traj: Trajectory) -> list[Item]:
        items = []
        a = _apply_from_own_state(traj, None, f"train{traj.steps - 1}")
        if a is not None:
            items.append(Item(
                label=f"eval after {traj.steps} training steps on {traj.label}",
                observed=traj.output("eval")[a.sel],
                expected=lambda v: oracle.step(a.x, a.gamma, a.beta, a.mean, a.var, False, v).y,
                tol=_output_tol(a.x, a.gamma, a.beta, a.mean, a.var, train=False),
                families=_families(traj, a.sel),
            ))
        # Eval straight after init too: the flow check compares an eval flow with this
        # output (fresh/y), so it is scored here, where the module must earn it.
        f = _apply_from_own_state(traj, 0, "init")
        if f is not None:
            items.append(Item(
                label=f"eval right after init on {traj.label}",
                observed=take(traj.result.arrays, "fresh/y", (traj.cases, traj.n, traj.d),
                              f"the output of eval right after init on {traj.label}")[f.sel],
                expected=lambda v: oracle.step(f.x, f.gamma, f.beta, f.mean, f.var, False, v).y,
                tol=_output_tol(f.x, f.gamma, f.beta, f.mean, f.var, train=False),
                families=_families(traj, f.sel),
            ))
        return items

    return _run_module_items(ev, build, EVAL_TAGS, expected)


def eval_frozen(ev: Evidence) -> Outcome:
    expected = "eval mode leaves running_mean and running_var exactly as they were"
    _require_running_stats(ev)

    def build(traj: Trajectory) -> list[Item]:
        a = _apply_from_own_state(traj, None, f"train{traj.steps - 1}")
        if a is None:
            return []
        after_mean, after_var = traj.state("eval")
        tol_mean, tol_var = stats_tolerance(a.x, a.mean, a.var)
        return [
            Item(f"running_{which} after eval on {traj.label}", observed[a.sel],
                 lambda v, which=which: getattr(
                     oracle.step(a.x, a.gamma, a.beta, a.mean, a.var, False, v, output=False), f"running_{which}"),
                 tol, _families(traj, a.sel))
            for which, observed, tol in (("mean", after_mean, tol_mean), ("var", after_var, tol_var))
        ]

    return _run_module_items(ev, build, FROZEN_TAGS, expected)


# What each part of the trained-state probe repeats: a part whose own check
# failed is not judged again here (one cause, one charge).
_STATE_PARTS = {("train", "y"): "train_output", ("train", "stats"): "running_update",
                ("eval", "y"): "eval_output", ("eval", "stats"): "eval_frozen"}


def _state_items(probe: Probe, result: ProbeResult, skip: set[str], stats_in_params: bool) -> list[Item]:
    a = probe.arrays
    k = returned_cases(result, len(a["x"]))
    if not k:
        raise Malformed("the arrays returned for one probe have inconsistent numbers of cases")
    x, g, b, rm, rv = (a[name][:k].astype(np.float64) for name in ("x", "gamma", "beta", "running_mean", "running_var"))
    _, n, d = x.shape
    label = f"{n}x{d}"
    items = []
    tol_mean, tol_var = stats_tolerance(x, rm, rv)
    for mode, train in (("train", True), ("eval", False)):
        if _STATE_PARTS[(mode, "y")] not in skip:
            y = take(result.arrays, f"{mode}/y", (k, n, d), f"the {mode} output on {label}")
            tol = _output_tol(x, g, b, rm, rv, train)
            items.append(Item(f"{mode} output with trained params on {label}", y,
                              lambda v, train=train: oracle.step(x, g, b, rm, rv, train, v).y, tol))
        if _STATE_PARTS[(mode, "stats")] in skip:
            continue
        roles = role_names(sorted(key.split("/", 1)[1] for key in result.arrays if key.startswith(f"{mode}/")))
        for which, tol_s in (("mean", tol_mean), ("var", tol_var)):
            name = roles.get(f"running_{which}", f"batch_stats/running_{which}")
            if stats_in_params and name not in roles.values():  # apply cannot change params: as given
                got = {"mean": rm, "var": rv}[which]
            else:
                got = take(result.arrays, f"{mode}/{name}", (k, d), f"running_{which} after {mode} on {label}",
                           squeeze=True)
            items.append(Item(f"running_{which} after {'training' if train else 'eval'} from grader-chosen "
                              f"statistics on {label}", got,
                              lambda v, train=train, which=which: getattr(oracle.step(x, g, b, rm, rv, train, v), f"running_{which}"),
                              _pooled_when_all(tol_s)))
    return items


def given_state(ev: Evidence) -> Outcome:
    """Training and eval from grader-chosen gamma/beta and statistics: what the
    fresh-module checks cannot see (gamma and beta are ones and zeros at init).
    A part whose own check already failed is not judged again."""
    expected = ("with trained gamma/beta and running statistics: the training output, its "
                "update, the eval output and unchanged statistics in eval")
    skip = {check for check in _STATE_PARTS.values() if check in ev.failed}
    if {"train_output", "eval_output"} <= skip:
        # Its point is the outputs with trained gamma and beta: with both output checks
        # failed there is nothing of its own left to verify, and nothing unverified earns points.
        raise Skip("the training and eval output checks did not pass (see them), so the outputs with "
                   "trained gamma/beta cannot be judged on their own")
    good, _ = ev.trajectories()
    stats_in_params = bool(good) and (good[0].stat_name("mean") or "").startswith("params/")
    items: list[Item] = []
    errors = []
    for probe in ev.suite.module_probes("state"):
        result = ev.result(probe)
        if result.error is not None:
            errors.append((f"{probe.params['shape'][0]}x{probe.params['shape'][1]}", result.error))
            continue
        try:
            # (its training update is one of running_update's items: judged there)
            items += _state_items(probe, result, skip | {"running_update"}, stats_in_params)
        except Malformed as err:
            return Outcome(False, expected, str(err), ("variable_shape",) if _shape_fault(ev) else ())
    if errors:
        square_ok = any(p.params["shape"][0] == p.params["shape"][1] and ev.result(p).error is None
                        for p in ev.suite.module_probes("state"))
        return _errors_outcome(errors, expected, square_ok, _shape_fault(ev))
    outcome = _shape_explains(ev, _from_diagnosis(diagnose(items, ALL_TAGS), expected))
    if skip:
        outcome = dataclasses.replace(outcome, notes=outcome.notes + (
            "Not judged again here: " + ", ".join(f"'{ev.check_names.get(c, c)}'" for c in sorted(skip)) + " (failed above).",))
    return outcome


def _fails_on_shapes_like(ev: Evidence, probe: Probe) -> bool:
    """Whether the module's own training run raised on an input of the same kind
    (square or not) as ``probe``'s."""
    n, d = probe.params["shape"]
    _, bad = ev.trajectories()
    return any((p.params["shape"][0] == p.params["shape"][1]) == (n == d) for p, _ in bad)


def _shape_explains(ev: Evidence, outcome: Outcome) -> Outcome:
    """An unexplained failure on grader-chosen (D,) gamma/beta and statistics, by a
    module whose variables have another shape: the shape's consequence, charged
    once by the variables check."""
    if outcome.passed or outcome.tags or not _shape_fault(ev):
        return outcome
    return dataclasses.replace(outcome, tags=("variable_shape",))


def gradients(ev: Evidence) -> Outcome:
    return _shape_explains(ev, _gradients(ev))


def _gradients(ev: Evidence) -> Outcome:
    expected = "gradients of a training-mode loss w.r.t. x, gamma and beta, through the batch statistics"
    (probe,) = ev.suite.module_probes("grad")
    result = ev.result(probe)
    if result.error is not None:
        observed = f"{result.error['type']}: {result.error['message']}"
        raised = error_signature(result.error)
        if ev.failed.get("train_output") and _fails_on_shapes_like(ev, probe):
            # The module raises on inputs of this kind in training too: named there.
            return Outcome(False, expected, observed, ev.failed["train_output"], raised=raised)
        return Outcome(False, expected, observed, raised=raised)
    a = probe.arrays
    k = returned_cases(result, len(a["x"]))
    if not k:
        return Outcome(False, expected, "the arrays returned for the gradients have inconsistent numbers of cases")
    x, gamma, w = a["x"][:k], a["gamma"][:k], a["w"][:k]
    _, n, d = x.shape
    tol = grad_tolerance(x, gamma, w)
    true = oracle.train_grads(x, gamma, w)
    blocked = oracle.train_grads(x, gamma, w, stop_stats=True)
    try:
        got = {name: take(result.arrays, name, shape, f"the gradient w.r.t. {name}")
               for name, shape in (("x", (k, n, d)), ("gamma", (k, d)), ("beta", (k, d)))}
    except Malformed as err:
        return Outcome(False, expected, str(err))
    # A named mistake of the training output (or, invisible with a fresh module's
    # ones and zeros, of the trained-state one) is the model to differentiate.
    models = ev.models.get("train_output", ()) or ev.models.get("given_state", ())
    if "train_output" in ev.failed and not models:
        raise Skip("the training output is wrong for a reason that could not be named (see that check), "
                   "so its gradient cannot be judged")
    if models:
        # The training output is wrong in a named way (charged there): judge the
        # gradient of that very computation (of any model that reproduced it), so
        # that only the gradient's own mistakes are charged here.
        tol = {name: 4.0 * t for name, t in tol.items()}
        candidates = [oracle.model_grads(x, gamma, a["beta"][:k], a["running_mean"][:k], a["running_var"][:k], w, m)
                      for m in models]
        candidates = [c for c in candidates if all(np.isfinite(v).all() for v in c.values())]
        if not candidates:
            raise Skip("the training output's named mistake has no finite gradient here")
        true = next((c for c in candidates if all(worst(got[n], c[n], tol[n]) is None for n in c)), candidates[0])
    for name in ("x", "gamma", "beta"):
        miss = worst(got[name], true[name], tol[name])
        if miss is not None:
            if name == "x" and within(got["x"], blocked["x"], 4 * tol["x"]).all():
                return Outcome(False, expected, "the gradient w.r.t. x equals gamma / std times the upstream gradient, "
                               "as if the batch mean and variance were constants", ("gradient_blocked",))
            return Outcome(False, expected, f"the gradient w.r.t. {name} on {n}x{d}: {miss.summary()}")
    if models:
        return Outcome(True, expected, notes=("Judged as the gradient of your training output, whose mistake is "
                                              "charged in the training output check.",))
    return Outcome(True, expected)


def jittable(ev: Evidence) -> Outcome:
    """Advice only: whether the module ran under jit is the worker's own word,
    which the grader cannot check, so it earns no points (SECURITY.md)."""
    expected = "init and apply run under jax.jit (and jax.vmap), advisory"
    for probe in ev.suite.module_probes("default"):
        meta = ev.meta(probe)
        if meta.get("mode") == "eager":
            err = meta.get("jit_error") if isinstance(meta.get("jit_error"), dict) else {}
            return Outcome(False, expected, "under jit it raised: see the note", ("not_jittable",), notes=(
                f"Your module did not run under jax.jit ({str(err.get('type', 'Error'))}: "
                f"{str(err.get('message', ''))}); it was graded case by case instead. Real training loops jit "
                "the step: keep Python control flow off traced values.",))
    return Outcome(True, expected)


# --- the init_and_apply flow -------------------------------------------------------

_SEED_WORDS = ("prng key seed must be an integer", "seed must be", "key must be", "integer")
_MUTABLE_WORDS = ("immutable", "modifyscopevariable", "cannot update variable")
_UNPACK_WORDS = ("unpack",)


def _flow_error_tags(err: dict[str, str]) -> tuple[str, ...]:
    text = f"{err['type']} {err['message']}".lower()
    if "tracecontexterror" in text or "different trace level" in text:
        return ("jax_jit_on_state",)  # NNX state mutated under a plain jax.jit
    if "cannot reshape" in text:
        return ("output_not_flat",)
    if "scopecollectionnotfound" in text or "scopeparamnotfound" in text or (
            err["type"] == "KeyError" and ("params" in text or "batch_stat" in text)):
        return ("flow_collections",)
    if err["type"] == "type" and "init_and_apply's result" in text:
        return ("output_not_flat",)
    if any(w in text for w in _MUTABLE_WORDS) or any(w in text for w in _UNPACK_WORDS):
        return ("apply_not_mutable",)
    if "prng" in text or ("seed" in text and any(w in text for w in _SEED_WORDS)):
        return ("seed_not_cast",)
    return ()


def _write_shape(ev: Evidence, err: dict[str, str]) -> tuple[str, ...]:
    """A flow that fails on the write the module's own probes had to reshape (NNX,
    keepdims statistics written with [...] =): the module's mistake, charged by the
    variables check, not the flow's."""
    good, _ = ev.trajectories()
    if "cannot broadcast to shape with fewer dimensions" in err["message"].lower() and any(
            RESHAPED_WRITE in t.result.arrays for t in good):
        return ("state_shape_changes",)
    return ()


def _missing_collection(ev: Evidence, err: dict[str, str]) -> tuple[str, ...]:
    """A flow that fails looking up batch_stats in a module that declares none:
    the module's mistake (charged by the variables check), not the flow's."""
    good, _ = ev.trajectories()
    if "batch_stats" in err["message"] and good and not any(n.startswith("batch_stats/") for n in good[0].names("init")):
        return ("stats_not_in_batch_stats",)
    return ()


def _calls(meta: dict) -> list[dict]:
    """What the worker noted of init_and_apply's calls (sandbox.clean_meta keeps
    only a list of dicts)."""
    calls = meta.get("calls")
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def _state_collections(ev: Evidence) -> set[str]:
    """The collections the module's own init keeps its running statistics in (the
    contract's batch_stats, or the module's own spelling of it, charged elsewhere)."""
    good, _ = ev.trajectories()
    names = good[0].names("init") if good else []
    own = {n.split("/", 1)[0] for n in names if not n.startswith(("params/", "array/"))}
    return own or {"batch_stats"}


def _calls_missing_mutable(meta: dict, collections: set[str] = frozenset({"batch_stats"})) -> bool:
    """Whether the worker noted an apply whose `mutable` leaves out every collection
    the module keeps its statistics in (the worker's word: it can only cost points)."""
    for call in _calls(meta):
        if call.get("call") == "apply":
            mutable = call.get("mutable")
            if mutable is True:
                continue
            if not (isinstance(mutable, list) and collections & set(mutable)):
                return True
    return False


def _flow_case(probe: Probe) -> tuple[int, int, float, str]:
    """N, D, the flag, and how to name the case to a student."""
    n, d = probe.params["shape"]
    flag = float(probe.params["flag"])
    return n, d, flag, f"{'eval' if flag else 'training'} flag on {n}x{d}"


def _close(got: np.ndarray, want: np.ndarray) -> bool:
    """Two runs of the same module agree (NaN where the other has NaN too)."""
    with np.errstate(invalid="ignore"):
        same_nan = np.isnan(got) == np.isnan(want)
        near = np.abs(got - want) <= 1e-5 * (1.0 + np.abs(want))
    return bool(np.all(same_nan & (near | np.isnan(want))))


def _reference_y(ev: Evidence, probe: Probe, mode: str | None = None) -> np.ndarray | None:
    """What the student's own module gives after init and one apply, in ``probe``'s
    mode (or ``mode``), on ``probe``'s seed and input: a case of the module probe
    of that shape (None where the module does not run)."""
    module, index = ev.suite.flow_reference(probe)
    mode = mode or ("eval" if probe.params["flag"] else "train")
    n, d = probe.params["shape"]
    result = ev.result(module)
    cases = len(module.families)
    try:
        y = take(result.arrays, "fresh/y" if mode == "eval" else "train0/y", (cases, n, d), "")
    except Malformed:
        return None
    return y[index].reshape(-1)


def _module_stats_after(ev: Evidence, probe: Probe, prefix: str) -> dict[str, np.ndarray] | None:
    """{role: (D,) values} of the running statistics the student's own module holds
    after ``prefix`` ('init', 'train0') in the module probe case that matches the
    flow ``probe`` (same seed and input); None where that case did not run."""
    module, index = ev.suite.flow_reference(probe)
    traj = next((t for t in ev.trajectories()[0] if t.probe is module and index < t.cases), None)
    if traj is None or traj.stat_name("mean") is None or traj.stat_name("var") is None:
        return None
    try:
        mean, var = traj.state(prefix)
    except Malformed:
        return None
    return {"running_mean": mean[index], "running_var": var[index]}


def _built_model_problem(ev: Evidence, probe: Probe, result: ProbeResult) -> tuple[tuple[str, ...], str] | None:
    """What is wrong with the running statistics of the model a training flow built
    (the NNX worker reports its state after init_and_apply returned): they must be
    what the student's own module holds after one training call on that input. A
    flow whose update never reaches the model (a plain jax.jit over the model passed
    as an argument, a split whose new state is dropped) returns the right output and
    leaves them where construction put them."""
    n, d, _, where = _flow_case(probe)
    if MODEL_UNREADABLE in result.arrays:
        return None  # built and called inside a jitted function of the flow's own: gone with it
    names = sorted(k[len(MODEL_PREFIX) + 1:] for k in result.arrays if k.startswith(MODEL_PREFIX + "/"))
    if not names:
        return (), (f"{where}: init_and_apply never built a MyBatchNorm: the output must come from the model, "
                    "constructed, switched with train()/eval() and called")
    want, before = _module_stats_after(ev, probe, "train0"), _module_stats_after(ev, probe, "init")
    roles = role_names(names)
    if want is None or before is None or not {"running_mean", "running_var"} <= set(roles):
        return None  # the module's own statistics are charged in its checks
    got = {}
    for role in ("running_mean", "running_var"):
        value = result.arrays[f"{MODEL_PREFIX}/{roles[role]}"]
        if not isinstance(value, np.ndarray) or value.size != d or value.dtype.kind not in "fiub":
            return (), (f"{where}: the model init_and_apply built holds {roles[role]} of shape "
                        f"{getattr(value, 'shape', '?')}, not ({d},)")
        got[role] = value.reshape(d).astype(np.float64)
    if all(_close(got[r], want[r]) for r in got):
        return None
    if all(_close(got[r], before[r]) for r in got) and not all(_close(want[r], before[r]) for r in got):
        return ("jax_jit_on_state",), (
            f"{where}: the output is right, but afterwards the model init_and_apply built still holds the "
            "running statistics it was constructed with: the training call's update never reached the model "
            "(a training loop would evaluate with zeros and ones)")
    return (), (f"{where}: afterwards the model init_and_apply built holds other running statistics than your "
                "MyBatchNorm's own training call leaves (was the model called more than once, or its state "
                "replaced?)")


def _joined(problems: list[str], most: int = 3) -> str:
    """Problems of the form 'where: what', the same 'what' said once for all its places."""
    places: dict[str, list[str]] = {}
    for problem in problems:
        where, _, what = problem.partition(": ")
        places.setdefault(what, []).append(where)
    def at(wheres: list[str]) -> str:
        wheres = list(dict.fromkeys(wheres))
        return " and ".join(wheres) if len(wheres) <= 2 else f"{wheres[0]} (and {len(wheres) - 1} more flows)"

    said = [f"{at(wheres)}: {what}" for what, wheres in places.items()]
    return "; ".join(said[:most]) + (f"; and {len(said) - most} more" if len(said) > most else "")


def flow(ev: Evidence, judge_model: bool = False) -> Outcome:
    """init_and_apply must give what the student's own MyBatchNorm gives after
    init and one apply on the same seed and input, which the grader runs as an
    ordinary, scored case of the module's probe: a module that behaved otherwise
    there to cover a wrong flow would lose that case's module checks. Judged on
    behaviour: a flow that differs in spelling but not in result (a float flag
    used as a condition, mutable only when training) passes. A case where the
    module itself does not run cannot be judged; the check needs at least one
    judged case in each mode."""
    expected = ("init_and_apply(seed: float, x, flag: float): init with PRNGKey(int(seed)), split params and "
                "batch_stats, apply in the mode the flag says with mutable=['batch_stats'], return N*D values in 1-D")
    tags: list[str] = []
    problems: list[str] = []
    raised: set[str] = set()
    judged: set[str] = set()
    collections = _state_collections(ev)
    for probe in ev.suite.flow_probes():
        n, d, flag, where = _flow_case(probe)
        mode, other = ("eval", "train") if flag else ("train", "eval")
        want = _reference_y(ev, probe)
        if want is None:
            continue  # the module fails here: charged in the module checks
        judged.add(mode)
        result = ev.result(probe)
        if result.error is not None:
            tags += _missing_collection(ev, result.error) or _write_shape(ev, result.error) or \
                _flow_error_tags(result.error)
            problems.append(f"{where}: raised {result.error['type']}: {result.error['message']}")
            raised.add(error_signature(result.error))
            continue
        model_problem = _built_model_problem(ev, probe, result) if judge_model and not flag else None
        if model_problem is not None:
            tags += model_problem[0]
            problems.append(model_problem[1])
            continue
        if _calls_missing_mutable(result.meta, collections) and not flag:
            tags.append("apply_not_mutable")
            problems.append(f"{where}: apply was called without 'batch_stats' in mutable")
        y = result.arrays.get("y")
        if not isinstance(y, np.ndarray) or y.dtype.kind not in "fiub":
            problems.append(f"{where}: returned no numeric array")
            continue
        if y.shape != (n * d,):
            if "apply_not_mutable" not in tags:
                tags.append("output_not_flat")
            also = (": the output flattened together with the 2 x D updated statistics (return the output "
                    "alone)") if y.size == n * d + 2 * d else ""
            problems.append(f"{where}: returned shape {y.shape}, expected ({n * d},){also}")
            continue
        got = y.astype(np.float64)
        if _close(got, want):
            continue
        other_y = _reference_y(ev, probe, other)
        if other_y is not None and _close(got, other_y):
            tags.append("flag_ignored")
            problems.append(f"{where}: the output is the {other}-mode one")
        elif np.isfinite(got).all() and np.isfinite(want).all() and np.allclose(np.sort(got), np.sort(want),
                                                                                 rtol=1e-5, atol=1e-5):
            tags.append("output_not_flat")
            problems.append(f"{where}: the right values in another order (flatten the (N, D) output row by row)")
        else:
            problems.append(f"{where}: the output is not what your MyBatchNorm gives after init and one apply "
                            "(did init_and_apply build its model from MyBatchNorm and apply it to x?)")
    if problems:
        only_raised = len(raised) == 1 and all(": raised " in p for p in problems)
        return Outcome(False, expected, _joined(problems), tuple(dict.fromkeys(tags)),
                       raised=next(iter(raised)) if only_raised else "")
    if judged != {"train", "eval"}:
        missing = " and ".join(sorted({"train", "eval"} - judged))
        raise Skip(f"your MyBatchNorm does not run in {missing} mode on these inputs (see the module checks), "
                   "so the flow cannot be compared with it there")
    return Outcome(True, expected)


# Module checks whose failure explains a wrong end-to-end output that init_and_apply
# got from the student's own MyBatchNorm (the output a fresh module gives).
_MODULE_OUTPUT_CHECKS = ("variables", "initial_values", "init_guard", "train_output", "eval_output")


def end_to_end(ev: Evidence) -> Outcome:
    """init_and_apply with the student's own module against the contract: what a
    grader that only compares outputs would see. One cause, one charge: a flow
    mistake fails it with the tag the flow check named, and an output that is
    exactly what the student's module gives, where a module check already failed,
    is that check's to charge."""
    expected = "init_and_apply with your MyBatchNorm gives the layer's output in both modes"
    module_charged = [c for c in _MODULE_OUTPUT_CHECKS if c in ev.failed]
    explained = False
    judged = 0
    for probe in ev.suite.flow_probes():
        result = ev.result(probe)
        n, d, flag, where = _flow_case(probe)
        if module_charged and _reference_y(ev, probe) is None:
            # The module itself fails on this input (charged in its checks): the flow is
            # not judged here, whatever it did. Not excused either: what a raised flow's
            # report says (its error, its noted calls) is the worker's word, and a word
            # earns nothing; a flow is credited only on inputs where it can be judged.
            continue
        judged += 1
        if result.error is not None:
            return Outcome(False, expected, f"{where}: raised {result.error['type']}: {result.error['message']}",
                           _missing_collection(ev, result.error) or _write_shape(ev, result.error) or
                           _flow_error_tags(result.error), raised=error_signature(result.error))
        x = probe.arrays["x"][None].astype(np.float64)
        ones, zeros = np.ones((1, d)), np.zeros((1, d))
        truth = {mode: oracle.step(x, ones, zeros, zeros, ones, train=mode == "train").y for mode in ("train", "eval")}
        mode, other = ("eval", "train") if flag else ("train", "eval")
        tol = output_tolerance(x, ones, zeros) if not flag else output_tolerance(x, ones, zeros, zeros, ones)
        y = result.arrays.get("y")
        if isinstance(y, np.ndarray) and y.dtype.kind in "fiub" and y.size == n * d and y.shape != (n * d,):
            return Outcome(False, expected, f"{where}: returned shape {y.shape}, expected ({n * d},)",
                           ("output_not_flat",))
        y = result.arrays.get("y")
        if not isinstance(y, np.ndarray) or y.dtype.kind not in "fiub" or y.shape != (n * d,):
            numeric = isinstance(y, np.ndarray) and y.dtype.kind in "fiub"
            got = f"shape {y.shape}" if isinstance(y, np.ndarray) else "no numeric array"
            return Outcome(False, expected, f"{where}: init_and_apply returned {got}, expected shape ({n * d},)",
                           ("output_not_flat",) if numeric else ())
        y = y.astype(np.float64)
        miss = worst(y.reshape(1, n, d), truth[mode], tol)
        if miss is None:
            continue
        own = _reference_y(ev, probe)  # what the module itself gives here
        if own is not None and _close(y, own) and module_charged:
            explained = True
            continue
        if worst(y.reshape(1, n, d), truth[other], tol) is None:
            tags = ("flag_ignored",) if own is None or not _close(y, own) else ()
            return Outcome(False, expected, f"{where}: the output is the {other}-mode one", tags)
        return Outcome(False, expected, f"{where}: {miss.summary()}")
    if not judged:
        raise Skip("your MyBatchNorm fails on every input init_and_apply is given (see the module checks), so the "
                   "flow cannot be judged end to end")
    if explained:
        names = ", ".join(f"'{ev.check_names.get(c, c)}'" for c in module_charged)
        return Outcome(True, expected, notes=(f"Its output differs from the contract exactly as your MyBatchNorm's "
                                              f"does: charged in {names}, not again here.",))
    return Outcome(True, expected)


# --- advisories (no points) --------------------------------------------------------


STABLE_ERROR = 0.05


def stability(ev: Evidence) -> Outcome:
    expected = "accurate output for features far from zero (|mean| = 1e4 x std), advisory"
    worst_err = 0.0
    for traj in _complete(ev)[0]:
        advisory = ~traj.scored
        if not advisory.any():
            continue
        x = traj.x_train[:, 0][advisory]
        try:  # (variables of the wrong shape are charged by the variables check)
            gamma, beta = traj.params()
            mean, var = traj.state("init")
            got = traj.output("train0")[advisory]
        except Malformed:
            continue
        true = oracle.step(x, gamma[advisory], beta[advisory], mean[advisory], var[advisory], True).y
        with np.errstate(invalid="ignore"):
            err = float(np.nan_to_num(np.abs(got - true), nan=np.inf).max())
        worst_err = max(worst_err, err)
    # float32 cannot even hold x - mean exactly at this offset: ~1e-3 is the floor
    # of a two-pass variance; the one-pass form is off by whole units.
    if worst_err <= STABLE_ERROR:
        return Outcome(True, expected, notes=(f"Max error {worst_err:.1g} with |mean| = 1e4 x std: "
                                              "your variance is numerically stable.",))
    if not np.isfinite(worst_err):
        return Outcome(True, expected, notes=(
            "With a large offset the training output is NaN or infinite. The one-pass variance "
            "E[x^2] - E[x]^2 can come out slightly below zero in float32 when |mean| >> std, and "
            "sqrt(var + eps) of a negative number is NaN: compute mean((x - mean)^2), or clip the "
            "one-pass variance at 0 as flax.linen.BatchNorm does. Not scored.",))
    return Outcome(True, expected, notes=(
        f"With a large offset the training output is off by up to {worst_err:.2g}. The one-pass variance "
        "E[x^2] - E[x]^2 cancels catastrophically in float32 when |mean| >> std; the two-pass "
        "mean((x - mean)^2) does not. Not scored: flax.linen.BatchNorm's default (use_fast_variance=True) "
        "also uses the one-pass form (clipped at 0) and accepts the same loss of accuracy for speed.",))


def mutable_true(ev: Evidence) -> Outcome:
    expected = "apply with mutable=['batch_stats'], advisory"
    for probe in ev.suite.flow_probes():
        calls = ev.meta(probe).get("calls")
        if isinstance(calls, list) and any(isinstance(c, dict) and c.get("mutable") is True for c in calls):
            return Outcome(True, expected, notes=(
                "init_and_apply uses mutable=True: it works, but apply then also hands back params as "
                "'updated' state, and Flax's maintainers discourage it; name the collection instead.",))
    return Outcome(True, expected)


# Shapes that do not fit the variables explain shape errors in any module check.
_SHAPES = ("variable_shape", "stats_over_features")
_FLOW_NAMES = ("apply_not_mutable", "flow_collections", "jax_jit_on_state", "output_not_flat", "seed_not_cast",
               "stats_not_in_batch_stats", "flag_ignored", "state_shape_changes")

MODULE_RUNS = Check("module_runs", "MyBatchNorm initializes and applies", 0, module_runs)
TRAIN_OUTPUT = Check("train_output", "Training mode normalizes with the batch statistics", 15, train_output,
                     (MODULE_RUNS,), names=TRAIN_TAGS + _SHAPES)
CHECKS: tuple[Check, ...] = (
    MODULE_RUNS,
    Check("variables", "Variables: params gamma/beta, batch_stats running_mean/running_var", 8, variables,
          (MODULE_RUNS,), names=("stats_not_in_batch_stats", "stats_not_variables", "params_not_param",
                                 "wrong_variable_names", "variable_shape", "state_shape_changes",
                                 "dtype_not_float32")),
    Check("initial_values", "Initial values: ones, zeros, zeros, ones", 5, initial_values, (MODULE_RUNS,),
          names=("wrong_initial_values", "built_in_eval_mode")),  # (the mode: NNX only, where it is state)
    Check("init_guard", "init leaves the running statistics alone (is_initializing guard)", 10, init_guard,
          (MODULE_RUNS,), names=("init_updates_stats", "stats_init_from_batch")),
    TRAIN_OUTPUT,
    Check("running_update", "Training mode updates the running statistics (EMA)", 15, running_update, (MODULE_RUNS,),
          names=UPDATE_TAGS + _SHAPES),
    Check("eval_output", "Eval mode normalizes with the running statistics", 10, eval_output, (MODULE_RUNS,),
          names=EVAL_TAGS + _SHAPES),
    Check("eval_frozen", "Eval mode leaves the running statistics unchanged", 5, eval_frozen, (MODULE_RUNS,),
          names=FROZEN_TAGS + _SHAPES),
    Check("given_state", "Trained gamma/beta and running statistics are used correctly", 8, given_state,
          (MODULE_RUNS,), names=ALL_TAGS),
    Check("gradients", "Gradients flow through the batch statistics", 9, gradients, (MODULE_RUNS,),
          names=("gradient_blocked",) + TRAIN_TAGS + _SHAPES),  # a wrong training output's gradient: its tags
    Check("flow", "init_and_apply: init, split, apply(mutable), flatten", 10, flow, (MODULE_RUNS,),
          names=_FLOW_NAMES),
    Check("end_to_end", "init_and_apply with your MyBatchNorm, end to end", 5, end_to_end, (MODULE_RUNS,),
          names=_FLOW_NAMES),
    Check("stability", "Numerical stability with large offsets (advice, no points)", 0, stability, (TRAIN_OUTPUT,),
          advisory=True),
    Check("mutable_true", "apply's mutable argument (advice, no points)", 0, mutable_true, advisory=True),
    Check("jit", "MyBatchNorm works under jax.jit (advice, no points)", 0, jittable, (MODULE_RUNS,), advisory=True,
          names=("not_jittable",)),
)
MAX_SCORE = sum(c.weight for c in CHECKS)

def _explained(outcome: Outcome, charged: dict[str, str], named: Mapping[str, Pitfall]) -> Outcome | None:
    """A failure whose every named mistake an earlier check already charged."""
    if outcome.passed or not outcome.tags or not all(t in charged for t in outcome.tags):
        return None
    where = "; ".join(f"{named[t].title} (charged in '{charged[t]}')" for t in outcome.tags)
    return Outcome(True, outcome.expected, notes=outcome.notes + (f"Correct apart from: {where}.",))


def evaluate(ev: Evidence, checks: tuple[Check, ...] = CHECKS,
             pitfalls: Mapping[str, Pitfall] = PITFALLS) -> list[CheckResult]:
    """Run the table in order; the loads gate is the import itself. Only the
    exercise's own ``pitfalls`` are named (a tag it does not know is dropped)."""
    results: dict[str, CheckResult] = {}
    charged: dict[str, str] = {}
    shown: dict[str, str] = {}  # an exception of the student's code -> the check that showed it
    # Checks speak in the engine's findings (ev.failed keeps those: later checks read
    # them); results carry the exercise's own tag for each.
    named = {p.finding: p for p in pitfalls.values()}
    ev.check_names = {c.id: c.name for c in checks}
    for check in checks:
        failed_deps = [d.id for d in check.depends if results[d.id].status != "passed"]
        if ev.run.import_error is not None:
            err = ev.run.import_error
            if err["type"] == "missing":
                reason = f"missing {err['message']}"
            elif err["type"] in GRADER_KINDS:
                reason = err["message"]
            else:
                reason = f"{err['type']}: {err['message']}"
            # The reason once, on the first check; the others point to it.
            said = f"the submission could not be loaded: {reason}" if not results else \
                "not run: the submission could not be loaded (see the first check)"
            results[check.id] = CheckResult(check.id, check.name, check.weight, "skipped", observed=said,
                                            advisory=check.advisory)
            continue
        if failed_deps:
            ev.failed[check.id] = ()
            names = ", ".join(f"'{results[d].name}'" for d in failed_deps)
            results[check.id] = CheckResult(check.id, check.name, check.weight, "skipped",
                                            observed=f"not checked: depends on {names}", advisory=check.advisory)
            continue
        try:
            outcome = check.run(ev)
        except Skip as skip:
            ev.failed[check.id] = ()
            results[check.id] = CheckResult(check.id, check.name, check.weight, "skipped",
                                            observed=f"not checked: {skip}", advisory=check.advisory)
            continue
        except Malformed as err:  # an output of the wrong shape or kind: said in the student's terms
            ev.failed[check.id] = ()
            results[check.id] = CheckResult(check.id, check.name, check.weight, "skipped",
                                            observed=f"not checked: {err}", advisory=check.advisory)
            continue
        except Exception as err:  # noqa: BLE001 - a grader bug must not hide the other checks
            # For the instructor (and the grader's own tests, which fail on it); the
            # student reads that this check could not judge their outputs, not why.
            detail = f"{type(err).__name__}: {err}"[:300]
            print(f"grader: internal error in check {check.id}: {detail}", file=sys.stderr)
            ev.failed[check.id] = ()
            results[check.id] = CheckResult(check.id, check.name, check.weight, "skipped",
                                            observed="not checked: the grader could not judge this part of your "
                                                     "outputs (your instructor has the details)",
                                            advisory=check.advisory)
            continue
        if check.expected:
            outcome = dataclasses.replace(outcome, expected=check.expected)
        if any(t not in named or t not in check.names for t in outcome.tags):
            outcome = dataclasses.replace(outcome, tags=tuple(t for t in outcome.tags
                                                              if t in named and t in check.names))
        outcome = _explained(outcome, charged, named) or outcome
        if not outcome.passed and outcome.raised and outcome.raised in shown \
                and all(t in charged for t in outcome.tags):
            # One cause, one charge: the exception is shown (and named) where it first
            # failed a check; here there is nothing else to judge.
            ev.failed[check.id] = outcome.tags
            kind = outcome.raised.split(":", 1)[0]
            results[check.id] = CheckResult(check.id, check.name, check.weight, "skipped",
                                            observed=f"not checked: it needs the call that raises {kind} "
                                                     f"(shown in '{shown[outcome.raised]}')",
                                            advisory=check.advisory)
            continue
        if not outcome.passed and outcome.raised:
            shown.setdefault(outcome.raised, check.name)
        status = "passed" if outcome.passed else "failed"
        if not outcome.passed:
            ev.failed[check.id] = outcome.tags
            if outcome.models:
                ev.models[check.id] = outcome.models
            for tag in outcome.tags:
                charged.setdefault(tag, check.name)
        results[check.id] = CheckResult(check.id, check.name, check.weight, status, outcome.expected,
                                        outcome.observed,
                                        tuple(named[t].tag for t in outcome.tags) if not outcome.passed else (),
                                        outcome.notes, check.advisory)
    return list(results.values())
