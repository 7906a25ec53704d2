"""JUnit XML for CI: one testcase per check, agreeing with results.json."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from grader.report.gradescope import write_atomically
from grader.report.text import check_message
from grader.results import GradeResult


def junit_xml(result: GradeResult) -> str:
    failures = sum(1 for c in result.checks if c.status == "failed")
    skipped = sum(1 for c in result.checks if c.status == "skipped")
    suite = ET.Element("testsuite", {
        "name": "bn-grader",
        "tests": str(len(result.checks)),
        "failures": str(failures),
        "errors": "0",
        "skipped": str(skipped),
        "time": f"{result.seconds:.3f}",
    })
    props = ET.SubElement(suite, "properties")
    for name, value in (("score", result.score), ("max_score", result.max_score), ("suite", result.suite),
                        ("isolation", result.isolation), ("tags", ",".join(result.tags))):
        ET.SubElement(props, "property", {"name": name, "value": str(value)})
    for check in result.checks:
        case = ET.SubElement(suite, "testcase", {
            "classname": f"bn-grader.{check.id}",
            "name": f"{check.name} [{check.score}/{check.weight}]",
            "time": "0",
        })
        message = check_message(check)
        if check.status == "failed":
            first = (check.observed or check.expected)[:200]
            failure = ET.SubElement(case, "failure", {"message": first, "type": ",".join(check.tags) or "failed"})
            failure.text = message
        elif check.status == "skipped":
            ET.SubElement(case, "skipped", {"message": check.observed[:200]})
        elif message:
            ET.SubElement(case, "system-out").text = message
    if result.stdout or result.stderr:
        ET.SubElement(suite, "system-out").text = result.stdout[-8000:]
        ET.SubElement(suite, "system-err").text = result.stderr[-8000:]
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def write_junit(path: Path, result: GradeResult) -> None:
    write_atomically(path, junit_xml(result))
