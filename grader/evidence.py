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
from grader.protocol import Failure
from grader.sandbox import ProbeResult, RunResult

CONTRACT_PARAMS = ("params/gamma", "params/beta")
CONTRACT_STATS = ("batch_stats/running_mean", "batch_stats/running_var")


class Malformed(Exception):
    """An output of the wrong kind or shape."""


def take(arrays: dict[str, np.ndarray], name: str, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``arrays[name]`` as float64 if it has exactly ``shape``."""
    if name not in arrays:
        raise Malformed(f"{what} is missing")
    array = arrays[name]
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiub":
        raise Malformed(f"{what} is not a numeric array")
    if array.shape != shape:
        raise Malformed(f"{what} has shape {array.shape[1:]}, expected {shape[1:]}")
    return array.astype(np.float64)


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

    def get(self, prefix: str, name: str, per: str = "feature") -> np.ndarray:
        shape = (self.cases, self.d) if per == "feature" else (self.cases, self.n, self.d)
        return take(self.result.arrays, f"{prefix}/{name}", shape, f"{name} after {_phase(prefix)} on {self.label}")

    def output(self, prefix: str) -> np.ndarray:
        return take(self.result.arrays, f"{prefix}/y", (self.cases, self.n, self.d), f"the output of {_phase(prefix)} on {self.label}")

    def stat_name(self, which: str) -> str | None:
        """The path of the running mean or variance: the contract's, else a guess."""
        contract = f"batch_stats/running_{which}"
        names = self.names("init")
        if contract in names:
            return contract
        guesses = [n for n in names if which in n.rsplit("/", 1)[-1] and not n.startswith("params/")]
        return guesses[0] if guesses else None

    def params(self) -> tuple[np.ndarray, np.ndarray]:
        """The student's initial gamma/beta if named as in the contract, else ones/zeros."""
        try:
            return self.get("init", "params/gamma"), self.get("init", "params/beta")
        except Malformed:
            return np.ones((self.cases, self.d)), np.zeros((self.cases, self.d))

    def state(self, prefix: str) -> tuple[np.ndarray, np.ndarray]:
        """Running mean and variance after a phase (their initial values if unnamed)."""
        mean_name, var_name = self.stat_name("mean"), self.stat_name("var")
        if mean_name is None or var_name is None:
            return np.zeros((self.cases, self.d)), np.ones((self.cases, self.d))
        return self.get(prefix, mean_name), self.get(prefix, var_name)


def _phase(prefix: str) -> str:
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
