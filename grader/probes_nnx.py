"""What the submission's process runs for the Flax NNX exercise (``batchnorm_nnx``).

The same four entry points as :mod:`grader.probes` (``probe_module``,
``probe_module_group``, ``probe_flow``, ``probe_flow_group``), the same
segments ("default", "state", "grad") and the same output keys, so that the
grader's module checks read an NNX module exactly as they read a Linen one.
Like :mod:`grader.probes` it runs beside untrusted code: it receives inputs
only, never expected values or the reference, and judges nothing.

How an NNX module is read as Linen-style collections:

* every ``nnx.Variable`` reachable from the module is reported under a
  collection named by its type: ``nnx.Param`` (and subclasses) as ``params``,
  ``nnx.BatchStat`` (and subclasses) as ``batch_stats``, any other Variable
  type as its lowercased class name (``variable``, ``cache``, ...); a plain
  array held as an attribute (not a Variable at all) as ``array``. The path
  below the collection is the attribute path, nested modules, ``nnx.List``
  indices and ``nnx.Dict`` keys joined by "/": ``params/gamma``,
  ``batch_stats/bn/running_mean``. RNG state (``nnx.Rngs`` kept as an
  attribute) and non-numeric values are left out.
* after every call the whole state is reported, parameters included: unlike
  Linen's ``apply(mutable=["batch_stats"])``, an NNX call can change any
  variable, so what is stored is what was observed.
* a variable whose type a call changes (``self.running_mean = new`` replaces
  the BatchStat by a bare array) is reported after that call under the key it
  was constructed with AND under its new one (``array/running_mean``): its
  values stay comparable, and the change is visible.
* the mode is the module's own: the probe calls ``model.train()`` and
  ``model.eval()``, never passes a flag. What the module's
  ``use_running_average`` attribute holds after construction, ``eval()`` and
  ``train()`` is reported in the meta's ``calls`` (first case only), as
  ``{"call": "init" | "eval" | "train", "use_running_average": repr}``; a flow's
  ``calls`` also note each ``__call__`` (with the mode it ran in) and the
  constructor's ``num_features`` and ``rngs`` type.
* the "default" segment's ``fresh/y`` comes from a second model built from the
  same seed and switched to eval, so that a module that writes in eval mode
  does not change the training run (Linen's apply discards that update too).

The model is built inside the traced function, one per case, as
``cls(D, rngs=nnx.Rngs(jax.random.key(seed)))``: ``nnx.Rngs`` takes a Python
int or a key, not a traced integer, and ``jax.random.key(seed)`` is the same
key ``nnx.Rngs(int(seed))`` makes. Variables created inside the trace may be
written inside it, so a module that follows the contract runs vmapped and
jitted; one that cannot be traced runs case by case, eagerly
(:func:`grader.probes.run_segment`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import numpy as np

from . import probes as _probes
from .probes import (  # noqa: F401 - re-exported: the worker may take everything from here
    ProbeError,
    _as_array,
    _stack,
    describe,
    fit_shape,
    install_eager_seed_check,
    load_submission,
    run_segment,
)
from .protocol import MODEL_PREFIX, MODEL_UNREADABLE, NEW_MODEL_Y, RESHAPED_WRITE, match_roles

# Called with the case count when a probe falls back to running case by case.
# Either this or grader.probes.EAGER_STARTED may be set by the worker loop.
EAGER_STARTED: Callable[[int], None] | None = None

ARRAY_COLLECTION = "array"  # a plain array attribute: state that is not a Variable
_MISSING = "<missing>"
_MAX_CALLS = _probes.MAX_CALLS


def _run(fn: Callable[..., dict[str, Any]], args: list[np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """:func:`grader.probes.run_segment`, telling this module's EAGER_STARTED too."""
    hook = EAGER_STARTED
    if hook is None:
        return run_segment(fn, args)
    saved = _probes.EAGER_STARTED
    _probes.EAGER_STARTED = hook
    try:
        return run_segment(fn, args)
    finally:
        _probes.EAGER_STARTED = saved


# --- reading and writing an NNX module's state by path ---------------------------


def collection_of(variable: Any) -> str:
    """The Linen-style collection an ``nnx.Variable`` is reported under."""
    from flax import nnx

    if isinstance(variable, nnx.Param):
        return "params"
    if isinstance(variable, nnx.BatchStat):
        return "batch_stats"
    name = type(variable).__name__.lower()
    # Only the types themselves earn those names: a Variable class called `Params`
    # or `Batch_Stats` is neither (an optimizer over nnx.Param never sees it).
    return f"{name}_variable" if name in ("params", "batch_stats", ARRAY_COLLECTION) else name


def _numeric(value: Any) -> Any | None:
    """``value`` as an array if it is a numeric one (or a Python number), else None."""
    import jax
    import jax.numpy as jnp

    if isinstance(value, bool | int | float) and not isinstance(value, np.generic):
        return jnp.asarray(value)
    if isinstance(value, jax.Array | np.ndarray | np.generic):
        dtype = value.dtype
        if jnp.issubdtype(dtype, jax.dtypes.prng_key) or np.dtype(dtype).kind not in "fiub":
            return None
        return value
    return None


class _Slot:
    """One piece of numeric state: a Variable, or a plain array attribute."""

    def __init__(self, collection: str, where: str, parent: Any, name: Any, variable: Any | None):
        self.collection, self.where = collection, where  # where: the attribute path, "bn/running_mean"
        self.parent, self.name, self.variable = parent, name, variable

    @property
    def key(self) -> str:
        return f"{self.collection}/{self.where}"

    def get(self) -> Any:
        if self.variable is not None:
            return _numeric(self.variable.get_value())
        return _numeric(_child(self.parent, self.name))

    def set(self, value: Any) -> None:
        if self.variable is not None:
            self.variable.set_value(value)
        elif isinstance(self.name, int) or not hasattr(self.parent, "__dict__"):
            self.parent[self.name] = value
        else:
            setattr(self.parent, self.name, value)


def _child(parent: Any, name: Any) -> Any:
    if isinstance(name, str) and hasattr(parent, "__dict__") and hasattr(parent, name):
        return getattr(parent, name)
    return parent[name]


def slots(model: Any) -> list[_Slot]:
    """Every numeric Variable and plain array reachable from ``model``, by path."""
    from flax import nnx

    nodes = dict(nnx.iter_graph(model))
    for was, now in _aliases(model, nodes).items():
        nodes[now] = nodes.pop(was)
    found: list[_Slot] = []
    for path, node in nodes.items():
        if not path or any(isinstance(p, str) and p.startswith("_pytree__") for p in path):
            continue
        where = "/".join(str(p) for p in path)
        if isinstance(node, nnx.Variable):
            if isinstance(node, nnx.RngState) or _numeric(node.get_value()) is None:
                continue
            found.append(_Slot(collection_of(node), where, nodes.get(path[:-1]), path[-1], node))
        elif _numeric(node) is not None and not isinstance(node, bool | int | float):
            parent = nodes.get(path[:-1])
            if parent is not None:
                found.append(_Slot(ARRAY_COLLECTION, where, parent, path[-1], None))
    found.sort(key=lambda slot: slot.key)
    return found


def _aliases(model: Any, nodes: dict[tuple[Any, ...], Any]) -> dict[tuple[Any, ...], tuple[str]]:
    """{first path: attribute path} of the Variables NNX visits under another path
    first (``nodes``: what ``nnx.iter_graph(model)`` visited). NNX visits a shared
    Variable once, under its first path; where the module also holds it as its own
    attribute, that attribute is its path (an alias
    `self.stats = nnx.List([self.running_mean, ...])` must not hide it)."""
    from flax import nnx

    first = {id(node): path for path, node in nodes.items() if isinstance(node, nnx.Variable)}
    return {first[id(value)]: (name,) for name, value in list(vars(model).items())
            if isinstance(value, nnx.Variable) and id(value) in first and first[id(value)] != (name,)}


def declared(model: Any) -> dict[str, str]:
    """{attribute path: collection} of the module's state as constructed."""
    return {slot.where: slot.collection for slot in slots(model)}


def snapshot(model: Any, prefix: str, declared_as: dict[str, str] | None = None) -> dict[str, Any]:
    """{'prefix/collection/path': value} for the module's whole numeric state.

    With ``declared_as`` (from :func:`declared` at construction), a variable whose
    type a call changed (``self.running_mean = new`` replaces the BatchStat by a
    bare array) is reported under its declared key too, so that its values stay
    comparable while its new key (``array/running_mean``) shows the change."""
    out: dict[str, Any] = {}
    for slot in slots(model):
        value = slot.get()
        out[f"{prefix}/{slot.key}"] = value
        was = (declared_as or {}).get(slot.where)
        if was is not None and was != slot.collection:
            out.setdefault(f"{prefix}/{was}/{slot.where}", value)
    return out


def place(model: Any, values: dict[str, Any]) -> None:
    """Write the grader's gamma/beta/running statistics where the module keeps
    them: found by role (:func:`grader.protocol.role_of` on ``collection/path``,
    so a ``scale`` Param or a ``mean`` BatchStat is found too), reshaped to the
    module's own shape when the sizes agree. When the roles cannot be matched one
    to one, only attributes spelled as the contract says receive their values."""
    import jax.numpy as jnp

    found = slots(model)
    placed = match_roles([slot.key for slot in found], values)
    if placed is None:
        placed = {slot.key: slot.key.split("/", 1)[1] for slot in found
                  if slot.key.count("/") == 1 and slot.key.split("/", 1)[1] in values}
    for slot in found:
        if slot.key in placed:
            # A jax array: a NumPy one would be written in place by `variable[...] = new`
            # (eagerly), changing the grader's inputs for the next mode.
            slot.set(fit_shape(jnp.asarray(values[placed[slot.key]]), slot.get()))


# --- the module probes -------------------------------------------------------------


def _mode_repr(model: Any) -> str:
    return repr(getattr(model, "use_running_average", _MISSING))[:40]


class _Notes:
    """What the first case's trace saw of the module's mode attribute (meta 'calls')."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.done = False

    def begin(self) -> None:
        """A new trace or eager run: forget what a failed attempt noted."""
        if not self.done:
            self.calls.clear()

    def note(self, call: str, model: Any) -> None:
        if not self.done and len(self.calls) < _MAX_CALLS:
            self.calls.append({"call": call, "use_running_average": _mode_repr(model)})

    def close(self) -> None:
        self.done = True


# The contract's hyperparameters, passed by name where the grader places its own state
# (the default probes build with the defaults: both must mean the same layer; a
# PyTorch-style `momentum=0.1` default with the reversed update only looks right
# until the argument is given).
CONTRACT_KEYWORDS = {"momentum": 0.9, "epsilon": 1e-5}  # (Linen: probes.CONTRACT_FIELDS)


def _build(cls: type, d: int, seed: Any, notes: _Notes | None = None, keywords: bool = False) -> Any:
    import jax
    from flax import nnx

    rngs = nnx.Rngs(jax.random.key(seed)) if not isinstance(seed, int) else nnx.Rngs(seed)
    model = None
    if keywords:
        try:
            model = cls(d, **CONTRACT_KEYWORDS, rngs=rngs)
        except TypeError:  # no such keywords: a signature slip, not a mistake in the layer
            model = None
    if model is None:
        model = cls(d, rngs=rngs)
    if notes is not None:
        notes.note("init", model)
    return model


def _switch(model: Any, mode: str, notes: _Notes | None = None) -> None:
    getattr(model, mode)()
    if notes is not None:
        notes.note(mode, model)


def _segment_default(cls: type, d: int, steps: int, notes: _Notes, tools: bool) -> Callable[..., dict[str, Any]]:
    """Build from the case's seed, `steps` training calls, one eval call; and one
    eval call on a second model, fresh from the same seed (``fresh/y``), so that
    a module that writes in eval mode does not change the training run."""

    def run(train: Any, evalx: Any, seed: Any) -> dict[str, Any]:
        notes.begin()
        model = _build(cls, d, seed, notes)
        as_built = declared(model)
        out = snapshot(model, "init")
        fresh = _build(cls, d, seed)
        _switch(fresh, "eval", notes)
        out["fresh/y"] = fresh(train[0])
        if tools:
            out.update(_optimizer_step(fresh, train[0]))
            # The mode a new model is in: called without train() or eval(), it must
            # train (``new/y`` equals ``train0/y``); a model built in eval mode
            # works only where every caller remembers model.train().
            out[NEW_MODEL_Y] = _build(cls, d, seed)(train[0])
        _switch(model, "train", notes)
        for s in range(steps):
            out[f"train{s}/y"] = model(train[s])
            out.update(snapshot(model, f"train{s}", as_built))
        split = _split(model) if tools else None
        _switch(model, "eval")
        out["eval/y"] = model(evalx)
        out.update(snapshot(model, "eval", as_built))
        out.update(_round_trip(split, evalx))
        notes.close()
        return out

    return run


# What NNX's own tools make of the module's state. Each is optional evidence: a
# module these tools cannot handle is still graded by everything else, so their
# failures leave their keys out instead of failing the probe.
TOOL_KEYS = ("optimizer/", "split/", "merged/", "new/")  # the output keys these tools (and the mode probe) add
SPLIT_GROUPS = ("params", "batch_stats", "rest")  # nnx.split(model, nnx.Param, nnx.BatchStat, ...)
OPTIMIZER_LR = 1.0


def _optimizer_step(model: Any, x: Any) -> dict[str, Any]:
    """One ``nnx.Optimizer(model, optax.sgd, wrt=nnx.Param)`` step on an eval-mode
    loss (which depends on the running statistics): ``optimizer/<collection>/<path>``
    is how far the step moved each piece of state. BatchStats must not move."""
    import jax.numpy as jnp
    import optax
    from flax import nnx

    try:
        grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)
        before = snapshot(model, "optimizer")
        nnx.Optimizer(model, optax.sgd(OPTIMIZER_LR), wrt=nnx.Param).update(model, grads)
        after = snapshot(model, "optimizer")
        return {k: after[k] - before[k] for k in before
                if k in after and jnp.shape(after[k]) == jnp.shape(before[k])}
    except Exception:  # noqa: BLE001 - optional evidence (see above)
        return {}


def _split(model: Any) -> tuple[Any, list[Any], dict[tuple[Any, ...], tuple[str]]] | None:
    """``nnx.split(model, nnx.Param, nnx.BatchStat, ...)`` after training, the states
    copied (the eval call that follows must not change them)."""
    import jax
    from flax import nnx

    try:
        graphdef, *groups = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
        return graphdef, jax.tree.map(lambda a: a, groups), _aliases(model, dict(nnx.iter_graph(model)))
    except Exception:  # noqa: BLE001 - optional evidence
        return None


def _round_trip(split: tuple[Any, list[Any], dict[tuple[Any, ...], tuple[str]]] | None, evalx: Any
                ) -> dict[str, Any]:
    """Where the split put each piece of state (``split/<group>/<path>``), and
    ``merged/y``: the eval output of the model rebuilt by ``nnx.merge`` from the
    split, which equals ``eval/y`` when all of its state is in Variables."""
    import jax.numpy as jnp
    from flax import nnx

    if split is None:
        return {}
    graphdef, groups, aliases = split
    out: dict[str, Any] = {}
    try:
        for group, state in zip(SPLIT_GROUPS, groups):
            for path, variable in nnx.to_flat_state(state):
                value = _numeric(variable.get_value() if isinstance(variable, nnx.Variable) else variable)
                if value is not None:
                    out[f"split/{group}/{'/'.join(str(p) for p in aliases.get(tuple(path), path))}"] = value
    except Exception:  # noqa: BLE001 - optional evidence
        return {}
    try:
        merged = nnx.merge(graphdef, *groups)
        merged.eval()
        out["merged/y"] = merged(evalx)
    except Exception:  # noqa: BLE001 - a model that cannot be rebuilt from its state is evidence
        out["merged/failed"] = jnp.ones(())
    return out


def _segment_init(cls: type, d: int) -> Callable[..., dict[str, Any]]:
    """Construction alone, for a module whose calls fail."""

    def run(train: Any, seed: Any) -> dict[str, Any]:
        del train
        return snapshot(_build(cls, d, seed), "init")

    return run


def _segment_state(cls: type, d: int) -> Callable[..., dict[str, Any]]:
    """One training and one eval call, each from grader-chosen params and
    statistics placed into a model of its own."""

    def run(x: Any, gamma: Any, beta: Any, mean: Any, var: Any) -> dict[str, Any]:
        values = {"gamma": gamma, "beta": beta, "running_mean": mean, "running_var": var}
        out: dict[str, Any] = {}
        for mode in ("train", "eval"):
            model = _build(cls, d, 0, keywords=True)
            as_built = declared(model)
            place(model, values)
            _switch(model, mode)
            out[f"{mode}/y"] = model(x)
            out.update(snapshot(model, mode, as_built))
        return out

    return run


def _segment_grad(cls: type, d: int) -> Callable[..., dict[str, Any]]:
    """Gradient of sum(w * y) in training mode w.r.t. x, gamma and beta."""
    import jax
    import jax.numpy as jnp

    def run(x: Any, gamma: Any, beta: Any, mean: Any, var: Any, w: Any) -> dict[str, Any]:
        def loss(x: Any, params: dict[str, Any]) -> Any:
            model = _build(cls, d, 0)
            place(model, {"gamma": params["gamma"], "beta": params["beta"], "running_mean": mean, "running_var": var})
            _switch(model, "train")
            return jnp.sum(model(x) * w)

        dx, dparams = jax.grad(loss, argnums=(0, 1))(x, {"gamma": gamma, "beta": beta})
        return {"x": dx, "gamma": dparams["gamma"], "beta": dparams["beta"]}

    return run


def _segment(cls: type, params: dict[str, Any], arrays: dict[str, np.ndarray], tools: bool = True
             ) -> tuple[Callable[..., dict[str, Any]], list[np.ndarray], _Notes]:
    """The function a module probe vmaps over its cases, its arguments, and where
    it notes the module's mode attribute. ``tools``: also run NNX's optimizer and
    split/merge on it (in a group, on the first default probe only: what they
    show is a property of the module, not of the shape, and each costs compile time)."""
    segment = params["segment"]
    notes = _Notes()
    if segment == "default":
        d = int(arrays["train"].shape[-1])
        return _segment_default(cls, d, int(params["steps"]), notes, tools), \
            [arrays["train"], arrays["eval"], arrays["seeds"]], notes
    if segment == "state":
        d = int(arrays["x"].shape[-1])
        return _segment_state(cls, d), [arrays[k] for k in ("x", "gamma", "beta", "running_mean", "running_var")], notes
    if segment == "grad":
        d = int(arrays["x"].shape[-1])
        return _segment_grad(cls, d), \
            [arrays[k] for k in ("x", "gamma", "beta", "running_mean", "running_var", "w")], notes
    raise ProbeError("grader", f"unknown segment {segment!r}")


def _with_notes(meta: dict[str, Any], notes: _Notes) -> dict[str, Any]:
    if notes.calls:
        meta = {**meta, "calls": notes.calls[:_MAX_CALLS]}
    return meta


_WRITE_SHAPE_WORDS = ("cannot broadcast to shape with fewer dimensions",)


@contextlib.contextmanager
def _writes_in_the_variables_shape(reshaped: list[bool]) -> Iterator[None]:
    """While active, ``variable[...] = value`` with a value that is the variable's
    shape plus or minus axes of length 1 (batch statistics taken with keepdims=True)
    writes it in the variable's own shape instead of raising, and notes that it did:
    the module is then probed in its own terms, and the shape is charged once, by
    the variables check (state_shape_changes), instead of every check that trains."""
    import jax.numpy as jnp
    from flax import nnx

    original = nnx.Variable.__setitem__

    def setitem(self: Any, key: Any, value: Any) -> None:
        current = getattr(self.get_value(), "shape", None)
        shape = getattr(value, "shape", None)
        if key is Ellipsis and current is not None and shape is not None and tuple(shape) != tuple(current) \
                and tuple(n for n in shape if n != 1) == tuple(n for n in current if n != 1):
            reshaped.append(True)
            value = jnp.reshape(value, current)
        original(self, key, value)

    nnx.Variable.__setitem__ = setitem
    try:
        yield
    finally:
        nnx.Variable.__setitem__ = original


def probe_module(cls: type, params: dict[str, Any], arrays: dict[str, np.ndarray]
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One module probe: its cases vmapped and jitted, or eagerly if that fails."""
    fn, args, notes = _segment(cls, params, arrays)
    try:
        outputs, meta = _run(fn, args)
        return outputs, _with_notes(meta, notes)
    except ProbeError as err:
        if any(w in err.message.lower() for w in _WRITE_SHAPE_WORDS):
            reshaped: list[bool] = []
            try:
                with _writes_in_the_variables_shape(reshaped):
                    fn, args, notes = _segment(cls, params, arrays)
                    outputs, meta = _run(fn, args)
                if reshaped:
                    cases = len(next(iter(outputs.values())))
                    return {**outputs, RESHAPED_WRITE: np.ones(cases, np.float32)}, _with_notes(meta, notes)
            except ProbeError:
                pass  # it fails for another reason too: the first error is the one to show
        if params["segment"] == "default":
            # Keep what construction created, so the variables can still be checked.
            try:
                outputs, meta = _run(_segment_init(cls, int(arrays["train"].shape[-1])),
                                     [arrays["train"], arrays["seeds"]])
                err.partial = outputs, _with_notes(meta, notes)
            except ProbeError:
                pass
        raise


def probe_module_group(cls: type, probes: list[tuple[dict[str, Any], dict[str, np.ndarray]]]
                       ) -> list[tuple[dict[str, np.ndarray], dict[str, Any]]] | None:
    """Several module probes as ONE jitted program. None if anything fails: the
    caller then runs the probes one by one, which isolates and reports the failure."""
    import jax

    try:
        first = next((i for i, (header, _) in enumerate(probes) if header["params"]["segment"] == "default"), None)
        parts = [_segment(cls, header["params"], arrays, tools=i == first) for i, (header, arrays) in enumerate(probes)]

        def merged(all_args: list[list[Any]]) -> list[dict[str, Any]]:
            return [jax.vmap(fn)(*args) for (fn, _, _), args in zip(parts, all_args)]

        results = jax.jit(merged)([args for _, args, _ in parts])
        jax.block_until_ready(results)
        return [({k: _as_array(v, k) for k, v in r.items()}, _with_notes({"mode": "jit"}, notes))
                for r, (_, _, notes) in zip(results, parts)]
    except Exception:  # noqa: BLE001 - including ProbeError: one by one will say what failed
        return None


# --- the flow probes ---------------------------------------------------------------


def _recording(cls: type, calls: list[dict[str, Any]], instances: list[Any] | None = None) -> type:
    """A subclass of ``cls`` that notes its construction, its mode switches and
    the mode of each call (calls traced inside ``nnx.jit`` are noted too: the
    copy nnx.jit merges inside its trace is of this class)."""
    def own(name: str) -> Any:  # the class's own (for __call__: not the metaclass's, which constructs)
        return next((vars(k)[name] for k in cls.__mro__ if name in vars(k)), None)

    original_init, original_call, original_eval, original_train = (own(n) for n in ("__init__", "__call__",
                                                                                    "eval", "train"))

    def note(entry: dict[str, Any]) -> None:
        if len(calls) < _MAX_CALLS:
            calls.append(entry)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        original_init(self, *args, **kwargs)
        if instances is not None and len(instances) < _MAX_CALLS:
            instances.append(self)
        note({"call": "init", "num_features": repr(args[0] if args else kwargs.get("num_features"))[:40],
              "rngs": type(kwargs.get("rngs")).__name__, "use_running_average": _mode_repr(self)})

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N807
        note({"call": "__call__", "use_running_average": _mode_repr(self)})
        return original_call(self, *args, **kwargs)

    def eval(self: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: A001
        result = original_eval(self, *args, **kwargs)
        note({"call": "eval", "use_running_average": _mode_repr(self)})
        return result

    def train(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original_train(self, *args, **kwargs)
        note({"call": "train", "use_running_average": _mode_repr(self)})
        return result

    namespace: dict[str, Any] = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
    for name, original, wrapper in (("__init__", original_init, __init__), ("__call__", original_call, __call__),
                                    ("eval", original_eval, eval), ("train", original_train, train)):
        if callable(original):
            namespace[name] = wrapper
    return type(cls.__name__, (cls,), namespace)




def _model_state(instances: list[Any]) -> dict[str, Any]:
    """The whole state of the first model the flow built, as it is after
    init_and_apply returned (``model/<collection>/<path>``): what a training loop
    holding that model would see. A flow that builds its model inside a jitted
    function of its own leaves only tracers of a finished trace: nothing to read
    (``MODEL_UNREADABLE``), and nothing to judge."""
    import jax.numpy as jnp

    if not instances:
        return {}
    try:
        state = snapshot(instances[0], MODEL_PREFIX)
        if any(_escaped(v) for v in state.values()):
            return {MODEL_UNREADABLE: jnp.ones(())}
        return {k: jnp.asarray(v) for k, v in state.items()}
    except Exception:  # noqa: BLE001 - a model of a finished trace: see above
        return {MODEL_UNREADABLE: jnp.ones(())}


def _escaped(value: Any) -> bool:
    """Whether ``value`` is a tracer of a trace other than the running one (a value
    left behind by a jitted function that has returned): reading it would fail the
    whole probe, and only later, where the outer jit ends."""
    try:
        from jax._src import core
    except ImportError:  # pragma: no cover - another jax: read it, and let eager mode catch it
        return False
    return isinstance(value, core.Tracer) and value._trace is not core.trace_ctx.trace


def _flow_call(submission: ModuleType, own: type, params: dict[str, Any], x: Any, calls: list[dict[str, Any]]
               ) -> _probes.FlowResult:
    """init_and_apply with MyBatchNorm recorded: the module's name is bound to the
    recording subclass, and the class itself notes a construction too (a flow that
    kept another name for it, ``Layer = MyBatchNorm``, is seen as well). Besides
    the output, the state of the model the flow built: whether the training call's
    update reached the model is behaviour the grader can score (a plain jax.jit over
    the model as an argument returns the right output and silently drops it)."""
    instances: list[Any] = []
    submission.MyBatchNorm = _recording(own, calls, instances)
    had_init = "__init__" in vars(own)
    init = own.__init__

    def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self) is own and len(instances) < _MAX_CALLS:  # (the subclass notes its own)
            instances.append(self)
        if type(self) is own and len(calls) < _MAX_CALLS:
            calls.append({"call": "init", "rngs": type(kwargs.get("rngs")).__name__,
                          "use_running_average": _mode_repr(self)})

    own.__init__ = counted
    try:
        y = submission.init_and_apply(float(params["seed"]), x, float(params["flag"]))
        return _probes.FlowResult(y, _model_state(instances))
    finally:
        submission.MyBatchNorm = own
        if had_init:
            own.__init__ = init
        else:
            del own.__init__


def probe_flow_group(submission: ModuleType, flows: list[tuple[dict[str, Any], dict[str, np.ndarray]]]
                     ) -> list[tuple[dict[str, np.ndarray], dict[str, Any]]] | None:
    """All flow probes in one jitted program (the student's own nnx.jit nests inside)."""
    return _probes.run_flow_group(submission, flows, _flow_call)


def probe_flow(submission: ModuleType, params: dict[str, Any], arrays: dict[str, np.ndarray]
               ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """init_and_apply(seed, x, flag) with floats: jitted, else eagerly."""
    return _probes.run_flow(submission, params, arrays, _flow_call)
