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
SUBMISSION_FILE = "batchnorm.py"


class UsageError(Exception):
    """Bad input from the command line or the environment; exit code 2."""


def _error(message: str, code: int = 2) -> NoReturn:
    print(f"grader: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def resolve_submission(raw: str) -> Path:
    """A .py file, or a folder holding batchnorm.py."""
    path = Path(raw)
    if path.is_dir():
        candidate = path / SUBMISSION_FILE
        if not candidate.is_file():
            raise UsageError(f"folder {raw} has no {SUBMISSION_FILE}")
        return candidate
    if not path.exists():
        raise UsageError(f"submission {raw} does not exist")
    if path.suffix != ".py" or not path.is_file():
        raise UsageError(f"submission {raw} is not a .py file or a folder holding {SUBMISSION_FILE}")
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
    parser = argparse.ArgumentParser(prog="python -m grader", description="Grade the BatchNorm-with-batch_stats exercise.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--secret-file", help=f"file holding the hidden suite's secret (default: ${SECRET_ENV}; none: practice suite)")
        p.add_argument("--timeout", type=_positive(float, "--timeout"), default=60.0, help="seconds per submission (default 60)")
        p.add_argument("--memory-mb", type=_positive(int, "--memory-mb"), default=None, help="memory limit per submission, MiB")
        p.add_argument("--workers", type=_positive(int, "--workers"), default=None, help="processes per submission (default: 2 on 2+ cores)")
        p.add_argument("--isolation", choices=("auto", "namespaces", "process"), default="auto",
                       help="confinement of submissions (default auto: the strongest available; see SECURITY.md)")

    g = sub.add_parser("grade", help="grade one submission")
    g.add_argument("path", help=f"a .py file, or a folder holding {SUBMISSION_FILE}")
    common(g)
    g.add_argument("--results", help="write Gradescope's results.json here")
    g.add_argument("--fail-under", type=_percent, default=None, help="exit 1 if the score is below this percentage")
    g.add_argument("--quiet", action="store_true", help="no terminal report")

    e = sub.add_parser("examples", help="grade every .py in a folder into one table")
    e.add_argument("folder", nargs="?", default="examples")
    common(e)
    return parser


def _level(args: argparse.Namespace) -> str:
    from grader.isolation import IsolationError, choose_level

    try:
        return choose_level(args.isolation)
    except IsolationError as err:
        raise UsageError(str(err)) from err


def _private_paths(args: argparse.Namespace) -> list[Path]:
    """Files a submission must not see: the secret file and where results go."""
    paths = [Path(p) for p in (getattr(args, "secret_file", None),) if p]
    results = getattr(args, "results", None)
    if results:
        paths.append(Path(results).resolve().parent)
    return paths


def _grade(args: argparse.Namespace) -> int:
    from grader.grade import grade

    submission = resolve_submission(args.path)
    secret = read_secret(args.secret_file)
    result = grade(submission, secret, timeout=args.timeout, memory_mb=args.memory_mb, workers=args.workers,
                   isolation=_level(args), hide=_private_paths(args))
    if args.results:
        from grader.report.gradescope import write_results

        write_results(Path(args.results), result)
    if not args.quiet:
        from grader.report.terminal import print_report

        print_report(result)
    if args.fail_under is not None and 100.0 * result.score / result.max_score < args.fail_under:
        return 1
    return 0


def _examples(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from grader.grade import grade

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
        result = grade(path, secret, timeout=args.timeout, memory_mb=args.memory_mb, workers=args.workers,
                       isolation=_level(args), hide=[folder, *_private_paths(args)])
        table.add_row(path.name, f"{result.score}/{result.max_score}", result.diagnosis)
    Console(highlight=False).print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "grade":
            return _grade(args)
        return _examples(args)
    except UsageError as err:
        _error(str(err))


def entry() -> None:
    sys.exit(main())
