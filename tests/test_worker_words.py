"""A worker's words can only cost points (SECURITY.md).

The real worker runs a submission once on the practice suite and its frames are
recorded; then the session's loop is fed those frames again, honest and forged,
by a stand-in for the worker process, and the grade is computed from what the
loop kept. Every field the worker sends (in READY, START, RESULT and DONE frames,
and inside a result's meta) is forged both ways: removed or emptied, and set to
what a correct submission's worker sent (or to a value only the grader may give).
The score never rises above the honest one.
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
# Wrong in ways the worker's words describe: apply without mutable (its noted
# calls), and a module jax cannot trace (its mode and jit error).
WRONG = ("flow_no_mutable", "numpy_inside")

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
            kill=lambda: None, stop=lambda: None, pids=lambda children=None: [],
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


def _forged(frames: Frames, kind: str, path: tuple[str, ...], value: Any, donor: Frames | None) -> Frames:
    """``frames`` with field ``path`` of every ``kind`` frame set to ``value``
    (_MISSING: removed; "donor": the correct worker's value in its frame of the same id)."""
    by_id = {(h.get("kind"), h.get("id")): h for h, _ in donor or []}
    out = []
    for header, arrays in frames:
        header = {**header, **({"meta": dict(header["meta"])} if isinstance(header.get("meta"), dict) else {})}
        if header.get("kind") == kind:
            target = header
            for key in path[:-1]:
                target = target.setdefault(key, {}) if isinstance(target.get(key, {}), dict) else {}
            new = value
            if value == "donor":
                source = by_id.get((kind, header.get("id")), {})
                for key in path:
                    source = source.get(key, _MISSING) if isinstance(source, dict) else _MISSING
                new = source
            if new is _MISSING:
                target.pop(path[-1], None)
            else:
                target[path[-1]] = new
        out.append((header, arrays))
    return out


def _variants(frames: Frames) -> list[tuple[str, tuple[str, ...], Any]]:
    """Every field the worker sent (and the meta keys the grader keeps), each two ways and more."""
    fields: set[tuple[str, tuple[str, ...]]] = set()
    for header, _ in frames:
        for key, value in header.items():
            if key != "kind":
                fields.add((header["kind"], (key,)))
            if key == "meta" and isinstance(value, dict):
                fields.update((header["kind"], ("meta", k)) for k in value)
    fields |= {("result", ("meta", k)) for k in sandbox.META_KEYS} | {("start", ("eager_cases",)),
                                                                      ("start", ("group",)), ("ready", ("error",))}
    forged_values = (_MISSING, "donor", None, 0, 10**9, "timeout", [], {}, True,
                     {"type": "timeout", "message": "grader said so"}, [{"call": "apply", "mutable": ["batch_stats"]}])
    return [(kind, path, value) for kind, path in sorted(fields) for value in forged_values]


@pytest.fixture(scope="module")
def recorded() -> dict[str, Frames]:
    prepare_expectations(SUITE)
    names = ("reference", *WRONG)
    paths = [ROOT / "solution" / "batchnorm.py", *(SUBMISSIONS / "wrong" / f"{n}.py" for n in WRONG)]
    return dict(zip(names, map(_record, paths)))


def test_the_stand_in_grades_recorded_frames_as_the_real_loop_does(recorded: dict[str, Frames]):
    assert _score(recorded["reference"]) == LINEN.max_score
    for name in WRONG:
        assert _score(recorded[name]) < LINEN.max_score, name


@pytest.mark.parametrize("name", WRONG)
def test_no_forged_word_raises_a_score(recorded: dict[str, Frames], name: str):
    frames, donor = recorded[name], recorded["reference"]
    honest = _score(frames)
    risen = []
    for kind, path, value in _variants(frames):
        forged = _forged(frames, kind, path, value, donor)
        if forged == frames:
            continue
        score = _score(forged)
        if score > honest:
            risen.append(f"{kind}.{'.'.join(path)} = {value!r:.60}: {score} > {honest}")
    assert not risen, "\n".join(risen)
