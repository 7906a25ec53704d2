"""The tolerance admits sound float32 implementations and rejects the mistakes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grader import oracle
from grader.cases import FAMILIES, _draw
from grader.compare import output_tolerance, stats_tolerance, within
from grader.oracle import Variant


def _float32_one_pass(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """flax.linen.BatchNorm's default arithmetic, in float32 NumPy."""
    x = x.astype(np.float32)
    mean = x.mean(axis=-2, keepdims=True, dtype=np.float32)
    mean_sq = (x * x).mean(axis=-2, keepdims=True, dtype=np.float32)
    var = np.maximum(np.float32(0), mean_sq - mean * mean)
    return (x - mean) / np.sqrt(var + np.float32(eps))


def _float32_two_pass(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    x = x.astype(np.float32)
    mean = x.mean(axis=-2, keepdims=True, dtype=np.float32)
    var = np.square(x - mean).mean(axis=-2, keepdims=True, dtype=np.float32)
    return (x - mean) / np.sqrt(var + np.float32(eps))


shapes = st.sampled_from([(1, 4), (2, 3), (3, 1), (5, 5), (32, 10), (97, 7), (256, 24), (1024, 16)])


@settings(max_examples=60, deadline=None)
@given(shape=shapes, family=st.sampled_from(FAMILIES), seed=st.integers(0, 2**32 - 1),
       impl=st.sampled_from([_float32_one_pass, _float32_two_pass]))
def test_sound_float32_arithmetic_passes_on_every_scored_family(shape, family, seed, impl):
    n, d = shape
    x = _draw(np.random.default_rng(seed), family, (4, n, d), d)
    ones, zeros = np.ones((4, d)), np.zeros((4, d))
    truth = oracle.step(x, ones, zeros, zeros, ones, True).y
    assert within(impl(x), truth, output_tolerance(x, ones, zeros)).all()


@pytest.mark.parametrize("mistake", [
    Variant(norm_ddof=1), Variant(eps="outside"), Variant(eps="none"),
    Variant(train_stats="running_old"), Variant(axis="features"),
])
def test_each_output_mistake_fails_on_the_hidden_kinds_of_input(mistake):
    rng = np.random.default_rng(0)
    caught = False
    for n, d in [(2, 3), (8, 3), (32, 10)]:
        for family in FAMILIES:
            x = _draw(rng, family, (4, n, d), d)
            ones, zeros = np.ones((4, d)), np.zeros((4, d))
            wrong = oracle.step(x, ones, zeros, zeros, ones, True, mistake).y
            truth = oracle.step(x, ones, zeros, zeros, ones, True).y
            with np.errstate(invalid="ignore"):
                caught |= not within(wrong.astype(np.float32), truth, output_tolerance(x, ones, zeros)).all()
    assert caught


@pytest.mark.parametrize("mistake", [Variant(momentum_reversed=True), Variant(update_ddof=1), Variant(update_in_train=False)])
def test_each_update_mistake_fails_the_stats_tolerance(mistake):
    rng = np.random.default_rng(1)
    x = _draw(rng, "offset", (6, 8, 3), 3)
    mean, var = rng.uniform(-1, 1, (6, 3)), rng.uniform(0.5, 2, (6, 3))
    ones, zeros = np.ones((6, 3)), np.zeros((6, 3))
    truth = oracle.step(x, ones, zeros, mean, var, True)
    wrong = oracle.step(x, ones, zeros, mean, var, True, mistake)
    tol_mean, tol_var = stats_tolerance(x, mean, var)
    assert not (within(wrong.running_mean, truth.running_mean, tol_mean).all()
                and within(wrong.running_var, truth.running_var, tol_var).all())


def test_large_offsets_break_one_pass_variance_which_is_why_they_are_advisory():
    x = _draw(np.random.default_rng(2), "large_offset", (2, 64, 4), 4)
    ones, zeros = np.ones((2, 4)), np.zeros((2, 4))
    truth = oracle.step(x, ones, zeros, zeros, ones, True).y
    assert not within(_float32_one_pass(x), truth, output_tolerance(x, ones, zeros)).all()


def test_a_degenerate_tolerance_is_never_printed():
    from grader.compare import Mismatch

    text = Mismatch(0, (0, 2), 0.5, 1e-30, False).summary()
    assert "1e-30" not in text and "exact" in text
    assert "tolerance 0.001" in Mismatch(0, (0, 2), 0.5, 1e-3, False).summary()
