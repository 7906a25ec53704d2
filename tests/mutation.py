"""Mutants of the reference solution, how each behaves, and what the grader makes of them.

Issue 9 asks for proof that the grader charges every behavioural change of the
reference and nothing else. This module

- generates deterministic, named mutants of ``solution/batchnorm.py`` with ``ast``:
  small edits to the code of ``MyBatchNorm`` (its field defaults and ``__call__``)
  and of ``init_and_apply``, never docstrings or imports;
- classifies each one by running it next to the reference on a broad fixed set of
  inputs (worker subprocesses, no code from ``grader/``), so "different" means the
  behaviour differs, not that the grader says so;
- grades a set of mutants in one ``batch`` run and sums up the outcome.

``tests/test_mutants.py`` runs a fixed sample; ``make mutants`` (bench/mutants.py) runs
them all. ``python -m tests.mutation`` is the classifier's worker (internal).
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "solution" / "batchnorm.py"

# ---------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------

KINDS = ("operator", "operand_removal", "constant", "axis", "keyword_removal", "statement_deletion",
         "call_removal", "swap", "condition", "name")
_PREFIX = {"operator": "binop", "operand_removal": "operand", "constant": "const", "axis": "axis",
           "keyword_removal": "kwdel", "statement_deletion": "stmtdel", "call_removal": "calldel",
           "swap": "swap", "condition": "cond", "name": "name"}
_ARITH = (ast.Add, ast.Sub, ast.Mult, ast.Div)  # each replaced by each of the others
# Comparison and boolean flips (none fire on today's reference, which has neither).
_FLIPS: dict[type[ast.AST], type[ast.AST]] = {
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.And: ast.Or, ast.Or: ast.And}
# Names a student plausibly confuses with each other (locals, then attributes).
_NAME_PARTNERS = {"mean": "var", "var": "mean", "gamma": "beta", "beta": "gamma",
                  "running_mean": "running_var", "running_var": "running_mean",
                  "params": "batch_stats", "batch_stats": "params"}
_ATTR_PARTNERS = {"ones": "zeros", "zeros": "ones", "momentum": "eps", "eps": "momentum",
                  "mean": "var", "sqrt": "rsqrt"}

Edit = Callable[[ast.AST], "ast.AST | list[ast.stmt]"]


@dataclass(frozen=True)
class Mutant:
    id: str  # e.g. "binop-L60c34-Sub->Add": kind prefix, line and column in the reference, edit
    kind: str
    description: str  # the edited code, before -> after
    source: str

    @property
    def slug(self) -> str:
        """The id as a file stem the batch grader keeps unchanged as the student id."""
        return re.sub(r"[^A-Za-z0-9_.@-]+", "_", self.id.replace("<->", "_x_").replace("->", "_to_"))


@dataclass(frozen=True)
class _Site:
    index: int  # position of the edited node in ast.walk order (the same in every deep copy)
    kind: str
    label: str
    edit: Edit
    description: str = ""  # when "before -> after" of the edited node would not say it
    line: int = 0  # when the edit is not best placed at the edited node (statement swaps)


def _regions(tree: ast.Module) -> list[ast.AST]:
    """The nodes whose subtrees may be edited: MyBatchNorm's field defaults, and the
    ``__call__`` and ``init_and_apply`` definitions (their docstrings are skipped)."""
    roots: list[ast.AST] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "MyBatchNorm":
            roots += [f.value for f in node.body if isinstance(f, ast.AnnAssign) and f.value is not None]
            roots += [f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__call__"]
        elif isinstance(node, ast.FunctionDef) and node.name == "init_and_apply":
            roots.append(node)
    return roots


def _is_docstring(node: ast.AST, owner: ast.AST | None) -> bool:
    return (isinstance(owner, ast.FunctionDef) and owner.body[0] is node and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str))


def _locals(function: ast.FunctionDef) -> set[str]:
    names = {a.arg for a in function.args.args} - {"self"}
    return names | {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _number_edits(value: int | float) -> list[int | float]:
    """Off by one, zero, negated, ten times: the usual slips with a constant."""
    kind = type(value)
    out: list[int | float] = []
    for new in (value + 1, value - 1, 0, -value, 10 * value):
        new = kind(round(new, 12))
        if new != value and new not in out:
            out.append(new)
    return out


def _swap_stmts(field: str, i: int) -> Edit:
    def edit(owner: ast.AST) -> ast.AST:
        body = getattr(owner, field)
        body[i], body[i + 1] = body[i + 1], body[i]
        return owner
    return edit


def _sites_of(node: ast.AST, index: int, owner: ast.AST | None, function: ast.FunctionDef | None,
              skip: set[int]) -> Iterator[_Site]:
    """Every edit of one node. ``owner`` holds it in a statement list; ``skip`` are
    ids of constants edited by a more specific kind (axis values)."""
    if isinstance(node, ast.stmt) and owner is not None and not _is_docstring(node, owner):
        yield _Site(index, "statement_deletion", type(node).__name__, lambda n: [])
    if isinstance(node, (ast.FunctionDef, ast.If)):
        for field in ("body", "orelse"):
            body = getattr(node, field, [])
            for i in range(len(body) - 1):
                if not _is_docstring(body[i], node):
                    first, second = body[i], body[i + 1]
                    yield _Site(index, "swap", f"stmts-L{first.lineno}<->L{second.lineno}", _swap_stmts(field, i),
                                f"swapped: {_short(ast.unparse(first), 40)} <-> {_short(ast.unparse(second), 40)}",
                                first.lineno)
    if isinstance(node, ast.If):
        test = ast.unparse(node.test)
        yield _Site(index, "condition", "negated", lambda n: _with(n, test=_negated(n.test)),
                    f"if {test}: -> if {ast.unparse(_negated(node.test))}:")
        for value in (True, False):
            yield _Site(index, "condition", f"always-{value}", lambda n, v=value: _with(n, test=ast.Constant(v)),
                        f"if {test}: -> if {value}:")
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Tuple):
        if len(node.targets[0].elts) == 2:
            yield _Site(index, "swap", "targets", lambda n: _with(n, targets=[ast.Tuple(n.targets[0].elts[::-1], ast.Store())]))
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        name = type(node.op).__name__
        for op in _ARITH:
            if op is not type(node.op):
                yield _Site(index, "operator", f"{name}->{op.__name__}", lambda n, op=op: _with(n, op=op()))
        yield _Site(index, "swap", f"{name}-operands", lambda n: _with(n, left=n.right, right=n.left))
        yield _Site(index, "operand_removal", f"{name}->left", lambda n: n.left)
        yield _Site(index, "operand_removal", f"{name}->right", lambda n: n.right)
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            flipped = _FLIPS[type(op)]
            yield _Site(index, "condition", f"{type(op).__name__}->{flipped.__name__}",
                        lambda n, i=i, flipped=flipped: _with(n, ops=n.ops[:i] + [flipped()] + n.ops[i + 1:]))
    if isinstance(node, ast.BoolOp):
        flipped = _FLIPS[type(node.op)]
        yield _Site(index, "condition", f"{type(node.op).__name__}->{flipped.__name__}", lambda n: _with(n, op=flipped()))
    if isinstance(node, ast.UnaryOp):
        kind = "condition" if isinstance(node.op, ast.Not) else "operator"
        yield _Site(index, kind, f"{type(node.op).__name__}-removed", lambda n: n.operand)
    if isinstance(node, ast.Constant) and id(node) not in skip:
        value = node.value
        if isinstance(value, bool):
            yield _Site(index, "constant", f"{value}->{not value}", lambda n: ast.Constant(not n.value))
        elif isinstance(value, (int, float)):
            for new in _number_edits(value):
                yield _Site(index, "constant", f"{value!r}->{new!r}", lambda n, new=new: ast.Constant(new))
        elif isinstance(value, str):
            yield _Site(index, "constant", f"{value!r}->{value + '_'!r}", lambda n: ast.Constant(n.value + "_"))
    if isinstance(node, ast.List) and node.elts:
        yield _Site(index, "constant", "list->[]", lambda n: _with(n, elts=[]))
    if isinstance(node, ast.Call):
        yield from _call_sites(node, index, function)
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in _NAME_PARTNERS:
        new = _NAME_PARTNERS[node.id]
        yield _Site(index, "name", f"{node.id}->{new}", lambda n, new=new: _with(n, id=new))
    if isinstance(node, ast.Attribute) and node.attr in _ATTR_PARTNERS:
        new = _ATTR_PARTNERS[node.attr]
        yield _Site(index, "name", f".{node.attr}->.{new}", lambda n, new=new: _with(n, attr=new))


def _call_sites(node: ast.Call, index: int, function: ast.FunctionDef | None) -> Iterator[_Site]:
    func = ast.unparse(node.func)
    replacements: list[tuple[str, Edit]] = []
    if node.args:
        replacements.append(("arg0", lambda n: n.args[0]))
    if (isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) and function is not None
            and node.func.value.id in _locals(function)):
        replacements.append(("receiver", lambda n: n.func.value))
    if not node.args and not node.keywords:
        replacements.append(("uncalled", lambda n: n.func))
    for what, edit in replacements:
        yield _Site(index, "call_removal", f"{func}->{what}", edit)
    for i, keyword in enumerate(node.keywords):
        if keyword.arg is None:
            continue
        yield _Site(index, "keyword_removal", keyword.arg,
                    lambda n, i=i: _with(n, keywords=n.keywords[:i] + n.keywords[i + 1:]))
        if keyword.arg == "axis":
            for new in (1, -1, None):
                yield _Site(index, "axis", f"axis={ast.unparse(keyword.value)}->{new}",
                            lambda n, i=i, new=new: _with_keyword(n, i, ast.Constant(new)))
    for i in range(len(node.args) - 1):
        yield _Site(index, "swap", f"{func}-args{i}<->{i + 1}", lambda n, i=i: _with_args_swapped(n, i))


def _negated(test: ast.expr) -> ast.expr:
    return test.operand if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) else ast.UnaryOp(ast.Not(), test)


def _with(node: ast.AST, **fields: Any) -> ast.AST:
    for name, value in fields.items():
        setattr(node, name, value)
    return node


def _with_keyword(node: ast.Call, i: int, value: ast.expr) -> ast.Call:
    node.keywords[i].value = value
    return node


def _with_args_swapped(node: ast.Call, i: int) -> ast.Call:
    node.args[i], node.args[i + 1] = node.args[i + 1], node.args[i]
    return node


def _sites(tree: ast.Module) -> list[tuple[_Site, ast.AST]]:
    """(site, original node) for every edit inside the regions, in source order."""
    order = {id(n): i for i, n in enumerate(ast.walk(tree))}
    found: list[tuple[_Site, ast.AST]] = []
    for root in _regions(tree):
        function = root if isinstance(root, ast.FunctionDef) else None
        owners = {id(child): parent for parent in ast.walk(root) if isinstance(parent, (ast.FunctionDef, ast.If))
                  for field in ("body", "orelse") for child in getattr(parent, field, [])}
        axis_values = {id(k.value) for k in ast.walk(root) if isinstance(k, ast.keyword) and k.arg == "axis"}
        skip = axis_values | {id(n.value) for n in ast.walk(root) if _is_docstring(n, owners.get(id(n)))}
        nodes = [root] if function is None else [n for n in ast.walk(root) if n is root or not _in_signature(n, root)]
        for node in nodes:
            for site in _sites_of(node, order[id(node)], owners.get(id(node)), function, skip):
                found.append((site, node))
    found.sort(key=lambda pair: (pair[0].line or pair[1].lineno, pair[1].col_offset, pair[0].index))
    return found


def _in_signature(node: ast.AST, function: ast.FunctionDef) -> bool:
    """Arguments, annotations and decorators are not mutated (annotations are strings here)."""
    outside = [function.args, *function.decorator_list] + ([function.returns] if function.returns else [])
    return any(node is n for part in outside for n in ast.walk(part))


def _replace(tree: ast.Module, target: ast.AST, new: ast.AST | list[ast.stmt]) -> None:
    if new is target:
        return
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is target:
                setattr(parent, field, new)
                return
            if isinstance(value, list) and any(v is target for v in value):
                i = next(i for i, v in enumerate(value) if v is target)
                replaced = value[:i] + (new if isinstance(new, list) else [new]) + value[i + 1:]
                setattr(parent, field, replaced or [ast.Pass()])
                return
    raise LookupError("mutation target not found")


def generate(path: Path = REFERENCE) -> list[Mutant]:
    """All mutants of ``path``: compilable, none identical (after ``ast.unparse``) to
    the reference or to an earlier mutant, ids unique."""
    tree = ast.parse(path.read_text())
    seen = {ast.unparse(tree)}
    ids: Counter[str] = Counter()
    out: list[Mutant] = []
    for site, original in _sites(tree):
        mutated = copy.deepcopy(tree)
        target = list(ast.walk(mutated))[site.index]
        before = ast.unparse(target)
        new = site.edit(target)
        after = ast.unparse(new) if isinstance(new, ast.AST) else ""
        _replace(mutated, target, new)
        text = ast.unparse(ast.fix_missing_locations(mutated))
        if text in seen:
            continue
        try:
            compile(text, "<mutant>", "exec")
        except SyntaxError:
            continue
        seen.add(text)
        line = site.line or getattr(original, "lineno", 0)
        base = f"{_PREFIX[site.kind]}-L{line}" + ("" if site.line else f"c{original.col_offset}") + f"-{site.label}"
        ids[base] += 1
        mutant_id = base if ids[base] == 1 else f"{base}#{ids[base]}"
        description = site.description or (f"deleted: {_short(before)}" if new == [] else f"{_short(before)} -> {_short(after)}")
        out.append(Mutant(mutant_id, site.kind, description, text + "\n"))
    return out


def _short(code: str, width: int = 70) -> str:
    flat = " ".join(code.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def sample(mutants: Sequence[Mutant], per_kind: int, salt: str) -> list[Mutant]:
    """A fixed spread over the kinds: the ``per_kind`` mutants of each kind whose ids
    hash lowest. Deterministic for a given reference, independent of run order."""
    by_kind: dict[str, list[Mutant]] = defaultdict(list)
    for mutant in mutants:
        by_kind[mutant.kind].append(mutant)
    chosen: list[Mutant] = []
    for kind in KINDS:
        ranked = sorted(by_kind[kind], key=lambda m: hashlib.sha256(f"{salt}:{m.id}".encode()).hexdigest())
        chosen += ranked[:per_kind]
    return chosen


# ---------------------------------------------------------------------------------------
# Behaviour: the worker side (runs inside ``python -m tests.mutation``)
# ---------------------------------------------------------------------------------------

EQUIVALENT_TOL = 1e-6  # |mutant - reference| / (1 + |reference|), every value of every observation
DIFFERENT_TOL = 1e-3
MUTANT_SECONDS = 60  # one mutant's observations; a hang is a behaviour of its own
SHAPES = ((1, 4), (2, 1), (2, 3), (3, 3), (8, 3), (32, 5), (64, 16), (12, 7))
FLOWS = ((0.0, 0.0), (3.0, 1.0), (7.0, 0.0), (1.0, 1.0))  # init_and_apply's (seed, flag)


class _Timeout(BaseException):
    """Raised by the alarm: a BaseException, so no observation's ``except`` eats it."""


def _batches(shape: tuple[int, int], rng: Any) -> list[Any]:
    """Five float32 batches: standard; offset 500 (std 10) with a constant feature;
    tiny (variance below eps); mixed scales and offsets; shifted and scaled."""
    import numpy as np

    n, d = shape
    offset = 500.0 + 10.0 * rng.standard_normal(shape)
    offset[:, 0] = 500.0
    scales = np.logspace(-2, 2, d)
    mixed = scales * rng.standard_normal(shape) + scales * rng.uniform(-3, 3, d)
    raw = [rng.standard_normal(shape), offset, 1e-3 * rng.standard_normal(shape), mixed,
           3.0 * rng.standard_normal(shape) - 2.0]
    return [b.astype(np.float32) for b in raw]


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    import jax
    import numpy as np

    out: dict[str, Any] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        key = prefix + jax.tree_util.keystr(path)
        try:
            out[key] = np.asarray(leaf)
        except Exception:  # noqa: BLE001 - not an array: compared by its text
            out[key] = repr(leaf)
    return out


def _observe(module: Any) -> dict[str, Any]:
    """Everything the contract lets a caller see, on every shape (``_steps``).
    A step that raises is recorded as its exception's type; later steps still run."""
    observed: dict[str, Any] = {}
    for shape in SHAPES:
        for name, run in _steps(module, shape):
            key = f"{shape[0]}x{shape[1]}/{name}"
            try:
                observed.update({f"{key}/{k}": v for k, v in run().items()})
            except Exception as err:  # noqa: BLE001 - the mutant's error is an observation
                observed[key] = f"raised {type(err).__name__}"
    return observed


def _steps(module: Any, shape: tuple[int, int]) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """init variables, an eval straight after init, three training steps threading
    ``batch_stats`` and an eval after them, train and eval from given params and
    statistics, gradients of a loss w.r.t. params and input in both modes, and
    ``init_and_apply`` for several seeds and flags."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    xs = _batches(shape, rng)
    d = shape[1]
    given = {"params": {"gamma": (1 + 0.5 * rng.standard_normal(d)).astype(np.float32),
                        "beta": rng.standard_normal(d).astype(np.float32)},
             "batch_stats": {"running_mean": rng.standard_normal(d).astype(np.float32),
                             "running_var": np.exp(rng.standard_normal(d)).astype(np.float32)}}
    w = rng.standard_normal(shape).astype(np.float32)
    model = module.MyBatchNorm()
    state: dict[str, Any] = {}

    def apply(variables: Any, x: Any, flag: bool) -> Any:
        return model.apply(variables, x, use_running_average=flag, mutable=["batch_stats"])

    def init() -> dict[str, Any]:
        state["init"] = model.init(jax.random.PRNGKey(0), xs[0], use_running_average=False)
        return _flat(state["init"])

    def fresh() -> dict[str, Any]:
        y, updates = apply(state["init"], xs[0], True)
        return {"y": np.asarray(y), **_flat(updates)}

    def trained() -> dict[str, Any]:
        out: dict[str, Any] = {}
        current = dict(state["init"])
        for s in (1, 2, 3):
            y, updates = apply(current, xs[s], False)
            out |= {f"train{s}/y": np.asarray(y), **_flat(updates, f"train{s}")}
            current = {**current, **dict(updates)}
        y, updates = apply(current, xs[4], True)
        return out | {"eval/y": np.asarray(y), **_flat(updates, "eval")}

    def from_given() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for s in (0, 3):
            for flag in (False, True):
                y, updates = apply(given, xs[s], flag)
                out |= {f"{s}/{flag}/y": np.asarray(y), **_flat(updates, f"{s}/{flag}")}
        return out

    def gradients() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for flag in (False, True):
            def loss(x: Any, params: Any, flag: bool = flag) -> Any:
                y, _ = apply({"params": params, "batch_stats": given["batch_stats"]}, x, flag)
                return jnp.sum(y * w)

            dx, dparams = jax.grad(loss, argnums=(0, 1))(xs[3], given["params"])
            out |= {f"{flag}/x": np.asarray(dx), **_flat(dparams, str(flag))}
        return out

    def flows() -> dict[str, Any]:
        return {f"{seed}/{flag}/{s}": np.asarray(module.init_and_apply(seed, xs[s], flag))
                for seed, flag in FLOWS for s in (0, 3)}

    return [("init", init), ("fresh", fresh), ("train", trained), ("given", from_given),
            ("grad", gradients), ("flow", flows)]


def _load(source: str, name: str) -> ModuleType:
    """``source`` as a fresh module (registered while it is in use: Flax's dataclass
    transform looks the module up)."""
    module = ModuleType(name)
    module.__file__ = f"<{name}>"
    sys.modules[name] = module
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - our own mutants
    return module


def _observe_source(source: str, name: str) -> dict[str, Any]:
    try:
        module = _load(source, name)
    except Exception as err:  # noqa: BLE001
        return {"import": f"raised {type(err).__name__}"}
    try:
        return _observe(module)
    finally:
        sys.modules.pop(name, None)


def _distance(ref: Any, got: Any) -> float:
    """Largest |got - ref| / (1 + |ref|); infinite for another shape, type, NaN or inf."""
    import numpy as np

    if isinstance(ref, str) or isinstance(got, str):
        return 0.0 if ref == got else math.inf
    try:
        r, g = ref.astype(np.float64), got.astype(np.float64)
    except (TypeError, ValueError):
        return 0.0 if repr(ref) == repr(got) else math.inf
    if r.shape != g.shape or (np.isnan(r) != np.isnan(g)).any():
        return math.inf
    special = np.isinf(r) | np.isinf(g)
    if (r[special] != g[special]).any():
        return math.inf
    finite = ~(special | np.isnan(r))
    if not finite.any():
        return 0.0
    return float(np.max(np.abs(g[finite] - r[finite]) / (1.0 + np.abs(r[finite]))))


def compare(reference: dict[str, Any], observed: dict[str, Any]) -> dict[str, Any]:
    """The verdict on one mutant: its class, the largest distance and where (among
    infinite ones, preferably an error the mutant raised over a value it never produced)."""
    worst, where = (0.0, False), ""
    for key in sorted(reference.keys() | observed.keys()):
        got = observed.get(key, "missing")
        d = _distance(reference[key], got) if key in reference and key in observed else math.inf
        rank = (d, isinstance(got, str) and got != "missing")
        if rank > worst:
            worst, where = rank, f"{key}: {got if isinstance(got, str) else f'{d:.3g}'}"
    distance = worst[0]
    cls = "equivalent" if distance <= EQUIVALENT_TOL else "different" if distance > DIFFERENT_TOL else "marginal"
    return {"class": cls, "distance": distance if math.isfinite(distance) else None, "detail": where}


READY = "ready"  # the worker's first line: jax imported, the reference observed


def _worker() -> None:
    """Read [{id, source}] on stdin, write READY and then one JSON verdict per line, in order."""
    results = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever a mutant prints goes to stderr, not into the verdicts
    jobs = json.load(sys.stdin)
    reference = _observe_source(REFERENCE.read_text(), "mutation_reference")
    results.write(READY + "\n")

    def alarm(signum: int, frame: object) -> None:
        raise _Timeout

    signal.signal(signal.SIGALRM, alarm)
    for n, job in enumerate(jobs):
        signal.alarm(MUTANT_SECONDS)
        try:
            observed = _observe_source(job["source"], f"mutation_mutant_{n}")
        except _Timeout:
            observed = {"timeout": f"still running after {MUTANT_SECONDS} s"}
        finally:
            signal.alarm(0)
        results.write(json.dumps({"id": job["id"], **compare(reference, observed)}) + "\n")


# ---------------------------------------------------------------------------------------
# Behaviour: the parent side
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    cls: str  # equivalent | marginal | different
    distance: float | None  # None: infinite (shape, exception, NaN pattern)
    detail: str


def _read_lines(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _run_worker(chunk: Sequence[Mutant], verdicts: dict[str, Verdict]) -> None:
    """Classify ``chunk`` in worker processes; a worker that dies or hangs costs the
    mutant it was on (classified different) and a fresh worker takes the rest. A
    worker that cannot even observe the reference is the harness's failure: raised."""
    pending = list(chunk)
    while pending:
        with tempfile.TemporaryFile("w+") as errors, subprocess.Popen(
                [sys.executable, "-m", "tests.mutation"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=errors, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}) as proc:
            lines: queue.Queue[str | None] = queue.Queue()
            reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
            reader.start()
            assert proc.stdin is not None
            proc.stdin.write(json.dumps([{"id": m.id, "source": m.source} for m in pending]))
            proc.stdin.close()
            try:
                ready = lines.get(timeout=300)  # importing jax and observing the reference, on a busy machine
            except queue.Empty:
                ready = None
            if ready != READY + "\n":
                proc.kill()
                errors.seek(0)
                raise RuntimeError(f"the classifier's worker did not start: {errors.read()[-2000:]}")
            while pending:
                try:
                    line = lines.get(timeout=2 * MUTANT_SECONDS)
                except queue.Empty:
                    line = None
                if line is None:
                    verdicts[pending.pop(0).id] = Verdict("different", None, "the classifier's worker died or hung on it")
                    break
                data = json.loads(line)
                assert data["id"] == pending[0].id
                verdicts[pending.pop(0).id] = Verdict(data["class"], data["distance"], data["detail"])
            proc.kill()
            reader.join()


def classify(mutants: Sequence[Mutant], jobs: int = 2) -> dict[str, Verdict]:
    """Each mutant's behaviour next to the reference's, by id, in ``jobs`` workers."""
    verdicts: dict[str, Verdict] = {}
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda chunk: _run_worker(chunk, verdicts), [mutants[i::jobs] for i in range(jobs)]))
    return verdicts


# ---------------------------------------------------------------------------------------
# Grading and the summary
# ---------------------------------------------------------------------------------------

ADVISORY_TAGS = frozenset({"not_jittable"})  # advice: never the reason for lost points


@dataclass(frozen=True)
class Graded:
    score: float
    tags: tuple[str, ...]
    charged: tuple[str, ...]  # checks that lost points themselves (not skipped for a dependency)
    observed: str  # what the first of them observed


def _check_name(name: str) -> str:
    return re.split(r"[:(]", name)[0].strip()


def _charged(test: dict[str, Any]) -> bool:
    """A check that failed on its own account: not skipped for a failed dependency,
    and not advice (the zero-point gate that the module runs at all does count)."""
    if test["status"] != "failed" or test["output"].startswith("Not checked"):
        return False
    return test["max_score"] > 0 or "advice" not in test["name"]


def grade(mutants: Sequence[Mutant], work: Path, secret: str, jobs: int = 2, timeout: float = 3600) -> dict[str, Graded]:
    """Grade every mutant in one ``python -m grader batch`` run, by id."""
    from tests.conftest import run_cli

    folder, out = work / "mutants", work / "graded"
    folder.mkdir(parents=True)
    for mutant in mutants:
        (folder / f"{mutant.slug}.py").write_text(mutant.source)
    run = run_cli("batch", str(folder), "--out", str(out), "--jobs", str(jobs), "--force",
                  env={"GRADER_SECRET": secret}, timeout=timeout)
    if run.code != 0:
        raise RuntimeError(f"batch failed ({run.code}): {run.stderr[-2000:]}")
    graded: dict[str, Graded] = {}
    for mutant in mutants:
        data = json.loads((out / "students" / mutant.slug / "results.json").read_text())
        charged = [t for t in data["tests"] if _charged(t)]
        observed = next((line.removeprefix("Observed: ") for t in charged for line in t["output"].splitlines()
                         if line.startswith("Observed: ")), "")
        graded[mutant.id] = Graded(data["score"], tuple(data["extra_data"].get("tags", [])),
                                   tuple(_check_name(t["name"]) for t in charged), _short(observed, 90))
    return graded


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    verdict: Verdict
    graded: Graded

    @property
    def killed(self) -> bool:
        return self.graded.score < 100

    @property
    def named(self) -> bool:
        return bool(set(self.graded.tags) - ADVISORY_TAGS)


@dataclass(frozen=True)
class Summary:
    outcomes: list[Outcome]

    def of(self, cls: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.verdict.cls == cls]

    @property
    def survivors(self) -> list[Outcome]:
        """Behaviour differs from the reference, yet full marks."""
        return [o for o in self.of("different") if not o.killed]

    @property
    def charged_equivalents(self) -> list[Outcome]:
        """Behaves like the reference, yet loses points."""
        return [o for o in self.of("equivalent") if o.killed]

    @property
    def killed(self) -> list[Outcome]:
        return [o for o in self.of("different") if o.killed]

    @property
    def named_share(self) -> tuple[int, int]:
        killed = self.killed
        return sum(o.named for o in killed), len(killed)

    def share_line(self) -> str:
        named, killed = self.named_share
        share = f"{100 * named / killed:.0f}%" if killed else "n/a"
        return f"named share: {named} of {killed} killed mutants carry a pitfall tag ({share})"


def _row(o: Outcome) -> str:
    tags = ", ".join(o.graded.tags) or "-"
    return f"| `{o.mutant.id}` | {o.mutant.kind} | `{o.mutant.description}` | {o.verdict.cls} | {o.graded.score:g} | {tags} |"


def report(summary: Summary) -> str:
    """The Markdown report: counts, failures of the grader, untagged kills by kind,
    and every mutant with its class, score and tags."""
    outcomes = summary.outcomes
    classes = Counter(o.verdict.cls for o in outcomes)
    kinds = Counter(o.mutant.kind for o in outcomes)
    lines = ["# Mutation report", "",
             f"{len(outcomes)} mutants of solution/batchnorm.py: "
             + ", ".join(f"{classes[c]} {c}" for c in ("different", "equivalent", "marginal")), "",
             "By kind: " + ", ".join(f"{k} {kinds[k]}" for k in KINDS if kinds[k]), "",
             f"Killed: {len(summary.killed)} of {classes['different']} different mutants lose points.",
             f"Equivalent mutants scoring 100: {classes['equivalent'] - len(summary.charged_equivalents)} "
             f"of {classes['equivalent']}.", "", summary.share_line() + ".", ""]
    header = ["| mutant | kind | edit | class | score | tags |", "|---|---|---|---|---:|---|"]
    for title, group in (("Survivors (different, scored 100)", summary.survivors),
                         ("Equivalent but charged", summary.charged_equivalents)):
        lines += [f"## {title}: {len(group)}", ""]
        lines += [f"- `{o.mutant.id}` `{o.mutant.description}` ({o.graded.score:g}, tags: "
                  f"{', '.join(o.graded.tags) or '-'}): classifier: {o.verdict.detail}; "
                  f"charged: {', '.join(o.graded.charged) or '-'}" for o in group] or ["none"]
        lines.append("")
    untagged = [o for o in summary.killed if not o.named]
    lines += [f"## Killed without a pitfall tag: {len(untagged)}", ""]
    by_kind: dict[str, list[Outcome]] = defaultdict(list)
    for o in untagged:
        by_kind[o.mutant.kind].append(o)
    for kind in KINDS:
        if by_kind[kind]:
            lines += [f"### {kind} ({len(by_kind[kind])})", ""]
            lines += [f"- `{o.mutant.id}` `{o.mutant.description}` ({o.graded.score:g}): "
                      f"{'; '.join(o.graded.charged) or '-'} ({o.graded.observed or 'nothing observed'})"
                      for o in by_kind[kind]]
            lines.append("")
    by_tag: dict[str, list[Outcome]] = defaultdict(list)
    for o in summary.killed:
        for tag in o.graded.tags:
            by_tag[tag].append(o)
    lines += ["## Killed and named, by tag (does the tag fit the edit?)", ""]
    for tag in sorted(by_tag):
        lines += [f"### {tag} ({len(by_tag[tag])})", ""]
        lines += [f"- `{o.mutant.id}` `{o.mutant.description}` ({o.graded.score:g})" for o in by_tag[tag]]
        lines.append("")
    marginal = summary.of("marginal")
    lines += [f"## Marginal (not asserted): {len(marginal)}", ""]
    lines += [f"- `{o.mutant.id}` ({o.graded.score:g}): {o.verdict.detail}" for o in marginal] or ["none"]
    lines += ["", "## All mutants", ""] + header + [_row(o) for o in outcomes]
    return "\n".join(lines) + "\n"


def summarize(mutants: Sequence[Mutant], verdicts: dict[str, Verdict], graded: dict[str, Graded]) -> Summary:
    return Summary([Outcome(m, verdicts[m.id], graded[m.id]) for m in mutants])


if __name__ == "__main__":
    _worker()
