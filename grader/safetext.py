"""Make untrusted text inert before a person or a parser reads it.

A submission's output, the exception messages it raises and even its file name
reach the instructor's terminal, results.json, JUnit XML, HTML pages and the
gradebook CSV.  Printed verbatim, terminal escape sequences there clear the
screen, retitle the window, write the clipboard (OSC 52) or draw a fake
"Score: 100/100"; a carriage return overwrites the real line with a fake one;
bidi overrides reorder what is shown ("Trojan source"); and a NUL or an ESC
alone makes the JUnit file invalid XML.  Every report therefore passes
student-derived text through :func:`clean` first: the result is plain data.

What :func:`clean` does, in one left-to-right pass:

- ``\\r\\n`` and a lone ``\\r`` become ``\\n``; ``\\n`` and ``\\t`` are kept.
- A complete escape sequence is removed, with nothing in its place: CSI
  (``ESC [`` or U+009B, parameters, intermediates, final byte), the strings
  OSC, DCS, SOS, PM and APC (``ESC ]``/``P``/``X``/``^``/``_`` or U+009D,
  U+0090, U+0098, U+009E, U+009F, printable body, then BEL, ``ESC \\`` or
  U+009C), and the other ``ESC`` sequences (``ESC``, intermediates, final).
  They are formatting, not content.
- An *unterminated* string or CSI loses only its introducer (``ESC ]`` as a
  two-character escape, U+009D as a lone control): the rest stays visible as
  text instead of swallowing the output after it.
- Every other character that a terminal or XML 1.0 would act on or refuse
  becomes U+FFFD, so that tampering stays visible: C0 controls (ESC alone too),
  DEL, C1 controls, lone surrogates, the bidi embeddings, overrides and
  isolates (U+202A-U+202E, U+2066-U+2069) and the noncharacters (U+FDD0-U+FDEF,
  U+xFFFE and U+xFFFF in every plane).

The output holds none of those characters, so ``clean`` is idempotent.  The
pattern has no nested or overlapping repetition (possessive quantifiers, and a
string body excludes every introducer and terminator), so it runs in linear
time on any input.
"""

from __future__ import annotations

import re

__all__ = ["clean", "csv_cell", "visible_escape", "REPLACEMENT"]

REPLACEMENT = "\ufffd"

_NONCHARACTERS = "".join(chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(17))
# Characters replaced by U+FFFD when they are not part of a sequence removed whole.
_LONE = (
    "\x00-\x08\x0b-\x1f"  # C0 without \t and \n (\r is caught earlier; ESC lands here when alone)
    "\x7f-\x9f"  # DEL and C1 (CSI U+009B and OSC U+009D among them)
    "\u202a-\u202e\u2066-\u2069"  # bidi embeddings, overrides and isolates
    "\ud800-\udfff"  # lone surrogates (from surrogateescape decoding, say)
    "\ufdd0-\ufdef"
) + _NONCHARACTERS

_BODY = r"[^\x00-\x1f\x7f-\x9f]*+"  # printable: stops at every introducer and terminator
_SEQUENCE = re.compile(
    r"(?P<newline>\r\n?)"
    r"|(?:\x1b\[|\x9b)[\x30-\x3f]*+[\x20-\x2f]*+[\x40-\x7e]"  # CSI
    r"|(?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])" + _BODY + r"(?:\x07|\x1b\\|\x9c)"  # OSC, DCS, SOS, PM, APC
    r"|\x1b[\x20-\x2f]*+[\x30-\x7e]"  # any other escape, and the introducer of an unfinished one
    r"|(?P<lone>[" + _LONE + r"])"
)
_ANY = re.compile(r"[\r" + _LONE + r"]")


def _replace(match: re.Match[str]) -> str:
    if match.group("newline") is not None:
        return "\n"
    if match.group("lone") is not None:
        return REPLACEMENT
    return ""


def visible_escape(char: str) -> str:
    """A character as Python would spell it in a string: ``\\x1b``, ``\\u202e``, ``\\U0001fffe``."""
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _escape(match: re.Match[str]) -> str:
    if match.group("lone") is not None:
        return visible_escape(match.group("lone"))
    return _replace(match)


def clean(text: str, *, visible: bool = False) -> str:
    """``text`` without terminal control sequences or XML-invalid characters (see the module docstring).

    ``visible``: a lone character, and U+FFFD itself (what a decoder puts for invalid
    UTF-8), becomes its escape (``\\x00``, ``\\ufffd``) instead of U+FFFD, for readers
    that stop at U+FFFD (xunit-viewer does); the result is then plain printable text.
    """
    if visible:
        return _SEQUENCE.sub(_escape, text).replace(REPLACEMENT, visible_escape(REPLACEMENT))
    if not _ANY.search(text):
        return text
    return _SEQUENCE.sub(_replace, text)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(text: str) -> str:
    """A text cell for a spreadsheet: :func:`clean`, and no formula.

    A cell that begins with ``= + - @``, a tab or a line break could be taken
    for a formula by a spreadsheet (CSV injection), so it gets a leading
    apostrophe, as OWASP recommends.  Only for text columns: numbers are left
    alone by the caller.
    """
    text = clean(text)
    return "'" + text if text.startswith(_FORMULA_START) else text
