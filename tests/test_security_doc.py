"""Every claim in SECURITY.md names a test that would fail if it broke: the names it
gives must exist (a hostile file, a test function, a submission file)."""

from __future__ import annotations

import re

from tests.conftest import ROOT

TEXT = (ROOT / "SECURITY.md").read_text()


def test_every_hostile_file_named_exists():
    named = set(re.findall(r"H\[([a-z0-9_]+)\]", TEXT)) - {"name"}
    assert named, "SECURITY.md names no hostile file"
    missing = sorted(n for n in named if not (ROOT / "tests" / "submissions" / "hostile" / f"{n}.py").is_file())
    assert not missing, missing


def test_every_test_function_named_exists():
    missing = []
    for path, test in re.findall(r"`((?:tests/)?[a-z_0-9]+\.py)::([a-z_0-9]+)", TEXT):
        file = ROOT / path if path.startswith("tests/") else ROOT / "tests" / path
        if not file.is_file() or not re.search(rf"def {test}\b", file.read_text()):
            missing.append(f"{path}::{test}")
    assert not missing, missing


def test_every_submission_file_named_exists():
    named = set(re.findall(r"`(tests/submissions[a-z_]*/[a-z_/0-9]+\.py)`", TEXT))
    assert named
    assert not sorted(n for n in named if not (ROOT / n).is_file())
