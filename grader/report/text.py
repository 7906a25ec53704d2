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
        lines.append(_untagged_hint(check.observed, check.expected))
    lines += list(check.notes)
    return clean("\n".join(lines))


# Exceptions whose cause is known, whatever the check: (words in the message, hint).
ERROR_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("tracerboolconversionerror", "concretizationtypeerror", "tracerintegerconversionerror"),
     "Hint: a Python `if` (or bool(), int(), float()) on a value JAX is tracing: inside jax.jit or nnx.jit "
     "arrays are placeholders with no value yet. Decide the mode "
     "outside the traced function (call model.eval() or model.train(), or convert the flag with bool(...), "
     "before the jitted call), and use jnp.where for choices that depend on values."),
    (("arrays are immutable", "does not support item assignment", "object does not support item assignment"),
     "Hint: your code assigns into a JAX array in place (`array[...] = new`); JAX arrays cannot change. "
     "Write through the variable instead: `self.running_mean[...] = new` in NNX (not "
     "`self.running_mean.value[...] = new`: `.value` is the array itself), `running_mean.value = new` in "
     "Linen."),
    (("cannot broadcast to shape with fewer dimensions", "incompatible shapes for broadcasting",
      "shapes must be equal", "cannot broadcast"),
     "Hint: a value of one shape meets a variable or array of another: for example batch statistics taken "
     "with keepdims=True, shape (1, D), written into a (D,) running statistic. Print the shapes of both "
     "sides of the line named above."),
    (("has dtype",),
     "Hint: the contract's outputs and variables are float32, like x: create them with the input's dtype "
     "(or jnp.float32), not bfloat16/float16/int."),
)


def _untagged_hint(observed: str, expected: str = "") -> str:
    """A hint that fits what went wrong: a known exception, a shape, an exception,
    or a value."""
    text = observed.lower()
    for words, hint in ERROR_HINTS:
        if any(w in text for w in words):
            return hint
    if "raised" in text or "error:" in text or "exception" in text:
        return ("Hint: your code raised this exception on these inputs: open your file at the line named above "
                "(the practice suite, without a secret, shows the same kinds of inputs).")
    if "shape" in text or "is missing" in text or "cases" in text:
        return ("Hint: this is about shapes and names, not the formula: print the shapes of what your code "
                "returns (the output, each variable) on a small (N, D) input and compare them with the "
                "expectation above.")
    said = "the formula above" if any(c in expected for c in "=*/") else "the expectation above"
    return (f"Hint: compare what your code computes with {said}, step by step, on a small (N, D) "
            "input (the practice suite, without a secret, shows the same kinds of inputs).")
