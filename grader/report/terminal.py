"""The report a person reads in a terminal (rich; plain text when not a tty)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from grader.report.text import check_message
from grader.results import GradeResult

_MARK = {"passed": "[green]PASS[/]", "failed": "[red]FAIL[/]", "skipped": "[yellow]SKIP[/]"}


def print_report(result: GradeResult, console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    console.print(f"[bold]{escape(result.submission)}[/]  "
                  f"{result.suite} suite: {result.cases} cases over {result.shapes} shapes")
    if result.suite == "practice":
        console.print("[dim]Practice suite (no GRADER_SECRET / --secret-file): the hidden suite "
                      "uses other inputs of the same kinds.[/]")
    if result.problem:
        console.print(f"[red]{escape(result.problem)}[/]")
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("")
    table.add_column("check")
    table.add_column("points", justify="right")
    table.add_column("mistake")
    for c in result.checks:
        points = "advice" if c.advisory else f"{c.score}/{c.weight}"
        table.add_row(_MARK[c.status] if not c.advisory else "[blue]NOTE[/]", escape(c.name), points,
                      escape(", ".join(c.tags)))
    console.print(table)
    for c in result.checks:
        message = check_message(c)
        if c.status == "passed" and not message:
            continue
        if c.status == "skipped" and c.observed.startswith("the submission could not be loaded"):
            continue
        console.print(f"\n[bold]{escape(c.name)}[/]")
        console.print(escape(message))
    if result.stdout.strip() or result.stderr.strip():
        console.print("\n[bold]Your code's output[/] (truncated):")
        console.print(escape((result.stdout + result.stderr)[-2000:]), style="dim")
    console.print(f"\n[bold]Score: {result.score}/{result.max_score}[/]  [dim]({result.seconds:.2f} s)[/]")
