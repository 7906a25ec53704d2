"""The suites: coverage of the hidden one, determinism, secrecy of its seeds."""

from __future__ import annotations

import numpy as np

from grader.cases import build_suite


def test_hidden_suite_covers_what_the_exercise_promises():
    suite = build_suite("some secret")
    assert suite.name == "hidden"
    assert suite.case_count >= 1000
    assert len(suite.shapes) >= 9  # the flows reuse module shapes: their inputs are module cases too
    shapes = suite.shapes
    assert any(n == 1 for n, d in shapes) and any(n == 2 for n, d in shapes)
    assert any(d == 1 for n, d in shapes)
    assert any(n == d for n, d in shapes)
    assert any(n >= 4096 and d >= 64 for n, d in shapes)
    families = {f for p in suite.probes for f in p.families}
    assert {"tiny_variance", "constant", "wide_scale", "offset", "large_offset"} <= families
    flags = {p.params["flag"] for p in suite.flow_probes()}
    assert flags == {0.0, 1.0}


def test_same_secret_same_inputs_other_secret_other_inputs():
    a, b, c = build_suite("s1"), build_suite("s1"), build_suite("s2")
    assert a.digest == b.digest != c.digest
    pa, pc = a.probes[0].arrays["train"], c.probes[0].arrays["train"]
    assert pa.shape == pc.shape and not np.array_equal(pa, pc)


def test_practice_suite_is_public_and_smaller():
    practice = build_suite(None)
    assert practice.name == "practice"
    assert practice.digest != build_suite("practice-but-secret").digest
    assert practice.case_count < build_suite("x").case_count


def test_probes_carry_inputs_only():
    suite = build_suite("s")
    for probe in suite.probes:
        assert set(probe.params) <= {"segment", "shape", "steps", "seed", "flag"}
        # the flow's seed is the exercise's seed argument, not one of ours
        for name in probe.arrays:
            assert name in {"train", "eval", "seeds", "x", "gamma", "beta", "running_mean", "running_var", "w"}


def test_readme_states_the_hidden_suite_s_size():
    """The README's "N cases over M shapes" is the suite's (the same for every secret)."""
    import re

    from tests.conftest import ROOT, TEST_SECRET

    found = re.search(r"hidden suite: ([\d,]+) cases over (\d+) shapes", (ROOT / "README.md").read_text())
    assert found, "the README no longer states the suite's size"
    for secret in (TEST_SECRET, "another-secret"):
        suite = build_suite(secret)
        assert (int(found.group(1).replace(",", "")), int(found.group(2))) == (suite.case_count, len(suite.shapes))
