"""`make bench`: how fast grading is, as ratios against the floor.

- the floor: a fresh interpreter that imports jax and flax and runs one jitted
  flax.linen.BatchNorm init + apply (bench/floor.py);
- one submission: wall time of grading the reference on the hidden suite;
- one NNX submission: the same for the NNX exercise's reference (--exercise batchnorm_nnx);
- batch: wall time of `batch --jobs 2` over a class of correct submissions,
  divided by the class size (amortized cost of one submission);
- memory: peak resident memory of all processes of one grading together.

Medians of interleaved runs. No assertion: numbers to read, with the targets.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_RUNS", "7"))
CLASS_SIZE = int(os.environ.get("BENCH_CLASS", "16"))


def _timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
    env["GRADER_SECRET"] = "bench-secret"
    work = Path(tempfile.mkdtemp(prefix="bn-bench-"))
    results = work / "results.json"
    nnx_results = work / "results-nnx.json"
    floor_cmd = [sys.executable, str(ROOT / "bench" / "floor.py")]
    nnx_floor_cmd = [sys.executable, str(ROOT / "bench" / "floor_nnx.py")]
    grade_cmd = [sys.executable, "-m", "grader", "grade", "solution/batchnorm.py", "--quiet", "--results", str(results)]
    nnx_cmd = [sys.executable, "-m", "grader", "grade", "solution/nnx/batchnorm.py", "--exercise", "batchnorm_nnx",
               "--quiet", "--results", str(nnx_results)]
    klass = work / "class"
    klass.mkdir()
    for i in range(CLASS_SIZE):
        shutil.copy(ROOT / "solution" / "batchnorm.py", klass / f"student{i:03d}.py")
    batch_cmd = [sys.executable, "-m", "grader", "batch", str(klass), "--out", str(work / "out"), "--jobs", "2", "--force"]

    _timed(floor_cmd, env)  # warm the file cache for all of them
    _timed(nnx_floor_cmd, env)
    _timed(grade_cmd, env)
    _timed(nnx_cmd, env)
    floors, grades, nnx_floors, nnx_grades, batches = [], [], [], [], []
    for i in range(RUNS):
        floors.append(_timed(floor_cmd, env))
        nnx_floors.append(_timed(nnx_floor_cmd, env))
        grades.append(_timed(grade_cmd, env))
        nnx_grades.append(_timed(nnx_cmd, env))
        if i < max(1, RUNS // 2):
            batches.append(_timed(batch_cmd, env) / CLASS_SIZE)
    data = json.loads(results.read_text())
    floor, grade, batch = statistics.median(floors), statistics.median(grades), statistics.median(batches)
    nnx_floor, nnx_grade = statistics.median(nnx_floors), statistics.median(nnx_grades)
    extra = data["extra_data"]
    nnx_extra = json.loads(nnx_results.read_text())["extra_data"]
    print(f"floor (fresh interpreter, import jax+flax, one jitted BatchNorm): {floor:.3f} s (median of {RUNS})")
    print(f"grade one correct submission, hidden suite ({extra['cases']} cases, {extra['shapes']} shapes, "
          f"isolation {extra['isolation']}): {grade:.3f} s = {grade / floor:.2f}x the floor (target <= 1.5x)")
    print(f"NNX floor (fresh interpreter, import jax+flax.nnx, one nnx.jit-ted nnx.BatchNorm call): "
          f"{nnx_floor:.3f} s")
    print(f"grade the NNX reference (--exercise batchnorm_nnx), hidden suite ({nnx_extra['cases']} cases, "
          f"isolation {nnx_extra['isolation']}): {nnx_grade:.3f} s = {nnx_grade / nnx_floor:.2f}x the NNX floor "
          f"(target <= 1.5x; {nnx_grade / floor:.2f}x the Linen floor)")
    print(f"batch --jobs 2, {CLASS_SIZE} submissions: {batch:.3f} s per submission = {batch / floor:.2f}x the floor "
          f"(target <= 1.0x)")
    print(f"peak memory of one grading, all processes: {extra['peak_memory_mb']:.0f} MB (Gradescope default: 768 MB)")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
