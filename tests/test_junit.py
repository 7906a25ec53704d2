"""JUnit XML as strict CI consumers read it.

Whatever a submission prints or raises, the file parses and follows the strict
Ant schema (windyroad's JUnit.xsd, vendored in tests/data with Jenkins' one):
the schema's rules are written out below as assertions, and where a JDK is
installed the file is also validated against both schemas by the JDK's own
validator. A submission that cannot be loaded shows red (errors), and the test
names stay the same whatever the score, so that dashboards keep each check's
history.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grader.checks import CheckResult
from grader.exercises import Exercise
from grader.report.junit import class_junit, junit_xml, xml_text
from grader.results import GradeResult
from grader.safetext import REPLACEMENT
from tests.conftest import ROOT, WRONG_EXAMPLE, exercise_args

DATA = Path(__file__).resolve().parent / "data"
SCHEMAS = (DATA / "JUnit.xsd", DATA / "jenkins-junit.xsd")

# Every C0 control but none of the ones XML allows; ESC sequences for colour, title, clipboard.
CONTROLS = "".join(chr(i) for i in range(32))
NOISE = "\x1b[1;31mred\x1b[0m \x1b]0;title\x07 \x1b]52;c;ZWNobyBoaQ==\x07" + CONTROLS + "\x7f\x9b2J end"
XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$")  # the schema's pattern
DECIMAL = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$")
INT = re.compile(r"^[+-]?[0-9]+$")
SCORE_IN_NAME = re.compile(r"\[\s*\d+\s*/\s*\d+\s*\]")

# Appended to an exercise's reference: a correct module, a broken flow.
NOISY_TAIL = f'''

import sys as _sys
NOISE = {NOISE!r}
print("import", NOISE)
_sys.stderr.write("stderr " + NOISE + "\\n")


def init_and_apply(seed, x, use_running_average):  # a broken flow whose exception carries the noise
    print("call", NOISE)
    raise ValueError("boom " + NOISE)
'''
# Each kind of file that cannot be loaded, and the cause its errors name.
UNLOADABLE = {
    "syntax_error": ("import flax.linen as nn\nclass MyBatchNorm(nn.Module:\n    pass\n", "SyntaxError"),
    "import_error": ("import flax.linen as nn\nimport no_such_module_anywhere\n", "no_such_module_anywhere"),
    "missing_names": (None, "init_and_apply"),  # the exercise's reference without it
}


# --- the schema's rules, written out -------------------------------------------------


def _token(value: str | None) -> bool:
    """A non-empty xs:token after whitespace collapse (the schema's minLength 1)."""
    return value is not None and bool(" ".join(value.split()))


def assert_follows_strict_schema(xml: str) -> ET.Element:
    """The rules of windyroad's JUnit.xsd (and Jenkins' junit-4.xsd) for one ``testsuite`` document."""
    assert not XML_ILLEGAL.search(xml), "a character XML 1.0 does not allow"
    assert "\x1b" not in xml and "\x9b" not in xml, "a terminal escape"
    root = ET.fromstring(xml.encode("utf-8"))  # the whole file parses
    assert root.tag == "testsuite"
    # testsuite: required name, timestamp (no zone), hostname, tests, failures, errors, time; optional skipped.
    assert set(root.attrib) <= {"name", "timestamp", "hostname", "tests", "failures", "errors", "skipped", "time"}
    for required in ("name", "timestamp", "hostname", "tests", "failures", "errors", "time"):
        assert required in root.attrib, f"testsuite without {required}"
    assert _token(root.get("name")) and _token(root.get("hostname"))
    assert TIMESTAMP.match(root.get("timestamp")), root.get("timestamp")
    datetime.strptime(root.get("timestamp"), "%Y-%m-%dT%H:%M:%S")  # a real date and time
    for count in ("tests", "failures", "errors", "skipped"):
        assert count not in root.attrib or INT.match(root.get(count)), (count, root.get(count))
    assert DECIMAL.match(root.get("time"))
    # children, in order: properties (exactly one), testcase*, system-out, system-err (exactly one each)
    tags = [child.tag for child in root]
    assert tags[0] == "properties" and tags[-2:] == ["system-out", "system-err"], tags
    assert set(tags[1:-2]) <= {"testcase"}, tags
    properties = root[0]
    assert len(properties) >= 1, "Jenkins' schema wants at least one property"
    for prop in properties:
        assert prop.tag == "property" and set(prop.attrib) == {"name", "value"} and _token(prop.get("name"))
    for stream in root[-2:]:
        assert not stream.attrib and len(stream) == 0
    cases = root.findall("testcase")
    counts = {"failure": 0, "error": 0, "skipped": 0}
    for case in cases:
        assert set(case.attrib) == {"name", "classname", "time"}, case.attrib
        assert _token(case.get("name")) and _token(case.get("classname")) and DECIMAL.match(case.get("time"))
        assert len(case) <= 1, "one of skipped, error, failure at most (and no system-out in a testcase)"
        for outcome in case:
            assert outcome.tag in counts, outcome.tag
            assert len(outcome) == 0
            counts[outcome.tag] += 1
            if outcome.tag == "skipped":
                assert not outcome.attrib, "Jenkins' schema allows no attribute on skipped"
            else:
                assert set(outcome.attrib) <= {"message", "type"} and "type" in outcome.attrib
    assert int(root.get("tests")) == len(cases)
    assert int(root.get("failures")) == counts["failure"]
    assert int(root.get("errors")) == counts["error"]
    assert int(root.get("skipped", "0")) == counts["skipped"]
    return root


def _everything(root: ET.Element) -> str:
    """Every text, tail and attribute value of the parsed document."""
    return "\n".join(t or "" for e in root.iter() for t in (e.text, e.tail, *e.attrib.values()))


# --- graded end to end ---------------------------------------------------------------


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory, exercise: Exercise) -> dict[str, Path]:
    """JUnit files from the CLI for the exercise, graded side by side on the practice suite: a noisy broken
    flow, its wrong example, each unloadable kind (each with its results.json beside, as name.json)."""
    folder = tmp_path_factory.mktemp("junit")
    reference = exercise.reference.read_text()
    sources = {"noisy": reference + NOISY_TAIL, "wrong": WRONG_EXAMPLE[exercise.name].read_text(),
               **{name: source or reference.split("def init_and_apply")[0] for name, (source, _) in UNLOADABLE.items()}}
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_")}  # the practice suite: quicker
    running = {}
    for name, source in sources.items():
        (folder / name).mkdir()
        (folder / name / "batchnorm.py").write_text(source)
        argv = [sys.executable, "-m", "grader", "grade", str(folder / name / "batchnorm.py"), "--quiet",
                *exercise_args(exercise), "--junit", str(folder / f"{name}.xml"),
                "--results", str(folder / f"{name}.json")]
        running[name] = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)
    for name, proc in running.items():
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{name}: {stderr}"
    return {name: folder / f"{name}.xml" for name in sources}


def test_student_noise_never_breaks_the_file(graded):
    raw = graded["noisy"].read_text(encoding="utf-8")
    root = assert_follows_strict_schema(raw)
    decoded = _everything(root)
    for char in CONTROLS.replace("\t", "").replace("\n", "") + "\x1b\x9b":
        assert char not in decoded, f"{char!r} reached the parsed file"
    # The noise reached the file where it belongs, cleaned: the exception in attributes and text, the prints.
    flow = root.find("testcase[@classname='noisy.flow']/failure")
    assert "boom red" in flow.get("message") and "boom red" in flow.text
    assert "call red" in root.find("system-out").text and "stderr red" in root.find("system-err").text
    # What XML or a viewer refuses is spelled out, visibly, never U+FFFD (xunit-viewer stops at it).
    assert REPLACEMENT not in raw and "\\x00" in root.find("system-out").text


# --- the class in one file --------------------------------------------------------------


@pytest.fixture(scope="module")
def class_file(graded: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The class JUnit file `batch` writes, from the graded files' results.json (one student each)."""
    results = {name: json.loads(path.with_suffix(".json").read_text()) for name, path in graded.items()}
    path = tmp_path_factory.mktemp("class") / "junit.xml"
    path.write_text(class_junit(results), encoding="utf-8")
    return path


def test_the_class_file_is_one_suite_per_student_each_valid(class_file: Path, graded: dict[str, Path]):
    root = ET.fromstring(class_file.read_bytes())
    assert root.tag == "testsuites" and not root.attrib  # the strict schema allows no attribute there
    assert [suite.get("name") for suite in root] == sorted(graded)
    identities = []
    for index, suite in enumerate(root):
        name = suite.get("name")
        results = json.loads(graded[name].with_suffix(".json").read_text())
        assert (suite.attrib.pop("package"), suite.attrib.pop("id")) == (name, str(index))  # the aggregate's own
        props = {p.get("name"): p.get("value") for p in assert_follows_strict_schema(ET.tostring(suite, "unicode"))[0]}
        assert props["student"] == name and props["score"] == f"{results['score']:g}"
        assert props["status"] == results["extra_data"]["status"]
        identities += [(case.get("classname"), case.get("name")) for case in suite.findall("testcase")]
        assert {case.get("classname").split(".")[0] for case in suite.findall("testcase")} == {name}
    assert len(identities) == len(set(identities)), "a testcase that two students share"


def test_junitparser_reads_the_class_and_a_merge_of_student_files_apart(class_file: Path, graded: dict[str, Path]):
    junitparser = pytest.importorskip("junitparser", reason="a dev dependency (pip install -e '.[dev]')")
    read = junitparser.JUnitXml.fromfile(str(class_file))
    by_name = {suite.name: suite for suite in read}
    assert sorted(by_name) == sorted(graded)
    for name, suite in by_name.items():
        results = json.loads(graded[name].with_suffix(".json").read_text())
        assert {p.name: p.value for p in suite.properties()}["score"] == f"{results['score']:g}"
        failing = sum(1 for case in suite if case.result and not isinstance(case.result[0], junitparser.Skipped))
        assert (failing > 0) == (results["score"] < results["max_score"]), name
    merged = junitparser.JUnitXml()  # what junit-report-merger makes of the per-student files
    for path in graded.values():
        merged += junitparser.JUnitXml.fromfile(str(path))
    cases = [(case.classname, case.name) for suite in merged for case in suite]
    assert len({suite.name for suite in merged}) == len(graded) and len(cases) == len(set(cases))


@pytest.mark.parametrize("kind", list(UNLOADABLE))
def test_unloadable_submission_is_red(graded, kind, exercise):
    root = assert_follows_strict_schema(graded[kind].read_text(encoding="utf-8"))
    cases = root.findall("testcase")
    # Its own table, named by the folder graded (the file is batchnorm.py): never "bn-grader" for everyone.
    assert root.get("name") == kind and [c.get("classname") for c in cases] == [f"{kind}.{c.id}" for c in exercise.checks]
    assert int(root.get("errors")) + int(root.get("failures")) > 0, "a dashboard would show green"
    assert int(root.get("errors")) == len(cases) and int(root.get("skipped")) == 0
    cause = UNLOADABLE[kind][1]
    for case in cases:
        error = case.find("error")
        assert error is not None and error.get("type") == "not_graded", ET.tostring(case)
        assert cause in error.get("message")
        if kind != "missing_names" and exercise.name != "batchnorm_linen":  # Linen code: said first, cause kept
            assert error.get("message").startswith("this looks like the Linen exercise"), error.get("message")
    assert "\x1b" not in _everything(root)


def test_testcase_names_do_not_change_with_the_score(graded, exercise):
    identities = {}
    weight = {c.id: c.weight for c in exercise.checks}
    for name in ("wrong", "noisy", "syntax_error"):
        root = assert_follows_strict_schema(graded[name].read_text(encoding="utf-8"))
        assert root.get("name") == name
        identities[name] = [(case.get("classname").removeprefix(f"{name}."), case.get("name"))
                            for case in root.findall("testcase")]
        for _, test in identities[name]:
            assert not SCORE_IN_NAME.search(test), test
        scores = {p.get("name"): p.get("value") for p in root.find("properties")}
        assert scores["max_score"] == str(exercise.max_score)
        if name == "noisy":  # a correct module, a broken flow
            train = weight["train_output"]
            assert scores["check.train_output"] == f"{train}/{train} passed"
            assert scores["check.flow"] == f"0/{weight['flow']} failed"
        if name == "wrong":  # one mistake: the check it costs says so in its property, its failure and system-out
            results = json.loads(graded[name].with_suffix(".json").read_text())
            assert scores["score"] == f"{results['score']:g}" and results["extra_data"]["tags"]
            lost = {prop.removeprefix("check."): value.split()[0] for prop, value in scores.items()
                    if prop.startswith("check.") and value.endswith(" failed")}
            assert len(lost) == 1, lost
            (check, score), = lost.items()
            assert int(scores["score"]) == exercise.max_score - weight[check] + int(score.split("/")[0])
            failure = root.find(f"testcase[@classname='wrong.{check}']/failure")
            assert f"Score: {score}" in failure.text and failure.get("type") == ",".join(results["extra_data"]["tags"])
            assert f"[failed {score}]" in root.find("system-out").text
    assert len(set(map(tuple, identities.values()))) == 1, identities
    assert len(identities["wrong"]) == len({c for c, _ in identities["wrong"]}) == len(exercise.checks) >= 10


# --- any text, straight through the writer --------------------------------------------

PIECE = st.text(st.characters(codec="utf-8"), max_size=6) | st.sampled_from(
    [*CONTROLS, "\x1b[", "\x1b[31m", "\x1b]0;", "\x07", "\x9b", "\r\n", "\udc80", "\ufffe", "]]>", "&", "<"])
TEXT = st.lists(PIECE, max_size=8).map("".join)


@settings(max_examples=150, deadline=None)
@given(name=TEXT, observed=TEXT, note=TEXT, printed=TEXT, problem=TEXT, status=st.sampled_from(["passed", "failed", "skipped"]))
def test_any_text_gives_a_valid_file(name, observed, note, printed, problem, status):
    checks = [CheckResult(id="variables", name=name, weight=8, status=status, expected="(D,) variables",
                          observed=observed, notes=(note,)),
              CheckResult(id="flow", name="init_and_apply: init, split, apply(mutable), flatten", weight=10,
                          status="skipped", observed="not checked: " + observed)]
    result = GradeResult(submission=name, score=8 if status == "passed" else 0, max_score=18, checks=checks,
                         suite="practice", cases=3, shapes=1, isolation="process", seconds=0.25, stdout=printed,
                         stderr=printed, problem=problem)
    xml = junit_xml(result, hostname=name)
    root = assert_follows_strict_schema(xml)
    assert REPLACEMENT not in xml, "xunit-viewer stops at U+FFFD: it must be a visible escape"
    # Skipped checks are errors exactly when the submission as a whole could not be graded.
    assert (int(root.get("errors")) > 0) == bool(xml_text(problem))


def test_nothing_graded_at_all_is_one_error():
    result = GradeResult(submission="x", score=0, max_score=100, checks=[], suite="hidden", cases=0, shapes=0,
                         isolation="process", seconds=0.0, problem="the grader failed on this submission (boom)")
    root = assert_follows_strict_schema(junit_xml(result))
    assert root.get("tests") == "1" and root.get("errors") == "1"


def test_timestamp_is_utc_without_a_zone_and_hostname_is_never_empty():
    result = GradeResult(submission="x", score=0, max_score=0, checks=[], suite="hidden", cases=0, shapes=0,
                         isolation="process", seconds=2.0)
    from datetime import timedelta

    started = datetime(2026, 3, 1, 12, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    root = assert_follows_strict_schema(junit_xml(result, timestamp=started, hostname=" \x1b[2J\t"))
    assert root.get("timestamp") == "2026-03-01T10:00:05"
    assert root.get("hostname")  # the machine's name, or localhost


# --- the real schemas, where a validator is at hand ----------------------------------


def _java() -> str | None:
    java = shutil.which("java")
    if java is None:
        return None
    probe = subprocess.run([java, "--list-modules"], capture_output=True, text=True, timeout=60)
    return java if "jdk.compiler" in probe.stdout and "java.xml" in probe.stdout else None


def _validate(java: str, files: list[Path]) -> dict[tuple[str, str], bool]:
    """(schema name, file name) -> valid, for every schema and file, in one JVM run."""
    run = subprocess.run([java, str(DATA / "ValidateXsd.java"), ",".join(map(str, SCHEMAS)), *map(str, files)],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode in (0, 1), run.stdout + run.stderr
    verdicts = {}
    for line in run.stdout.splitlines():
        verdict, schema, file = line.split(" ", 2)
        verdicts[(Path(schema).name, Path(file.split(": ", 1)[0]).name)] = verdict == "valid"
    assert len(verdicts) == len(SCHEMAS) * len(files), run.stdout + run.stderr
    return verdicts


@pytest.mark.skipif(_java() is None, reason="needs a JDK (java with jdk.compiler) to run the XSD validator")
def test_files_validate_against_the_real_schemas(graded, class_file, tmp_path):
    java = _java()
    assert java is not None
    nasty = tmp_path / "nasty.xml"
    checks = [CheckResult(id="variables", name="Variables " + NOISE, weight=8, status="failed", expected="x",
                          observed="raised " + NOISE, tags=("variable_shape",), notes=(NOISE,)),
              CheckResult(id="flow", name="flow", weight=10, status="skipped", observed="not checked: " + NOISE),
              CheckResult(id="jit", name="jit", weight=0, status="passed", notes=(NOISE,))]
    nasty.write_text(junit_xml(GradeResult(submission=NOISE, score=0, max_score=18, checks=checks, suite="hidden",
                                           cases=1, shapes=1, isolation="process", seconds=1.0, stdout=NOISE,
                                           stderr=NOISE)), encoding="utf-8")
    # Negative controls, so that "valid" means something: the validator rejects a testsuite without a
    # timestamp (windyroad) and a skipped element with attributes (Jenkins).
    text = graded["syntax_error"].read_text(encoding="utf-8")
    no_timestamp, skipped_with_attributes = tmp_path / "no_timestamp.xml", tmp_path / "skipped_attributes.xml"
    no_timestamp.write_text(re.sub(r' timestamp="[^"]*"', "", text, count=1), encoding="utf-8")
    skipped_with_attributes.write_text(text.replace("<error ", "<skipped ", 1).replace("</error>", "</skipped>", 1),
                                       encoding="utf-8")
    ours = [*graded.values(), nasty, class_file]
    verdicts = _validate(java, [*ours, no_timestamp, skipped_with_attributes])
    for schema in SCHEMAS:
        for file in ours:
            assert verdicts[(schema.name, file.name)], f"{file.name} is not valid against {schema.name}"
    assert not verdicts[("JUnit.xsd", "no_timestamp.xml")]
    assert not verdicts[("jenkins-junit.xsd", "skipped_attributes.xml")]
