"""A worker's words can only cost points (SECURITY.md).

The real worker runs a submission once on the practice suite and its frames are
recorded; then the session's loop is fed those frames again, honest and forged,
by a stand-in for the worker process, and the grade is computed from what the
loop kept. Every field the worker sends (in READY, START, RESULT and DONE frames,
and inside a result's meta) is forged both ways: removed or emptied, and set to
what a correct submission's worker says (ran under jit, apply had mutable) or to a
value only the grader may give (a timeout). The score never rises above the honest one.
"""

from __future__ import annotations

import io
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from grader import sandbox, wire
from grader.cases import build_suite, prepare_expectations
from grader.exercises import get
from grader.protocol import Frame
from tests.conftest import ROOT, SUBMISSIONS

SUITE = build_suite(None)
LINEN = get("batchnorm_linen")
# Wrong in ways the worker's words describe: apply without mutable (its noted calls);
# and a module that fails on every apply with an init_and_apply that raises before
# building it (whether the flow "reached the module" is read from the noted calls).
UNBUILT_FLOW = """
import flax.linen as nn
import jax.numpy as jnp


class MyBatchNorm(nn.Module):
    @nn.compact
    def __call__(self, x, use_running_average: bool):
        d = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones, (d,))
        beta = self.param("beta", nn.initializers.zeros, (d,))
        self.variable("batch_stats", "running_mean", lambda: jnp.zeros((d,)))
        self.variable("batch_stats", "running_var", lambda: jnp.ones((d,)))
        if not self.is_initializing():
            raise ValueError("not written yet")
        return gamma * x + beta


def init_and_apply(seed, x, use_running_average):
    raise NotImplementedError
"""
SUBJECTS = {"flow_no_mutable": (SUBMISSIONS / "wrong" / "flow_no_mutable.py").read_text(), "unbuilt_flow": UNBUILT_FLOW}

Frames = list[tuple[dict[str, Any], dict[str, Any]]]


def _record(path: Path) -> Frames:
    """What the real worker sends for ``path`` on the practice suite (no confinement:
    these are the project's own test submissions)."""
    with tempfile.TemporaryDirectory() as folder:
        job = Path(folder) / "in"
        out = Path(folder) / "out"
        with open(job, "wb") as handle:
            handle.write(wire.encode({"kind": Frame.JOB.value, "path": str(path), "merge": True,
                                      "adapter": LINEN.adapter, "required": list(LINEN.required)}))
            for p in SUITE.probes:
                handle.write(wire.encode({"kind": Frame.PROBE.value, "id": p.id, "probe": p.probe,
                                          "params": p.params}, p.arrays))
            handle.write(wire.encode({"kind": Frame.END.value}))
        with open(job, "rb") as source, open(out, "wb") as sink:
            code = "import sys; from grader._child import main; sys.exit(main(sys.argv[1:]))"
            subprocess.run([sys.executable, "-c", code, str(source.fileno()), str(sink.fileno())], cwd=ROOT,
                           pass_fds=(source.fileno(), sink.fileno()), env={**os.environ, **sandbox.CHILD_ENV},
                           check=True, timeout=600, capture_output=True)
        frames = []
        with open(out, "rb") as handle:
            while (frame := wire.read(handle)) is not None:
                frames.append(frame)
    return frames


class _Stand:
    """The session and worker the loop talks to, minus the processes: the worker's
    frames are already in the inbox; a replacement worker exits at once."""

    def __init__(self, frames: Frames):
        self.inbox: queue.Queue = queue.Queue()
        self.timeout = 600.0
        self.started = time.monotonic()
        self.probe_budget = 100.0
        self.memory_bytes = 1 << 40
        self.group = None
        self.watch_home = False
        self.peak_rss = 0
        self.uid = None
        self.level = "process"
        self._preexisting: set[int] = set()
        self.workers: list[sandbox._Worker] = []
        self.first = [self._spawn()]
        for frame in frames:
            self.inbox.put((0, frame))
        self.inbox.put((0, None))

    def _spawn(self, merge: bool = True) -> sandbox._Worker:
        worker = object.__new__(sandbox._Worker)
        worker.__dict__.update(
            index=len(self.workers), plan={}, ready=False, started=time.monotonic(), current=None, current_ids=[],
            since=time.monotonic(), started_ids=set(), stopped=False, answered=set(), allowance=1 << 40,
            _allowance_lock=threading.Lock(), _pending=queue.Queue(), stdout=io.BytesIO(), stderr=io.BytesIO(),
            process=types.SimpleNamespace(pid=-1), kill=lambda: None, stop=lambda: None,
            pids=lambda children=None: [],
            exit_reason=lambda: "the process exited with status 0")
        if self.workers:  # a replacement: its channel closes before it says anything
            self.inbox.put((worker.index, None))
        self.workers.append(worker)
        return worker


def _score(frames: Frames) -> float:
    from grader.checks import evaluate
    from grader.evidence import Evidence

    run = sandbox._Run(_Stand(frames), list(SUITE.probes)).go(None)
    return sum(c.score for c in evaluate(Evidence(SUITE, run), LINEN.checks, LINEN.pitfalls))


_MISSING = object()
# What a correct submission's worker says in the fields that describe the code
# (it ran under jit, apply had mutable), and what only the grader may say.
FORGED = (_MISSING, None, 10**9, "jit", "eager", "timeout", [], {"type": "timeout", "message": "grader said so"},
          [{"call": "init", "rngs": "DynamicJaxprTracer", "use_running_average": "False"},
           {"call": "apply", "mutable": ["batch_stats"], "collections": ["batch_stats", "params"],
            "use_running_average": "False"}])


def _forged(frames: Frames, kind: str, path: tuple[str, ...], value: Any) -> Frames:
    """``frames`` with field ``path`` of every ``kind`` frame set to ``value`` (_MISSING: removed)."""
    out = []
    for header, arrays in frames:
        header = {**header, **({"meta": dict(header["meta"])} if isinstance(header.get("meta"), dict) else {})}
        if header.get("kind") == kind:
            target = header
            if len(path) == 2:
                target = header.setdefault(path[0], {})
                if not isinstance(target, dict):
                    target = header[path[0]] = {}
            if value is _MISSING:
                target.pop(path[-1], None)
            else:
                target[path[-1]] = value
        out.append((header, arrays))
    return out


def _fields(frames: Frames) -> list[tuple[str, tuple[str, ...]]]:
    """Every field the worker sent, the meta keys the grader keeps, and the words
    a worker may add (a group, an eager run, an import error)."""
    fields: set[tuple[str, tuple[str, ...]]] = set()
    for header, _ in frames:
        for key, value in header.items():
            if key != "kind":
                fields.add((header["kind"], (key,)))
            if key == "meta" and isinstance(value, dict):
                fields.update((header["kind"], ("meta", k)) for k in value)
    fields |= {("result", ("meta", k)) for k in sandbox.META_KEYS}
    fields |= {("start", ("eager_cases",)), ("start", ("group",)), ("ready", ("error",)), ("done", ("error",))}
    return sorted(fields)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Frames]:
    prepare_expectations(SUITE)
    folder = tmp_path_factory.mktemp("words")
    paths = []
    for name, text in SUBJECTS.items():
        paths.append(folder / f"{name}.py")
        paths[-1].write_text(text)
    with ThreadPoolExecutor(len(paths)) as pool:
        return dict(zip(SUBJECTS, pool.map(_record, paths)))


def test_the_stand_in_grades_recorded_frames_as_the_real_loop_does(recordings: dict[str, Frames]):
    for frames in recordings.values():
        assert 0 < _score(frames) < LINEN.max_score
        assert {h["kind"] for h, _ in frames} == {"ready", "start", "result", "done"}


@pytest.mark.parametrize("name", [
    "flow_no_mutable",
    "unbuilt_flow",  # (end to end used to excuse it on its words: 23 -> 28 when forged)
])
def test_no_forged_word_raises_a_score(recordings: dict[str, Frames], name: str):
    recorded = recordings[name]
    honest = _score(recorded)
    risen, tried = [], 0
    for kind, path in _fields(recorded):
        for value in FORGED:
            forged = _forged(recorded, kind, path, value)
            if forged == recorded:
                continue
            tried += 1
            if (score := _score(forged)) > honest:
                risen.append(f"{kind}.{'.'.join(path)} = {value!r:.60}: {score} > {honest}")
    assert tried > 100
    assert not risen, "\n".join(risen)
