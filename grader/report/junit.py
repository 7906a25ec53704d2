"""JUnit XML for CI: one testcase per check, agreeing with results.json.

The file is valid against the strict Ant JUnit schema (windyroad's JUnit.xsd)
and Jenkins' one, whatever the submission printed or raised:

- Every text and attribute value goes through :func:`~grader.safetext.clean`
  (terminal escapes removed, XML-illegal characters replaced), and a last
  filter keeps only XML 1.0 characters, so the file always parses (ElementTree
  writes control characters verbatim, and XML parsers then refuse the file).
- ``testsuite`` carries ``name``, ``timestamp`` (UTC, ISO 8601 without a zone,
  as the schema's pattern demands), ``hostname``, ``tests``, ``failures``,
  ``errors``, ``skipped`` and ``time``; its children come in the schema's order:
  ``properties``, the testcases, then ``system-out`` and ``system-err`` (always
  present, possibly empty). No testcase holds ``system-out``.
- Testcase names are the checks' names and never hold the score, so that a
  dashboard keeps each check's history; the score is in the suite's
  properties (``check.<id>``), in each failure's text and in ``system-out``.
- A check that could not be graded because the submission as a whole could
  not be (it does not import, lacks a name, ran out of time or memory) is an
  ``error``: the dashboard goes red, never all-skipped and green. Other
  skipped checks (their dependencies failed) are ``skipped``, with the reason
  as text (Jenkins' schema allows no attribute there).
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path

from grader.report.gradescope import write_atomically
from grader.exercises import get as get_exercise
from grader.report.text import check_message
from grader.results import GradeResult
from grader.safetext import REPLACEMENT, clean

SUITE_NAME = "bn-grader"
OUTPUT_CHARS = 8000
MESSAGE_CHARS = 200
# What XML 1.0 allows (Char production); anything else becomes U+FFFD. clean()
# already guarantees it: this is the last line, should clean() ever change.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SPACES = re.compile(r"\s+")


def xml_text(text: str) -> str:
    """``text`` as it may appear in an XML 1.0 document: no escape sequences, only legal characters."""
    return _NOT_XML_CHAR.sub(REPLACEMENT, clean(text))


def xml_token(text: str) -> str:
    """``text`` for an ``xs:token`` attribute: :func:`xml_text`, whitespace collapsed to single spaces."""
    return _SPACES.sub(" ", xml_text(text)).strip()


def _element(parent: ET.Element, tag: str, attributes: dict[str, str], text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag, {name: xml_text(value) for name, value in attributes.items()})
    if text is not None:
        element.text = xml_text(text)
    return element


def _first_line(text: str) -> str:
    line = xml_text(text).strip().split("\n", 1)[0]
    return line[:MESSAGE_CHARS]


def _hostname() -> str:
    try:
        name = socket.gethostname()
    except OSError:
        name = ""
    return xml_token(name) or "localhost"


def junit_xml(result: GradeResult, *, timestamp: datetime | None = None, hostname: str | None = None) -> str:
    """The JUnit report of ``result``.

    ``timestamp`` is when grading started (default: now minus the grading
    time), ``hostname`` the machine (default: this one); both are parameters
    so that a test can fix them.
    """
    started = timestamp or datetime.now(timezone.utc) - timedelta(seconds=result.seconds)
    if started.tzinfo is not None:
        started = started.astimezone(timezone.utc)
    problem = xml_text(result.problem)

    failures = errors = skipped = 0
    suite = ET.Element("testsuite")
    props = ET.SubElement(suite, "properties")
    for name, value in (("score", result.score), ("max_score", result.max_score), ("suite", result.suite),
                        ("isolation", result.isolation), ("tags", ",".join(result.tags)),
                        ("problem", result.problem)):
        _element(props, "property", {"name": name, "value": str(value)})
    summary: list[str] = [f"Score: {result.score}/{result.max_score} on the {result.suite} suite."]
    if problem:
        summary.append(f"The submission could not be graded normally: {problem}.")
    summary += list(result.notes)  # how the upload was read (a notebook's cells, say)
    for check in result.checks:
        score = f"{check.score}/{check.weight}"
        _element(props, "property", {"name": f"check.{check.id}", "value": f"{score} {check.status}"})
        case = _element(suite, "testcase", {
            "name": xml_token(check.name) or check.id,
            "classname": f"{SUITE_NAME}.{check.id}",
            "time": "0",
        })
        message = check_message(check, get_exercise(result.exercise).pitfalls)
        detail = f"{message}\nScore: {score}" if message else f"Score: {score}"
        kind = "error" if check.status == "skipped" and problem else check.status
        summary.append(f"[{kind} {score}] {xml_token(check.name)}")
        if message and check.status == "passed":  # notes; failures and skips carry their own text
            summary += [f"    {line}" for line in message.split("\n")]
        if check.status == "failed":
            failures += 1
            _element(case, "failure", {"message": _first_line(check.observed or check.expected or message),
                                       "type": ",".join(check.tags) or "failed"}, detail)
        elif check.status == "skipped" and problem:
            errors += 1
            _element(case, "error", {"message": _first_line(problem), "type": "not_graded"}, detail)
        elif check.status == "skipped":
            skipped += 1
            _element(case, "skipped", {}, detail)
    if problem and not result.checks:
        # Nothing was graded at all (the grader itself failed): one red testcase says why.
        errors += 1
        case = _element(suite, "testcase", {"name": "Submission is graded", "classname": f"{SUITE_NAME}.submission",
                                            "time": "0"})
        _element(case, "error", {"message": _first_line(problem), "type": "not_graded"}, problem)
    tests = len(result.checks) + (1 if problem and not result.checks else 0)
    out = "\n".join(summary)
    printed = xml_text(result.stdout)[-OUTPUT_CHARS:]
    if printed.strip():
        # Indented, as in the terminal report: a "Score: 100/100" it prints is not taken for the real one.
        indented = "\n".join(f"    {line}" for line in printed.split("\n"))
        out += f"\n\nYour code printed (last {OUTPUT_CHARS} characters at most):\n{indented}"
    _element(suite, "system-out", {}, out)
    _element(suite, "system-err", {}, xml_text(result.stderr)[-OUTPUT_CHARS:])

    for name, value in (("name", SUITE_NAME), ("timestamp", started.strftime("%Y-%m-%dT%H:%M:%S")),
                        ("hostname", xml_token(hostname or "") or _hostname()),
                        ("tests", str(tests)), ("failures", str(failures)), ("errors", str(errors)),
                        ("skipped", str(skipped)), ("time", f"{max(result.seconds, 0.0):.3f}")):
        suite.set(name, value)
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def write_junit(path: Path, result: GradeResult) -> None:
    write_atomically(path, junit_xml(result))
