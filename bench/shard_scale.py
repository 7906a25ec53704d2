"""`make shard-scale`: a large class graded in shards gives the unsharded gradebook.

Generates a class of distinct submissions (variants of the bundled correct and wrong
files: each gets its own comment line, so no two files are equal), grades it once
unsharded (``batch --jobs 2``) and once as 4 shards run two at a time (``--jobs 1``
each), merges the shards, and compares: the gradebook (byte-identical after sorting
its rows; the merge writes rows sorted, so also as files) and the class report.
Prints the wall times, the merge's among them (target: under 10 s for 2,000).

Long (about an hour for 2,000 on 2 free cores): not part of `make test`.

    python bench/shard_scale.py [--size 2000] [--work DIR] [--keep]
    python bench/shard_scale.py --synthetic   # no grading: time the merge of fake results only
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARDS = 4
SOURCES = sorted((ROOT / "tests" / "submissions" / "correct").glob("*.py")) + \
    sorted((ROOT / "tests" / "submissions" / "wrong").glob("*.py"))


def make_class(folder: Path, size: int) -> None:
    """``size`` distinct submissions, cycling through the bundled correct and wrong files."""
    folder.mkdir(parents=True)
    for i in range(size):
        source = SOURCES[i % len(SOURCES)]
        text = source.read_text()
        (folder / f"student{i:05d}.py").write_text(f"# variant {i} of {source.stem}\n{text}")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADER_", "SLURM_", "JOB_COMPLETION", "CI_NODE"))}
    env["GRADER_SECRET"] = "shard-scale-secret"
    return env


def _grader(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "grader", *args], cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait(*procs: subprocess.Popen) -> None:
    for proc in procs:
        _, stderr = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(map(str, proc.args[2:]))} failed ({proc.returncode}): {stderr[-2000:]}")


def _timed(label: str, *procs_factory) -> float:  # noqa: ANN002 - callables making Popens
    started = time.perf_counter()
    _wait(*(make() for make in procs_factory))
    seconds = time.perf_counter() - started
    print(f"{label}: {seconds:.1f} s", flush=True)
    return seconds


def graded_run(work: Path, size: int) -> bool:
    classroom = work / "class"
    make_class(classroom, size)
    print(f"class of {size} distinct submissions in {classroom}", flush=True)
    whole = _timed("unsharded batch --jobs 2", lambda: _grader("batch", str(classroom), "--out", str(work / "whole"),
                                                                "--jobs", "2"))
    sharded = 0.0
    for pair in ((1, 2), (3, 4)):
        sharded += _timed(f"shards {pair[0]}/{SHARDS} and {pair[1]}/{SHARDS} side by side, --jobs 1 each",
                          *(lambda k=k: _grader("batch", str(classroom), "--out", str(work / f"shard{k}"),
                                                "--shard", f"{k}/{SHARDS}", "--jobs", "1") for k in pair))
    merge = _timed("merge", lambda: _grader("merge", *(str(work / f"shard{k}") for k in range(1, SHARDS + 1)),
                                            "--out", str(work / "merged")))
    print(f"sharded total {sharded:.1f} s against unsharded {whole:.1f} s", flush=True)
    return _compare(work / "whole", work / "merged", size) and merge < 10


def _compare(whole: Path, merged: Path, size: int) -> bool:
    rows = {name: sorted((folder / "gradebook.csv").read_bytes().splitlines()[1:])
            for name, folder in (("whole", whole), ("merged", merged))}
    same_rows = rows["whole"] == rows["merged"] and len(rows["whole"]) == size
    same_files = all((whole / name).read_bytes() == (merged / name).read_bytes()
                     for name in ("gradebook.csv", "report.html"))
    print(f"gradebook rows: {len(rows['whole'])} and {len(rows['merged'])}, "
          f"{'identical' if same_rows else 'DIFFERENT'} after sorting; gradebook.csv and report.html files "
          f"{'identical' if same_files else 'DIFFERENT'}", flush=True)
    return same_rows and same_files


def synthetic_merge(work: Path, size: int) -> bool:
    """The merge alone, on fake result folders shaped as batch writes them."""
    from grader.batch import STUDENTS, Roster, Student, _write_student, student_folders, write_manifest
    from grader.shard import Shard, merge

    ids = [f"student{i:05d}" for i in range(size)]
    started = time.perf_counter()
    for k in range(1, SHARDS + 1):
        shard = Shard(k, SHARDS)
        mine = [Student(sid, Path(sid)) for sid in ids if shard.owns(sid)]
        folders = student_folders(s.id for s in mine)
        for n, student in enumerate(mine):
            data = {"score": float(n % 101), "max_score": 100.0, "output": "", "tests": [],
                    "extra_data": {"student": student.id, "shard": shard.label, "exercise": "batchnorm_linen",
                                   "suite": "hidden", "status": "partial", "tags": [], "problem": ""}}
            _write_student(work / f"shard{k}" / STUDENTS / folders[student.id], student.id, data)
        write_manifest(work / f"shard{k}", shard, Roster(mine, ids), "synthetic", "batchnorm_linen", len(mine))
    print(f"wrote {SHARDS} fake shards of {size} students in {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    graded = merge([work / f"shard{k}" for k in range(1, SHARDS + 1)], work / "merged")
    seconds = time.perf_counter() - started
    print(f"merge of {len(graded)} results: {seconds:.2f} s (target: under 10 s)", flush=True)
    return len(graded) == size and seconds < 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=None, help="folder for the class and outputs (default: a temp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--synthetic", action="store_true", help="time the merge only, on fake results")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bn-shard-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        ok = synthetic_merge(work, args.size) if args.synthetic else graded_run(work, args.size)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("OK" if ok else "FAILED: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
