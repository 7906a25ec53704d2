"""The record of one graded submission, shared by every report format."""

from __future__ import annotations

import dataclasses

from grader.checks import CheckResult


@dataclasses.dataclass
class GradeResult:
    submission: str
    score: int
    max_score: int
    checks: list[CheckResult]
    suite: str  # "hidden" or "practice"
    cases: int  # cases in the suite
    shapes: int
    isolation: str
    seconds: float
    stdout: str = ""
    stderr: str = ""
    problem: str = ""  # one line when the submission as a whole could not be graded normally
    output_only_pass: bool = False  # would an output-only comparison have given full marks?
    peak_rss_mb: float = 0.0  # the submission's processes together, as sampled
    cases_compared: int = 0  # cases whose every output came back and was compared
    notes: list[str] = dataclasses.field(default_factory=list)  # how the submission was read (a notebook, say)
    exercise: str = "batchnorm_linen"  # grader.exercises: whose checks and words

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t for c in self.checks for t in c.tags))

    @property
    def diagnosis(self) -> str:
        """One line for tables: the mistakes named, else why the score is low."""
        if self.tags:
            return ", ".join(self.tags)
        if self.problem:
            return self.problem
        for check in self.checks:
            if check.status == "failed" and check.observed:
                return check.observed[:120]
        return "-"

    @property
    def status(self) -> str:
        if self.problem:
            return "error"
        return "complete" if self.score == self.max_score else "partial"
