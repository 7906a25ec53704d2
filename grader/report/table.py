"""The gradebook: one CSV row per student, for a spreadsheet or an LMS import.

Text cells (the student id comes from a file or folder name a student chose)
go through :func:`~grader.safetext.csv_cell`: no control characters, and no
cell that a spreadsheet would run as a formula.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from grader.safetext import csv_cell

# suite: "hidden", or "practice" when the batch ran without a secret (scores not final);
# status: "complete", "partial", "not graded" (the module never ran) or "error" (the upload
# could not be graded); reason: why a submission was not graded normally (nothing to grade,
# an import error, the exception the module raised), empty otherwise.
COLUMNS = ("student_id", "score", "max_score", "status", "pitfalls", "suite", "reason")


def reason(extra: dict[str, Any]) -> str:
    """Why a result is not graded normally ("" if it is); results written before the
    grader had ``reason`` carry only ``problem``."""
    return extra.get("reason", extra.get("problem", "")) or ""


def gradebook_csv(graded: dict[str, dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for student_id in sorted(graded):
        data = graded[student_id]
        extra = data.get("extra_data", {})
        writer.writerow([
            csv_cell(student_id),
            f"{data['score']:g}",
            f"{data['max_score']:g}",
            csv_cell(extra.get("status", "")),
            csv_cell(";".join(extra.get("tags", []))),
            csv_cell(extra.get("suite", "")),
            csv_cell(reason(extra)),
        ])
    return buffer.getvalue()
