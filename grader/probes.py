"""What the submission's process runs: the student's code on inputs, raw outputs back.

This module runs beside untrusted code. It receives inputs only, never seeds,
expected values or the reference, and it judges nothing: every comparison happens
in the grading process. Each probe returns plain arrays and a small JSON ``meta``.

Speed: the cases of one shape run as one ``jax.jit(jax.vmap(...))`` program, so a
suite costs one compile per shape. A submission that cannot be traced is still
graded: the same segment then runs case by case, eagerly, on every case (the
grader accepts a result only if it holds every case it sent).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from .protocol import match_roles

MESSAGE_CHARS = 400
# Called with the case count when a probe falls back to running case by case
# (set by the worker loop: it tells the grader, whose time budget then grows).
EAGER_STARTED: Callable[[int], None] | None = None


class ProbeError(Exception):
    """A probe that could not produce its outputs; ``kind`` names the failure."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.partial: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None


def describe(err: BaseException) -> dict[str, str]:
    """A one-line, size-capped description of an exception raised by student code."""
    name = type(err).__name__
    text = " ".join(str(err).split()) or name
    where = ""
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        if frame.filename.endswith(("batchnorm.py", "submission.py")) or "submission" in frame.filename:
            where = f" (line {frame.lineno})"
            break
    return {"type": name, "message": (text[:MESSAGE_CHARS] + where)}


def load_submission(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("submission", path)
    if spec is None or spec.loader is None:
        raise ProbeError("import", f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["submission"] = module
    spec.loader.exec_module(module)
    return module


# --- turning the student's return values into plain arrays -------------------------


# Outputs the submission made in a narrower float type (bfloat16, float16): sent as
# float32, so that their values are still compared, and named in the result's meta
# (``dtypes``) for the variables check to charge, once.
_LOW_PRECISION: dict[str, str] = {}


def take_low_precision() -> list[str]:
    """'what: dtype' for each output sent widened since the last call (and forget them)."""
    found = [f"{k}: {v}" for k, v in list(_LOW_PRECISION.items())[:MAX_CALLS]]
    _LOW_PRECISION.clear()
    return found


def _as_array(value: Any, what: str) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    if isinstance(value, jax.Array | np.ndarray):
        dtype = value.dtype
        if jnp.issubdtype(dtype, jnp.floating) and np.dtype(dtype).itemsize < 4:
            _LOW_PRECISION.setdefault(what, str(dtype))
            return np.asarray(jnp.asarray(value, jnp.float32))
        array = np.asarray(value)
        if array.dtype.kind in "fiub":
            return array
        raise ProbeError("type", f"{what} has dtype {array.dtype}; expected float32")
    raise ProbeError("type", f"{what} is a {type(value).__name__}; expected an array")


def _flatten(tree: Any, prefix: str) -> dict[str, Any]:
    """{'prefix/collection/name': leaf} for a (possibly frozen) nested dict."""
    from flax.core import unfreeze

    out: dict[str, Any] = {}
    tree = unfreeze(tree) if hasattr(tree, "unfreeze") or type(tree).__name__ == "FrozenDict" else tree
    if not isinstance(tree, dict):
        raise ProbeError("type", f"{prefix} is a {type(tree).__name__}; expected a dict of collections")

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                walk(child, f"{path}/{key}")
        else:
            out[path] = node

    walk(tree, prefix)
    return out


def _split_apply_result(result: Any) -> tuple[Any, Any]:
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ProbeError("type", "apply with mutable=['batch_stats'] did not return (output, updates)")
    return result


# --- the module probes -------------------------------------------------------------


def _mutable(variables: Any) -> list[str]:
    """``batch_stats`` and every other collection the module's own init made, params
    aside: the module is probed in its own terms, so a statistic kept in a collection
    spelled otherwise (``batch_stat``) is charged once, by the variables check, instead
    of failing every apply with ModifyScopeVariableError."""
    own = [str(c) for c in dict(variables) if c != "params"]
    return ["batch_stats", *(c for c in own if c != "batch_stats")]


def _segment_default(model: Any, steps: int) -> Callable[..., dict[str, Any]]:
    """init on the first batch, `steps` training applies threading batch_stats, one
    eval; and one eval apply straight after init (``fresh``), on the first batch."""
    import jax

    def run(train: Any, evalx: Any, seed: Any) -> dict[str, Any]:
        variables = model.init(jax.random.PRNGKey(seed), train[0], use_running_average=False)
        out = _flatten(variables, "init")
        mutable = _mutable(variables)
        y, _ = _split_apply_result(
            model.apply(variables, train[0], use_running_average=True, mutable=mutable)
        )
        out["fresh/y"] = y
        state = dict(variables)
        for s in range(steps):
            y, updates = _split_apply_result(
                model.apply(state, train[s], use_running_average=False, mutable=mutable)
            )
            out[f"train{s}/y"] = y
            out.update(_flatten(updates, f"train{s}"))
            state = {**state, **dict(updates)}
        y, updates = _split_apply_result(
            model.apply(state, evalx, use_running_average=True, mutable=mutable)
        )
        out["eval/y"] = y
        out.update(_flatten(updates, "eval"))
        return out

    return run


def _segment_init(model: Any) -> Callable[..., dict[str, Any]]:
    """init alone, for a module whose applies fail."""
    import jax

    def run(train: Any, seed: Any) -> dict[str, Any]:
        return _flatten(model.init(jax.random.PRNGKey(seed), train[0], use_running_average=False), "init")

    return run


def _contract_state(gamma: Any, beta: Any, mean: Any, var: Any) -> dict[str, Any]:
    return {
        "params": {"gamma": gamma, "beta": beta},
        "batch_stats": {"running_mean": mean, "running_var": var},
    }


def fit_shape(value: Any, like: Any) -> Any:
    """``value`` in the shape of the student's variable ``like`` when the sizes
    agree (a (1, D) statistic gets the grader's (D,) values), else as it is."""
    shape = getattr(like, "shape", None)
    if shape is not None and tuple(shape) != tuple(value.shape) and np.prod(shape) == np.prod(value.shape):
        return value.reshape(shape)
    return value


def _own_state(model: Any, x: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The grader's gamma/beta/running statistics placed where the student's module
    keeps them: under its own names and in its own shapes (a (1, D) running mean
    gets the (D,) values reshaped). A module spelled otherwise is still judged on
    what it computes; the spelling is charged once, by the variables check. Falls
    back to the contract's layout when the module's cannot be matched one to one."""
    import jax

    try:
        variables = model.init(jax.random.PRNGKey(0), x, use_running_average=False)
        leaves = _flatten(variables, "")
    except Exception:  # noqa: BLE001 - the contract's layout then; apply will say what fails
        return _contract_state(*(values[k] for k in ("gamma", "beta", "running_mean", "running_var")))
    placed = match_roles(list(leaves), values)
    if placed is None:
        return _contract_state(*(values[k] for k in ("gamma", "beta", "running_mean", "running_var")))
    state: dict[str, Any] = {}
    for key, leaf in leaves.items():
        value = fit_shape(values[placed[key]], leaf) if key in placed else leaf
        node = state
        *parents, name = key.strip("/").split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = value
    return state


def _segment_state(model: Any) -> Callable[..., dict[str, Any]]:
    """One training and one eval apply from grader-chosen params and statistics."""

    def run(x: Any, gamma: Any, beta: Any, mean: Any, var: Any) -> dict[str, Any]:
        state = _own_state(model, x, {"gamma": gamma, "beta": beta, "running_mean": mean, "running_var": var})
        out: dict[str, Any] = {}
        for mode, flag in (("train", False), ("eval", True)):
            y, updates = _split_apply_result(
                model.apply(state, x, use_running_average=flag, mutable=_mutable(state))
            )
            out[f"{mode}/y"] = y
            out.update(_flatten(updates, mode))
        return out

    return run


def _segment_grad(model: Any) -> Callable[..., dict[str, Any]]:
    """Gradient of sum(w * y) in training mode w.r.t. x, gamma and beta."""
    import jax
    import jax.numpy as jnp

    def run(x: Any, gamma: Any, beta: Any, mean: Any, var: Any, w: Any) -> dict[str, Any]:
        def loss(x: Any, params: dict[str, Any]) -> Any:
            state = _own_state(model, x, {"gamma": params["gamma"], "beta": params["beta"],
                                          "running_mean": mean, "running_var": var})
            y, _ = _split_apply_result(
                model.apply(state, x, use_running_average=False, mutable=_mutable(state))
            )
            return jnp.sum(y * w)

        dx, dparams = jax.grad(loss, argnums=(0, 1))(x, {"gamma": gamma, "beta": beta})
        return {"x": dx, "gamma": dparams["gamma"], "beta": dparams["beta"]}

    return run


def _stack(results: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    keys = results[0].keys()
    for r in results[1:]:
        if r.keys() != keys:
            raise ProbeError("type", "the module returned different variables for different inputs")
    return {k: np.stack([_as_array(r[k], k) for r in results]) for k in keys}


def run_segment(fn: Callable[..., dict[str, Any]], args: list[np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Run ``fn`` over the leading (case) axis of ``args``: vmapped and jitted if
    the student's code allows it, otherwise eagerly, case by case."""
    import jax

    try:
        result = jax.jit(jax.vmap(fn))(*args)
        jax.block_until_ready(result)
        return {k: _as_array(v, k) for k, v in result.items()}, {"mode": "jit"}
    except ProbeError:
        raise
    except Exception as err:  # noqa: BLE001 - any tracing failure means "try eagerly"
        jit_error = describe(err)
    cases = len(args[0])
    if EAGER_STARTED is not None:
        EAGER_STARTED(cases)
    try:
        results = [fn(*(a[i] for a in args)) for i in range(cases)]
    except ProbeError:
        raise
    except Exception as err:  # noqa: BLE001 - the student's own error, reported as data
        info = describe(err)
        raise ProbeError(info["type"], info["message"]) from err
    return _stack(results), {"mode": "eager", "jit_error": jit_error}


def _segment(model: Any, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> tuple[Callable[..., dict[str, Any]], list[np.ndarray]]:
    """The function a module probe vmaps over its cases, and its arguments."""
    segment = params["segment"]
    if segment == "default":
        return _segment_default(model, int(params["steps"])), [arrays["train"], arrays["eval"], arrays["seeds"]]
    if segment == "state":
        return _segment_state(model), [arrays[k] for k in ("x", "gamma", "beta", "running_mean", "running_var")]
    if segment == "grad":
        return _segment_grad(model), [arrays[k] for k in ("x", "gamma", "beta", "running_mean", "running_var", "w")]
    raise ProbeError("grader", f"unknown segment {segment!r}")


# The contract's hyperparameters, passed by name where the grader places its own state
# (the other probes use the defaults: both must mean the same layer; a PyTorch-style
# `momentum = 0.1` default with the reversed update only looks right until the field is set).
CONTRACT_FIELDS = {"momentum": 0.9, "eps": 1e-5}


def _model_for(cls: type, segment: str) -> Any:
    if segment == "state":
        try:
            return cls(**CONTRACT_FIELDS)
        except TypeError:  # other field names: a spelling the other checks judge, not a mistake here
            pass
    return cls()


def probe_module(cls: type, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One module probe: its cases vmapped and jitted, or eagerly if that fails."""
    model = _model_for(cls, params["segment"])
    fn, args = _segment(model, params, arrays)
    try:
        return run_segment(fn, args)
    except ProbeError as err:
        if params["segment"] == "default":
            # Keep what init created, so the variables can still be checked.
            try:
                err.partial = run_segment(_segment_init(model), [arrays["train"], arrays["seeds"]])
            except ProbeError:
                pass
        raise


def probe_module_group(cls: type, probes: list[tuple[dict[str, Any], dict[str, np.ndarray]]]) -> list[tuple[dict[str, np.ndarray], dict[str, Any]]] | None:
    """Several module probes as ONE jitted program: XLA compiles one large program
    much faster than many small ones. None if anything fails: the caller then
    runs the probes one by one, which isolates and reports the failure."""
    import jax

    try:
        parts = [_segment(_model_for(cls, header["params"]["segment"]), header["params"], arrays)
                 for header, arrays in probes]

        def merged(all_args: list[list[Any]]) -> list[dict[str, Any]]:
            return [jax.vmap(fn)(*args) for (fn, _), args in zip(parts, all_args)]

        results = jax.jit(merged)([args for _, args in parts])
        jax.block_until_ready(results)
        return [({k: _as_array(v, k) for k, v in r.items()}, {"mode": "jit"}) for r in results]
    except Exception:  # noqa: BLE001 - including ProbeError: one by one will say what failed
        return None


# --- the flow probes ---------------------------------------------------------------


def _mutable_repr(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    return f"<{type(value).__name__}>"


# The flow being recorded: (the student's class, where its init/apply calls go), or None.
_RECORDING: tuple[type, list[dict[str, Any]]] | None = None


def before_import() -> None:
    """Note how a flow calls init and apply, however it reaches them: the recorder
    wraps flax.linen.Module.init and .apply themselves, before the submission is
    imported, so an alias it takes at import (``_apply = MyBatchNorm.apply``) is the
    recorder too. Outside a flow (``_RECORDING`` unset) it only passes calls on."""
    import flax.linen as nn

    original_init, original_apply = nn.Module.init, nn.Module.apply

    def init(self: Any, rngs: Any, *args: Any, **kwargs: Any) -> Any:
        _note(self, {"call": "init", "rngs": type(rngs).__name__,
                     "use_running_average": repr(kwargs.get("use_running_average"))[:40]})
        return original_init(self, rngs, *args, **kwargs)

    def apply(self: Any, variables: Any, *args: Any, **kwargs: Any) -> Any:
        _note(self, {"call": "apply", "mutable": _mutable_repr(kwargs.get("mutable", False)),
                     "collections": sorted(str(k) for k in dict(variables))[:8],
                     "use_running_average": repr(kwargs.get("use_running_average"))[:40]})
        return original_apply(self, variables, *args, **kwargs)

    for name, wrapper, original in (("init", init, original_init), ("apply", apply, original_apply)):
        functools.update_wrapper(wrapper, original)
        setattr(nn.Module, name, wrapper)


def _note(module: Any, entry: dict[str, Any]) -> None:
    if _RECORDING is not None and isinstance(module, _RECORDING[0]) and len(_RECORDING[1]) < MAX_CALLS:
        _RECORDING[1].append(entry)


def install_eager_seed_check() -> None:
    """Make jax.random.PRNGKey/key reject float seeds under jit too.

    Called eagerly, ``PRNGKey(3.0)`` raises TypeError; under jit jax only checks
    when it lowers a key that is used, and Flax's ones/zeros initializers leave
    it unused. Flows run jitted for speed, so this restores the eager behaviour
    the exercise's own tests see.
    """
    import jax

    def strict(make: Callable[..., Any]) -> Callable[..., Any]:
        def make_key(seed: Any, *args: Any, **kwargs: Any) -> Any:
            dtype = getattr(seed, "dtype", None)
            if isinstance(seed, float | np.floating) or (dtype is not None and np.issubdtype(dtype, np.floating)):
                raise TypeError(f"PRNG key seed must be an integer; got {seed!r}")
            return make(seed, *args, **kwargs)

        make_key.__name__ = make.__name__
        make_key.__doc__ = make.__doc__
        return make_key

    jax.random.PRNGKey = strict(jax.random.PRNGKey)
    jax.random.key = strict(jax.random.key)


def _flow_call(submission: ModuleType, own: type, params: dict[str, Any], x: Any, calls: list[dict[str, Any]]) -> Any:
    """init_and_apply with the init/apply calls of the student's class noted (see
    :func:`before_import`)."""
    global _RECORDING
    _RECORDING = (own, calls)
    try:
        return submission.init_and_apply(float(params["seed"]), x, float(params["flag"]))
    finally:
        _RECORDING = None


class FlowResult(NamedTuple):
    """What an adapter's flow call may return instead of init_and_apply's bare result:
    that result and what else the flow left behind that the grader can score (NNX:
    the state of the model it built). A NamedTuple, so jax.jit returns it whole."""

    y: Any
    extra: dict[str, Any]


FlowCall = Callable[[ModuleType, type, dict[str, Any], Any, list[dict[str, Any]]], Any]


def _flow_arrays(result: Any) -> dict[str, np.ndarray]:
    if type(result) is FlowResult:  # (exactly ours: a student's NamedTuple is a result to judge)
        return {"y": _as_array(result.y, "init_and_apply's result"),
                **{k: _as_array(v, k) for k, v in result.extra.items()}}
    return {"y": _as_array(result, "init_and_apply's result")}
MAX_CALLS = 16  # calls noted per flow (the grader keeps as many)


def run_flow_group(submission: ModuleType, flows: list[tuple[dict[str, Any], dict[str, np.ndarray]]],
                   flow_call: FlowCall) -> list[tuple[dict[str, np.ndarray], dict[str, Any]]] | None:
    """All flow probes traced into one jitted program (seeds and flags are Python
    constants in it; a student's own jit nests inside), each through the adapter's
    ``flow_call``. None if anything fails: then each runs on its own."""
    import jax

    own = submission.MyBatchNorm
    calls: list[list[dict[str, Any]]] = [[] for _ in flows]

    def merged(xs: list[Any]) -> list[Any]:
        return [flow_call(submission, own, header["params"], x, c) for (header, _), x, c in zip(flows, xs, calls)]

    try:
        results = jax.jit(merged)([arrays["x"] for _, arrays in flows])
        jax.block_until_ready(results)
        return [(_flow_arrays(r), {"calls": c[:MAX_CALLS], "mode": "jit"}) for r, c in zip(results, calls)]
    except Exception:  # noqa: BLE001 - including ProbeError: one by one will say what failed
        return None
    finally:
        submission.MyBatchNorm = own


def run_flow(submission: ModuleType, params: dict[str, Any], arrays: dict[str, np.ndarray], flow_call: FlowCall
             ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Call the student's init_and_apply(seed, x, flag) with floats, as the contract
    says, through the adapter's ``flow_call``: jitted (seed and flag as Python
    constants), else eagerly."""
    import jax

    calls: list[dict[str, Any]] = []
    own = submission.MyBatchNorm
    meta: dict[str, Any] = {}
    try:
        try:
            result = jax.jit(lambda x: flow_call(submission, own, params, x, calls))(arrays["x"])
            jax.block_until_ready(result)
            meta["mode"] = "jit"
        except Exception as err:  # noqa: BLE001 - any tracing failure means "try eagerly"
            meta["jit_error"] = describe(err)
            calls.clear()
            result = flow_call(submission, own, params, arrays["x"], calls)
            meta["mode"] = "eager"
    except Exception as err:  # noqa: BLE001 - the student's own error, reported as data
        info = describe(err)
        failure = ProbeError(info["type"], info["message"])
        failure.partial = {}, {"calls": calls[:MAX_CALLS]}  # how far it got: did it reach the module?
        raise failure from err
    meta["calls"] = calls[:MAX_CALLS]
    return _flow_arrays(result), meta


def probe_flow_group(submission: ModuleType, flows: list[tuple[dict[str, Any], dict[str, np.ndarray]]]
                     ) -> list[tuple[dict[str, np.ndarray], dict[str, Any]]] | None:
    return run_flow_group(submission, flows, _flow_call)


def probe_flow(submission: ModuleType, params: dict[str, Any], arrays: dict[str, np.ndarray]
               ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    return run_flow(submission, params, arrays, _flow_call)
