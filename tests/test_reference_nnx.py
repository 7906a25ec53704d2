"""The NNX reference solution against flax.nnx.BatchNorm and the NumPy oracle."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.errors import TraceContextError
from hypothesis import given, settings
from hypothesis import strategies as st

from grader import oracle
from solution.nnx.batchnorm import MyBatchNorm, init_and_apply

jax.config.update("jax_platforms", "cpu")


def _inputs(seed: int, steps: int, n: int, d: int, offset: float, scale: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mean = rng.uniform(-offset, offset, d) * scale
    std = scale * np.exp(rng.uniform(-1, 1, d))
    return (mean + std * rng.standard_normal((steps, n, d))).astype(np.float32)


def _stats(model: nnx.Module, mean: str, var: str) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(getattr(model, mean)[...]), np.asarray(getattr(model, var)[...])


@nnx.jit
def _call(model: nnx.Module, x: jax.Array) -> jax.Array:
    return model(x)


def _run(model: nnx.Module, xs: np.ndarray, x_eval: np.ndarray, mean: str = "running_mean", var: str = "running_var"):  # noqa: ANN202
    """One training call per batch (the model updates itself), then eval:
    (outputs, statistics after each step, eval output, statistics after eval)."""
    model.train()
    outs, states = [], []
    for x in xs:
        outs.append(np.asarray(_call(model, jnp.asarray(x))))
        states.append(_stats(model, mean, var))
    model.eval()
    y_eval = np.asarray(_call(model, jnp.asarray(x_eval)))
    return outs, states, y_eval, _stats(model, mean, var)


def _run_flax(xs: np.ndarray, x_eval: np.ndarray, **kwargs):  # noqa: ANN202, ANN003
    model = nnx.BatchNorm(xs.shape[-1], momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0), **kwargs)
    return _run(model, xs, x_eval, "mean", "var")


shapes = st.tuples(st.integers(1, 40), st.integers(1, 12))


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1), offset=st.sampled_from([0.0, 1.0, 3.0]),
       scale=st.sampled_from([1e-2, 1.0, 1e3]))
def test_reference_matches_flax_nnx_batchnorm_over_several_steps(shape, seed, offset, scale):
    n, d = shape
    xs = _inputs(seed, 3, n, d, offset, scale)
    x_eval = _inputs(seed + 1, 1, n, d, offset, scale)[0]
    outs, states, y_eval, final = _run(MyBatchNorm(d, rngs=nnx.Rngs(0)), xs, x_eval)
    f_outs, f_states, f_eval, f_final = _run_flax(xs, x_eval, use_fast_variance=False)
    for ours, theirs in zip(outs, f_outs):
        np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=2e-5)
    for (mean, var), (f_mean, f_var) in zip(states + [final], f_states + [f_final]):
        np.testing.assert_allclose(mean, f_mean, rtol=1e-5, atol=1e-6 * scale)
        np.testing.assert_allclose(var, f_var, rtol=1e-5, atol=1e-6 * scale**2)
    np.testing.assert_allclose(y_eval, f_eval, rtol=2e-5, atol=2e-5)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1), offset=st.sampled_from([0.0, 2.0]),
       scale=st.sampled_from([1e-2, 1.0, 1e2]))
def test_reference_matches_numpy_oracle_in_both_modes(shape, seed, offset, scale):
    n, d = shape
    xs = _inputs(seed, 3, n, d, offset, scale)
    x_eval = _inputs(seed + 7, 1, n, d, offset, scale)[0]
    outs, states, y_eval, final = _run(MyBatchNorm(d, rngs=nnx.Rngs(0)), xs, x_eval)
    gamma, beta = np.ones(d), np.zeros(d)
    mean, var = np.zeros(d), np.ones(d)
    for x, out, (got_mean, got_var) in zip(xs, outs, states):
        step = oracle.step(x, gamma, beta, mean, var, train=True)
        np.testing.assert_allclose(out, step.y, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got_mean, step.running_mean, rtol=1e-5, atol=1e-5 * scale)
        np.testing.assert_allclose(got_var, step.running_var, rtol=1e-4, atol=1e-5 * scale**2)
        mean, var = step.running_mean, step.running_var
    step = oracle.step(x_eval, gamma, beta, mean, var, train=False)
    np.testing.assert_allclose(y_eval, step.y, rtol=1e-4, atol=1e-4)
    # eval writes nothing: the statistics are bit for bit those of the last training step
    np.testing.assert_array_equal(final[0], states[-1][0])
    np.testing.assert_array_equal(final[1], states[-1][1])


@settings(max_examples=15, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1), offset=st.sampled_from([0.0, 2.0]),
       scale=st.sampled_from([1e-2, 1.0, 1e2]))
def test_reference_matches_the_oracle_from_a_trained_state(shape, seed, offset, scale):
    """gamma/beta and running statistics far from ones/zeros, written in place as a
    checkpoint restore (nnx.update) would."""
    n, d = shape
    x = _inputs(seed, 1, n, d, offset, scale)[0]
    rng = np.random.default_rng(seed)
    g, b = rng.uniform(0.5, 2.0, d) * rng.choice([-1, 1], d), rng.uniform(-2, 2, d)
    rm, rv = rng.uniform(-2, 2, d) * scale, rng.uniform(0.25, 4.0, d) * scale**2
    for train in (True, False):
        model = MyBatchNorm(d, rngs=nnx.Rngs(0))
        _, state = nnx.split(model)
        values = {"gamma": g, "beta": b, "running_mean": rm, "running_var": rv}
        for name, value in values.items():
            state[name] = state[name].replace(jnp.asarray(value, jnp.float32))
        nnx.update(model, state)
        model.train() if train else model.eval()
        y = np.asarray(model(jnp.asarray(x)))
        want = oracle.step(x, g.astype(np.float32), b.astype(np.float32), rm.astype(np.float32),
                           rv.astype(np.float32), train=train)
        np.testing.assert_allclose(y, want.y, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(model.running_mean[...], want.running_mean, rtol=1e-5, atol=1e-5 * scale)
        np.testing.assert_allclose(model.running_var[...], want.running_var, rtol=1e-4, atol=1e-5 * scale**2)


@settings(max_examples=15, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1), offset=st.sampled_from([0.0, 3.0]),
       scale=st.sampled_from([1e-2, 1.0, 1e3]))
def test_flax_default_one_pass_batchnorm_is_within_the_grader_tolerance(shape, seed, offset, scale):
    """flax.nnx.BatchNorm(D, momentum=0.9, epsilon=1e-5) as is (one-pass variance)."""
    from grader.compare import output_tolerance, within

    n, d = shape
    x = _inputs(seed, 1, n, d, offset, scale)[0]
    theirs = _run_flax(x[None], x)[0][0]
    ours = _run(MyBatchNorm(d, rngs=nnx.Rngs(0)), x[None], x)[0][0]
    ones, zeros = np.ones((1, d)), np.zeros((1, d))
    truth = oracle.step(x[None], ones, zeros, zeros, ones, True).y
    tol = output_tolerance(x[None], ones, zeros)
    assert within(theirs[None], truth, tol).all()
    assert within(ours[None], truth, tol).all()


def test_eager_calls_give_what_nnx_jit_calls_give():
    xs = _inputs(8, 3, 7, 4, 2.0, 1.0)
    jitted = _run(MyBatchNorm(4, rngs=nnx.Rngs(0)), xs[:2], xs[2])
    model = MyBatchNorm(4, rngs=nnx.Rngs(0))
    eager = [np.asarray(model(jnp.asarray(x))) for x in xs[:2]]
    model.eval()
    eager.append(np.asarray(model(jnp.asarray(xs[2]))))
    for ours, theirs in zip(eager, [*jitted[0], jitted[2]]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model.running_var[...], jitted[3][1], rtol=1e-6)


def test_construction_declares_the_contract_and_starts_in_training_mode():
    model = MyBatchNorm(3, rngs=nnx.Rngs(0))
    assert type(model.gamma) is nnx.Param and type(model.beta) is nnx.Param
    assert type(model.running_mean) is nnx.BatchStat and type(model.running_var) is nnx.BatchStat
    np.testing.assert_array_equal(model.gamma[...], np.ones(3))
    np.testing.assert_array_equal(model.beta[...], np.zeros(3))
    np.testing.assert_array_equal(model.running_mean[...], np.zeros(3))
    np.testing.assert_array_equal(model.running_var[...], np.ones(3))
    assert model.use_running_average is False
    assert (model.momentum, model.epsilon) == (0.9, 1e-5)
    other = MyBatchNorm(2, momentum=0.5, epsilon=1e-3, rngs=nnx.Rngs(1))
    assert (other.momentum, other.epsilon) == (0.5, 1e-3)


def test_eval_and_train_toggle_use_running_average_also_when_nested():
    model = MyBatchNorm(3, rngs=nnx.Rngs(0))
    model.eval()
    assert model.use_running_average is True
    model.train()
    assert model.use_running_average is False

    class Net(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.linear = nnx.Linear(4, 3, rngs=rngs)
            self.bn = MyBatchNorm(3, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.bn(self.linear(x))

    net = Net(nnx.Rngs(0))
    net.eval()
    assert net.bn.use_running_average is True
    net.train()
    assert net.bn.use_running_average is False


def test_an_optimizer_over_params_trains_gamma_beta_and_leaves_the_statistics_to_the_update():
    x = jnp.asarray(_inputs(4, 1, 8, 3, 2.0, 1.0)[0])
    target = jnp.ones((8, 3))
    model = MyBatchNorm(3, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adamw(0.1), wrt=nnx.Param)
    assert set(nnx.state(model, nnx.Param).keys()) == {"gamma", "beta"}
    assert set(nnx.state(model, nnx.BatchStat).keys()) == {"running_mean", "running_var"}

    @nnx.jit
    def train_step(model: MyBatchNorm, optimizer: nnx.Optimizer, x: jax.Array) -> None:
        grads = nnx.grad(lambda model: jnp.mean(jnp.square(model(x) - target)))(model)
        optimizer.update(model, grads)

    train_step(model, optimizer, x)
    step = oracle.step(np.asarray(x), np.ones(3), np.zeros(3), np.zeros(3), np.ones(3), train=True)
    np.testing.assert_allclose(model.running_mean[...], step.running_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.running_var[...], step.running_var, rtol=1e-5, atol=1e-6)
    assert not np.allclose(model.gamma[...], 1.0)  # the optimizer did run


def test_split_merge_round_trip_and_a_functional_jax_jit_step():
    x = jnp.asarray(_inputs(5, 1, 6, 4, 1.0, 1.0)[0])
    model = MyBatchNorm(4, rngs=nnx.Rngs(0))
    graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)

    @jax.jit
    def step(params: nnx.State, stats: nnx.State, x: jax.Array):  # noqa: ANN202
        model = nnx.merge(graphdef, params, stats)
        y = model(x)
        return y, nnx.state(model, nnx.BatchStat)

    y, new_stats = step(params, stats, x)
    nnx.update(model, new_stats)
    want = oracle.step(np.asarray(x), np.ones(4), np.zeros(4), np.zeros(4), np.ones(4), train=True)
    np.testing.assert_allclose(y, want.y, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.running_mean[...], want.running_mean, rtol=1e-5, atol=1e-6)


def test_a_plain_jax_jit_over_the_stateful_call_raises_and_nnx_jit_does_not():
    """The premise of the stub's TODO 6 and of the jax_jit_on_state pitfall."""
    x = jnp.asarray(_inputs(6, 1, 5, 2, 1.0, 1.0)[0])
    model = MyBatchNorm(2, rngs=nnx.Rngs(0))
    with pytest.raises(TraceContextError, match="different trace level"):
        jax.jit(lambda x: model(x))(x)
    nnx.jit(lambda model, x: model(x))(model, x)
    np.testing.assert_allclose(model.running_mean[...], 0.1 * np.asarray(x).mean(axis=0), rtol=1e-5, atol=1e-7)


def test_init_and_apply_accepts_float_seed_and_flag_and_returns_flat():
    x = _inputs(2, 1, 5, 4, 1.0, 1.0)[0]
    train = np.asarray(init_and_apply(3.0, x, 0.0))
    evaluation = np.asarray(init_and_apply(3.0, x, 1.0))
    assert train.shape == evaluation.shape == (20,)
    np.testing.assert_allclose(train, oracle.step(x, np.ones(4), np.zeros(4), np.zeros(4), np.ones(4), True).y.ravel(),
                               atol=1e-5)
    np.testing.assert_allclose(evaluation, (x / np.sqrt(1 + 1e-5)).ravel(), rtol=1e-6)


def test_init_and_apply_under_an_outer_jax_jit_as_the_grader_runs_it():
    x = _inputs(3, 1, 4, 3, 1.0, 1.0)[0]
    for flag in (0.0, 1.0):
        jitted = jax.jit(lambda x, flag=flag: init_and_apply(7.0, x, flag))(x)
        np.testing.assert_allclose(jitted, init_and_apply(7.0, x, flag), rtol=1e-6, atol=1e-6)


def test_gradients_match_the_oracle():
    x = _inputs(3, 1, 16, 5, 1.0, 1.0)[0]
    w = np.random.default_rng(0).standard_normal((16, 5)).astype(np.float32)
    model = MyBatchNorm(5, rngs=nnx.Rngs(0))
    grads = nnx.grad(lambda model, x: jnp.sum(model(x) * w), argnums=(0, 1))(model, jnp.asarray(x))
    want = oracle.train_grads(x, np.ones(5), w)
    np.testing.assert_allclose(grads[1], want["x"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads[0]["gamma"][...], want["gamma"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grads[0]["beta"][...], want["beta"], rtol=1e-5, atol=1e-5)


def test_stub_raises_a_friendly_not_implemented_naming_its_own_instructions():
    """The message names the NNX README (the kit rewrites the path to INSTRUCTIONS.md),
    never the Linen exercise's files."""
    from exercise.nnx import batchnorm as stub

    root = Path(__file__).resolve().parent.parent
    for call in (lambda: stub.MyBatchNorm(2, rngs=nnx.Rngs(0)),
                 lambda: stub.init_and_apply(0.0, np.ones((2, 2), np.float32), 0.0)):
        with pytest.raises(NotImplementedError, match="not implemented yet") as raised:
            call()
        named = re.findall(r"[\w./-]+\.(?:md|py)\b", str(raised.value))
        assert named == ["exercise/nnx/README.md"] and (root / named[0]).is_file()