"""The NNX worker adapter (grader.probes_nnx), run in-process on the practice suite.

It must report what grader.probes reports for a Linen module (same segments, same
keys and shapes), so that the grader's module checks apply unchanged: checked here
on the reference against the NumPy oracle, on the bundled NNX submissions, and on
modules that are wrong in ways the adapter itself must survive.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from grader import oracle, probes, probes_nnx
from grader.cases import Probe, build_suite
from grader.compare import grad_tolerance, output_tolerance, stats_tolerance, within
from grader.oracle import Variant
from grader.probes import ProbeError
from tests.conftest import ROOT

jax.config.update("jax_platforms", "cpu")

SUBMISSIONS = ROOT / "tests" / "submissions_nnx"
CORRECT = sorted((SUBMISSIONS / "correct").glob("*.py"))
WRONG = sorted((SUBMISSIONS / "wrong").glob("*.py"))
REFERENCE = ROOT / "solution" / "nnx" / "batchnorm.py"
SUITE = build_suite(None)
STATS = ("running_mean", "running_var")


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"nnx_submission_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_RUNS: dict[tuple[str, str], tuple[dict[str, np.ndarray], dict]] = {}


def _module_run(path: Path, probe: Probe) -> tuple[dict[str, np.ndarray], dict]:
    """probe_module on one suite probe, once per (file, probe) in this session."""
    key = (str(path), probe.id)
    if key not in _RUNS:
        _RUNS[key] = probes_nnx.probe_module(_load(path).MyBatchNorm, probe.params, probe.arrays)
    return _RUNS[key]


def _default(shape: str = "4x4") -> Probe:
    return next(p for p in SUITE.module_probes("default") if p.id.endswith(shape))


def declared_pitfalls(path: Path) -> list[str]:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# pitfall: "), f"{path.name} must start with '# pitfall: TAG'"
    return [tag.strip() for tag in first.removeprefix("# pitfall: ").split(",")]


# --- what the oracle says a module probe should give ------------------------------


def _expected_default(probe: Probe, variant: Variant = oracle.CONTRACT) -> dict[str, np.ndarray]:
    """Every output of the default segment under ``variant``, float64."""
    train, evalx = probe.arrays["train"].astype(np.float64), probe.arrays["eval"].astype(np.float64)
    cases, steps, _, d = train.shape
    g, b = np.ones((cases, d)), np.zeros((cases, d))
    mean, var = np.zeros((cases, d)), np.ones((cases, d))
    want = {"init/params/gamma": g, "init/params/beta": b,
            "init/batch_stats/running_mean": mean, "init/batch_stats/running_var": var,
            "fresh/y": oracle.step(train[:, 0], g, b, mean, var, False, variant).y}
    for s in range(steps):
        step = oracle.step(train[:, s], g, b, mean, var, True, variant, t=s + 1)
        want[f"train{s}/y"] = step.y
        mean, var = step.running_mean, step.running_var
        want[f"train{s}/batch_stats/running_mean"], want[f"train{s}/batch_stats/running_var"] = mean, var
    step = oracle.step(evalx, g, b, mean, var, False, variant)
    want["eval/y"] = step.y
    want["eval/batch_stats/running_mean"], want["eval/batch_stats/running_var"] = step.running_mean, step.running_var
    return want


def _tolerance(probe: Probe, key: str, expected: dict[str, np.ndarray],
               variant: Variant = oracle.CONTRACT) -> np.ndarray:
    """The grader's float32 tolerance for one output, from the inputs it saw and
    the statistics ``variant`` normalizes with."""
    train, evalx = probe.arrays["train"], probe.arrays["eval"]
    cases, steps, _, d = train.shape
    g, b = np.ones((cases, d)), np.zeros((cases, d))
    prefix, _, rest = key.partition("/")
    x = evalx if prefix == "eval" else train[:, 0] if prefix in ("init", "fresh") else train[:, int(prefix[5:])]
    before = "init" if prefix in ("fresh", "init", "train0") else \
        f"train{steps - 1}" if prefix == "eval" else f"train{int(prefix[5:]) - 1}"
    mean, var = expected[f"{before}/batch_stats/running_mean"], expected[f"{before}/batch_stats/running_var"]
    if rest == "y":
        source = variant.train_stats if prefix.startswith("train") else variant.eval_stats
        if source == "batch":
            return output_tolerance(x, g, b, eps=variant.eps)
        if source == "running_new":
            after = (expected[f"{prefix}/batch_stats/running_mean"], expected[f"{prefix}/batch_stats/running_var"])
            return output_tolerance(x, g, b, *after, eps=variant.eps)
        return output_tolerance(x, g, b, mean, var, eps=variant.eps)
    if prefix == "init":
        return np.full((cases, d), 1e-7)
    tol_mean, tol_var = stats_tolerance(x, mean, var)
    return tol_mean if rest.endswith("mean") else tol_var


def _assert_close(probe: Probe, got: dict[str, np.ndarray], want: dict[str, np.ndarray],
                  variant: Variant = oracle.CONTRACT, where: dict[str, str] | None = None) -> None:
    """Every output ``want`` names, found in ``got`` (under ``where[key]`` if given),
    within the grader's tolerance."""
    for key, expected in want.items():
        name = (where or {}).get(key, key)
        assert name in got, f"{name} missing from {sorted(got)}"
        assert got[name].shape == expected.shape, (name, got[name].shape, expected.shape)
        ok = within(got[name].astype(np.float64), expected, _tolerance(probe, key, want, variant))
        assert ok.all(), f"{name}: cases {np.flatnonzero(~ok)[:5]} differ from the oracle"


# --- the reference: keys, shapes and values ------------------------------------------


@pytest.mark.parametrize("probe", SUITE.module_probes("default"), ids=lambda p: p.id)
def test_default_segment_of_the_reference_is_the_oracle_with_linen_keys(probe: Probe):
    got, meta = _module_run(REFERENCE, probe)
    cases, steps, n, d = probe.arrays["train"].shape
    want = _expected_default(probe)
    tools = {f"{tool}/{c}/{name}" for tool in ("optimizer", "split")
             for c, name in [("params", "gamma"), ("params", "beta"), *(("batch_stats", n) for n in STATS)]}
    assert set(got) == set(want) | {f"{p}/params/{name}" for p in [*(f"train{s}" for s in range(steps)), "eval"]
                                    for name in ("gamma", "beta")} | tools | {"merged/y", "new/y"}
    # a model nobody switched trains: its first call is the first training step's
    np.testing.assert_array_equal(got["new/y"], got["train0/y"])
    # NNX's own tools: the optimizer step moves the params only, split sorts the state
    # into Param and BatchStat, merge rebuilds a model that evaluates the same.
    assert all(not got[f"optimizer/batch_stats/{n}"].any() for n in STATS)
    assert got["optimizer/params/gamma"].any() and got["optimizer/params/beta"].any()
    for name in STATS:
        np.testing.assert_array_equal(got[f"split/batch_stats/{name}"], got[f"train{steps - 1}/batch_stats/{name}"])
    np.testing.assert_array_equal(got["merged/y"], got["eval/y"])
    for key, array in got.items():
        assert array.dtype == np.float32
        assert array.shape == ((cases, n, d) if key.endswith("/y") else (cases, d)), key
    _assert_close(probe, got, want)
    assert meta["mode"] == "jit"
    assert meta["calls"] == [{"call": "init", "use_running_average": "False"},
                             {"call": "eval", "use_running_average": "True"},
                             {"call": "train", "use_running_average": "False"}]


def test_state_segment_places_the_graders_values_and_starts_each_mode_from_them():
    (probe,) = SUITE.module_probes("state")
    got, meta = probes_nnx.probe_module(_load(REFERENCE).MyBatchNorm, probe.params, probe.arrays)
    a = {k: v.astype(np.float64) for k, v in probe.arrays.items()}
    cases, n, d = a["x"].shape
    assert meta["mode"] == "jit"
    assert {k for k in got if not k.split("/")[1] == "params"} == \
        {f"{m}/{k}" for m in ("train", "eval") for k in ("y", "batch_stats/running_mean", "batch_stats/running_var")}
    for mode, train in (("train", True), ("eval", False)):
        step = oracle.step(a["x"], a["gamma"], a["beta"], a["running_mean"], a["running_var"], train)
        tol = output_tolerance(a["x"], a["gamma"], a["beta"], *(() if train else (a["running_mean"], a["running_var"])))
        assert within(got[f"{mode}/y"], step.y, tol).all(), mode
        tol_mean, tol_var = stats_tolerance(a["x"], a["running_mean"], a["running_var"])
        assert within(got[f"{mode}/batch_stats/running_mean"], step.running_mean, tol_mean).all(), mode
        assert within(got[f"{mode}/batch_stats/running_var"], step.running_var, tol_var).all(), mode
        # gamma and beta are the grader's, as placed
        np.testing.assert_array_equal(got[f"{mode}/params/gamma"], probe.arrays["gamma"])


def test_grad_segment_is_the_oracle_gradient():
    (probe,) = SUITE.module_probes("grad")
    got, meta = probes_nnx.probe_module(_load(REFERENCE).MyBatchNorm, probe.params, probe.arrays)
    a = probe.arrays
    assert meta["mode"] == "jit" and set(got) == {"x", "gamma", "beta"}
    want, tol = oracle.train_grads(a["x"], a["gamma"], a["w"]), grad_tolerance(a["x"], a["gamma"], a["w"])
    for name in ("x", "gamma", "beta"):
        assert got[name].shape == want[name].shape
        assert within(got[name], want[name], tol[name]).all(), name


@pytest.mark.parametrize("flow", SUITE.flow_probes(), ids=lambda p: p.id)
def test_flows_give_what_the_module_gives_on_the_same_case(flow: Probe):
    """The grader's flow check: init_and_apply must equal its module's fresh/y (eval)
    or train0/y (train) on the extra case that holds the flow's seed and input."""
    reference = _load(REFERENCE)
    got, meta = probes_nnx.probe_flow(reference, flow.params, flow.arrays)
    n, d = flow.params["shape"]
    assert got["y"].shape == (n * d,) and meta["mode"] == "jit"
    module, index = SUITE.flow_reference(flow)
    assert module.arrays["seeds"][index] == int(flow.params["seed"])
    own, _ = _module_run(REFERENCE, module)
    np.testing.assert_array_equal(got["y"], own["fresh/y" if flow.params["flag"] else "train0/y"][index].ravel())
    mode = "eval" if flow.params["flag"] else "train"
    assert [c["call"] for c in meta["calls"]] == ["init", mode, "__call__"]
    assert meta["calls"][0] == {"call": "init", "num_features": repr(d), "rngs": "Rngs", "use_running_average": "False"}
    assert meta["calls"][2]["use_running_average"] == repr(mode == "eval")


def test_flow_probe_puts_the_students_class_back():
    reference = _load(REFERENCE)
    own = reference.MyBatchNorm
    probes_nnx.probe_flow(reference, SUITE.flow_probes()[0].params, SUITE.flow_probes()[0].arrays)
    assert probes_nnx.probe_flow_group(reference, [({"params": f.params}, f.arrays) for f in SUITE.flow_probes()])
    assert reference.MyBatchNorm is own


def test_groups_give_what_the_probes_give_one_by_one():
    reference = _load(REFERENCE)
    modules = [p for p in SUITE.probes if p.probe == "module"]
    grouped = probes_nnx.probe_module_group(reference.MyBatchNorm, [({"params": p.params}, p.arrays) for p in modules])
    assert grouped is not None
    for i, (probe, (outputs, meta)) in enumerate(zip(modules, grouped)):
        alone, alone_meta = probes_nnx.probe_module(reference.MyBatchNorm, probe.params, probe.arrays)
        if i > 0:  # NNX's tools run once per group, on its first default probe
            alone = {k: v for k, v in alone.items() if not k.startswith(probes_nnx.TOOL_KEYS)}
        assert outputs.keys() == alone.keys() and meta.get("calls") == alone_meta.get("calls")
        for key in outputs:
            np.testing.assert_allclose(outputs[key], alone[key], rtol=1e-6, atol=1e-6, err_msg=f"{probe.id} {key}")
    flows = SUITE.flow_probes()
    grouped_flows = probes_nnx.probe_flow_group(reference, [({"params": f.params}, f.arrays) for f in flows])
    assert grouped_flows is not None
    for flow, (outputs, meta) in zip(flows, grouped_flows):
        alone, alone_meta = probes_nnx.probe_flow(reference, flow.params, flow.arrays)
        np.testing.assert_allclose(outputs["y"], alone["y"], rtol=1e-6, atol=1e-6)
        assert meta["calls"] == alone_meta["calls"]


def test_jit_and_eager_paths_agree():
    """Each segment run case by case, eagerly, as run_segment's fallback does."""
    reference = _load(REFERENCE)
    for probe in (_default("16x5"), *SUITE.module_probes("state"), *SUITE.module_probes("grad")):
        jitted, _ = probes_nnx.probe_module(reference.MyBatchNorm, probe.params, probe.arrays)
        fn, args, _ = probes_nnx._segment(reference.MyBatchNorm, probe.params, probe.arrays)
        eager = probes._stack([fn(*(a[i] for a in args)) for i in range(len(args[0]))])
        assert eager.keys() == jitted.keys()
        for key in jitted:
            np.testing.assert_allclose(eager[key], jitted[key], rtol=2e-5, atol=2e-5, err_msg=f"{probe.id} {key}")
    flow = SUITE.flow_probes()[0]
    jitted, _ = probes_nnx.probe_flow(reference, flow.params, flow.arrays)
    eager = reference.init_and_apply(float(flow.params["seed"]), flow.arrays["x"], float(flow.params["flag"]))
    np.testing.assert_allclose(np.asarray(eager), jitted["y"], rtol=1e-6, atol=1e-6)


# --- modules the adapter must survive -------------------------------------------------


class NotTraceable(nnx.Module):
    """Right, but branches in Python on a value: runs only eagerly."""

    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, rngs: nnx.Rngs):
        self.gamma = nnx.Param(jnp.ones(num_features))
        self.beta = nnx.Param(jnp.zeros(num_features))
        self.running_mean = nnx.BatchStat(jnp.zeros(num_features))
        self.running_var = nnx.BatchStat(jnp.ones(num_features))
        self.momentum, self.epsilon, self.use_running_average = momentum, epsilon, False

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.use_running_average:
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            mean, var = x.mean(0), ((x - x.mean(0)) ** 2).mean(0)
            if float(jnp.min(var)) >= 0.0:  # a concrete value: fails under jit
                self.running_mean[...] = 0.9 * self.running_mean[...] + 0.1 * mean
                self.running_var[...] = 0.9 * self.running_var[...] + 0.1 * var
        return self.gamma[...] * (x - mean) / jnp.sqrt(var + self.epsilon) + self.beta[...]


def test_a_module_that_cannot_be_traced_runs_eagerly_and_says_so(monkeypatch: pytest.MonkeyPatch):
    started: list[int] = []
    monkeypatch.setattr(probes_nnx, "EAGER_STARTED", started.append)
    probe = _default("2x3")
    got, meta = probes_nnx.probe_module(NotTraceable, probe.params, probe.arrays)
    assert meta["mode"] == "eager" and "Concretization" in meta["jit_error"]["type"]
    assert started == [len(probe.families)]
    assert probes.EAGER_STARTED is None  # restored
    _assert_close(probe, got, _expected_default(probe))
    assert [c["call"] for c in meta["calls"]] == ["init", "eval", "train"]  # the failed trace's notes forgotten


class FlaxNames(nnx.Module):
    """flax.nnx.BatchNorm's own names: scale, bias, mean, var (found by role)."""

    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, rngs: nnx.Rngs):
        self.scale = nnx.Param(jnp.ones(num_features))
        self.bias = nnx.Param(jnp.zeros(num_features))
        self.mean = nnx.BatchStat(jnp.zeros((1, num_features)))  # and (1, D): reshaped when placed
        self.var = nnx.BatchStat(jnp.ones((1, num_features)))
        self.momentum, self.epsilon, self.use_running_average = momentum, epsilon, False

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            mean = x.mean(0, keepdims=True)
            var = ((x - mean) ** 2).mean(0, keepdims=True)
            self.mean[...] = self.momentum * self.mean[...] + (1 - self.momentum) * mean
            self.var[...] = self.momentum * self.var[...] + (1 - self.momentum) * var
        return self.scale[...] * (x - mean) / jnp.sqrt(var + self.epsilon) + self.bias[...]


def test_variables_spelled_otherwise_are_reported_as_they_are_and_placed_by_role():
    probe = _default("4x4")
    got, _ = probes_nnx.probe_module(FlaxNames, probe.params, probe.arrays)
    cases, _, _, d = probe.arrays["train"].shape
    assert {k for k in got if k.startswith("init/")} == \
        {"init/params/scale", "init/params/bias", "init/batch_stats/mean", "init/batch_stats/var"}
    assert got["init/batch_stats/mean"].shape == (cases, 1, d)
    (state,) = SUITE.module_probes("state")
    got, _ = probes_nnx.probe_module(FlaxNames, state.params, state.arrays)
    a = {k: v.astype(np.float64) for k, v in state.arrays.items()}
    want = oracle.step(a["x"], a["gamma"], a["beta"], a["running_mean"], a["running_var"], False)
    assert within(got["eval/y"], want.y, output_tolerance(a["x"], a["gamma"], a["beta"], a["running_mean"],
                                                          a["running_var"])).all()
    np.testing.assert_array_equal(got["eval/batch_stats/mean"][:, 0], state.arrays["running_mean"])


class Nested(nnx.Module):
    """The contract's variables one module down, plus Rngs and a counter."""

    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, rngs: nnx.Rngs):
        self.inner = _load(REFERENCE).MyBatchNorm(num_features, momentum=momentum, epsilon=epsilon, rngs=rngs)
        self.rngs = rngs
        self.calls = nnx.Variable(jnp.zeros((), jnp.int32))
        self.use_running_average = False

    def __call__(self, x: jax.Array) -> jax.Array:
        self.calls[...] += 1
        return self.inner(x)


def test_nested_modules_are_slash_paths_and_rng_state_is_left_out():
    probe = _default("2x3")
    got, meta = probes_nnx.probe_module(Nested, probe.params, probe.arrays)
    assert meta["mode"] == "jit"
    assert {k for k in got if k.startswith("init/")} == {
        "init/params/inner/gamma", "init/params/inner/beta", "init/batch_stats/inner/running_mean",
        "init/batch_stats/inner/running_var", "init/variable/calls"}
    np.testing.assert_array_equal(got["eval/variable/calls"], np.full(len(probe.families), 3))
    want = _expected_default(probe)
    inner = {k: k.replace("params/", "params/inner/").replace("batch_stats/", "batch_stats/inner/") for k in want}
    _assert_close(probe, got, want, where=inner)


class BrokenCall(nnx.Module):
    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, rngs: nnx.Rngs):
        self.gamma = nnx.Param(jnp.ones(num_features))
        self.running_mean = nnx.BatchStat(jnp.zeros(num_features))

    def __call__(self, x: jax.Array) -> jax.Array:
        raise RuntimeError("the call is not written yet")


class BrokenInit(nnx.Module):
    def __init__(self, num_features: int, *, rngs: nnx.Rngs):
        raise NotImplementedError("not implemented yet")


def test_a_failing_call_keeps_what_construction_made_and_a_failing_init_says_why():
    probe = _default("2x3")
    with pytest.raises(ProbeError) as raised:
        probes_nnx.probe_module(BrokenCall, probe.params, probe.arrays)
    assert raised.value.kind == "RuntimeError" and "not written yet" in raised.value.message
    partial, _ = raised.value.partial
    assert set(partial) == {"init/params/gamma", "init/batch_stats/running_mean"}
    assert partial["init/params/gamma"].shape == (len(probe.families), 3)
    with pytest.raises(ProbeError) as raised:
        probes_nnx.probe_module(BrokenInit, probe.params, probe.arrays)
    assert raised.value.kind == "NotImplementedError" and raised.value.partial is None
    assert probes_nnx.probe_module_group(BrokenCall, [({"params": probe.params}, probe.arrays)]) is None


def test_the_stub_fails_every_probe_with_its_friendly_message():
    stub = _load(ROOT / "exercise" / "nnx" / "batchnorm.py")
    with pytest.raises(ProbeError, match="not implemented yet"):
        probes_nnx.probe_module(stub.MyBatchNorm, _default().params, _default().arrays)
    flow = SUITE.flow_probes()[0]
    with pytest.raises(ProbeError, match="not implemented yet"):
        probes_nnx.probe_flow(stub, flow.params, flow.arrays)


# --- the bundled submissions ----------------------------------------------------------


# Correct styles whose init_and_apply cannot be traced (it returns a NumPy array):
# graded case by case, eagerly, which is no mistake.
EAGER_FLOWS = {"numpy_result"}


@pytest.mark.parametrize("path", CORRECT, ids=lambda p: p.stem)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # `.value`, sow(): deprecated, still correct
def test_correct_submissions_match_the_oracle_under_jit(path: Path):
    module = _load(path)
    for probe in (_default("2x3"), _default("64x9")):
        got, meta = _module_run(path, probe)
        assert meta["mode"] == "jit"
        _assert_close(probe, got, _expected_default(probe))
    for flow in SUITE.flow_probes():
        got, meta = probes_nnx.probe_flow(module, flow.params, flow.arrays)
        assert meta["mode"] == ("eager" if path.stem in EAGER_FLOWS else "jit"), meta
        x = flow.arrays["x"][None].astype(np.float64)
        d = x.shape[-1]
        ones, zeros = np.ones((1, d)), np.zeros((1, d))
        train = not flow.params["flag"]
        want = oracle.step(x, ones, zeros, zeros, ones, train).y
        tol = output_tolerance(x, ones, zeros) if train else output_tolerance(x, ones, zeros, zeros, ones)
        assert within(got["y"].reshape(want.shape), want, tol).all(), flow.id


# The oracle's model of each numeric mistake: the submission's outputs, as the
# adapter reports them, must be that model's (so the grader can name it).
MODELS = {
    "eval_updates_stats": Variant(update_in_eval=True),
    "eval_uses_batch_stats": Variant(eval_stats="batch"),
    "train_uses_running_stats": Variant(train_stats="running_new"),
    "train_skips_update": Variant(update_in_train=False),
    "momentum_reversed": Variant(momentum_reversed=True),
    "unbiased_variance": Variant(norm_ddof=1, update_ddof=1),
    "eps_misplaced": Variant(eps="outside"),
}


@pytest.mark.parametrize("tag", sorted(MODELS))
def test_numeric_mistakes_are_reported_as_their_model_computes_them(tag: str):
    (path,) = [p for p in WRONG if declared_pitfalls(p) == [tag] and p.stem == tag]
    probe = _default("16x5")
    got, meta = _module_run(path, probe)
    assert meta["mode"] == "jit"
    _assert_close(probe, got, _expected_default(probe, MODELS[tag]), MODELS[tag])
    contract = _expected_default(probe)
    assert any(not np.allclose(got[k], contract[k], rtol=1e-3, atol=1e-3) for k in contract)


def test_statistics_declared_as_params_are_reported_under_params():
    (path,) = [p for p in WRONG if p.stem == "stats_as_params"]
    probe = _default("4x4")
    got, _ = _module_run(path, probe)
    assert {k for k in got if k.startswith("init/")} == {f"init/params/{n}" for n in ("gamma", "beta", *STATS)}
    # updated in place by the call (an NNX call may write a Param): reported after each step
    want = _expected_default(probe)
    for prefix in ("train0", "train1", "eval"):
        for name in STATS:
            np.testing.assert_allclose(got[f"{prefix}/params/{name}"], want[f"{prefix}/batch_stats/{name}"],
                                       rtol=1e-5, atol=1e-5)
    (state,) = SUITE.module_probes("state")
    got, _ = probes_nnx.probe_module(_load(path).MyBatchNorm, state.params, state.arrays)
    np.testing.assert_array_equal(got["eval/params/running_mean"], state.arrays["running_mean"])


@pytest.mark.parametrize(("stem", "split_group", "moved"), [
    ("stats_as_params", "params", True),  # sorted with the params, and the optimizer trains them
    ("stats_rebound_to_array", "rest", False),  # a bare array after training: left over by the filters
    ("stats_bare_arrays", None, False),  # never state at all: split does not see them
])
def test_nnx_tools_show_where_the_statistics_went(stem: str, split_group: str | None, moved: bool):
    """The optimizer step and the split/merge round trip, on the wrong declarations."""
    got, _ = _module_run(next(p for p in WRONG if p.stem == stem), _default("4x4"))
    for name in STATS:
        groups = [k.split("/")[1] for k in got if k.startswith("split/") and k.endswith(f"/{name}")]
        assert groups == ([split_group] if split_group else []), (name, groups)
        change = [v for k, v in got.items() if k.startswith("optimizer/") and k.endswith(f"/{name}")]
        assert len(change) == 1 and bool(change[0].any()) == moved, name
    np.testing.assert_array_equal(got["merged/y"], got["eval/y"])


def test_nnx_tool_evidence_names_its_own_finding():
    """checks._nnx_tools reads the worker's optimizer/, split/ and merged/ keys; each
    finding is named even where the declared types look right."""
    from grader.checks import _nnx_tools
    from grader.evidence import Trajectory
    from grader.sandbox import ProbeResult

    probe = _default("4x4")
    names = ["batch_stats/running_mean", "batch_stats/running_var", "params/beta", "params/gamma"]
    y = np.ones((2, 4, 4), np.float32)
    base = {f"{tool}/{n}": np.zeros((2, 4), np.float32) for tool in ("init", "split") for n in names}
    base |= {f"optimizer/{n}": np.zeros((2, 4), np.float32) for n in names} | {"merged/y": y, "eval/y": y}

    def tools(**changes: np.ndarray | None) -> tuple[list[str], list[str]]:
        arrays = {k: v for k, v in {**base, **{k.replace("__", "/"): v for k, v in changes.items()}}.items()
                  if v is not None}
        return _nnx_tools(Trajectory(probe, ProbeResult("t", arrays, {}, None), 2))

    assert tools() == ([], [])
    tags, problems = tools(optimizer__batch_stats__running_var=np.full((2, 4), 0.5, np.float32))
    assert tags == ["stats_not_in_batch_stats"] and "nnx.Optimizer" in problems[0]
    tags, problems = tools(split__batch_stats__running_mean=None)
    assert tags == ["stats_not_variables"] and "does not see batch_stats/running_mean" in problems[0]
    tags, problems = tools(merged__y=y + 1)
    assert tags == ["stats_not_variables"] and "nnx.merge" in problems[0]
    assert tools(merged__y=np.ones((2, 16), np.float32)) == ([], [])  # malformed: no finding, no crash


def test_statistics_that_are_no_variables_show_under_array():
    bare = next(p for p in WRONG if p.stem == "stats_bare_arrays")
    rebound = next(p for p in WRONG if p.stem == "stats_rebound_to_array")
    probe = _default("4x4")
    want = _expected_default(probe)
    got, meta = _module_run(bare, probe)
    assert meta["mode"] == "jit"
    assert {k for k in got if k.startswith("init/")} == {"init/params/gamma", "init/params/beta",
                                                         "init/array/running_mean", "init/array/running_var"}
    np.testing.assert_allclose(got["train1/array/running_var"], want["train1/batch_stats/running_var"], rtol=1e-5)
    # Declared as BatchStat, then replaced by a bare array: both keys after a call,
    # the declared one (values comparable) and the new one (the change visible).
    got, _ = _module_run(rebound, probe)
    assert {k for k in got if k.startswith("init/")} == {"init/params/gamma", "init/params/beta",
                                                         "init/batch_stats/running_mean", "init/batch_stats/running_var"}
    for prefix in ("train0", "train1", "eval"):
        for name in STATS:
            np.testing.assert_array_equal(got[f"{prefix}/array/{name}"], got[f"{prefix}/batch_stats/{name}"])
    _assert_close(probe, got, want)
    model = _load(rebound).MyBatchNorm(3, rngs=nnx.Rngs(0))
    model(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="Non-exhaustive filters"):
        nnx.split(model, nnx.Param, nnx.BatchStat)


def test_eval_not_switched_gives_the_training_output_in_eval_and_never_calls_eval():
    (path,) = [p for p in WRONG if declared_pitfalls(p) == ["eval_not_switched"]]
    module = _load(path)
    flow = next(f for f in SUITE.flow_probes() if f.params["flag"] == 1.0)
    got, meta = probes_nnx.probe_flow(module, flow.params, flow.arrays)
    train, _ = probes_nnx.probe_flow(module, {**flow.params, "flag": 0.0}, flow.arrays)
    np.testing.assert_array_equal(got["y"], train["y"])
    assert "eval" not in [c["call"] for c in meta["calls"]]
    assert meta["calls"][-1] == {"call": "__call__", "use_running_average": "False"}


def test_jax_jit_on_state_raises_trace_context_error_in_training_and_runs_in_eval():
    module = _load(SUBMISSIONS / "wrong" / "jax_jit_on_state.py")
    flows = SUITE.flow_probes()
    for flow in flows:
        if flow.params["flag"]:
            got, meta = probes_nnx.probe_flow(module, flow.params, flow.arrays)
            assert got["y"].shape == (int(np.prod(flow.params["shape"])),)
        else:
            with pytest.raises(ProbeError) as raised:
                probes_nnx.probe_flow(module, flow.params, flow.arrays)
            assert raised.value.kind == "TraceContextError" and "different trace level" in raised.value.message
    assert probes_nnx.probe_flow_group(module, [({"params": f.params}, f.arrays) for f in flows]) is None
    assert module.MyBatchNorm.__name__ == "MyBatchNorm" and "MyBatchNorm" in vars(module)


def test_every_wrong_submission_declares_its_pitfall_and_the_brief_s_tags_are_covered():
    tags = {tag for p in WRONG for tag in declared_pitfalls(p)}
    assert {"eval_updates_stats", "eval_uses_batch_stats", "train_uses_running_stats", "train_skips_update",
            "momentum_reversed", "unbiased_variance", "eps_misplaced", "stats_as_params", "eval_not_switched",
            "jax_jit_on_state", "stats_not_variables"} <= tags
    assert all(re.fullmatch(r"[a-z0-9_]+", tag) for tag in tags)
    assert len(CORRECT) >= 3


# --- through the real worker ----------------------------------------------------------


def test_the_worker_runtime_ships_the_adapter():
    """The sandbox copies RUNTIME_MODULES into the worker's package; the adapter
    imports grader.probes relatively, so it must travel with it."""
    from grader import isolation

    assert "probes_nnx.py" in isolation.RUNTIME_MODULES, \
        "add probes_nnx.py to grader/isolation.py RUNTIME_MODULES, or the worker cannot import the NNX adapter"


@pytest.mark.slow
@pytest.mark.parametrize("path", [REFERENCE, *CORRECT], ids=lambda p: p.stem if p != REFERENCE else "reference")
def test_the_reference_and_correct_submissions_score_full_marks_end_to_end(path: Path):
    from grader.grade import grade
    from tests.conftest import TEST_SECRET

    result = grade(path, TEST_SECRET, exercise="batchnorm_nnx", isolation="process")
    assert (result.score, result.max_score) == (100, 100), [c for c in result.checks if c.status != "passed"]
