"""Command line: ``python -m grader grade PATH`` and friends.

Exit codes: 0 graded (whatever the score), 1 score below ``--fail-under``,
2 bad usage (with one line saying what and where).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

SECRET_ENV = "GRADER_SECRET"
EXERCISE_ENV = "GRADER_EXERCISE"
SUBMISSION_FILE = "batchnorm.py"


class UsageError(Exception):
    """Bad input from the command line or the environment; exit code 2."""


def _error(message: str, code: int = 2) -> NoReturn:
    print(f"grader: error: {clean_text(message)}", file=sys.stderr)
    raise SystemExit(code)


class _Parser(argparse.ArgumentParser):
    """argparse, with the values it quotes back (paths, names) cleaned like student output."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {clean_text(message)}\n")


class NoSubmission(UsageError):
    """A folder without one file to grade: still a graded result (score 0) where one is asked for."""


def resolve_submission(raw: str) -> Path:
    """A .py or .ipynb file, or a folder holding one (see grader.submission)."""
    from grader.submission import NotFound, find

    path = Path(raw)
    try:
        if path.is_dir() and not path.is_symlink():
            return find(path)
        return _resolve_file(path, raw)
    except NotFound as err:
        raise NoSubmission(f"in {raw}: {err}") from err
    except OSError as err:
        raise UsageError(f"cannot read submission {raw}: {err.strerror or err}") from err


def _resolve_file(path: Path, raw: str) -> Path:
    if not os.path.lexists(path):
        raise UsageError(f"submission {raw} does not exist")
    if path.is_symlink():
        return path  # graded as refused: links are never followed
    if path.suffix.lower() not in (".py", ".ipynb") or not path.is_file():
        raise UsageError(f"submission {raw} is not a .py file, a notebook, or a folder holding one")
    return path


def read_secret(secret_file: str | None) -> str | None:
    """The hidden suite's secret: --secret-file wins over $GRADER_SECRET."""
    if secret_file is not None:
        try:
            secret = Path(secret_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"cannot read secret file {secret_file}: {getattr(err, 'strerror', None) or err}") from err
        if not secret:
            raise UsageError(f"secret file {secret_file} is empty")
        return secret
    return os.environ.get(SECRET_ENV, "").strip() or None


def _positive(kind: type, what: str):  # noqa: ANN202 - argparse type factory
    def parse(text: str):  # noqa: ANN202
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be positive, got {text!r}")
        return value
    return parse


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fail-under must be a number from 0 to 100, got {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"--fail-under must be from 0 to 100, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    from grader import __version__
    from grader.exercises import DEFAULT as DEFAULT_EXERCISE
    from grader.exercises import EXERCISES
    from grader.isolation import LEVELS

    parser = _Parser(prog="python -m grader", description="Grade the BatchNorm-with-batch_stats exercise.")
    parser.add_argument("--version", action="version", version=f"bn-grader {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def exercise(p: argparse.ArgumentParser) -> None:
        p.add_argument("--exercise", choices=tuple(EXERCISES), default=None,
                       help=f"which exercise (default ${EXERCISE_ENV}, else {kit_exercise() or DEFAULT_EXERCISE})")

    def common(p: argparse.ArgumentParser) -> None:
        exercise(p)
        p.add_argument("--secret-file", help=f"file holding the hidden suite's secret (default: ${SECRET_ENV}; none: practice suite)")
        p.add_argument("--timeout", type=_positive(float, "--timeout"), default=60.0, help="seconds per submission (default 60)")
        p.add_argument("--memory-mb", type=_positive(int, "--memory-mb"), default=None, help="resident memory limit of a submission's processes together, MiB (default 4096)")
        p.add_argument("--workers", type=_positive(int, "--workers"), default=None, help="processes per submission (default: 2 on 2+ cores)")
        p.add_argument("--isolation", choices=("auto", *LEVELS), default="auto",
                       help="confinement of submissions: exactly this level, or refuse (default auto: the strongest "
                            "available; see SECURITY.md)")
        p.add_argument("--min-isolation", choices=LEVELS, default=None,
                       help="refuse to grade (exit 2) if the strongest level available is weaker than this")

    g = sub.add_parser("grade", help="grade one submission")
    g.add_argument("path", help=f"a .py file or notebook, or a folder holding one ({SUBMISSION_FILE} first)")
    common(g)
    g.add_argument("--results", help="write Gradescope's results.json here")
    g.add_argument("--junit", help="write JUnit XML here (one testcase per check)")
    g.add_argument("--fail-under", type=_percent, default=None, help="exit 1 if the score is below this percentage")
    g.add_argument("--quiet", action="store_true", help="no terminal report")

    b = sub.add_parser("batch", help="grade a class: per-student results, gradebook.csv, report.html")
    b.add_argument("folder", help="one folder per student (holding batchnorm.py) or .py files")
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument("--jobs", type=_positive(int, "--jobs"), default=None, help="submissions graded at once (default: cores)")
    b.add_argument("--force", action="store_true", help="regrade everyone, even if unchanged")
    b.add_argument("--shard", metavar="K/N", default=None,
                   help="grade only shard K of N (students split by a hash of their id); default: the job "
                        "array's own variables (SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX with --shards, "
                        "CI_NODE_INDEX), else the whole class")
    b.add_argument("--shards", metavar="N", type=_positive(int, "--shards"), default=None,
                   help="the number of shards, where the engine gives only this run's index (JOB_COMPLETION_INDEX)")
    common(b)

    m = sub.add_parser("merge", help="merge the output folders of a sharded batch into one gradebook and report")
    m.add_argument("folders", nargs="+", help="every shard's --out folder")
    m.add_argument("--out", required=True, help="the class folder to write (replaced whole once the merge is checked)")

    h = sub.add_parser("handout", help="build the student kit: stub, instructions, practice check")
    exercise(h)
    h.add_argument("--out", required=True,
                   help="a folder (the kit's files go in it), or a file ending in .zip (holding one folder, batchnorm-kit/)")

    gs = sub.add_parser("gradescope", help="build autograder.zip for Gradescope")
    exercise(gs)
    gs.add_argument("--secret-file", required=True, help="the hidden suite's secret (goes into the bundle)")
    gs.add_argument("--out", default="autograder.zip", help="the zip to write (default autograder.zip)")

    st = sub.add_parser("selftest", help="check the grader on the reference, the stub and known-wrong submissions")
    exercise(st)
    st.add_argument("--known-wrong", metavar="DIR",
                    help="grade these known-wrong submissions (first line '# pitfall: TAG') instead of the bundled ones")
    st.add_argument("--timeout", type=_positive(float, "--timeout"), default=60.0, help=argparse.SUPPRESS)

    e = sub.add_parser("examples", help="grade every .py in a folder into one table")
    e.add_argument("folder", nargs="?", default="examples")
    common(e)
    return parser


def _level(args: argparse.Namespace) -> str:
    from grader.isolation import IsolationError, choose_level

    try:
        return choose_level(args.isolation, getattr(args, "min_isolation", None))
    except IsolationError as err:
        raise UsageError(str(err)) from err


def _private_paths(args: argparse.Namespace) -> list[Path]:
    """Files a submission must not see: the secret file and where results go."""
    paths = [Path(p) for p in (getattr(args, "secret_file", None),) if p]
    for output in (getattr(args, "results", None), getattr(args, "junit", None)):
        if output:
            paths.append(Path(output).resolve().parent)
    return paths


def kit_exercise() -> str | None:
    """The exercise of the student kit this grader came in (``handout`` writes grader/_kit.py), if any:
    every ``python -m grader`` command typed inside an NNX kit grades NNX without a flag."""
    try:
        from grader import _kit  # type: ignore[attr-defined]  # only in a kit
    except ImportError:
        return None
    return getattr(_kit, "EXERCISE", None)


def _exercise(args: argparse.Namespace) -> str:
    """--exercise, else $GRADER_EXERCISE, else the kit's exercise, else the default exercise."""
    from grader.exercises import DEFAULT, EXERCISES

    name = getattr(args, "exercise", None) or os.environ.get(EXERCISE_ENV, "").strip() or kit_exercise() or DEFAULT
    if name not in EXERCISES:
        raise UsageError(f"unknown exercise {name!r} (from ${EXERCISE_ENV}); choose one of {', '.join(EXERCISES)}")
    return name


def _grade(args: argparse.Namespace) -> int:
    from grader.grade import grade

    secret = read_secret(args.secret_file)
    exercise = _exercise(args)
    try:
        submission = resolve_submission(args.path)
    except NoSubmission as err:
        if args.results:  # Gradescope and CI still get a result that says why
            from grader.report.gradescope import write_results

            write_results(Path(args.results), _nothing_to_grade(secret, str(err), exercise))
        raise
    result = grade(submission, secret, exercise=exercise, timeout=args.timeout, memory_mb=args.memory_mb,
                   workers=args.workers, isolation=_level(args), hide=_private_paths(args))
    if args.results:
        from grader.report.gradescope import write_results

        write_results(Path(args.results), result)
    if args.junit:
        from grader.report.junit import write_junit

        write_junit(Path(args.junit), result)
    if not args.quiet:
        from grader.report.terminal import print_report

        print_report(result)
    if args.fail_under is not None and 100.0 * result.score / result.max_score < args.fail_under:
        return 1
    return 0


def _nothing_to_grade(secret: str | None, reason: str, exercise: str):  # noqa: ANN202 - a GradeResult
    from grader.cases import build_suite
    from grader.exercises import get
    from grader.results import GradeResult

    return GradeResult(submission="", score=0, max_score=get(exercise).max_score, checks=[],
                       suite=build_suite(secret).name, cases=0, shapes=0, isolation="none", seconds=0.0,
                       problem=f"nothing was graded: {reason}", exercise=exercise)


def _examples(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from grader.grade import grade
    from grader.safetext import clean

    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"examples folder {args.folder} does not exist")
    files = sorted(folder.glob("*.py"))
    if not files:
        raise UsageError(f"examples folder {args.folder} holds no .py files")
    secret = read_secret(args.secret_file)
    table = Table(title=f"Examples in {folder}", header_style="bold")
    for column, justify in (("submission", "left"), ("score", "right"), ("diagnosis", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for path in files:
        # The instructor's own examples (links into the project are how the
        # bundled ones are kept): followed here, unlike a student's upload.
        result = grade(path.resolve(), secret, exercise=_exercise(args), timeout=args.timeout, memory_mb=args.memory_mb, workers=args.workers,
                       isolation=_level(args), hide=[folder, *_private_paths(args)])
        table.add_row(Text(clean(path.name)), f"{result.score}/{result.max_score}", Text(clean(result.diagnosis)))
    Console(highlight=False).print(table)
    return 0


def _handout(args: argparse.Namespace) -> int:
    from grader.bundle import KIT_FOLDER, handout_files, write_tree, write_zip

    out = Path(args.out)
    try:
        files = handout_files(_exercise(args))
    except FileNotFoundError as err:
        raise UsageError(f"the handout is built from the full project, and {err.filename} is missing") from err
    if out.suffix == ".zip":
        write_zip(files, out, folder=KIT_FOLDER)
        print(f"wrote the student kit ({len(files)} files, in the folder {KIT_FOLDER}/) to {clean_text(str(out))}")
    else:
        write_tree(files, out)
        print(f"wrote the student kit ({len(files)} files) to {clean_text(str(out))}")
    return 0


def _gradescope(args: argparse.Namespace) -> int:
    from grader.bundle import gradescope_files, write_zip

    secret = read_secret(args.secret_file)
    out = Path(args.out)
    if out.suffix != ".zip":
        raise UsageError(f"--out must name a .zip file, got {args.out}")
    try:
        files = gradescope_files(secret or "", _exercise(args))
    except FileNotFoundError as err:
        raise UsageError(f"the bundle is built from the full project, and {err.filename} is missing") from err
    write_zip(files, out)
    print(f"wrote {clean_text(str(out))}: upload it as the autograder (setup.sh and run_autograder at its root)")
    return 0


def _selftest(args: argparse.Namespace) -> int:
    from grader.selftest import run_selftest

    folder = Path(args.known_wrong) if args.known_wrong else None
    if folder is not None and not folder.is_dir():
        print(f"grader: --known-wrong {clean_text(args.known_wrong)}: not a folder", file=sys.stderr)
        return 2
    return 0 if run_selftest(_exercise(args), folder, timeout=args.timeout) else 1


def _batch(args: argparse.Namespace) -> int:
    from grader.batch import BatchError, Options, default_jobs, discover, run_batch
    from grader.shard import ShardError, resolve_shard

    folder, out = Path(args.folder), Path(args.out)
    secret = read_secret(args.secret_file)
    try:
        shard = resolve_shard(args.shard, args.shards, os.environ)
        roster = discover(folder, shard.owns if shard else None)
    except (BatchError, ShardError) as err:
        raise UsageError(str(err)) from err
    if out.resolve() == folder.resolve() or folder.resolve() in out.resolve().parents:
        raise UsageError("--out must not be inside the submissions folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UsageError(f"cannot write to --out {out}: {err.strerror or err}") from err
    options = Options(secret, args.timeout, args.memory_mb, _level(args),
                      [folder.resolve(), out.resolve(), *_private_paths(args)], _exercise(args))
    if shard is not None:
        print(f"shard {shard.label} (from {shard.source}): {len(roster.students)} of {len(roster.class_ids)} students",
              flush=True)
    reporter = _progress_reporter(len(roster.students))
    try:
        with reporter:
            done = run_batch(folder, out, options, jobs=args.jobs or default_jobs(), force=args.force,
                             progress=reporter.update, shard=shard, roster=roster,
                             warn=lambda text: print(f"grader: warning: {clean_text(text)}", file=sys.stderr))
    except KeyboardInterrupt:
        print("\ninterrupted: finished students are saved; run the same command again to grade the rest",
              file=sys.stderr)
        return 130
    mean = sum(d["score"] for d in done.values()) / max(1, len(done))
    print(clean_text(f"graded {len(done)} submissions (mean {mean:.1f}); wrote {out / 'gradebook.csv'} and "
                     f"{out / 'report.html'}"))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from grader.shard import ShardError, merge

    out = Path(args.out)
    try:
        graded = merge([Path(f) for f in args.folders], out)
    except ShardError as err:
        raise UsageError(f"nothing merged: {err}") from err
    except OSError as err:
        raise UsageError(f"nothing merged: cannot write {args.out}: {err.strerror or err}") from err
    print(clean_text(f"merged {len(args.folders)} shards ({len(graded)} students); wrote {out / 'gradebook.csv'} "
                     f"and {out / 'report.html'}"))
    return 0


def clean_text(text: str) -> str:
    from grader.safetext import clean

    return clean(text)


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


class _PlainProgress:
    def __init__(self, total: int):
        self.total, self.count = total, 0

    def __enter__(self) -> _PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, student_id: str, data: dict, reused: bool) -> None:
        self.count += 1
        tags = ", ".join(data.get("extra_data", {}).get("tags", []))
        note = " (unchanged, kept)" if reused else ""
        print(f"[{self.count}/{self.total}] {clean_text(student_id)}: {data['score']:g}/{data['max_score']:g}"
              f"{' ' + tags if tags else ''}{note}", flush=True)


class _RichProgress(_PlainProgress):
    def __init__(self, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        super().__init__(total)
        self.progress = Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.description}"))
        self.task = self.progress.add_task("", total=total)

    def __enter__(self) -> _RichProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def update(self, student_id: str, data: dict, reused: bool) -> None:
        self.progress.update(self.task, advance=1, description=f"{escape(clean_text(student_id))}: {data['score']:g}")


def _progress_reporter(total: int) -> _PlainProgress:
    return _RichProgress(total) if sys.stdout.isatty() else _PlainProgress(total)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "grade":
            return _grade(args)
        if args.command == "batch":
            return _batch(args)
        if args.command == "merge":
            return _merge(args)
        if args.command == "handout":
            return _handout(args)
        if args.command == "gradescope":
            return _gradescope(args)
        if args.command == "selftest":
            return _selftest(args)
        return _examples(args)
    except UsageError as err:
        _error(str(err))


def entry() -> None:
    sys.exit(main())
