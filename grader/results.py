"""The record of one graded submission, shared by every report format."""

from __future__ import annotations

import dataclasses

from grader.checks import CheckResult

GATE = "module_runs"  # the first check of every exercise: does MyBatchNorm run at all?
REASON_CHARS = 300  # a reason is one line in a table


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
    def never_ran(self) -> bool:
        """The module never ran (its gate check, the first one, failed): nothing was graded."""
        return bool(self.checks) and self.checks[0].id == GATE and self.checks[0].status == "failed"

    @property
    def reason(self) -> str:
        """One line saying why nothing was graded normally, or "" when everything was:
        the problem with the upload, else why the module never ran."""
        if self.problem:
            return self.problem
        if self.never_ran:
            what = " ".join((self.checks[0].observed or "no result came back").split())
            return f"MyBatchNorm never ran: {what}"[:REASON_CHARS]
        return ""

    @property
    def status(self) -> str:
        """The gradebook's word: "error" (the upload could not be graded), "not graded" (it
        loaded, but the module never ran), else "complete" or "partial" (never for nothing run)."""
        if self.problem:
            return "error"
        if self.never_ran:
            return "not graded"
        return "complete" if self.score == self.max_score else "partial"
