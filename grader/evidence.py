"""Typed views of what the submission's processes sent, validated before use.

Everything here came from untrusted code. An array is used only if it is a real
floating or integer array of exactly the expected shape; anything else becomes a
:class:`Malformed` with a sentence saying what was expected and what arrived.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from grader.cases import Probe, Suite
from grader.protocol import Failure, role_of
from grader.sandbox import ProbeResult, RunResult

CONTRACT_PARAMS = ("params/gamma", "params/beta")
CONTRACT_STATS = ("batch_stats/running_mean", "batch_stats/running_var")


class Malformed(Exception):
    """An output of the wrong kind or shape."""


def take(arrays: dict[str, np.ndarray], name: str, shape: tuple[int, ...], what: str,
         squeeze: bool = False) -> np.ndarray:
    """``arrays[name]`` as float64 if it has exactly ``shape``. With ``squeeze``,
    extra axes of length 1 are harmless (a (1, D) running mean holds the same
    values as a (D,) one): the shape is then charged once, by the variables check,
    and the values are compared like any others."""
    if name not in arrays:
        raise Malformed(f"{what} is missing")
    array = arrays[name]
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiub":
        raise Malformed(f"{what} is not a numeric array")
    if array.shape != shape and squeeze and array.shape[:1] == shape[:1] and _core(array.shape[1:]) == _core(shape[1:]):
        array = array.reshape(shape)
    if array.shape != shape:
        raise Malformed(f"{what} has shape {array.shape[1:]}, expected {shape[1:]}")
    return array.astype(np.float64)


def _core(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(n for n in shape if n != 1)


def role_names(names: list[str]) -> dict[str, str]:
    """{contract role: the variable path playing it}: the contract's own name where
    present, else the one variable whose name says the role (scale, mean, ...)."""
    found: dict[str, list[str]] = {}
    for name in names:
        role = role_of(tuple(name.split("/")))
        if role is not None:
            found.setdefault(role, []).append(name)
    roles = {}
    for contract in CONTRACT_PARAMS + CONTRACT_STATS:
        role = contract.rsplit("/", 1)[-1]
        if contract in names:
            roles[role] = contract
        elif len(found.get(role, [])) == 1:
            roles[role] = found[role][0]
    return roles


@dataclasses.dataclass
class Trajectory:
    """One shape's cases: init, training steps threading batch_stats, one eval."""

    probe: Probe
    result: ProbeResult
    cases: int  # how many cases came back: always every case sent
    _inputs: dict[object, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return int(self.probe.params["shape"][0])

    @property
    def d(self) -> int:
        return int(self.probe.params["shape"][1])

    @property
    def label(self) -> str:
        return f"{self.n}x{self.d}"

    @property
    def steps(self) -> int:
        return int(self.probe.params["steps"])

    @property
    def x_train(self) -> np.ndarray:
        return self.probe.arrays["train"][: self.cases]

    @property
    def x_eval(self) -> np.ndarray:
        return self.probe.arrays["eval"][: self.cases]

    def scored_input(self, step: int | None) -> np.ndarray:
        """The scored cases' input of a training step (None: the eval input), float64.

        The same array object on every call, so the oracle computes its moments once.
        """
        if self.cases == len(self.probe.families):
            return self.probe.scored_input(step)
        key = "eval" if step is None else step
        if key not in self._inputs:
            x = self.x_eval if step is None else self.x_train[:, step]
            self._inputs[key] = x[self.scored].astype(np.float64)
        return self._inputs[key]

    @property
    def scored(self) -> np.ndarray:
        return np.array(self.probe.scored[: self.cases], bool)

    @property
    def families(self) -> tuple[str, ...]:
        return self.probe.families[: self.cases]

    def names(self, prefix: str) -> list[str]:
        """Variable paths under ``prefix`` (e.g. 'init'), without the prefix."""
        cut = len(prefix) + 1
        return sorted(k[cut:] for k in self.result.arrays if k.startswith(prefix + "/") and k != f"{prefix}/y")

    def get(self, prefix: str, name: str) -> np.ndarray:
        """A per-feature variable after a phase, as (cases, D)."""
        return take(self.result.arrays, f"{prefix}/{name}", (self.cases, self.d),
                    f"{name} after {phase(prefix)} on {self.label}", squeeze=True)

    def output(self, prefix: str) -> np.ndarray:
        return take(self.result.arrays, f"{prefix}/y", (self.cases, self.n, self.d), f"the output of {phase(prefix)} on {self.label}")

    def role(self, role: str) -> str | None:
        """The path of the variable playing ``role`` (gamma, ..., running_var), if any."""
        return role_names(self.names("init")).get(role)

    def stat_name(self, which: str) -> str | None:
        """The path of the running mean or variance: the contract's, else a guess."""
        return self.role(f"running_{which}")

    def params(self) -> tuple[np.ndarray, np.ndarray]:
        """The student's initial gamma/beta (found by role), else ones/zeros."""
        gamma, beta = self.role("gamma"), self.role("beta")
        try:
            if gamma is not None and beta is not None:
                return self.get("init", gamma), self.get("init", beta)
        except Malformed:
            pass
        return np.ones((self.cases, self.d)), np.zeros((self.cases, self.d))

    def state(self, prefix: str) -> tuple[np.ndarray, np.ndarray]:
        """Running mean and variance after a phase (their initial values if unnamed)."""
        mean_name, var_name = self.stat_name("mean"), self.stat_name("var")
        if mean_name is None or var_name is None:
            return np.zeros((self.cases, self.d)), np.ones((self.cases, self.d))
        return self._after(prefix, mean_name), self._after(prefix, var_name)

    def _after(self, prefix: str, name: str) -> np.ndarray:
        """A variable after a phase. apply(mutable=['batch_stats']) cannot change
        params, so a statistic declared there keeps its value from init."""
        if name.startswith("params/") and f"{prefix}/{name}" not in self.result.arrays:
            prefix = "init"
        return self.get(prefix, name)


def phase(prefix: str) -> str:
    """How a student reads a probe phase: 'init', 'training step 2', 'the eval apply'."""
    if prefix == "init":
        return "init"
    if prefix == "eval":
        return "the eval apply"
    return f"training step {int(prefix.removeprefix('train')) + 1}"


def returned_cases(result: ProbeResult, total: int) -> int:
    """``total`` if every array holds exactly the ``total`` cases that were sent,
    else 0: a result missing cases, or with extra ones, is no result."""
    counts = {a.shape[0] if isinstance(a, np.ndarray) and a.ndim >= 1 else -1 for a in result.arrays.values()}
    return total if counts == {total} else 0


@dataclasses.dataclass
class Evidence:
    """The suite and what came back for each of its probes."""

    suite: Suite
    run: RunResult
    # Checks that failed so far (filled in by checks.evaluate, in table order):
    # a later check does not judge again what one of them charged.
    failed: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # check id -> tags it named
    models: dict[str, Any] = dataclasses.field(default_factory=dict)  # check id -> oracle model of its mistake
    check_names: dict[str, str] = dataclasses.field(default_factory=dict)  # as the student reads them

    def result(self, probe: Probe) -> ProbeResult:
        return self.run.probes.get(probe.id) or ProbeResult(probe.id, {}, {}, {"type": Failure.MISSING_RESULT.value,
                                                                  "message": "no result came back"})

    _trajectories: dict[str, tuple[list[Trajectory], list[tuple[Probe, dict[str, str]]]]] = dataclasses.field(
        default_factory=dict, repr=False)

    def trajectories(self, segment: str = "default") -> tuple[list[Trajectory], list[tuple[Probe, dict[str, str]]]]:
        """Usable trajectories of a segment, and the probes that produced none, with why."""
        if segment not in self._trajectories:
            self._trajectories[segment] = self._collect(segment)
        return self._trajectories[segment]

    def _collect(self, segment: str) -> tuple[list[Trajectory], list[tuple[Probe, dict[str, str]]]]:
        good, bad = [], []
        for probe in self.suite.module_probes(segment):
            result = self.result(probe)
            cases = returned_cases(result, len(probe.families))
            if cases:
                good.append(Trajectory(probe, result, cases))
            if result.error is not None or not cases:
                bad.append((probe, result.error or {"type": Failure.OUTPUT.value,
                                                    "message": "did not return every case it was sent"}))
        return good, bad

    def meta(self, probe: Probe) -> dict[str, Any]:
        return self.result(probe).meta


def compared_cases(ev: Evidence) -> int:
    """Cases whose outputs all came back: module cases of complete results, and
    flows that returned an array."""
    count = 0
    for probe in ev.suite.probes:
        result = ev.run.probes.get(probe.id)
        if result is None:
            continue
        if probe.probe == "module":
            count += returned_cases(result, len(probe.families))
        elif result.error is None and "y" in result.arrays:
            count += 1
    return count
