"""JUnit XML for CI: one testcase per check, agreeing with results.json.

The file is valid against the strict Ant JUnit schema (windyroad's JUnit.xsd)
and Jenkins' one, whatever the submission printed or raised:

- Every text and attribute value goes through :func:`~grader.safetext.clean`
  (terminal escapes removed, XML-illegal characters and U+FFFD spelled as
  visible escapes such as ``\\x00`` and ``\\ufffd``: xunit-viewer stops at a file
  holding U+FFFD), and a last filter keeps only XML 1.0 characters, so the file
  always parses (ElementTree writes control characters verbatim, and XML
  parsers then refuse the file).
- A suite is named by whom it grades: ``grade --junit`` by the file as
  uploaded (or its folder, for a ``batchnorm.py``), ``batch``'s class file
  (``OUT/junit.xml``, a ``testsuites``) by each student's id; classnames are
  ``<suite>.<check id>``, so that merged files keep every student apart.
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

from typing import Any

from grader.report.gradescope import results_json, write_atomically
from grader.results import GradeResult
from grader.safetext import clean, visible_escape

SUITE_NAME = "bn-grader"  # a suite's name when there is nothing better
SUBMISSION_FILE = "batchnorm.py"
OUTPUT_CHARS = 8000
MESSAGE_CHARS = 200
# What XML 1.0 allows (Char production); anything else becomes its escape. clean()
# already guarantees it: this is the last line, should clean() ever change.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SPACES = re.compile(r"\s+")


def xml_text(text: str) -> str:
    """``text`` as it may appear in an XML 1.0 document and in common viewers: no escape sequences,
    and every character XML or a viewer refuses (U+FFFD too) spelled as a visible escape (``\\x1b``)."""
    return _NOT_XML_CHAR.sub(lambda m: visible_escape(m.group()), clean(text, visible=True))


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


def suite_name(submission: str) -> str:
    """What a single grading's suite is called: the file as uploaded ("dave_broken.py"), or the
    folder holding it when the file has the exercise's own name ("dave" for dave/batchnorm.py)."""
    path = Path(submission)
    if path.name == SUBMISSION_FILE and path.parent.name not in ("", "."):
        return path.parent.name
    return path.name or SUITE_NAME


def _classname(suite: str, check_id: str) -> str:
    """``<suite>.<check>``: each student's testcases apart when files are merged; the suite's own
    dots become ``_`` so that viewers do not split a file name into packages."""
    return f"{xml_token(suite).replace('.', '_') or SUITE_NAME}.{check_id}"


def junit_xml(result: GradeResult, *, timestamp: datetime | None = None, hostname: str | None = None,
              name: str | None = None) -> str:
    """The JUnit report of ``result``, one ``testsuite`` named ``name`` (default: by the file graded).

    ``timestamp`` is when grading started (default: now minus the grading
    time), ``hostname`` the machine (default: this one); both are parameters
    so that a test can fix them.
    """
    suite = _suite(name or suite_name(result.submission), results_json(result), result.stdout, result.stderr,
                   _started(timestamp, result.seconds), hostname)
    ET.indent(suite)
    return _XML_DECLARATION + ET.tostring(suite, encoding="unicode") + "\n"


def class_junit(graded: dict[str, dict[str, Any]], *, timestamp: datetime | None = None,
                hostname: str | None = None) -> str:
    """One JUnit file for a class: ``testsuites`` holding one ``testsuite`` per student, named by
    the student's id (``package`` too, and ``id`` its position, as the strict schema asks for an
    aggregate), the score in its properties, built from each student's results.json data."""
    root = ET.Element("testsuites")
    started = _started(timestamp, 0.0)
    for index, student in enumerate(sorted(graded)):
        data = graded[student]
        suite = _suite(student, data, None, "", started, hostname, who="student")
        suite.set("package", xml_token(student) or SUITE_NAME)
        suite.set("id", str(index))
        root.append(suite)
    ET.indent(root)
    return _XML_DECLARATION + ET.tostring(root, encoding="unicode") + "\n"


_XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>\n'


def _started(timestamp: datetime | None, seconds: float) -> datetime:
    started = timestamp or datetime.now(timezone.utc) - timedelta(seconds=seconds)
    return started.astimezone(timezone.utc) if started.tzinfo is not None else started


def _suite(name: str, data: dict[str, Any], stdout: str | None, stderr: str, started: datetime,
           hostname: str | None, who: str = "submission") -> ET.Element:
    """One ``testsuite`` from a results.json record. ``stdout``: what the code printed, or None
    to quote the record's own output (which holds it) in ``system-out``; ``who``: the property
    naming it ("student" in a class file)."""
    extra = data.get("extra_data", {})
    problem = xml_text(extra.get("problem", ""))
    score, max_score = f"{data['score']:g}", f"{data['max_score']:g}"
    checks = extra.get("checks") or [{} for _ in data["tests"]]
    failures = errors = skipped = 0
    suite = ET.Element("testsuite")
    props = ET.SubElement(suite, "properties")
    for key, value in (("student", name), ("score", score), ("max_score", max_score),
                       ("status", extra.get("status", "")), ("suite", extra.get("suite", "")),
                       ("isolation", extra.get("isolation", "")), ("tags", ",".join(extra.get("tags", []))),
                       ("problem", extra.get("problem", "")), ("reason", extra.get("reason", ""))):
        _element(props, "property", {"name": who if key == "student" else key, "value": str(value)})
    summary: list[str] = [f"Score: {score}/{max_score} on the {extra.get('suite', '?')} suite."]
    if problem:
        summary.append(f"The submission could not be graded normally: {problem}.")
    summary += list(extra.get("notes", []))  # how the upload was read (a notebook's cells, say)
    for test, check in zip(data["tests"], checks):
        check_id = check.get("id") or xml_token(test["name"]) or "check"
        status = check.get("status") or test["status"]
        points = f"{test['score']:g}/{test['max_score']:g}"
        _element(props, "property", {"name": f"check.{check_id}", "value": f"{points} {status}"})
        case = _element(suite, "testcase", {"name": xml_token(test["name"]) or check_id,
                                            "classname": _classname(name, check_id), "time": "0"})
        message = test["output"]
        detail = f"{message}\nScore: {points}" if message else f"Score: {points}"
        kind = "error" if status == "skipped" and problem else status
        summary.append(f"[{kind} {points}] {xml_token(test['name'])}")
        if message and status == "passed":  # notes; failures and skips carry their own text
            summary += [f"    {line}" for line in message.split("\n")]
        if status == "failed":
            failures += 1
            _element(case, "failure", {"message": _first_line(check.get("summary") or message),
                                       "type": ",".join(test["tags"]) or "failed"}, detail)
        elif status == "skipped" and problem:
            errors += 1
            _element(case, "error", {"message": _first_line(problem), "type": "not_graded"}, detail)
        elif status == "skipped":
            skipped += 1
            _element(case, "skipped", {}, detail)
    nothing = bool(problem) and not data["tests"]
    if nothing:
        # Nothing was graded at all (the grader itself failed): one red testcase says why.
        errors += 1
        case = _element(suite, "testcase", {"name": "Submission is graded", "classname": _classname(name, "submission"),
                                            "time": "0"})
        _element(case, "error", {"message": _first_line(problem), "type": "not_graded"}, problem)
    out = "\n".join(summary)
    if stdout is None:
        out += f"\n\nFeedback:\n{data.get('output', '')}"
    else:
        printed = xml_text(stdout)[-OUTPUT_CHARS:]
        if printed.strip():
            # Indented, as in the terminal report: a "Score: 100/100" it prints is not taken for the real one.
            indented = "\n".join(f"    {line}" for line in printed.split("\n"))
            out += f"\n\nYour code printed (last {OUTPUT_CHARS} characters at most):\n{indented}"
    _element(suite, "system-out", {}, out)
    _element(suite, "system-err", {}, xml_text(stderr)[-OUTPUT_CHARS:])
    for key, value in (("name", xml_token(name) or SUITE_NAME), ("timestamp", started.strftime("%Y-%m-%dT%H:%M:%S")),
                       ("hostname", xml_token(hostname or "") or _hostname()),
                       ("tests", str(len(data["tests"]) + nothing)), ("failures", str(failures)),
                       ("errors", str(errors)), ("skipped", str(skipped)),
                       ("time", f"{max(float(data.get('execution_time', 0.0)), 0.0):.3f}")):
        suite.set(key, value)
    return suite


def write_junit(path: Path, result: GradeResult) -> None:
    write_atomically(path, junit_xml(result))


def write_class_junit(out: Path, graded: dict[str, dict[str, Any]]) -> None:
    """``out/junit.xml``: the class in one file, each student a suite of their own."""
    write_atomically(out / "junit.xml", class_junit(graded))
