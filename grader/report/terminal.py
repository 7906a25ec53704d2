"""The report a person reads in a terminal (rich; plain text when not a tty).

Everything that comes from the submission (its file name, output, the texts
of checks that quote it) is passed through :func:`~grader.safetext.clean` and
printed as a :class:`rich.text.Text`, never as markup: no escape sequence,
carriage return, rich markup or emoji code of a submission reaches the
terminal.  The problem line and the check messages (both may quote the
submission's exceptions) and the submission's output are indented, wrapped
lines too, so that no line they hold can pass for one of the grader's own,
such as the score.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from grader.exercises import get as get_exercise
from grader.report.text import check_message
from grader.results import GradeResult
from grader.safetext import clean

_MARK = {"passed": "[green]PASS[/]", "failed": "[red]FAIL[/]", "skipped": "[yellow]SKIP[/]"}
OUTPUT_CHARS = 2000
MESSAGE_INDENT = 2
OUTPUT_INDENT = 4


def _text(value: str, style: str = "") -> Text:
    return Text(clean(value), style=style)


def _print_indented(console: Console, value: str, indent: int, style: str = "") -> None:
    """``value`` cleaned, wrapped to the console and indented, every wrapped line too."""
    lines = _text(value, style).wrap(console, max(console.width - indent, 20))
    for line in lines:
        line.rstrip()
    console.print(Text("\n").join(Text.assemble(" " * indent, line) if line else line for line in lines),
                  soft_wrap=True)


def print_report(result: GradeResult, console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    name = " ".join(clean(result.submission).split("\n"))
    console.print(Text.assemble(Text(name, style="bold"), "  ",
                                f"{result.suite} suite: {result.cases} cases over {result.shapes} shapes"))
    if result.suite == "practice":
        console.print("[dim]Practice suite (no GRADER_SECRET / --secret-file): the hidden suite "
                      "uses other inputs of the same kinds.[/]")
    for note in result.notes:
        _print_indented(console, note, MESSAGE_INDENT, "dim")
    if result.reason:
        _print_indented(console, result.reason, MESSAGE_INDENT, "red")
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("")
    table.add_column("check")
    table.add_column("points", justify="right")
    table.add_column("mistake")
    for c in result.checks:
        points = "advice" if c.advisory else f"{c.score}/{c.weight}"
        table.add_row(_MARK[c.status] if not c.advisory else "[blue]NOTE[/]", _text(c.name), points,
                      _text(", ".join(c.tags)))
    console.print(table)
    for c in result.checks:
        message = check_message(c, get_exercise(result.exercise).pitfalls)
        if c.status == "passed" and not message:
            continue
        if c.status == "skipped" and "the submission could not be loaded" in c.observed:
            continue
        console.print()
        console.print(_text(c.name, "bold"))
        _print_indented(console, message, MESSAGE_INDENT)
    printed = clean(result.stdout + result.stderr)
    if printed.strip():
        console.print("\n[bold]Your code's output[/] (truncated, indented):")
        _print_indented(console, printed[-OUTPUT_CHARS:], OUTPUT_INDENT, "dim")
    console.print(f"\n[bold]Score: {result.score}/{result.max_score}[/]  [dim]({result.seconds:.2f} s)[/]")
