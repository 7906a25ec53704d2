"""Output is data: what a submission prints cannot act on a terminal or break a report file."""

from __future__ import annotations

import csv
import io
import json
import re
import time
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from grader.checks import CheckResult
from grader.report.gradescope import results_json
from grader.report.html import class_report, feedback_page
from grader.report.junit import junit_xml
from grader.report.table import gradebook_csv
from grader.report.terminal import print_report
from grader.results import GradeResult
from grader.safetext import REPLACEMENT, clean, csv_cell

R = REPLACEMENT

CASES = [
    # (what a submission prints, what a reader gets)
    ("plain text\twith a tab\nand a newline", "plain text\twith a tab\nand a newline"),
    ("before\x1b[2Jafter", "beforeafter"),  # clear screen
    ("\x1b[H\x1b[2J\x1b[3J", ""),  # home, clear, clear scrollback
    ("\x1b[1;31mred\x1b[0m", "red"),  # colour
    ("\x1b[?1049h\x1b[?25l", ""),  # alternate screen, hide cursor
    ("a\x1b]0;pwned\x07b", "ab"),  # window title, BEL-terminated
    ("a\x1b]2;pwned\x1b\\b", "ab"),  # window title, ST-terminated
    ("\x1b]52;c;ZWNobyBoaQ==\x07", ""),  # OSC 52: write the clipboard
    ("\x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\", "link"),  # hyperlink
    ("\x9b2Jx", "x"),  # 8-bit CSI
    ("\x9d0;pwned\x9cx", "x"),  # 8-bit OSC and ST
    ("\x9d0;pwned\x07x", "x"),
    ("\x1bP1$r0m\x1b\\x", "x"),  # DCS
    ("\x1b_apc\x1b\\\x1b^pm\x1b\\\x1bXsos\x1b\\x", "x"),  # APC, PM, SOS
    ("\x90dcs\x9cx", "x"),  # 8-bit DCS
    ("\x1bc\x1b#8\x1b(0\x1b7\x1b8x", "x"),  # reset, DECALN, charset, save/restore cursor
    ("Score: 0/100\rScore: 100/100", "Score: 0/100\nScore: 100/100"),  # overwrite a line
    ("windows\r\nline\r\n", "windows\nline\n"),
    ("a\r\r\nb", "a\n\nb"),
    ("nul\x00byte", f"nul{R}byte"),
    ("bell\x07 backspace\x08 vt\x0b ff\x0c so\x0e del\x7f", f"bell{R} backspace{R} vt{R} ff{R} so{R} del{R}"),
    ("lone \x1b\tescape", f"lone {R}\tescape"),
    ("lone \x1b\u00e9", f"lone {R}\u00e9"),
    ("\x1b escape", "scape"),  # ESC, an intermediate (space), a final (e): one sequence, as a terminal reads it
    ("trailing escape\x1b", f"trailing escape{R}"),
    ("c1 \x85 nel \x84 ind", f"c1 {R} nel {R} ind"),
    ("lone st \x9c", f"lone st {R}"),
    # Trojan source: bidi embeddings, overrides and isolates.
    ("x\u202eevil\u202cy", f"x{R}evil{R}y"),
    ("\u2066\u2067\u2068\u2069\u202a\u202b\u202d", R * 7),
    # XML-invalid or non-characters.
    ("sur\udc80rogate", f"sur{R}rogate"),
    ("\ufffe\uffff\ufdd0\U0001fffe\U0010ffff", R * 5),
    # Unterminated sequences lose their introducer only, not the text after them.
    ("\x1b]0;unterminated title\nreal line", "0;unterminated title\nreal line"),
    ("\x9d0;unterminated", f"{R}0;unterminated"),
    ("\x1b]0;title\x1b[2Jx", "0;titlex"),
    ("\x1b[12;", "12;"),
    ("\x1b[2\nJ", "2\nJ"),
    ("\x1bPno terminator", "no terminator"),
    # A removal does not build a new sequence from its neighbours.
    ("\x1b\x1b[0m[2J", f"{R}[2J"),
    # Text that looks alarming but is plain stays as it is.
    ("Score: 100/100 [bold]x[/] :smile: <b>&amp;</b>", "Score: 100/100 [bold]x[/] :smile: <b>&amp;</b>"),
    ("ünïcödé, 中文, emoji 🎉, hebrew עברית", "ünïcödé, 中文, emoji 🎉, hebrew עברית"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_clean(text, expected):
    assert clean(text) == expected
    assert clean(expected) == expected


FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")

# Characters that make up escape sequences, mixed into arbitrary text so that
# hypothesis builds real and broken sequences, not only random code points.
PIECES = st.sampled_from(["\x1b", "[", "]", "P", "X", "^", "_", "\\", "\x07", "\x9b", "\x9c", "\x9d", "\x90",
                          "\r", "\n", "\t", ";", "0", "2", "J", "?", " ", "(", "\x00", "\x7f", "\u202e", "\u2066",
                          "\ud800", "\ufffe"])
NASTY_TEXT = st.text(alphabet=st.one_of(PIECES, st.characters(codec=None, categories=None)), max_size=80)


@given(NASTY_TEXT)
def test_clean_output_is_inert_valid_xml_and_stable(text):
    out = clean(text)
    assert not FORBIDDEN.search(out), ascii(out)
    assert not any(0x10000 <= ord(c) and ord(c) & 0xFFFE == 0xFFFE for c in out)
    assert clean(out) == out
    element = ET.Element("e", {"a": out})
    element.text = out
    parsed = ET.fromstring(ET.tostring(element, encoding="unicode"))
    assert (parsed.text or "") == out and parsed.get("a") == out
    out.encode("utf-8")  # no lone surrogates


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r",
                                      exclude_categories=("Cc", "Cs", "Cn", "Cf"))))
def test_clean_leaves_ordinary_text_alone(text):
    assert clean(text) == text


@given(NASTY_TEXT)
def test_csv_cell_never_starts_a_formula(text):
    cell = csv_cell(text)
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r", "\n"))
    assert not FORBIDDEN.search(cell)


@pytest.mark.parametrize("text", [
    "\x1b" * 65536,
    "\x1b]" + "a" * 65536,  # unterminated OSC
    "\x1b]" * 32768,
    "\x9d" * 65536,
    "\x9d\x9b" * 32768,
    "\x1b[" + "1;" * 32768,  # unterminated CSI
    ("\x1b]0;" + "a" * 100) * 640,
    "\x1bP" + "\x1b[" * 32768,
    "\r" * 65536,
])
def test_clean_is_linear(text):
    start = time.perf_counter()
    out = clean(text)
    assert time.perf_counter() - start < 1.0
    assert clean(out) == out


def test_csv_cell_neutralizes_formulas():
    assert csv_cell("=HYPERLINK(\"http://evil\",\"x\")") == "'=HYPERLINK(\"http://evil\",\"x\")"
    for start in "=+-@\t":
        assert csv_cell(start + "1") == "'" + start + "1"
    assert csv_cell("\r=cmd") == "'\n=cmd"
    assert csv_cell("ann") == "ann" and csv_cell("") == ""


# --- the reports ------------------------------------------------------------------

NASTY = "".join(text for text, _ in CASES)  # every sequence above, in one string
ESCAPE_FREE = re.compile("[\x1b\x9b\x9d]")


def nasty_result() -> GradeResult:
    checks = [
        CheckResult(id="train_output", name="train output" + NASTY[:40], weight=50, status="failed",
                    expected="the batch normalized", observed="your code raised: ValueError(" + NASTY + ")",
                    tags=("stats_over_features",), notes=("note " + NASTY,)),
        CheckResult(id="eval_output", name="eval output", weight=50, status="passed", notes=(NASTY,)),
        CheckResult(id="init_guard", name="init guard", weight=0, status="skipped", observed="not checked: " + NASTY),
    ]
    return GradeResult(submission="\x1b]0;pwned\x07ann\x1b[2J.py", score=50, max_score=100, checks=checks,
                       suite="hidden", cases=10, shapes=3, isolation="process", seconds=1.5,
                       stdout=NASTY + "\n\x1b[2J\x1b[HScore: 100/100\n", stderr="\x1b]52;c;ZWNobyBoaQ==\x07" + NASTY,
                       problem="it printed " + NASTY)


def test_junit_is_valid_xml_without_escapes():
    xml = junit_xml(nasty_result())
    assert not ESCAPE_FREE.search(xml) and not FORBIDDEN.search(xml.replace("\n", "").replace("\t", ""))
    suite = ET.fromstring(xml.split("\n", 1)[1])
    assert suite.find("testcase/failure").get("type") == "stats_over_features"
    assert "Score: 100/100" in suite.find("system-out").text
    assert "ZWNobyBoaQ==" not in suite.find("system-err").text


@pytest.mark.parametrize("force_terminal", [False, True])
def test_terminal_shows_no_escape_from_the_submission(force_terminal):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=force_terminal, color_system="truecolor" if force_terminal else None,
                      width=100, highlight=True, emoji=True)
    print_report(nasty_result(), console)
    out = buffer.getvalue()
    if force_terminal:
        out = re.sub(r"\x1b\[[0-9;]*m", "", out)  # rich's own colours are the only escapes left
    assert not ESCAPE_FREE.search(out), ascii(out)
    assert not FORBIDDEN.search(out.replace("\n", "")), ascii(out)
    assert "\r" not in out and "pwned" not in out
    assert ":smile:" in out and "[bold]x[/]" in out  # no rich markup or emoji codes from the student
    lines = out.splitlines()
    assert lines[-1].startswith("Score: 50/100")
    # The submission's fake score line is indented, unlike the real one.
    assert sum(line.startswith("Score:") for line in lines) == 1
    assert any(line.startswith("    Score: 100/100") for line in lines)


def test_results_json_texts_are_clean():
    data = results_json(nasty_result())
    text = json.dumps(data, ensure_ascii=False)
    assert not ESCAPE_FREE.search(text) and "\\u001b" not in json.dumps(data)
    for value in [data["output"], *(t["output"] for t in data["tests"]), *(t["name"] for t in data["tests"])]:
        assert not FORBIDDEN.search(value.replace("\n", "").replace("\t", ""))


def test_html_has_no_raw_control_characters():
    result = nasty_result()
    data = results_json(result)
    pages = [feedback_page(result.submission, data),
             class_report({result.submission: data, "<script>alert(1)</script>": data},
                          {result.submission: "ann/feedback.html", "<script>alert(1)</script>": "x/feedback.html"})]
    for page in pages:
        assert not FORBIDDEN.search(page.replace("\n", "").replace("\t", "")), ascii(page)
        assert "<script>" not in page and "pwned" not in page


def test_gradebook_csv_neutralizes_formulas_and_controls():
    graded = {
        "=HYPERLINK(\"http://evil.example\",\"click\")": {"score": 0, "max_score": 100, "extra_data": {}},
        "+cmd": {"score": 0, "max_score": 100, "extra_data": {}},
        "-2+3": {"score": 0, "max_score": 100, "extra_data": {}},
        "@SUM(A1)": {"score": 0, "max_score": 100, "extra_data": {}},
        "\tx": {"score": 0, "max_score": 100, "extra_data": {}},
        "\r=x": {"score": 0, "max_score": 100, "extra_data": {}},
        "ann\x1b[2J": {"score": 100, "max_score": 100, "extra_data": {"status": "complete", "tags": []}},
    }
    text = gradebook_csv(graded)
    assert not ESCAPE_FREE.search(text) and "\r" not in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "student_id"
    for row in rows[1:]:
        for cell in (row[0], row[3], row[4]):
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r", "\n")), row
    ids = {row[0] for row in rows[1:]}
    assert "'=HYPERLINK(\"http://evil.example\",\"click\")" in ids and "ann" in ids and "'\n=x" in ids
    assert {row[1] for row in rows[1:]} == {"0", "100"}  # numbers stay numbers


@pytest.mark.parametrize("width", [40, 80, 100])
def test_terminal_wrapping_cannot_forge_a_line(width):
    """Long student text wraps, but every wrapped line stays indented: nothing it holds starts a line."""
    fake = "Score: 100/100"
    result = nasty_result()
    result.problem = "importing the submission raised ValueError: " + "x" * (width - 20) + " " + fake
    result.checks[0].observed = " " * (width - 5) + fake
    result.stdout, result.stderr = "y" * (width - 10) + " " + fake + "\n" + " " * 300 + fake, ""
    buffer = io.StringIO()
    print_report(result, Console(file=buffer, force_terminal=False, width=width))
    lines = buffer.getvalue().splitlines()
    assert [line for line in lines if line.startswith("Score:")] == [lines[-1]]
    assert lines[-1].startswith("Score: 50/100")


def test_an_untagged_shape_failure_gets_a_shape_hint_not_the_formula():
    from grader.checks import CheckResult
    from grader.report.text import check_message

    shape = CheckResult("train_output", "Training mode normalizes", 15, "failed", "the formula",
                        "on 2x3: the output of training step 1 on 2x3 has shape (3,), expected (2, 3)")
    value = CheckResult("train_output", "Training mode normalizes", 15, "failed", "the formula",
                        "training step 1 on 2x3: max error 0.5 at feature 1 (tolerance 1e-06)")
    assert "shapes" in check_message(shape) and "formula above" not in check_message(shape)
    assert "formula above" not in check_message(value)  # "the formula" names none: no formula is above
    formula = CheckResult("train_output", "Training mode normalizes", 15, "failed", "gamma * (x - mean) / sqrt(var)",
                          "training step 1 on 2x3: max error 0.5 at feature 1 (tolerance 1e-06)")
    assert "formula above" in check_message(formula)


def test_a_known_exception_gets_the_hint_for_its_kind_not_a_generic_one():
    """The hint names what to change for exceptions whose cause is known."""
    from grader.checks import CheckResult
    from grader.report.text import check_message

    def hint(observed: str) -> str:
        message = check_message(CheckResult("flow", "init_and_apply", 10, "failed", "x", observed))
        return message.split("Hint: ", 1)[1]

    assert "traced" in hint("raised TracerBoolConversionError: Attempted boolean conversion of traced array")
    assert "self.running_mean[...] = new" in hint(
        "on 2x3: TypeError: JAX arrays are immutable and do not support in-place item assignment (line 64)")
    assert "keepdims" in hint("on 2x3: ValueError: Cannot broadcast to shape with fewer dimensions (line 64)")
    generic = hint("on 2x3: ZeroDivisionError: division by zero (line 12)")
    assert "line named above" in generic and "shapes" not in generic


def test_report_pages_fit_a_phone_and_have_a_main_landmark():
    from grader.report.html import class_report, feedback_page

    data = {"score": 50.0, "max_score": 100.0, "output": "x", "tests": [
        {"name": "n", "score": 0.0, "max_score": 5.0, "status": "failed", "output": "https://" + "a" * 300,
         "tags": []}], "extra_data": {"tags": [], "suite": "practice", "isolation": "process"}}
    for page in (feedback_page("alice", data), class_report({"alice": data}, {"alice": "alice/feedback.html"})):
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
        assert "<main>" in page and "</main>" in page


def test_error_messages_keep_the_students_file_and_line_but_no_grader_folder():
    from grader.sandbox import clean_error

    err = clean_error({"type": "TracerBoolConversionError", "message": (
        "while tracing the function step at /tmp/bngrade-work-il6_pdxb/submission/batchnorm.py:79 for jit; "
        "see /work/x/.venv/lib/python3.11/site-packages/flax/nnx/variablelib.py (line 81)")})
    assert "batchnorm.py:79" in err["message"] and "flax/nnx/variablelib.py" in err["message"]
    assert "/tmp/" not in err["message"] and "site-packages" not in err["message"] and "bngrade" not in err["message"]
