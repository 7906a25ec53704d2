"""Self-contained HTML: a student's feedback page and the class report.

Everything is inline (CSS and SVG charts), so the pages work offline and can be
mailed or uploaded as single files. All text from results goes through
:func:`_esc`: :func:`~grader.safetext.clean` (no control characters, which are
HTML parse errors and would reach a terminal that ``cat``s the page, and no
bidi overrides that reorder what the reader sees), then HTML escaping.
"""

from __future__ import annotations

from collections import Counter
from html import escape as _html_escape
from typing import Any

from grader.exercises import get as get_exercise
from grader.pitfalls import PITFALLS
from grader.report.table import reason
from grader.safetext import clean

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222;padding:0 1rem}
h1{font-size:1.5rem;overflow-wrap:break-word}h2{font-size:1.15rem;margin-top:2rem}
.wide{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
.passed{color:#176b2c}.failed{color:#a3231a}.tag{font-family:monospace;background:#f3f0e8;padding:0 .3rem;border-radius:3px;overflow-wrap:anywhere}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f7f7f7;padding:.6rem;border-radius:4px;margin:.3rem 0}
td{overflow-wrap:break-word}
.word{white-space:nowrap}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
svg.chart{display:block;width:100%;height:auto}
"""


def escape(text: str) -> str:
    """``text`` inert in HTML text and in quoted attribute values."""
    return _html_escape(clean(str(text)), quote=True)


def _page(title: str, body: str) -> str:
    # viewport: phones render at their own width instead of a scaled-down 980 px page. At 390 px
    # nothing is wider than the screen: charts scale (viewBox, width 100%), a student's output
    # wraps inside its <pre>, a table too wide for its words scrolls in its own box, and
    # statuses, scores and ids never break inside a word.
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><main>\n{body}\n</main></body></html>\n")


def feedback_page(student_id: str, data: dict[str, Any]) -> str:
    rows = []
    for test in data["tests"]:
        status = test["status"]
        tags = " ".join(f'<span class="tag">{escape(t)}</span>' for t in test["tags"])
        output = f"<pre>{escape(test['output'])}</pre>" if test["output"] else ""
        rows.append(f'<tr><td class="{escape(status)} word">{escape(status)}</td>'
                    f'<td>{escape(test["name"])} {tags}{output}</td>'
                    f'<td class="num">{test["score"]:g}/{test["max_score"]:g}</td></tr>')
    extra = data.get("extra_data", {})
    status = f" ({escape(extra['status'])})" if extra.get("status") in ("not graded", "error") else ""
    # The summary holds what the student's code printed: preformatted, newlines kept, long lines wrapped.
    body = (f"<h1>{escape(student_id)}: <span class=\"word\">{data['score']:g}/{data['max_score']:g}</span>{status}</h1>"
            f"<pre>{escape(data.get('output', ''))}</pre>"
            f"<div class=\"wide\"><table><tr><th>result</th><th>check</th><th class=\"num\">points</th></tr>"
            f"{''.join(rows)}</table></div>")
    return _page(f"Feedback for {student_id}", body)


def _histogram_svg(scores: list[float]) -> str:
    """Scores in ten bins (the last one holds 90 to 100), as an inline SVG bar chart."""
    bins = [0] * 10
    for score in scores:
        bins[min(int(score // 10), 9)] += 1
    width, height, bar, pad = 520, 180, 46, 20
    top = max(bins) or 1
    # viewBox and width 100% (class chart): the chart scales to the page, at most its own width.
    total = height + pad + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {total}" '
             f'style="max-width:{width}px" role="img" aria-label="Histogram of scores">']
    for i, count in enumerate(bins):
        h = round(height * count / top)
        x = 10 + i * (bar + 4)
        label = f"{i * 10}-{i * 10 + 9}" if i < 9 else "90-100"
        parts.append(f'<rect x="{x}" y="{pad + height - h}" width="{bar}" height="{h}" fill="#4a7ab5">'
                     f"<title>{label}: {count}</title></rect>")
        parts.append(f'<text x="{x + bar / 2}" y="{pad + height + 16}" font-size="11" text-anchor="middle">{label}</text>')
        if count:
            parts.append(f'<text x="{x + bar / 2}" y="{pad + height - h - 5}" font-size="11" text-anchor="middle">{count}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _pitfall_svg(rates: list[tuple[str, float]]) -> str:
    width, row = 520, 22
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {row * len(rates) + 10}" '
             f'style="max-width:{width}px" role="img" aria-label="How often each pitfall occurred">']
    top = max((rate for _, rate in rates), default=1.0) or 1.0
    for i, (tag, rate) in enumerate(rates):
        y = 5 + i * row
        length = round(260 * rate / top)
        parts.append(f'<text x="0" y="{y + 14}" font-size="12" font-family="monospace">{escape(tag)}</text>')
        parts.append(f'<rect x="200" y="{y + 3}" width="{length}" height="14" fill="#c0643a">'
                     f"<title>{rate:.0%}</title></rect>")
        parts.append(f'<text x="{205 + length}" y="{y + 14}" font-size="12">{rate:.0%}</text>')
    parts.append("</svg>")
    return "".join(parts)


def class_report(graded: dict[str, dict[str, Any]], links: dict[str, str]) -> str:
    """Score histogram, how often each pitfall occurred, and one row per student."""
    n = len(graded)
    scores = [d["score"] for d in graded.values()]
    counts: Counter[str] = Counter(t for d in graded.values() for t in set(d.get("extra_data", {}).get("tags", [])))
    rates = [(tag, counts[tag] / n) for tag, _ in counts.most_common()] if n else []
    mean = sum(scores) / n if n else 0.0
    full = sum(1 for s in scores if s >= 100)
    exercises = {d.get("extra_data", {}).get("exercise") for d in graded.values()}
    pitfalls = get_exercise(exercises.pop()).pitfalls if len(exercises) == 1 and None not in exercises else PITFALLS
    sentences = "".join(f"<li>{rate:.0%} {escape(pitfalls[tag].title) if tag in pitfalls else escape(tag)} "
                        f'(<span class="tag">{escape(tag)}</span>)</li>' for tag, rate in rates)
    rows = []
    for student_id in sorted(graded):
        data = graded[student_id]
        extra = data.get("extra_data", {})
        tags = " ".join(f'<span class="tag">{escape(t)}</span>' for t in extra.get("tags", []))
        # A zero with no pitfall needs its reason (nothing to grade, an import error, a module that never ran).
        why = reason(extra)
        status = f'<strong>{escape(extra["status"])}</strong>: ' if why and extra.get("status") else ""
        why = f"{status}{escape(why)}" if why and not tags else ""
        rows.append(f'<tr><td><a href="{escape(links.get(student_id, "#"))}">{escape(student_id)}</a></td>'
                    f'<td class="num">{data["score"]:g}/{data["max_score"]:g}</td><td>{tags}{why}</td></tr>')
    practice = sum(1 for d in graded.values() if d.get("extra_data", {}).get("suite") == "practice")
    warning = (f"<p><strong>{practice} of {n} graded on the practice suite</strong> (no secret was given): "
               "students can run that suite themselves, so these scores are not final. Grade with "
               "--secret-file for the hidden suite.</p>") if practice else ""
    body = (
        f"<h1>BatchNorm exercise: class report</h1>{warning}"
        f"<p>{n} submissions graded; mean score {mean:.1f}; {full} with full marks.</p>"
        f"<h2>Scores</h2>{_histogram_svg(scores)}"
        f"<h2>Which ideas the class missed</h2>"
        + (f"<ul>{sentences}</ul>{_pitfall_svg(rates)}" if rates else "<p>No pitfall occurred.</p>")
        + f"<h2>Students</h2><div class=\"wide\"><table><tr><th>student</th><th class=\"num\">score</th>"
        f"<th>pitfalls, or why not graded</th></tr>{''.join(rows)}</table></div>"
    )
    return _page("BatchNorm exercise: class report", body)
