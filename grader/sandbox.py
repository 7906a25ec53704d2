"""Running a submission in processes of its own, and collecting what they send.

The grading process never imports the submission. It starts worker processes,
confined as :mod:`grader.isolation` says, with stdin closed, stdout and stderr
captured to files the worker cannot see, and an allow-listed environment, and
feeds them probes over a pipe. Results stream back as framed plain data
(:mod:`grader.wire`), one probe at a time, so what a worker did before it hung,
crashed or exited keeps its credit:

- every probe (or group of probes run as one program) has a time budget; a
  worker over budget, or over the memory limit, is killed with its whole
  process tree, the probe is charged, and a fresh worker takes the rest;
- at the submission's deadline everything left is charged "time limit exceeded",
  naming the phase (import, module, flow).
"""

from __future__ import annotations

import ctypes
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

from grader import isolation, wire

if TYPE_CHECKING:  # imported lazily: workers start before the grader imports NumPy
    import numpy as np

    from grader.cases import Probe

OUTPUT_KEEP_BYTES = 32 * 1024
GROUP = "<group>"  # a worker running several probes as one program
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
MEMORY_POLL_SECONDS = 0.05
DEFAULT_MEMORY_MB = 4096
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


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
    memory_exceeded: bool = False
    peak_rss_mb: float = 0.0


def child_env(home: Path) -> dict[str, str]:
    """The allow-list: nothing of the grader's environment (no GRADER_* secret)."""
    env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ}
    env.update(CHILD_ENV, HOME=str(home), TMPDIR=str(home))
    return env


# --- process trees -----------------------------------------------------------------


def _become_subreaper() -> None:
    """Orphans of our workers (double forks, setsid) re-parent to us, not to init,
    so that walking our descendants still finds them."""
    if sys.platform == "linux":
        try:
            ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        except (OSError, AttributeError):
            pass


def _parents() -> dict[int, int]:
    """Parent of every live process (zombies, already dead, are left out)."""
    parents = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            if fields[0] != b"Z":
                parents[int(entry)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    return parents


def process_children() -> dict[int, list[int]]:
    """Every process's children, from one scan of /proc."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    return children


def descendants(root: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """``root`` and every process below it (``children``: a scan to reuse)."""
    children = process_children() if children is None else children
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def kill_tree(root: int) -> None:
    """SIGKILL ``root``'s whole tree, repeatedly (a fork may race the first pass),
    until no live process of it is left."""
    for attempt in range(20):
        pids = [p for p in descendants(root) if p != os.getpid() and _is_live(p)]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _reap()
        if attempt:
            time.sleep(0.01)


def _is_live(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _reap() -> None:
    """Collect orphans that re-parented to us (as subreaper) and have exited."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def resident_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                total += int(handle.read().split()[1]) * PAGE_BYTES
        except (OSError, IndexError, ValueError):
            continue
    return total


# --- one worker --------------------------------------------------------------------


class _Worker:
    """One submission process and the threads that feed and read it."""

    def __init__(self, session: Session, index: int, merge: bool):
        self.index = index
        self.inbox = session.inbox
        self.ready = False
        self.started = time.monotonic()
        self.current: str | None = None  # probe id, GROUP, or None between probes
        self.current_ids: list[str] = []
        self.current_since = self.started
        self.stopped = False
        job_read, self._job_write = os.pipe()
        self._result_read, result_write = os.pipe()
        self.stdout = open(session.logs / f"stdout.{index}", "w+b")  # noqa: SIM115
        self.stderr = open(session.logs / f"stderr.{index}", "w+b")  # noqa: SIM115
        self.process = subprocess.Popen(
            isolation.command(session.scratch, session.level, job_read, result_write),
            stdin=subprocess.DEVNULL,
            stdout=self.stdout,
            stderr=self.stderr,
            pass_fds=(job_read, result_write),
            env=child_env(session.scratch.home),
            cwd=session.scratch.home,
            start_new_session=True,
        )
        os.close(job_read)
        os.close(result_write)
        self._pending: queue.Queue[bytes | None] = queue.Queue()
        self._pending.put(wire.encode({"kind": "job", "path": str(session.scratch.submission), "merge": merge}))
        threading.Thread(target=self._feed, daemon=True).start()
        threading.Thread(target=self._read, daemon=True).start()

    def send(self, probes: Iterable[Probe]) -> None:
        for p in probes:
            self._pending.put(wire.encode({"kind": "probe", "id": p.id, "probe": p.probe, "params": p.params}, p.arrays))
        self._pending.put(wire.encode({"kind": "end"}))
        self._pending.put(None)

    def _feed(self) -> None:
        """Write queued frames to the worker; a worker that is gone just stops this."""
        fd = self._job_write
        try:
            while (frame := self._pending.get()) is not None:
                view = memoryview(frame)
                while view:
                    view = view[os.write(fd, view):]
        except OSError:  # BrokenPipeError included: the worker exited or was killed
            pass
        finally:
            try:
                os.close(fd)
            except OSError:
                pass

    def _read(self) -> None:
        with os.fdopen(self._result_read, "rb") as pipe:
            try:
                while (frame := wire.read(pipe)) is not None:
                    self.inbox.put((self.index, frame))
            except (wire.WireError, EOFError, OSError, ValueError) as err:
                self.inbox.put((self.index, ("broken", str(err)[:200])))
        self.inbox.put((self.index, None))

    def pids(self, children: dict[int, list[int]] | None = None) -> list[int]:
        return descendants(self.process.pid, children)

    def stop(self) -> None:
        """SIGKILL the worker's process group, without waiting (see kill)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.stopped = True

    def kill(self) -> None:
        """Kill the whole tree, including what left the process group, and wait."""
        if self.stopped:
            return
        kill_tree(self.process.pid)
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

    @property
    def phase(self) -> str:
        if not self.ready:
            return "import"
        if self.current is not None and self.current.startswith("flow/"):
            return "flow"
        return "module"


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
    """Balance probes across workers by estimated cost; flows first in each, so
    that a module that hangs does not take the flow's credit with it."""
    loads = [0.0] * workers
    groups: list[list[tuple[int, Probe]]] = [[] for _ in range(workers)]
    for order, p in sorted(enumerate(probes), key=lambda item: -item[1].cost):
        i = loads.index(min(loads))
        loads[i] += p.cost
        groups[i].append((order, p))
    return [[p for _, p in sorted(g, key=lambda item: (item[1].probe != "flow", item[0]))] for g in groups if g]


def _clean_error(err: Any) -> dict[str, str]:
    if not isinstance(err, dict):
        return {"type": "protocol", "message": "malformed error report"}
    return {
        "type": str(err.get("type", "Error"))[:60],
        "message": str(err.get("message", ""))[:600],
    }


class Session:
    """A submission's processes, started early so their imports overlap our work."""

    def __init__(self, submission: Path, *, timeout: float, workers: int = 2,
                 memory_mb: int | None = None, level: str | None = None, hide: list[Path] | None = None):
        self.submission = submission.resolve()
        self.timeout = timeout
        self.memory_bytes = (memory_mb or DEFAULT_MEMORY_MB) * 1024 * 1024
        self.probe_budget = max(3.0, timeout / 6)
        self.started = time.monotonic()
        self.level = isolation.choose_level(level)
        _become_subreaper()
        # Processes of ours from before this session are none of its business.
        self._preexisting = set(descendants(os.getpid()))
        self._work = tempfile.TemporaryDirectory(prefix="bngrade-work-")
        self._logs = tempfile.TemporaryDirectory(prefix="bngrade-logs-")
        self.logs = Path(self._logs.name)
        self.scratch = isolation.prepare_scratch(Path(self._work.name), self.submission, self.level)
        hidden = isolation.hidden_paths([self.submission.parent, self.logs, *(hide or [])])
        isolation.write_config(self.scratch, self.level, hidden, int(timeout) + 5)
        self.inbox: queue.Queue = queue.Queue()
        self._count = 0
        self.workers = [self._spawn() for _ in range(max(1, workers))]
        self._retired: list[_Worker] = []
        self.peak_rss = 0

    def _spawn(self, merge: bool = True) -> _Worker:
        worker = _Worker(self, self._count, merge)
        self._count += 1
        return worker

    def run(self, probes: list[Probe], while_waiting: Callable[[], None] | None = None) -> RunResult:
        """Send ``probes``, call ``while_waiting`` (work that overlaps the workers'),
        then collect results until every worker is done or the deadline passes."""
        deadline = self.started + self.timeout
        results: dict[str, ProbeResult] = {}
        import_error: dict[str, str] | None = None
        memory_exceeded = False
        plan = {w.index: group for w, group in zip(self.workers, _split(probes, len(self.workers)))}
        live = {w.index: w for w in self.workers}
        for w in self.workers:
            w.send(plan.get(w.index, []))
        if while_waiting is not None:
            while_waiting()

        def charge(probe_id: str, kind: str, message: str) -> None:
            if probe_id not in results:
                results[probe_id] = ProbeResult(probe_id, {}, {}, {"type": kind, "message": message})

        def retire(index: int, kind: str, reason: str, import_phase: bool = False) -> None:
            """Charge what the worker was doing; a fresh worker takes the rest."""
            nonlocal import_error
            worker = live.pop(index)
            worker.kill()
            self._retired.append(worker)
            if import_phase and import_error is None:
                import_error = {"type": kind, "message": reason}
            if import_error is not None:
                return
            todo = [p for p in plan.get(index, []) if p.id not in results]
            # A worker that failed while running several probes as one program
            # (GROUP) is charged nothing here: the replacement runs them one by one,
            # so that only the probe at fault is charged.
            if worker.current not in (None, GROUP):
                charge(worker.current, kind, f"{reason} during this probe")
                todo = [p for p in todo if p.id != worker.current]
            elif worker.current is None and kind != "crash":
                for p in todo:
                    charge(p.id, kind, reason)
                todo = []
            if todo and time.monotonic() < deadline:
                replacement = self._spawn(merge=False)
                plan[replacement.index] = todo
                live[replacement.index] = replacement
                replacement.send(todo)
            else:
                for p in todo:
                    charge(p.id, kind, f"{reason} before this probe ran")

        next_memory_check = 0.0
        while live:
            now = time.monotonic()
            if now >= deadline:
                break
            # Over memory or over budget: kill the worker and move on. Memory is
            # sampled every MEMORY_POLL_SECONDS (one /proc scan), not on every frame.
            if now >= next_memory_check:
                next_memory_check = now + MEMORY_POLL_SECONDS
                children = process_children()
                usage = {i: resident_bytes(w.pids(children)) for i, w in live.items()}
                self.peak_rss = max(self.peak_rss, sum(usage.values()))
                if sum(usage.values()) > self.memory_bytes:
                    memory_exceeded = True
                    heaviest = live[max(usage, key=usage.__getitem__)]
                    limit_mb = self.memory_bytes // (1024 * 1024)
                    retire(heaviest.index, "memory", f"memory limit of {limit_mb} MiB exceeded ({heaviest.phase} phase)",
                           import_phase=not heaviest.ready)
                    continue
            over = [w for w in live.values() if w.ready and w.current is not None
                    and now - w.current_since > self.probe_budget * (2 if w.current == GROUP else 1)]
            if over:
                w = over[0]
                retire(w.index, "timeout", f"time limit of {self.probe_budget:g} s per check exceeded ({w.phase} phase)")
                continue
            try:
                index, frame = self.inbox.get(timeout=max(0.001, min(next_memory_check, deadline) - now))
            except queue.Empty:
                continue
            worker = live.get(index)
            if worker is None:
                continue
            if frame is None:
                retire(index, "crash", worker.exit_reason() + ("" if worker.ready else " while importing the submission"),
                       import_phase=not worker.ready)
                continue
            if isinstance(frame[0], str):
                retire(index, "protocol", f"it sent a malformed message ({frame[1]})", import_phase=not worker.ready)
                continue
            header, arrays = frame
            kind = header.get("kind")
            if kind == "ready":
                worker.ready = True
                if header.get("error") is not None:
                    if import_error is None:
                        import_error = _clean_error(header["error"])
                    retire(index, "import", "the import failed")
            elif kind == "done":
                # Everything has been sent: no need to wait for JAX to tear down
                # (close() makes sure nothing of it is left).
                worker.current = None
                worker.stop()
                retire(index, "crash", "the process stopped early")
            elif kind == "start":
                group = header.get("group")
                worker.current = GROUP if isinstance(group, list) else str(header.get("id"))
                worker.current_ids = [str(g) for g in group] if isinstance(group, list) else [worker.current]
                worker.current_since = time.monotonic()
            elif kind == "result":
                probe_id = str(header.get("id"))
                if probe_id in {p.id for p in plan.get(index, [])} and probe_id not in results:
                    meta = header.get("meta") if isinstance(header.get("meta"), dict) else {}
                    err = header.get("error")
                    seconds = header.get("seconds")
                    results[probe_id] = ProbeResult(
                        probe_id, arrays, meta, _clean_error(err) if err is not None else None,
                        float(seconds) if isinstance(seconds, int | float) else 0.0,
                    )
                if worker.current != GROUP or all(i in results for i in worker.current_ids):
                    worker.current = None
                    worker.current_since = time.monotonic()
        timed_out = bool(live)
        for w in list(live.values()):
            phase = w.phase
            w.kill()
            if not w.ready and import_error is None:
                import_error = {"type": "timeout", "message": f"time limit of {self.timeout:g} s exceeded while importing the submission"}
            self._retired.append(w)
            for p in plan.get(w.index, []):
                charge(p.id, "timeout", f"time limit of {self.timeout:g} s exceeded ({phase} phase)")
        if import_error is None:
            for p in probes:
                charge(p.id, "timeout", f"time limit of {self.timeout:g} s exceeded")
        every = self._retired
        # Every worker imports the submission: show each distinct output once.
        stdout = "".join(dict.fromkeys(_read_capped(w.stdout) for w in every))
        stderr = "".join(dict.fromkeys(_read_capped(w.stderr) for w in every))
        return RunResult(
            import_error=import_error,
            probes=results,
            stdout=stdout[: 2 * OUTPUT_KEEP_BYTES],
            stderr=stderr[: 2 * OUTPUT_KEEP_BYTES],
            isolation=self.level,
            seconds=time.monotonic() - self.started,
            timed_out=timed_out,
            memory_exceeded=memory_exceeded,
            peak_rss_mb=self.peak_rss / (1024 * 1024),
        )

    def close(self) -> None:
        for w in self.workers + self._retired:
            w.stopped = False
            w.kill()
            w.stdout.close()
            w.stderr.close()
        # Daemons that left their worker (double fork, setsid) re-parented to us,
        # the subreaper: whatever is new below us now is theirs. (One session per
        # grading process at a time: batch grading gives each submission its own.)
        for pid in descendants(os.getpid()):
            if pid != os.getpid() and pid not in self._preexisting:
                kill_tree(pid)
        _reap()
        self._work.cleanup()
        self._logs.cleanup()
        try:
            self.scratch.new_root.rmdir()  # only ever a mount point, inside the worker
        except OSError:
            pass

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
