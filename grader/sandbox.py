"""Running a submission in processes of its own, and collecting what they send.

The grading process never imports the submission. It starts one or more worker
processes (``python -I -m grader._child``), each with stdin closed, stdout and
stderr captured to files, an allow-listed environment and its own session, and
feeds them probes over a pipe. Results stream back as framed plain data
(:mod:`grader.wire`). If a worker dies in the middle of a probe, that probe is
charged and a fresh worker takes the remaining ones; at the deadline every
worker's process group is killed.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader import wire

if TYPE_CHECKING:  # imported lazily: workers start before the grader imports NumPy
    import numpy as np

    from grader.cases import Probe

OUTPUT_KEEP_BYTES = 32 * 1024
GROUP = "<group>"  # a worker running several module probes as one program
ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
# A suite compiles one small program per shape, so compile time dominates: these
# XLA flags (no LLVM optimization, classic fusion emitters, one codegen unit) cut
# it about four times on the CPU without changing float semantics.
XLA_FAST_COMPILE = (
    "--xla_backend_optimization_level=0 "
    "--xla_cpu_use_fusion_emitters=false "
    "--xla_cpu_parallel_codegen_split_count=1"
)
CHILD_ENV = {
    "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": XLA_FAST_COMPILE,
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}


@dataclasses.dataclass
class ProbeResult:
    """What came back for one probe: arrays and meta, or an error, or both."""

    id: str
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    error: dict[str, str] | None
    seconds: float = 0.0


@dataclasses.dataclass
class RunResult:
    """Everything the submission's processes produced, as untrusted data."""

    import_error: dict[str, str] | None
    probes: dict[str, ProbeResult]
    stdout: str
    stderr: str
    isolation: str
    seconds: float
    timed_out: bool = False


def child_env(scratch: str) -> dict[str, str]:
    """The allow-list: nothing of the grader's environment (no GRADER_* secret)."""
    env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ}
    env.update(CHILD_ENV, HOME=scratch, TMPDIR=scratch)
    return env


class _Worker:
    """One submission process and the threads that feed and read it."""

    def __init__(self, submission: Path, scratch: str, index: int, inbox: queue.Queue, merge: bool = True):
        self.index = index
        self.inbox = inbox
        job_read, self._job_write = os.pipe()
        self._result_read, result_write = os.pipe()
        self.stdout = open(os.path.join(scratch, f"stdout.{index}"), "w+b")  # noqa: SIM115
        self.stderr = open(os.path.join(scratch, f"stderr.{index}"), "w+b")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-m", "grader._child", str(job_read), str(result_write)],
            stdin=subprocess.DEVNULL,
            stdout=self.stdout,
            stderr=self.stderr,
            pass_fds=(job_read, result_write),
            env=child_env(scratch),
            cwd=scratch,
            start_new_session=True,
        )
        os.close(job_read)
        os.close(result_write)
        self._pending: queue.Queue[bytes | None] = queue.Queue()
        self._pending.put(wire.encode({"kind": "job", "path": str(submission), "merge": merge}))
        threading.Thread(target=self._feed, daemon=True).start()
        threading.Thread(target=self._read, daemon=True).start()

    def send(self, probes: Iterable[Probe]) -> None:  # noqa: F821
        for p in probes:
            self._pending.put(wire.encode({"kind": "probe", "id": p.id, "probe": p.probe, "params": p.params}, p.arrays))
        self._pending.put(wire.encode({"kind": "end"}))
        self._pending.put(None)

    def _feed(self) -> None:
        with os.fdopen(self._job_write, "wb") as pipe:
            while (frame := self._pending.get()) is not None:
                try:
                    pipe.write(frame)
                    pipe.flush()
                except (BrokenPipeError, OSError):
                    return

    def _read(self) -> None:
        with os.fdopen(self._result_read, "rb") as pipe:
            try:
                while (frame := wire.read(pipe)) is not None:
                    self.inbox.put((self.index, frame))
            except (wire.WireError, EOFError, OSError) as err:
                self.inbox.put((self.index, ("broken", str(err)[:200])))
        self.inbox.put((self.index, None))

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def exit_reason(self) -> str:
        try:
            code = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.returncode
        if code is not None and code < 0:
            return f"the process was killed by signal {signal.Signals(-code).name}"
        return f"the process exited with status {code}"


def _read_capped(handle: Any) -> str:
    handle.flush()
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(0)
    data = handle.read(OUTPUT_KEEP_BYTES)
    text = data.decode("utf-8", "replace")
    if size > OUTPUT_KEEP_BYTES:
        text += f"\n[... {size - OUTPUT_KEEP_BYTES} more bytes not shown]"
    return text


def _split(probes: list[Probe], workers: int) -> list[list[Probe]]:
    """Balance probes across workers by estimated cost, keeping suite order in each."""
    loads = [0.0] * workers
    groups: list[list[tuple[int, Probe]]] = [[] for _ in range(workers)]
    for order, p in sorted(enumerate(probes), key=lambda item: -item[1].cost):
        i = loads.index(min(loads))
        loads[i] += p.cost
        groups[i].append((order, p))
    return [[p for _, p in sorted(g, key=lambda item: item[0])] for g in groups if g]


class Session:
    """A submission's processes, started early so their imports overlap our work."""

    def __init__(self, submission: Path, *, timeout: float, workers: int = 2, memory_mb: int | None = None):
        self.submission = submission.resolve()
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.started = time.monotonic()
        self._tmp = tempfile.TemporaryDirectory(prefix="bngrade-")
        self.scratch = self._tmp.name
        self.inbox: queue.Queue = queue.Queue()
        self._count = 0
        self.workers = [self._spawn() for _ in range(max(1, workers))]
        self._retired: list[_Worker] = []

    def _spawn(self, merge: bool = True) -> _Worker:
        worker = _Worker(self.submission, self.scratch, self._count, self.inbox, merge)
        self._count += 1
        return worker

    def run(self, probes: list[Probe], while_waiting: Callable[[], None] | None = None) -> RunResult:
        """Send ``probes``, call ``while_waiting`` (work that overlaps the workers'),
        then collect results until every worker is done or the deadline passes."""
        deadline = self.started + self.timeout
        results: dict[str, ProbeResult] = {}
        import_error: dict[str, str] | None = None
        timed_out = False
        plan = {w.index: group for w, group in zip(self.workers, _split(probes, len(self.workers)))}
        for w in self.workers[len(plan):]:
            w.send([])
        live = {w.index: w for w in self.workers}
        for w in self.workers:
            if w.index in plan:
                w.send(plan[w.index])
        current: dict[int, str | None] = {i: None for i in live}
        if while_waiting is not None:
            while_waiting()

        def retire(index: int, reason: str) -> None:
            """Charge the worker's unfinished probes; a fresh worker takes the rest."""
            worker = live.pop(index)
            worker.kill()
            self._retired.append(worker)
            if import_error is not None:
                return
            todo = [p for p in plan.get(index, []) if p.id not in results]
            crashed = current[index]
            if crashed == GROUP and todo:
                # It died running several probes as one program: run them one by one,
                # so that only the probe at fault is charged.
                replacement = self._spawn(merge=False)
                plan[replacement.index] = todo
                live[replacement.index] = replacement
                current[replacement.index] = None
                replacement.send(todo)
                return
            if crashed is not None and crashed in {p.id for p in todo}:
                results[crashed] = ProbeResult(crashed, {}, {}, {"type": "crash", "message": f"{reason} during this probe"})
                todo = [p for p in todo if p.id != crashed]
                if todo:
                    replacement = self._spawn(merge=False)
                    plan[replacement.index] = todo
                    live[replacement.index] = replacement
                    current[replacement.index] = None
                    replacement.send(todo)
                    return
            for p in todo:
                results[p.id] = ProbeResult(p.id, {}, {}, {"type": "crash", "message": f"{reason} before this probe ran"})

        while live:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            try:
                index, frame = self.inbox.get(timeout=remaining)
            except queue.Empty:
                timed_out = True
                break
            worker = live.get(index)
            if worker is None:
                continue
            if frame is None:
                retire(index, worker.exit_reason())
                continue
            if isinstance(frame[0], str):
                retire(index, f"it sent a malformed message ({frame[1]})")
                continue
            header, arrays = frame
            kind = header.get("kind")
            if kind == "ready" and header.get("error") is not None:
                if import_error is None:
                    import_error = _clean_error(header["error"])
                retire(index, "the import failed")
            elif kind == "done":
                # Everything has been sent: no need to wait for JAX to tear down.
                retire(index, "the process stopped")
            elif kind == "start":
                current[index] = GROUP if isinstance(header.get("group"), list) else str(header.get("id"))
            elif kind == "result":
                probe_id = str(header.get("id"))
                if probe_id in {p.id for p in plan.get(index, [])} and probe_id not in results:
                    meta = header.get("meta") if isinstance(header.get("meta"), dict) else {}
                    err = header.get("error")
                    results[probe_id] = ProbeResult(
                        probe_id, arrays, meta, _clean_error(err) if err is not None else None,
                        float(header.get("seconds", 0.0)) if isinstance(header.get("seconds"), int | float) else 0.0,
                    )
                current[index] = None
        for w in list(live.values()) + self._retired:
            w.kill()
        if timed_out:
            for p in probes:
                if p.id not in results:
                    results[p.id] = ProbeResult(p.id, {}, {}, {"type": "timeout", "message": f"time limit of {self.timeout:g} s exceeded"})
        every = self._retired + list(live.values())
        # Every worker imports the submission: show each distinct output once.
        stdout = "".join(dict.fromkeys(_read_capped(w.stdout) for w in every))
        stderr = "".join(dict.fromkeys(_read_capped(w.stderr) for w in every))
        return RunResult(
            import_error=import_error,
            probes=results,
            stdout=stdout[: 2 * OUTPUT_KEEP_BYTES],
            stderr=stderr[: 2 * OUTPUT_KEEP_BYTES],
            isolation="process",
            seconds=time.monotonic() - self.started,
            timed_out=timed_out,
        )

    def close(self) -> None:
        for w in self.workers + self._retired:
            w.kill()
            w.stdout.close()
            w.stderr.close()
        self._tmp.cleanup()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _clean_error(err: Any) -> dict[str, str]:
    if not isinstance(err, dict):
        return {"type": "protocol", "message": "malformed error report"}
    return {
        "type": str(err.get("type", "Error"))[:60],
        "message": str(err.get("message", ""))[:600],
    }
