"""Per-check messages as plain text: what was expected, what happened, a hint."""

from __future__ import annotations

from grader.checks import CheckResult
from collections.abc import Mapping

from grader.pitfalls import PITFALLS, Pitfall
from grader.safetext import clean


def check_message(check: CheckResult, pitfalls: Mapping[str, Pitfall] = PITFALLS) -> str:
    """The feedback of one check, for a student (never holds hidden values).

    Observed texts and notes may quote the submission (its exception messages,
    say), so the message is passed through :func:`~grader.safetext.clean`.
    """
    lines: list[str] = []
    if check.status == "passed":
        lines += list(check.notes)
        return clean("\n".join(lines))
    if check.status == "skipped":
        return clean(check.observed[:1].upper() + check.observed[1:] + ".")
    lines.append(f"Expected: {check.expected}.")
    if check.observed:
        lines.append(f"Observed: {check.observed}.")
    for tag in check.tags:
        pitfall = pitfalls[tag]
        lines.append(f"Likely mistake [{tag}]: {pitfall.title}. {pitfall.why}")
        lines.append(f"Hint: {pitfall.hint}")
    if not check.tags:
        lines.append(_untagged_hint(check.observed))
    lines += list(check.notes)
    return clean("\n".join(lines))


def _untagged_hint(observed: str) -> str:
    """A hint that fits what went wrong: a shape, an exception, or a value."""
    text = observed.lower()
    if "shape" in text or "is missing" in text or "cases" in text:
        return ("Hint: this is about shapes and names, not the formula: print the shapes of what your code "
                "returns (the output, each variable) on a small (N, D) input and compare them with the "
                "expectation above.")
    if "raised" in text or "error:" in text or "exception" in text:
        return ("Hint: your code raised an exception on these inputs: run the practice suite (no secret) "
                "locally, which shows the same kinds of inputs, and read the line it names.")
    return ("Hint: compare your code with the formula above; the practice suite (no secret) shows the same "
            "kinds of inputs.")
