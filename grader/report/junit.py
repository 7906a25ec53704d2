"""JUnit XML for CI: one testcase per check, agreeing with results.json.

Every text and attribute value goes through :func:`~grader.safetext.clean`, so
the file is valid XML 1.0 whatever bytes the submission printed (ElementTree
writes control characters verbatim, and XML parsers then refuse the file).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from grader.report.gradescope import write_atomically
from grader.report.text import check_message
from grader.results import GradeResult
from grader.safetext import clean

OUTPUT_CHARS = 8000


def _element(parent: ET.Element, tag: str, attributes: dict[str, str], text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag, {name: clean(value) for name, value in attributes.items()})
    if text is not None:
        element.text = clean(text)
    return element


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
        _element(props, "property", {"name": name, "value": str(value)})
    for check in result.checks:
        case = _element(suite, "testcase", {
            "classname": f"bn-grader.{check.id}",
            "name": f"{check.name} [{check.score}/{check.weight}]",
            "time": "0",
        })
        message = check_message(check)
        if check.status == "failed":
            first = clean(check.observed or check.expected)[:200]
            _element(case, "failure", {"message": first, "type": ",".join(check.tags) or "failed"}, message)
        elif check.status == "skipped":
            _element(case, "skipped", {"message": clean(check.observed)[:200]})
        elif message:
            _element(case, "system-out", {}, message)
    if result.stdout or result.stderr:
        _element(suite, "system-out", {}, clean(result.stdout)[-OUTPUT_CHARS:])
        _element(suite, "system-err", {}, clean(result.stderr)[-OUTPUT_CHARS:])
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def write_junit(path: Path, result: GradeResult) -> None:
    write_atomically(path, junit_xml(result))
