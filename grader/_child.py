"""Entry point of the submission's process: ``python -I -m grader._child IN OUT``.

Reads the job from file descriptor IN, imports the submission, runs each probe it
is sent and streams one result frame per probe to file descriptor OUT. Anything
the student's code raises, including SystemExit and KeyboardInterrupt, becomes an
error frame for that probe; the loop goes on with the next probe.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, BinaryIO

import importlib
from types import ModuleType

from . import probes, wire
from .probes import ProbeError, describe, install_eager_seed_check, load_submission
from .protocol import ADAPTERS, Failure, Frame

REQUIRED_NAMES = ("MyBatchNorm", "init_and_apply")
adapter: ModuleType = probes


def _send(out: BinaryIO, header: dict[str, Any], arrays: dict[str, Any] | None = None) -> None:
    out.write(wire.encode(header, arrays))
    out.flush()


def _send_result(out: BinaryIO, result: dict[str, Any], outputs: dict[str, Any]) -> None:
    lowered = probes.take_low_precision()
    if lowered:  # arrays sent as float32 that the submission made in a narrower float type
        result["meta"] = {**(result.get("meta") or {}), "dtypes": lowered}
    try:
        _send(out, result, outputs)
    except (wire.WireError, TypeError, ValueError) as err:
        _send(out, {"kind": Frame.RESULT.value, "id": result["id"], "error": {"type": Failure.OUTPUT.value, "message": str(err)[:300]}})


def _import(path: str, required: tuple[str, ...]) -> tuple[Any, dict[str, Any] | None]:
    try:
        submission = load_submission(path)
    except ProbeError as err:
        return None, {"type": err.kind, "message": err.message}
    except BaseException as err:  # noqa: BLE001 - SystemExit at import is the student's too
        return None, describe(err)
    missing = [n for n in required if not hasattr(submission, n)]
    if missing:
        return submission, {"type": Failure.MISSING_NAMES.value, "message": ", ".join(missing)}
    return submission, None


def _run_probe(submission: Any, header: dict[str, Any], arrays: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    params = header["params"]
    if header["probe"] == "module":
        return adapter.probe_module(submission.MyBatchNorm, params, arrays)
    if header["probe"] == "flow":
        return adapter.probe_flow(submission, params, arrays)
    raise ProbeError("grader", f"unknown probe {header['probe']!r}")


def main(argv: list[str]) -> int:
    source = os.fdopen(int(argv[0]), "rb")
    out = os.fdopen(int(argv[1]), "wb")
    job = wire.read(source)
    if job is None:
        return 0
    started = time.perf_counter()
    global adapter
    name = job[0].get("adapter", "probes")
    adapter = importlib.import_module(f".{name if name in ADAPTERS else 'probes'}", __package__)
    install_eager_seed_check()
    getattr(adapter, "before_import", lambda: None)()  # (Linen: the init/apply recorder)
    required = tuple(str(n) for n in job[0].get("required", REQUIRED_NAMES))
    submission, import_error = _import(job[0]["path"], required)
    _send(out, {"kind": Frame.READY.value, "error": import_error, "seconds": time.perf_counter() - started})
    if import_error is not None:
        return 0
    frames = []
    while (frame := wire.read(source)) is not None and frame[0].get("kind") != Frame.END.value:
        frames.append(frame)
    pending = list(frames)
    if job[0].get("merge", True):
        # Flows first: cheap, and they keep their credit if the module then hangs.
        groups = (("flow", lambda group: adapter.probe_flow_group(submission, group)),
                  ("module", lambda group: adapter.probe_module_group(submission.MyBatchNorm, group)))
        for kind, run_group in groups:
            group = [f for f in frames if f[0]["probe"] == kind]
            if len(group) < 2:
                continue
            ids = [h["id"] for h, _ in group]
            _send(out, {"kind": Frame.START.value, "id": ids[0], "group": ids})
            started = time.perf_counter()
            try:
                grouped = run_group(group)
            except BaseException:  # noqa: BLE001 - SystemExit & co: the one-by-one run reports it
                grouped = None
            if grouped is None:
                continue
            seconds = (time.perf_counter() - started) / len(ids)
            for probe_id, (outputs, meta) in zip(ids, grouped):
                _send_result(out, {"kind": Frame.RESULT.value, "id": probe_id, "error": None, "meta": meta, "seconds": seconds}, outputs)
            pending = [f for f in pending if f[0]["probe"] != kind]
    pending.sort(key=lambda frame: frame[0]["probe"] != "flow")
    for header, arrays in pending:
        probe_id = header["id"]
        # No word about running eagerly: the grader fixed each probe's budget
        # from what it sent, and nothing said here could move it.
        _send(out, {"kind": Frame.START.value, "id": probe_id})
        started = time.perf_counter()
        try:
            outputs, meta = _run_probe(submission, header, arrays)
            result = {"kind": Frame.RESULT.value, "id": probe_id, "error": None, "meta": meta}
        except ProbeError as err:
            outputs, meta = err.partial or ({}, {})
            result = {"kind": Frame.RESULT.value, "id": probe_id, "error": {"type": err.kind, "message": err.message}, "meta": meta}
        except BaseException as err:  # noqa: BLE001 - SystemExit, KeyboardInterrupt, ...
            outputs, result = {}, {"kind": Frame.RESULT.value, "id": probe_id, "error": describe(err)}
        result["seconds"] = time.perf_counter() - started
        _send_result(out, result, outputs)
    _send(out, {"kind": Frame.DONE.value})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
