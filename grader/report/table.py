"""The gradebook: one CSV row per student, for a spreadsheet or an LMS import."""

from __future__ import annotations

import csv
import io
from typing import Any

COLUMNS = ("student_id", "score", "max_score", "status", "pitfalls")


def gradebook_csv(graded: dict[str, dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for student_id in sorted(graded):
        data = graded[student_id]
        extra = data.get("extra_data", {})
        writer.writerow([
            student_id,
            f"{data['score']:g}",
            f"{data['max_score']:g}",
            extra.get("status", ""),
            ";".join(extra.get("tags", [])),
        ])
    return buffer.getvalue()
