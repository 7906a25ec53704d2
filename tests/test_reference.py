"""The reference solution against flax.linen.BatchNorm and the NumPy oracle."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grader import oracle
from solution.batchnorm import MyBatchNorm, init_and_apply

jax.config.update("jax_platforms", "cpu")


def _inputs(seed: int, steps: int, n: int, d: int, offset: float, scale: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mean = rng.uniform(-offset, offset, d) * scale
    std = scale * np.exp(rng.uniform(-1, 1, d))
    return (mean + std * rng.standard_normal((steps, n, d))).astype(np.float32)


def _run(model: nn.Module, xs: np.ndarray, x_eval: np.ndarray):  # noqa: ANN202
    """init on the first batch, one training apply per batch threading batch_stats,
    then eval: (variables, outputs, statistics after each step, eval output, final)."""
    variables = model.init(jax.random.PRNGKey(0), xs[0], use_running_average=False)
    params, stats = variables["params"], variables["batch_stats"]
    outs, states = [], []
    for x in xs:
        y, upd = model.apply({"params": params, "batch_stats": stats}, x, use_running_average=False, mutable=["batch_stats"])
        stats = upd["batch_stats"]
        outs.append(np.asarray(y))
        states.append(jax.tree.map(np.asarray, stats))
    y_eval, upd = model.apply({"params": params, "batch_stats": stats}, x_eval, use_running_average=True, mutable=["batch_stats"])
    return variables, outs, states, np.asarray(y_eval), upd["batch_stats"]


def _run_reference(xs: np.ndarray, x_eval: np.ndarray):  # noqa: ANN202
    return _run(MyBatchNorm(), xs, x_eval)


def _run_flax(xs: np.ndarray, x_eval: np.ndarray):  # noqa: ANN202
    _, outs, states, y_eval, _ = _run(nn.BatchNorm(momentum=0.9, epsilon=1e-5, use_fast_variance=False), xs, x_eval)
    return outs, states, y_eval


shapes = st.tuples(st.integers(1, 40), st.integers(1, 12))


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1), offset=st.sampled_from([0.0, 1.0, 3.0]),
       scale=st.sampled_from([1e-2, 1.0, 1e3]))
def test_reference_matches_flax_batchnorm_over_several_steps(shape, seed, offset, scale):
    n, d = shape
    xs = _inputs(seed, 3, n, d, offset, scale)
    x_eval = _inputs(seed + 1, 1, n, d, offset, scale)[0]
    _, outs, states, y_eval, _ = _run_reference(xs, x_eval)
    f_outs, f_states, f_eval = _run_flax(xs, x_eval)
    for ours, theirs in zip(outs, f_outs):
        np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=2e-5)
    for ours, theirs in zip(states, f_states):
        np.testing.assert_allclose(ours["running_mean"], theirs["mean"], rtol=1e-5, atol=1e-6 * scale)
        np.testing.assert_allclose(ours["running_var"], theirs["var"], rtol=1e-5, atol=1e-6 * scale**2)
    np.testing.assert_allclose(y_eval, f_eval, rtol=2e-5, atol=2e-5)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1), offset=st.sampled_from([0.0, 2.0]),
       scale=st.sampled_from([1e-2, 1.0, 1e2]))
def test_reference_matches_numpy_oracle_in_both_modes(shape, seed, offset, scale):
    n, d = shape
    xs = _inputs(seed, 3, n, d, offset, scale)
    x_eval = _inputs(seed + 7, 1, n, d, offset, scale)[0]
    variables, outs, states, y_eval, final = _run_reference(xs, x_eval)
    gamma, beta = np.ones(d), np.zeros(d)
    mean, var = np.zeros(d), np.ones(d)
    for x, out, state in zip(xs, outs, states):
        step = oracle.step(x, gamma, beta, mean, var, train=True)
        np.testing.assert_allclose(out, step.y, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(state["running_mean"], step.running_mean, rtol=1e-5, atol=1e-5 * scale)
        np.testing.assert_allclose(state["running_var"], step.running_var, rtol=1e-4, atol=1e-5 * scale**2)
        mean, var = step.running_mean, step.running_var
    step = oracle.step(x_eval, gamma, beta, mean, var, train=False)
    np.testing.assert_allclose(y_eval, step.y, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(final["running_mean"]), states[-1]["running_mean"])


@settings(max_examples=15, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1), offset=st.sampled_from([0.0, 3.0]),
       scale=st.sampled_from([1e-2, 1.0, 1e3]))
def test_flax_default_one_pass_batchnorm_is_within_the_grader_tolerance(shape, seed, offset, scale):
    """flax.linen.BatchNorm(momentum=0.9, epsilon=1e-5) as is (one-pass variance)."""
    from grader.compare import output_tolerance, within

    n, d = shape
    x = _inputs(seed, 1, n, d, offset, scale)[0]
    model = nn.BatchNorm(momentum=0.9, epsilon=1e-5)
    variables = model.init(jax.random.PRNGKey(0), x, use_running_average=False)
    y, _ = model.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    ours = _run_reference(x[None], x)[1][0]
    ones, zeros = np.ones((1, d)), np.zeros((1, d))
    truth = oracle.step(x[None], ones, zeros, zeros, ones, True).y
    tol = output_tolerance(x[None], ones, zeros)
    assert within(np.asarray(y)[None], truth, tol).all()
    assert within(ours[None], truth, tol).all()


def test_init_allocates_without_updating():
    x = _inputs(1, 1, 8, 3, 2.0, 1.0)[0]
    variables = MyBatchNorm().init(jax.random.PRNGKey(0), x, use_running_average=False)
    np.testing.assert_array_equal(variables["batch_stats"]["running_mean"], np.zeros(3))
    np.testing.assert_array_equal(variables["batch_stats"]["running_var"], np.ones(3))
    np.testing.assert_array_equal(variables["params"]["gamma"], np.ones(3))
    np.testing.assert_array_equal(variables["params"]["beta"], np.zeros(3))


def test_init_and_apply_accepts_float_seed_and_flag_and_returns_flat():
    x = _inputs(2, 1, 5, 4, 1.0, 1.0)[0]
    train = np.asarray(init_and_apply(3.0, x, 0.0))
    evaluation = np.asarray(init_and_apply(3.0, x, 1.0))
    assert train.shape == evaluation.shape == (20,)
    np.testing.assert_allclose(train, oracle.step(x, np.ones(4), np.zeros(4), np.zeros(4), np.ones(4), True).y.ravel(), atol=1e-5)
    np.testing.assert_allclose(evaluation, (x / np.sqrt(1 + 1e-5)).ravel(), rtol=1e-6)


def test_gradients_match_the_oracle():
    x = _inputs(3, 1, 16, 5, 1.0, 1.0)[0]
    w = np.random.default_rng(0).standard_normal((16, 5)).astype(np.float32)
    model = MyBatchNorm()
    variables = model.init(jax.random.PRNGKey(0), x, use_running_average=False)

    def loss(x, params):  # noqa: ANN001, ANN202
        y, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                           use_running_average=False, mutable=["batch_stats"])
        return jnp.sum(y * w)

    dx, dparams = jax.grad(loss, argnums=(0, 1))(x, variables["params"])
    want = oracle.train_grads(x, np.ones(5), w)
    np.testing.assert_allclose(dx, want["x"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dparams["gamma"], want["gamma"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dparams["beta"], want["beta"], rtol=1e-5, atol=1e-5)


def test_stub_raises_a_friendly_not_implemented():
    from exercise import batchnorm as stub

    with pytest.raises(NotImplementedError, match="not implemented yet"):
        stub.init_and_apply(0.0, np.ones((2, 2), np.float32), 0.0)
