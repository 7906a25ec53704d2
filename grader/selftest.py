"""``python -m grader selftest``: does the grader still hold on this machine?

Grades an exercise's reference (must score 100 with no pitfall), its untouched
stub (must score 0) and every known-wrong submission (each must lose points under
the pitfall its first line declares, '# pitfall: TAG', and no other). Run it after
editing the exercise or upgrading Flax or JAX; ``--known-wrong DIR`` checks a
course's own collection of wrong submissions instead of the bundled one.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from grader.safetext import clean


SELFTEST_SECRET = "selftest"


def _declared(path: Path) -> str | None:
    """'TAG' or 'TAG, TAG' from a first line '# pitfall: ...', else None."""
    try:
        first = path.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    if not first.startswith("# pitfall: "):
        return None
    return ", ".join(sorted(t.strip() for t in first.removeprefix("# pitfall: ").split(",")))


def known_wrong(exercise: str, folders: tuple[Path, ...] | None = None) -> list[tuple[Path, str]]:
    """The known-wrong files of ``folders`` (default: the exercise's own), first folder with any."""
    from grader.exercises import get

    for folder in folders or get(exercise).known_wrong:
        found = [(p, tag) for p in sorted(folder.glob("*.py")) if (tag := _declared(p))]
        if found:
            return found
    return []


def _grade(job: tuple[Path, float, str]) -> tuple[int, int, tuple[str, ...]]:
    from grader.grade import grade

    path, timeout, exercise = job
    result = grade(path, SELFTEST_SECRET, timeout=timeout, workers=1, exercise=exercise)
    return result.score, result.max_score, result.tags


def run_selftest(exercise: str, known_wrong_dir: Path | None = None, timeout: float = 60.0, jobs: int = 2) -> bool:
    """Print the table; True when every row holds."""
    from grader.exercises import get
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    console = Console(highlight=False)
    chosen = get(exercise)
    table = Table(title=f"grader self-test: {chosen.name}", header_style="bold")
    for column in ("submission", "expected", "got", "verdict"):
        table.add_column(column)
    ok_all = True
    plan: list[tuple[Path, str]] = [(chosen.reference, "100, no pitfall"), (chosen.stub, "0")]
    wrong = known_wrong(chosen.name, (known_wrong_dir,) if known_wrong_dir else None)
    if known_wrong_dir and not wrong:
        console.print(Text(f"{clean(str(known_wrong_dir))} holds no .py file whose first line is '# pitfall: TAG'.",
                           style="red"))
        return False
    plan += wrong
    plan = [(p, e) for p, e in plan if p.is_file()]
    # One submission per process at a time: each grading process is one session.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        outcomes = list(pool.map(_grade, [(p, timeout, chosen.name) for p, _ in plan]))
    for (path, expectation), (score, max_score, tags) in zip(plan, outcomes):
        got = f"{score}, {', '.join(tags) or 'no pitfall'}"
        if expectation == "100, no pitfall":
            ok = score == max_score and not tags
        elif expectation == "0":
            ok = score == 0
        else:
            ok = score < max_score and ", ".join(sorted(tags)) == expectation
        ok_all &= ok
        table.add_row(Text(clean(f"{path.parent.name}/{path.name}")), Text(clean(expectation)), Text(clean(got)),
                      "[green]ok[/]" if ok else "[red]BROKEN[/]")
    console.print(table)
    console.print("[green]The grader holds.[/]" if ok_all else "[red]The grader no longer holds: see BROKEN rows.[/]")
    return ok_all
