"""`make mutants`: every mutant of the reference, classified by behaviour and graded.

Issue 9: a mutant that behaves differently from the reference must lose points, one
that behaves the same must score 100. Generation, classification and grading live in
tests/mutation.py (the test suite runs a fixed sample of the same mutants). Prints the
summary, writes build/mutants-report.md (every mutant with its class, score and
tags), and exits 1 if any different mutant survives or any equivalent one is charged.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import TEST_SECRET  # noqa: E402
from tests.mutation import classify, generate, grade, report, summarize  # noqa: E402

REPORT = ROOT / "build" / "mutants-report.md"
JOBS = int(os.environ.get("MUTANTS_JOBS", "2"))


def main() -> int:
    started = time.perf_counter()
    mutants = generate()
    print(f"{len(mutants)} mutants; classifying their behaviour ({JOBS} workers)...", flush=True)
    verdicts = classify(mutants, jobs=JOBS)
    print(f"classified in {time.perf_counter() - started:.0f} s; grading them all in one batch...", flush=True)
    with tempfile.TemporaryDirectory(prefix="bn-mutants-") as work:
        graded = grade(mutants, Path(work), os.environ.get("GRADER_SECRET", TEST_SECRET), jobs=JOBS)
    summary = summarize(mutants, verdicts, graded)
    text = report(summary)
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(text)
    print(text.split("\n## All mutants")[0])
    print(f"full table: {REPORT.relative_to(ROOT)} ({time.perf_counter() - started:.0f} s in all)")
    return 1 if summary.survivors or summary.charged_equivalents else 0


if __name__ == "__main__":
    sys.exit(main())
