"""The HTML pages on a phone (390 px) and a laptop (1280 px), measured in headless Chromium.

A page passes when it is no wider than the viewport (no sideways scrolling), every bar
and label of the score histogram is inside it, and ids, scores and statuses are each on
one line (never "alice_corr/ect" or "passe/d"). The pages are built from results.json
data directly, so no grading runs here; Chromium is not installed by the test (`.ci/run`
installs it in CI), and without it the test is skipped with the reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from html import escape
from pathlib import Path

import pytest

from grader.report.html import class_report, feedback_page

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None)
WIDTHS = (390, 1280)
LONG_LINE = "x" * 40_000  # one unbroken printed line
# Written into the page by the page itself once laid out: what --dump-dom then shows.
MEASURE = """<script>
(function () {
  var w = window.innerWidth, out = {viewport: w, scroll: document.documentElement.scrollWidth,
                                    outside: [], broken: [], pre_lines: 0};
  document.querySelectorAll("svg rect, svg text").forEach(function (e) {
    var r = e.getBoundingClientRect();
    if (r.left < -0.5 || r.right > w + 0.5) out.outside.push(e.tagName + " " + e.textContent);
  });
  // Ids, scores and statuses: one line each (a range over the text has one box per line).
  document.querySelectorAll("td:first-child, td.num, h1 .word").forEach(function (e) {
    var range = document.createRange(); range.selectNodeContents(e);
    var tops = {}; Array.prototype.forEach.call(range.getClientRects(), function (r) { tops[Math.round(r.top)] = 1; });
    if (Object.keys(tops).length > 1) out.broken.push(e.textContent);
  });
  var pre = document.querySelector("main > pre");
  if (pre) out.pre_lines = Math.round(pre.getBoundingClientRect().height / parseFloat(getComputedStyle(pre).lineHeight || 20));
  var host = parent.document, p = host.createElement("output");  // the frame's host: what --dump-dom shows
  p.id = "measured"; p.textContent = JSON.stringify(out); host.body.appendChild(p);
})();
</script>"""


def _data(score: float, tags: list[str], *, status: str = "partial", reason: str = "", output: str = "") -> dict:
    tests = [{"name": "Training mode normalizes with the batch statistics", "score": 15.0 if score else 0.0,
              "max_score": 15.0, "status": "passed" if score else "failed", "tags": tags,
              "output": "Expected: the batch's mean.\nObserved: " + "y" * 300 if not score else ""}] * 6
    return {"score": score, "max_score": 100.0, "output": output, "tests": tests,
            "extra_data": {"tags": tags, "status": status, "reason": reason, "suite": "hidden",
                           "exercise": "batchnorm_linen"}}


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The class report of seven students (four of them at 70 to 100) and a noisy student's feedback page."""
    folder = tmp_path_factory.mktemp("pages")
    graded = {"alice_correct": _data(100, []), "bob_momentum": _data(85, ["momentum_reversed"]),
              "carol_eps": _data(95, ["eps_misplaced"]), "dan": _data(72, ["init_updates_stats"]),
              "erin_stub": _data(0, [], status="not graded", reason="MyBatchNorm never ran: NotImplementedError"),
              "frank_syntax": _data(0, [], status="error", reason="SyntaxError (frank_syntax.py, line 4)"),
              "grace_with_a_rather_long_student_identifier": _data(41, ["unbiased_variance", "eps_misplaced"])}
    noisy = _data(100, [], output="0/100 on the hidden suite.\n\nYour code printed:\nfirst line\n" + LONG_LINE
                  + "\nlast line")
    sources = {"report": class_report(graded, {s: f"{s}/feedback.html" for s in graded}),
               "feedback": feedback_page("henry_noisy_student", noisy)}
    return {name: _write(folder / f"{name}.html", html) for name, html in sources.items()}


def _write(path: Path, html: str) -> Path:
    path.write_text(html.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    return path


def _host(page: Path, width: int) -> Path:
    """A page holding ``page`` in a frame ``width`` px wide: headless Chromium's window is at
    least 500 px, a frame is a viewport of any width (and srcdoc keeps it same-origin)."""
    host = page.with_name(f"{page.stem}-{width}.html")
    host.write_text(f'<!doctype html><html><body style="margin:0"><iframe style="border:0;width:{width}px;'
                    f'height:900px" srcdoc="{escape(page.read_text(encoding="utf-8"), quote=True)}"></iframe>'
                    "</body></html>", encoding="utf-8")
    return host


def _measure(page: Path, width: int, profile: Path) -> dict:
    page = _host(page, width)
    run = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={profile}", "--window-size=1400,1000", "--hide-scrollbars",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    start = run.stdout.find('<output id="measured">')
    assert start >= 0, f"chromium did not run the page's script (exit {run.returncode}): {run.stderr[-500:]}"
    text = run.stdout[start + len('<output id="measured">'):run.stdout.index("</output>", start)]
    return json.loads(text.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium; .ci/run installs it in CI)")
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("page", ["report", "feedback"])
def test_page_fits_the_viewport(pages: dict[str, Path], page: str, width: int, tmp_path: Path):
    measured = _measure(pages[page], width, tmp_path / "profile")
    assert measured["viewport"] == width, measured
    assert measured["scroll"] == width, f"{page} at {width} px scrolls sideways: {measured}"
    assert not measured["outside"], f"histogram bars or labels off-screen: {measured['outside']}"
    assert not measured["broken"], f"broken inside a word: {measured['broken']}"
    if page == "feedback":  # the printed output keeps its lines and wraps the long one
        assert measured["pre_lines"] > 4, measured


def test_charts_scale_and_output_is_preformatted(pages: dict[str, Path]):
    """What the measurement relies on, readable without a browser."""
    report = pages["report"].read_text()
    assert 'class="chart" viewBox="0 0 520' in report and 'width="520"' not in report
    feedback = pages["feedback"].read_text()
    assert "<pre>0/100 on the hidden suite.\n\nYour code printed:\nfirst line\n" in feedback
