"""Running a submission in processes of its own, and collecting what they send.

The grading process never imports the submission. It starts worker processes,
confined as :mod:`grader.isolation` says, with stdin closed, stdout and stderr
captured to files the worker cannot see, and an allow-listed environment, and
feeds them probes over a pipe. Results stream back as framed plain data
(:mod:`grader.wire`), one probe at a time, so what a worker did before it hung,
crashed or exited keeps its credit:

- every frame is validated before use (kind, ids the grader sent, exactly the
  cases it sent, sizes within the worker's byte allowance); anything else is a
  protocol violation charged to the submission with a one-line reason;
- every probe (or group of probes run as one program) has a time budget; a
  worker over budget, or over the memory limit, is killed with its whole
  process tree, the probe is charged, and a fresh worker takes the rest;
- at the submission's deadline everything left is charged "time limit exceeded",
  naming the phase (import, module, flow).

What was charged, and why, is kept in a :class:`Ledger`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader import _confine, cgroups, isolation, proctree, wire
from grader.protocol import GRADER_KINDS, Failure, Frame
from grader.submission import read_bytes

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
}
MEMORY_POLL_SECONDS = 0.05
DEFAULT_MEMORY_MB = 4096
# What a worker may send: its probes' outputs are at most a few times their
# inputs (float64 instead of float32, a state per step), plus headers.
BYTES_PER_INPUT_BYTE = 6
BYTES_PER_WORKER = 4 * 1024 * 1024
# A module probe's budget grows with the cases the grader sent it, so that a
# module jax cannot trace still has time to run them eagerly, case by case (10-20 ms
# a case measured here on a busy machine; 200 cases fit the default 10 s budget):
# fixed before the worker starts, the same whatever the worker later says it did.
CASES_PER_BUDGET = 200
BUDGET_SCALE_MAX = 6.0
GROUP_BUDGET_SCALE = 2.0  # several probes run as one program (a retry one by one follows once)
OUTPUT_LIMIT_BYTES = 4 * 2**20  # a worker's stdout and stderr together (32 KiB are shown)
DISK_POLL_SECONDS = 0.5
META_KEYS = {"mode": str, "jit_error": dict, "calls": list, "dtypes": list}


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
    memory_by_kernel: bool = True  # a cgroup counted and capped memory (else the 50 ms watchdog did)


def child_env(home: Path) -> dict[str, str]:
    """The allow-list: nothing of the grader's environment (no GRADER_* secret)."""
    env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ}
    env.update(CHILD_ENV, HOME=str(home), TMPDIR=str(home))
    return env


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def clean_error(err: Any) -> dict[str, str]:
    """A worker's error report as two short strings; kinds only the grader may
    decide (timeout, memory, ...) cannot be claimed by the worker."""
    if not isinstance(err, dict):
        return {"type": Failure.PROTOCOL.value, "message": "malformed error report"}
    kind = str(err.get("type", "Error"))[:60]
    if kind in GRADER_KINDS:
        kind = "Error"
    return {"type": kind, "message": without_paths(str(err.get("message", "")))[:600]}


# A path inside the worker's scratch copy (the student's file, the runtime) or a
# library: the student needs the file's own name and line, not where the grader put it.
_SCRATCH_PATH = re.compile(r"(?:/[^\s:'\"(),]+)*/(?:submission|runtime|bngrader_rt|site-packages)/|"
                           r"(?:/[^\s:'\"(),]+)*/bngrade[^\s:'\"(),/]*(?:/[^\s:'\"(),/]+)*/")


def without_paths(message: str) -> str:
    """``message`` with the folders of the grader's scratch copies and of installed
    libraries left out: '/tmp/bngrade-work-x/submission/batchnorm.py:79' is
    'batchnorm.py:79', '/.../site-packages/flax/nnx/variablelib.py' 'flax/nnx/variablelib.py'."""
    return _SCRATCH_PATH.sub("", message)


def clean_meta(meta: Any) -> dict[str, Any]:
    """Only the metadata the checks read, of the types they expect. It is the
    worker's word: checks may use it to withhold points, never to award them."""
    if not isinstance(meta, dict):
        return {}
    out = {k: v for k, v in meta.items() if k in META_KEYS and isinstance(v, META_KEYS[k])}
    if "calls" in out:
        out["calls"] = [c for c in out["calls"][:16] if isinstance(c, dict)]
    if "dtypes" in out:  # (it can only cost points: a charge for a narrower float type)
        out["dtypes"] = [without_paths(d)[:120] for d in out["dtypes"][:16] if isinstance(d, str)]
    if "jit_error" in out:
        out["jit_error"] = clean_error(out["jit_error"])
    return out


def case_count(probe: Probe) -> int | None:
    """How many cases a module probe's every output array must hold (None: flows)."""
    return len(probe.families) if probe.probe == "module" else None


def budget_scale(probe: Probe) -> float:
    """A probe's time budget, in per-probe budgets, from what the grader sends it."""
    return min(BUDGET_SCALE_MAX, max(1.0, (case_count(probe) or 0) / CASES_PER_BUDGET))


# --- the ledger: what was charged, and why ------------------------------------------


class Ledger:
    """Results per probe, first word wins: a probe is charged once, for the
    first thing that went wrong with it."""

    def __init__(self) -> None:
        self.results: dict[str, ProbeResult] = {}
        self.import_error: dict[str, str] | None = None

    def charge(self, probe_id: str, kind: Failure, message: str) -> None:
        if probe_id not in self.results:
            self.results[probe_id] = ProbeResult(probe_id, {}, {}, {"type": kind.value, "message": message})

    def record(self, result: ProbeResult) -> None:
        self.results.setdefault(result.id, result)

    def fail_import(self, kind: str, message: str) -> None:
        if self.import_error is None:
            self.import_error = {"type": kind, "message": message}



# --- one worker --------------------------------------------------------------------


class _Worker:
    """One submission process, the threads that feed and read it, and its state:
    what it was given, what it is doing, and how many bytes it may still send."""

    def __init__(self, session: Session, index: int, merge: bool):
        self.index = index
        self.plan: dict[str, Probe] = {}
        self.ready = False
        self.started = time.monotonic()
        self.current: str | None = None  # probe id, GROUP, or None between probes
        self.current_ids: list[str] = []
        # The grader's clock for the probe at hand: set when the worker is ready and
        # when a probe (or a group) is answered in full; nothing else the worker
        # says resets it (one exception: a failed group retried one by one, once).
        self.since = self.started
        self.started_ids: set[tuple[str, ...]] = set()  # starts seen: each is allowed once
        self.stopped = False
        self.answered: set[str] = set()  # probe ids this worker answered, validated
        self.allowance = BYTES_PER_WORKER
        self._allowance_lock = threading.Lock()
        self._inbox = session.inbox
        self._uid = session.uid
        self._level = session.level
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
            cwd=session.scratch.root,
            start_new_session=True,
        )
        os.close(job_read)
        os.close(result_write)
        self._pending: queue.Queue[bytes | None] = queue.Queue()
        self._pending.put(wire.encode({"kind": Frame.JOB.value, "path": str(session.scratch.submission), "merge": merge,
                                       "adapter": session.adapter, "required": list(session.required)}))
        threading.Thread(target=self._feed, daemon=True).start()
        threading.Thread(target=self._read, daemon=True).start()

    def assign(self, plan: list[Probe]) -> None:
        """Send the worker its probes; from now on it may send results for them,
        and bytes in proportion to their inputs."""
        self.plan = {p.id: p for p in plan}
        with self._allowance_lock:
            self.allowance += BYTES_PER_INPUT_BYTE * sum(a.nbytes for p in plan for a in p.arrays.values())
        for p in plan:
            self._pending.put(wire.encode({"kind": Frame.PROBE.value, "id": p.id, "probe": p.probe, "params": p.params},
                                          p.arrays))
        self._pending.put(wire.encode({"kind": Frame.END.value}))
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
        """Frames to the session's inbox; anything malformed ends the stream."""
        with os.fdopen(self._result_read, "rb") as pipe:
            try:
                while (frame := wire.read(pipe, self.allowance)) is not None:
                    with self._allowance_lock:
                        self.allowance -= sum(a.nbytes for a in frame[1].values())
                    self._inbox.put((self.index, frame))
            except (wire.WireError, EOFError, OSError, ValueError, RecursionError, MemoryError) as err:
                self._inbox.put((self.index, ("broken", str(err)[:200])))
            except Exception as err:  # noqa: BLE001 - whatever a worker sends, the grader goes on
                self._inbox.put((self.index, ("broken", type(err).__name__)))
        self._inbox.put((self.index, None))

    def pids(self, children: dict[int, list[int]] | None = None) -> list[int]:
        return proctree.descendants(self.process.pid, children)

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
        proctree.kill_tree(self.process.pid)
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
            return f"the process was killed by {signal_name(-code)}"
        if code is not None and code > 128 and self._level in ("namespaces", "userns"):
            # The namespace's init reports a worker killed by a signal as 128 + its number.
            return f"the process was killed by {signal_name(code - 128)}"
        return f"the process exited with status {code}"

    def budget(self, per_probe: float) -> float:
        """Seconds the probe at hand may take on the grader's clock: fixed by what
        the grader sent. Between probes (no START yet) it is the next unanswered
        probe's, in the order sent: not announcing a probe earns no time."""
        if self.current == GROUP:
            return per_probe * GROUP_BUDGET_SCALE
        if self.current is not None:
            return per_probe * budget_scale(self.plan[self.current])
        waiting = [p for p in self.plan.values() if p.id not in self.answered]
        return per_probe * (budget_scale(waiting[0]) if waiting else 1.0)

    @property
    def phase(self) -> str:
        if not self.ready:
            return "import"
        if self.current is not None and self.current.startswith("flow/"):
            return "flow"
        return "module"


def _size(handle: Any) -> int:
    try:
        return os.fstat(handle.fileno()).st_size
    except (OSError, ValueError):
        return 0


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


class ProtocolViolation(Exception):
    """A frame that breaks the protocol; the message says how, for the student."""


def _validated_result(worker: _Worker, header: dict[str, Any], arrays: dict[str, np.ndarray],
                      ledger: Ledger) -> ProbeResult:
    """A result frame as a ProbeResult, or ProtocolViolation: an id the worker
    was given and has not answered yet, and exactly the cases it was sent."""
    probe_id = header.get("id")
    if not isinstance(probe_id, str) or probe_id not in worker.plan:
        raise ProtocolViolation("it sent a result for a probe it was not given")
    if probe_id in ledger.results:
        raise ProtocolViolation(f"it sent a second result for {probe_id}")
    if probe_id not in worker.current_ids:
        # Only the running probe's own result stops its clock: a result for
        # another one (sent early, from a thread) would restart it.
        raise ProtocolViolation(f"it sent a result for {probe_id}, which it was not running")
    expected_cases = case_count(worker.plan[probe_id])
    err = header.get("error")
    if expected_cases is not None and arrays:
        counts = {a.shape[0] if a.ndim else -1 for a in arrays.values()}
        if counts != {expected_cases}:
            got = ", ".join(str(c) for c in sorted(counts))
            raise ProtocolViolation(f"it returned {got} cases for {probe_id}, which was sent {expected_cases}")
    seconds = header.get("seconds")
    return ProbeResult(
        probe_id, arrays, clean_meta(header.get("meta")), clean_error(err) if err is not None else None,
        float(seconds) if isinstance(seconds, int | float) and math.isfinite(seconds) and seconds >= 0 else 0.0,
    )


class Session:
    """A submission's processes, started early so their imports overlap our work."""

    def __init__(self, submission: bytes, *, timeout: float, workers: int = 2,
                 memory_mb: int | None = None, level: str | None = None, hide: list[Path] | None = None,
                 adapter: str = "probes", required: tuple[str, ...] = ("MyBatchNorm", "init_and_apply")):
        self.timeout = timeout
        self.adapter = adapter  # the exercise's worker-side module (grader.exercises.ADAPTERS)
        self.required = required
        self.memory_bytes = (memory_mb or DEFAULT_MEMORY_MB) * 1024 * 1024
        self.probe_budget = max(3.0, timeout / 6)
        self.started = time.monotonic()
        self.level = isolation.choose_level(level)
        self.uid = isolation.worker_uid(self.level)
        self.worker_count = max(1, workers)
        proctree.become_subreaper()
        # Processes of ours from before this session are none of its business.
        self._preexisting = set(proctree.descendants(os.getpid()))
        if self.uid is not None:
            proctree.kill_uid(self.uid)  # anything a crashed earlier grader left under this uid
        self._work = tempfile.mkdtemp(prefix="bngrade-work-")
        self._logs = tempfile.mkdtemp(prefix="bngrade-logs-")
        self.workers: list[_Worker] = []
        self.group: cgroups.Group | None = None
        try:
            self._start(submission, timeout, hide)
        except BaseException:  # interrupted or failed half-way: leave nothing behind
            self.close()
            raise

    def _start(self, submission: bytes, timeout: float, hide: list[Path] | None) -> None:
        os.chmod(self._logs, 0o700)
        self.logs = Path(self._logs)
        self.scratch = isolation.prepare_scratch(Path(self._work), submission, self.level)
        hidden = isolation.hidden_paths([self.logs, *(hide or [])])
        if self.level == "uid":
            isolation.make_traversable(isolation._python_dirs())  # the uid must reach the interpreter
            if not _confine.landlock_abi():
                isolation.protect(hidden, self.scratch.root)  # no Landlock to deny them: permissions must
        # At the namespace levels home is a size-capped tmpfs, and at uid too where
        # the grader may mount one; elsewhere it lies on the host's disk, and the
        # watchdog measures it.
        home_capped = self.level == "uid" and self.uid is not None and isolation.mount_home(self.scratch, self.uid)
        self.watch_home = self.level not in ("namespaces", "userns") and not home_capped
        # A cgroup wherever the grader may make one (root, or a delegated subtree).
        self.group = cgroups.create(self.memory_bytes, isolation.MAX_PROCESSES * self.worker_count)
        isolation.write_config(self.scratch, self.level, hidden, int(timeout) + 5,
                               self.group.procs_files if self.group else [])
        self.inbox: queue.Queue = queue.Queue()
        self._count = 0
        self.peak_rss = 0
        # Started now: their imports overlap building the suite.
        self.first = [self._spawn() for _ in range(self.worker_count)]

    def _spawn(self, merge: bool = True) -> _Worker:
        worker = _Worker(self, self._count, merge)
        self._count += 1
        self.workers.append(worker)
        return worker

    def run(self, probes: list[Probe], while_waiting: Callable[[], None] | None = None) -> RunResult:
        """Send ``probes``, call ``while_waiting`` (work that overlaps the workers'),
        then collect results until every worker is done or the deadline passes."""
        return _Run(self, probes).go(while_waiting)

    def close(self) -> None:
        for w in self.workers:
            w.stopped = False
            w.kill()
            w.stdout.close()
            w.stderr.close()
        if self.group is not None:
            self.group.remove()
        if self.uid is not None:
            proctree.kill_uid(self.uid)
        # Daemons that left their worker (double fork, setsid) re-parented to us,
        # the subreaper: whatever is new below us now is theirs, and it is stopped,
        # killed and reaped until none is left, however fast it forks. (One session
        # per grading process at a time: batch grading gives each submission its own.)
        proctree.sweep_descendants(keep=self._preexisting)
        if self.uid is not None:
            proctree.remove_owned(self.uid)
        scratch = getattr(self, "scratch", None)
        for path in (self._work, self._logs, *([str(scratch.new_root)] if scratch else [])):
            proctree.remove_tree(path)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Run:
    """One ``Session.run``: a loop that reads frames and dispatches each to a
    handler, between watchdog passes (deadline, per-probe budget, memory)."""

    def __init__(self, session: Session, probes: list[Probe]):
        self.session = session
        self.probes = probes
        self.deadline = session.started + session.timeout
        self.ledger = Ledger()
        self.memory_exceeded = False
        self.live: dict[int, _Worker] = {w.index: w for w in session.first}
        plans = _split(probes, len(session.first))
        for i, w in enumerate(session.first):
            w.assign(plans[i] if i < len(plans) else [])
        self._oom_kills = session.group.oom_kills() if session.group else 0
        self.imported = False  # some worker has imported the submission
        self._next_disk_check = 0.0
        self._handlers = {
            Frame.READY.value: self._on_ready,
            Frame.START.value: self._on_start,
            Frame.RESULT.value: self._on_result,
            Frame.DONE.value: self._on_done,
        }

    # --- charging and replacing workers

    def retire(self, worker: _Worker, kind: Failure | str, reason: str, import_phase: bool = False) -> None:
        """Charge what the worker was doing; a fresh worker takes the rest.

        A worker that failed while running several probes as one program (GROUP)
        is charged nothing here: the replacement runs them one by one, so that
        only the probe at fault is charged. A worker that failed between probes
        for a reason other than a crash charges everything it still had. An
        import failure is the submission's only while no worker has imported
        it: a replacement that fails to start charges its own probes, and
        earlier credit stays.
        """
        ledger = self.ledger
        self.live.pop(worker.index, None)
        worker.kill()
        kind = Failure(kind)
        if import_phase and not self.imported:
            ledger.fail_import(kind.value, reason)
        if ledger.import_error is not None:
            return
        todo = [p for p in worker.plan.values() if p.id not in ledger.results]
        if import_phase:  # a replacement that never started: no third try
            for p in todo:
                ledger.charge(p.id, kind, f"{reason} (while a fresh process was starting)")
            return
        if worker.current not in (None, GROUP):
            ledger.charge(worker.current, kind, f"{reason} during this probe")
            todo = [p for p in todo if p.id != worker.current]
        elif worker.current is None and kind == Failure.CRASH and todo:
            # Between probes: the next one is charged, so that a worker that keeps
            # exiting cannot be replaced forever (at most one worker per probe).
            ledger.charge(todo[0].id, kind, f"{reason} before this probe started")
            todo = todo[1:]
        elif worker.current is None and kind != Failure.CRASH:
            for p in todo:
                ledger.charge(p.id, kind, reason)
            todo = []
        if todo and time.monotonic() < self.deadline:
            replacement = self.session._spawn(merge=False)
            replacement.assign(todo)
            self.live[replacement.index] = replacement
        else:
            for p in todo:
                ledger.charge(p.id, kind, f"{reason} before this probe ran")

    def violation(self, worker: _Worker, reason: str) -> None:
        self.retire(worker, Failure.PROTOCOL, f"{reason} (a protocol violation)", import_phase=not worker.ready)

    # --- frame handlers

    def _on_ready(self, worker: _Worker, header: dict[str, Any], arrays: dict) -> None:
        if worker.ready or arrays:
            raise ProtocolViolation("it announced itself twice")
        worker.ready = True
        worker.since = time.monotonic()  # the first probe's clock
        error = header.get("error")
        if error is None:
            self.imported = True
            return
        if not self.imported and self.ledger.import_error is None:
            self.ledger.import_error = clean_error(error)
        self.retire(worker, Failure.IMPORT, "the import failed", import_phase=True)

    def _on_start(self, worker: _Worker, header: dict[str, Any], arrays: dict) -> None:
        group = header.get("group")
        probe_id = header.get("id")
        ids = group if isinstance(group, list) else [probe_id]
        if not worker.ready or arrays or not ids or not all(isinstance(i, str) and i in worker.plan for i in ids):
            raise ProtocolViolation("it started a probe it was not given")
        if isinstance(group, list):
            kinds = {worker.plan[i].probe for i in ids}
            whole = {p.id for p in worker.plan.values() if p.probe in kinds}
            if len(kinds) != 1 or len(ids) < 2 or len(set(ids)) != len(ids) or set(ids) != whole:
                raise ProtocolViolation("it started a group that is not all its probes of one kind")
        # Each probe starts once on its own, and once at most within its kind's one
        # group (a failed group is retried one by one): restarts cannot stretch a
        # budget. A second start of the running probe (such as the "running eagerly"
        # note workers once sent) is out of turn too: how a probe runs never moves
        # its budget.
        key = ("group", worker.plan[ids[0]].probe) if isinstance(group, list) else ("single", probe_id)
        if key in worker.started_ids or any(i in self.ledger.results for i in ids) or (
                worker.current not in (None, GROUP)):
            raise ProtocolViolation("it started a probe out of turn")
        worker.started_ids.add(key)
        if worker.current == GROUP:
            worker.since = time.monotonic()  # the group failed: what comes next, once per group
        worker.current = GROUP if isinstance(group, list) else probe_id
        worker.current_ids = list(ids)

    def _on_result(self, worker: _Worker, header: dict[str, Any], arrays: dict) -> None:
        if not worker.ready:
            raise ProtocolViolation("it sent a result before importing the submission")
        result = _validated_result(worker, header, arrays, self.ledger)
        self.ledger.record(result)
        worker.answered.add(result.id)
        if worker.current != GROUP or all(i in self.ledger.results for i in worker.current_ids):
            worker.current = None
            worker.current_ids = []
            worker.since = time.monotonic()

    def _on_done(self, worker: _Worker, header: dict[str, Any], arrays: dict) -> None:
        # Everything has been sent: no need to wait for JAX to tear down
        # (close() makes sure nothing of it is left).
        worker.current = None
        worker.stop()
        self.retire(worker, Failure.CRASH, "the process stopped early")

    # --- the loop

    def _watch(self, now: float) -> bool:
        """Memory and per-probe budgets; True if a worker was retired."""
        session = self.session
        # Orphans of the submission's processes re-parent to us: reap those that
        # exited, so that a process forking and exiting in a loop piles up no zombies.
        scanned = proctree.scan()
        proctree.reap({w.process.pid for w in session.workers} | session._preexisting, scanned)
        children = proctree.process_children(scanned)
        usage = {i: proctree.resident_bytes(w.pids(children)) for i, w in self.live.items()}
        if session.group is None or not session.group.limits_memory:
            # No cgroup counts shared memory for us: count what workers keep in
            # memfd/tmpfs files (and, for a dedicated uid, /dev/shm and SysV).
            shared = proctree.shared_memory_bytes([p for w in self.live.values() for p in w.pids(children)],
                                                  session.uid)
            if usage:
                usage[next(iter(usage))] += shared
        session.peak_rss = max(session.peak_rss, sum(usage.values()))
        if usage and sum(usage.values()) > session.memory_bytes:
            self.memory_exceeded = True
            heaviest = self.live[max(usage, key=usage.__getitem__)]
            self.retire(heaviest, Failure.MEMORY, self._memory_reason(heaviest), import_phase=not heaviest.ready)
            return True
        for w in list(self.live.values()):
            printed = _size(w.stdout) + _size(w.stderr)
            if printed > OUTPUT_LIMIT_BYTES:
                self.retire(w, Failure.OUTPUT_FLOOD, f"it printed more than {OUTPUT_LIMIT_BYTES // 2**20} MiB "
                            f"({w.phase} phase)", import_phase=not w.ready)
                return True
        if session.watch_home and now >= self._next_disk_check and self.live:
            self._next_disk_check = now + DISK_POLL_SECONDS
            used, entries = proctree.tree_usage(str(session.scratch.home), isolation.SCRATCH_INODES)
            if used > isolation.SCRATCH_MB * 2**20 or entries > isolation.SCRATCH_INODES:
                reason = (f"its files exceed {isolation.SCRATCH_MB} MiB or {isolation.SCRATCH_INODES} entries "
                          "in its home")
                for w in list(self.live.values()):
                    self.retire(w, Failure.DISK, f"{reason} ({w.phase} phase)", import_phase=not w.ready)
                return True
        # Every ready worker with work left is on the clock, announced or not.
        over = [w for w in self.live.values() if w.ready and any(p not in w.answered for p in w.plan)
                and now - w.since > w.budget(session.probe_budget)]
        if over:
            w = over[0]
            if w.current is None:  # it never said which: the next one in the order sent is charged
                w.current = next(p.id for p in w.plan.values() if p.id not in self.ledger.results)
            self.retire(w, Failure.TIMEOUT,
                        f"time limit of {w.budget(session.probe_budget):g} s per check exceeded ({w.phase} phase)")
            return True
        return False

    def _memory_reason(self, worker: _Worker) -> str:
        limit_mb = self.session.memory_bytes // (1024 * 1024)
        return f"memory limit of {limit_mb} MiB exceeded ({worker.phase} phase)"

    def _ended(self, worker: _Worker) -> None:
        """The worker's channel closed without DONE: it crashed, or the kernel
        killed it for memory (its cgroup counted an OOM kill)."""
        group = self.session.group
        if group is not None and group.oom_kills() > self._oom_kills:
            self._oom_kills = group.oom_kills()
            self.memory_exceeded = True
            self.retire(worker, Failure.MEMORY, self._memory_reason(worker), import_phase=not worker.ready)
            return
        reason = worker.exit_reason() + ("" if worker.ready else " while importing the submission")
        self.retire(worker, Failure.CRASH, reason, import_phase=not worker.ready)

    def go(self, while_waiting: Callable[[], None] | None) -> RunResult:
        session = self.session
        if while_waiting is not None:
            while_waiting()
        next_check = 0.0
        while self.live:
            now = time.monotonic()
            if now >= self.deadline:
                break
            if now >= next_check:
                next_check = now + MEMORY_POLL_SECONDS
                if self._watch(now):
                    continue
            try:
                index, frame = session.inbox.get(timeout=max(0.001, min(next_check, self.deadline) - now))
            except queue.Empty:
                continue
            worker = self.live.get(index)
            if worker is None:
                continue
            if frame is None:
                self._ended(worker)
                continue
            if isinstance(frame[0], str):
                self.violation(worker, f"it sent a malformed message ({frame[1]})")
                continue
            header, arrays = frame
            kind = header.get("kind")
            handler = self._handlers.get(kind) if isinstance(kind, str) else None
            try:
                if handler is None:
                    raise ProtocolViolation("it sent a message of an unknown kind")
                handler(worker, header, arrays)
            except ProtocolViolation as violation:
                self.violation(worker, str(violation))
            except Exception as err:  # noqa: BLE001 - a frame no handler foresaw is the worker's fault
                self.violation(worker, f"it sent a message the grader could not use ({type(err).__name__})")
        return self._finish()

    def _finish(self) -> RunResult:
        session, ledger = self.session, self.ledger
        timed_out = bool(self.live)
        for w in list(self.live.values()):
            phase = w.phase
            w.kill()
            if not w.ready and not self.imported:
                ledger.fail_import(Failure.TIMEOUT.value,
                                   f"time limit of {session.timeout:g} s exceeded while importing the submission")
            for p in w.plan.values():
                ledger.charge(p.id, Failure.TIMEOUT, f"time limit of {session.timeout:g} s exceeded ({phase} phase)")
        if ledger.import_error is None:
            for p in self.probes:
                ledger.charge(p.id, Failure.MISSING_RESULT, "no result came back")
        # Every worker imports the submission: show each distinct output once.
        stdout = "".join(dict.fromkeys(_read_capped(w.stdout) for w in session.workers))
        stderr = "".join(dict.fromkeys(_read_capped(w.stderr) for w in session.workers))
        return RunResult(
            import_error=ledger.import_error,
            probes=ledger.results,
            stdout=stdout[: 2 * OUTPUT_KEEP_BYTES],
            stderr=stderr[: 2 * OUTPUT_KEEP_BYTES],
            isolation=session.level,
            seconds=time.monotonic() - session.started,
            timed_out=timed_out,
            memory_exceeded=self.memory_exceeded,
            peak_rss_mb=session.peak_rss / (1024 * 1024),
            memory_by_kernel=session.group is not None and session.group.limits_memory,
        )


def read_submission(path: Path) -> bytes:
    """The submission's bytes, never through a link (see grader.submission.read_bytes)."""
    return read_bytes(path, isolation.MAX_FILE_BYTES)

