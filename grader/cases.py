"""The test suite: which inputs the submission sees, derived from a secret.

A suite is a list of probes. Module probes batch many cases of one shape, so the
submission's process compiles once per shape; flow probes call the student's
``init_and_apply`` the way the exercise's tests do (float seed, float flag).
Without a secret, the public practice suite runs: same design, other numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Any

import numpy as np

PRACTICE_SECRET = "practice"
STEPS = 2  # training applies per case, threading batch_stats from one to the next

# (N, D, cases): tiny batches, D=1, square, wide, and one large tall shape. Every
# shape costs a compile, so the suite spends its cases, not its shapes.
HIDDEN_SHAPES: tuple[tuple[int, int, int], ...] = (
    (1, 4, 80),
    (2, 3, 220),
    (3, 1, 200),
    (5, 5, 200),
    (32, 10, 200),
    (12, 130, 80),
    (4096, 64, 2),
)
PRACTICE_SHAPES: tuple[tuple[int, int, int], ...] = (
    (2, 3, 24),
    (4, 4, 24),
    (16, 5, 24),
    (64, 9, 12),
)
STATE_SHAPES = ((6, 6),)  # grader-chosen params and statistics (square: the axis mistakes show)
GRAD_SHAPE = (16, 5)

# Families of per-feature distributions. Offsets stay within a few standard
# deviations in scored cases: float32 one-pass variance (what flax uses by
# default) is a sound choice and must pass; large offsets are advisory only.
FAMILIES = ("standard", "offset", "wide_scale", "tiny_variance", "constant", "mixed")


@dataclasses.dataclass(frozen=True)
class Probe:
    """One unit of work for the submission's process, with its inputs."""

    id: str
    probe: str  # "module" or "flow"
    params: dict[str, Any]
    arrays: dict[str, np.ndarray]
    families: tuple[str, ...] = ()  # per case, for module probes
    scored: tuple[bool, ...] = ()  # per case; False: advisory only
    # float64 copies of the scored inputs, made once per suite (see evidence.py)
    prepared: dict[object, np.ndarray] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def scored_input(self, step: int | None) -> np.ndarray:
        """The scored cases' input of a training step (None: the eval input), float64."""
        if step not in self.prepared:
            x = self.arrays["eval"] if step is None else self.arrays["train"][:, step]
            self.prepared[step] = x[np.array(self.scored, bool)].astype(np.float64)
        return self.prepared[step]

    @property
    def cost(self) -> float:
        """Rough trace-compile-run cost (about 35 ms a unit here), to balance probes
        across processes. Flows are traced together and are cheap."""
        if self.probe == "flow":
            return 0.25
        size = sum(a.size for a in self.arrays.values())
        return {"default": 1.0, "state": 0.7, "grad": 1.0}[self.params["segment"]] + size / 3e6


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str  # "hidden" or "practice"
    digest: str  # identifies the inputs, for caches of expected values
    probes: tuple[Probe, ...]

    def module_probes(self, segment: str) -> list[Probe]:
        return [p for p in self.probes if p.probe == "module" and p.params["segment"] == segment]

    def flow_probes(self) -> list[Probe]:
        return [p for p in self.probes if p.probe == "flow"]

    def flow_reference(self, flow: Probe) -> tuple[Probe, int]:
        """The module probe holding ``flow``'s input as a case, and that case's index
        (the last cases of a shape's probe are its flows', in order of their inputs)."""
        n, d = flow.params["shape"]
        module = next(p for p in self.probes if p.id == f"module/default/{n}x{d}")
        same_shape = list(dict.fromkeys(p.params["seed"] for p in self.flow_probes() if p.params["shape"] == [n, d]))
        index = len(module.families) - len(same_shape) + same_shape.index(flow.params["seed"])
        return module, index

    @property
    def case_count(self) -> int:
        return sum(len(p.families) for p in self.probes) + len(self.flow_probes())

    @property
    def shapes(self) -> set[tuple[int, ...]]:
        return {tuple(p.params["shape"]) for p in self.probes}


def _rng(secret: str, label: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{secret}\0{label}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def _feature_moments(rng: np.random.Generator, family: str, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation for one case."""
    if family == "mixed":
        parts = [_feature_moments(rng, f, d) for f in ("standard", "offset", "tiny_variance", "constant")]
        pick = rng.integers(0, len(parts), size=d)
        return (np.choose(pick, [p[0] for p in parts]), np.choose(pick, [p[1] for p in parts]))
    if family == "standard":
        return np.zeros(d), np.ones(d)
    if family == "offset":
        std = np.exp(rng.uniform(np.log(0.3), np.log(3.0), d))
        return rng.uniform(-3, 3, d) * std, std
    if family == "wide_scale":
        std = np.exp(rng.uniform(np.log(1e-2), np.log(1e3), d))
        return rng.uniform(-2, 2, d) * std, std
    if family == "tiny_variance":  # variance around eps: eps placement matters here
        std = np.exp(rng.uniform(np.log(3e-4), np.log(3e-2), d))
        return rng.uniform(-1, 1, d) * std, std
    if family == "constant":  # half the features constant, some of them large: where
        # float32's E[x^2] - E[x]^2 cancels to a small negative number unless clipped
        std = np.where(rng.random(d) < 0.5, 0.0, 1.0)
        large = rng.choice([-1.0, 1.0], d) * np.exp(rng.uniform(np.log(0.1), np.log(1e3), d))
        return np.where(std == 0.0, large, rng.uniform(-2, 2, d)), std
    if family == "large_offset":  # advisory: mean 1e4, std ~1
        return np.full(d, 1e4) * rng.choice([-1, 1], d), np.exp(rng.uniform(-0.5, 0.5, d))
    raise ValueError(f"unknown family {family!r}")


def _draw(rng: np.random.Generator, family: str, shape: tuple[int, ...], d: int) -> np.ndarray:
    mean, std = _feature_moments(rng, family, d)
    return (mean + std * rng.standard_normal(shape)).astype(np.float32)


def _module_default(secret: str, n: int, d: int, cases: int, advisory: bool,
                    flows: list[tuple[np.ndarray, int]] = ()) -> Probe:
    """``cases`` cases of one shape, then one case per flow of that shape, whose
    first training batch is the flow's input and whose init key is the flow's
    seed: the module's own outputs there are what the flow must give (see
    checks.flow). They are ordinary scored cases: a module cannot tell them apart."""
    rng = _rng(secret, f"default/{n}x{d}")
    families = [FAMILIES[i % len(FAMILIES)] for i in range(cases)]
    scored = [True] * cases
    if advisory:
        families[-2:] = ["large_offset"] * 2
        scored[-2:] = [False, False]
    # Each case: per-feature moments from its family, then STEPS training batches
    # and one eval batch drawn from that same distribution.
    moments = [_feature_moments(rng, family, d) for family in families]
    mean = np.stack([m for m, _ in moments]).astype(np.float32)[:, None, None, :]
    std = np.stack([s for _, s in moments]).astype(np.float32)[:, None, None, :]
    data = rng.standard_normal((cases, STEPS + 1, n, d), dtype=np.float32)
    data *= std  # in place and in float32: the suite is built while workers start
    data += mean
    seeds = np.zeros(cases + len(flows), np.int32)
    if flows:
        extra = np.stack([_draw(rng, "offset", (STEPS + 1, n, d), d) for _ in flows])
        for i, (x, seed) in enumerate(flows):
            extra[i, 0] = x
            seeds[cases + i] = seed
        data = np.concatenate([data, extra])
        families += ["offset"] * len(flows)
        scored += [True] * len(flows)
    train, evalx = np.ascontiguousarray(data[:, :STEPS]), np.ascontiguousarray(data[:, STEPS])
    return Probe(
        id=f"module/default/{n}x{d}",
        probe="module",
        params={"segment": "default", "shape": [n, d], "steps": STEPS},
        arrays={"train": train, "eval": evalx, "seeds": seeds},
        families=tuple(families),
        scored=tuple(scored),
    )


def _state_arrays(rng: np.random.Generator, cases: int, n: int, d: int) -> dict[str, np.ndarray]:
    """Random params and running statistics far from the initial ones/zeros."""
    sign = rng.choice([-1.0, 1.0], (cases, d))
    return {
        "x": _draw(rng, "offset", (cases, n, d), d),
        "gamma": (sign * rng.uniform(0.5, 2.0, (cases, d))).astype(np.float32),
        "beta": rng.uniform(-2.0, 2.0, (cases, d)).astype(np.float32),
        "running_mean": rng.uniform(-2.0, 2.0, (cases, d)).astype(np.float32),
        "running_var": rng.uniform(0.25, 4.0, (cases, d)).astype(np.float32),
    }


def _module_state(secret: str, n: int, d: int, cases: int) -> Probe:
    rng = _rng(secret, f"state/{n}x{d}")
    return Probe(
        id=f"module/state/{n}x{d}",
        probe="module",
        params={"segment": "state", "shape": [n, d]},
        arrays=_state_arrays(rng, cases, n, d),
        families=("offset",) * cases,
        scored=(True,) * cases,
    )


def _module_grad(secret: str, n: int, d: int, cases: int) -> Probe:
    rng = _rng(secret, f"grad/{n}x{d}")
    arrays = _state_arrays(rng, cases, n, d)
    arrays["w"] = rng.standard_normal((cases, n, d)).astype(np.float32)
    return Probe(
        id=f"module/grad/{n}x{d}",
        probe="module",
        params={"segment": "grad", "shape": [n, d]},
        arrays=arrays,
        families=("offset",) * cases,
        scored=(True,) * cases,
    )


def _flow_shapes(shapes: tuple[tuple[int, int, int], ...]) -> list[tuple[int, int, tuple[float, ...]]]:
    """Which default shapes the flows use, and their flags: a batch of 2 in eval
    (`out, upd = apply(...)` splits its rows), two small shapes in both modes."""
    small = [(n, d) for n, d, _ in shapes if n >= 3 and n * d <= 400][:2]
    plan = [(n, d, (0.0, 1.0)) for n, d in small]
    if any((n, d) == (2, 3) for n, d, _ in shapes):
        plan.insert(1, (2, 3, (1.0,)))
    return plan


def _flows(secret: str, shapes: tuple[tuple[int, int, int], ...]) -> tuple[list[Probe], dict[tuple[int, int], list]]:
    """Flow probes call the student's init_and_apply with their own MyBatchNorm.
    A shape's flows share one seed and input, which also become one extra case
    of that shape's module probe: what the module gives there after init and one
    apply (train0/y in training mode, fresh/y in eval mode) is what the flow must
    return. Judged on behaviour, against outputs that are scored themselves."""
    rng = _rng(secret, "flow")
    probes: list[Probe] = []
    extra: dict[tuple[int, int], list] = {}
    for n, d, flags in _flow_shapes(shapes):
        seed = int(rng.integers(0, 1000))
        x = _draw(rng, "offset", (n, d), d)
        extra.setdefault((n, d), []).append((x, seed))
        for flag in flags:
            probes.append(Probe(
                id=f"flow/{n}x{d}/{'eval' if flag else 'train'}",
                probe="flow",
                params={"seed": float(seed), "flag": flag, "shape": [n, d]},
                arrays={"x": x},
            ))
    return probes, extra


def prepare_expectations(suite: Suite) -> None:
    """Compute the float64 inputs and their batch moments ahead of the comparisons
    (run while the submission's processes work: the grading process is idle then)."""
    from grader.oracle import batch_moments

    for probe in suite.module_probes("default"):
        for step in (*range(int(probe.params["steps"])), None):
            batch_moments(probe.scored_input(step))


@functools.lru_cache(maxsize=2)
def build_suite(secret: str | None) -> Suite:
    """The hidden suite for ``secret``, or the public practice suite without one.

    Built once per grading process: batch grading reuses it (and the expectations
    prepared on it) for every submission.
    """
    hidden = bool(secret)
    key = secret if hidden else PRACTICE_SECRET
    shapes = HIDDEN_SHAPES if hidden else PRACTICE_SHAPES
    state_cases, grad_cases = (24, 8) if hidden else (8, 4)
    flows, extra = _flows(key, shapes)
    probes: list[Probe] = [
        _module_default(key, n, d, cases, advisory=(n, d) == (32, 10) or (n, d) == (16, 5),
                        flows=extra.get((n, d), []))
        for n, d, cases in shapes
    ]
    probes += [_module_state(key, n, d, state_cases) for n, d in STATE_SHAPES]
    probes.append(_module_grad(key, *GRAD_SHAPE, grad_cases))
    probes += flows
    digest = hashlib.sha256()
    for p in probes:
        digest.update(p.id.encode())
        for name in sorted(p.arrays):
            digest.update(p.arrays[name].tobytes())
    return Suite(name="hidden" if hidden else "practice", digest=digest.hexdigest()[:16], probes=tuple(probes))
