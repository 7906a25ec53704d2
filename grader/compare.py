"""Float32-aware tolerances, and comparisons that refuse anything but finite arrays.

A correct float32 BatchNorm differs from the float64 truth by rounding, and that
rounding grows with how badly conditioned each feature is. For an output
``y = gamma * (x - mean) / sqrt(var + eps) + beta`` we allow, per element::

    tol = K(N) * eps32 * (|gamma| * (a + |x_hat| * b) + |beta|)
    a = max|x| / sqrt(var + eps)                 rounding of x and of the mean
    b = 1 + (mean^2 + var) / (var + eps)         cancellation in E[x^2] - E[x]^2
    K(N) = 16 + 2 sqrt(N)                        accumulated error of an N-term sum

``b`` is what lets the one-pass variance that ``flax.linen.BatchNorm`` uses by
default pass, while scored cases keep |mean| within a few standard deviations so
that ``b`` stays small and the real mistakes (N-1 variance, eps outside the root,
momentum reversed) stay orders of magnitude above ``tol``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from grader.oracle import EPS, batch_moments

F32_EPS = float(np.finfo(np.float32).eps)


def safety(n: int) -> float:
    return 16.0 + 2.0 * float(np.sqrt(n))


def _max_abs(x: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(x, np.float64)).max(axis=-2)


def output_tolerance(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                     mean: np.ndarray | None = None, var: np.ndarray | None = None,
                     eps: str = "inside", center: str = "minus_mean", gain: str = "std") -> np.ndarray:
    """Per-element tolerance of an output normalized with ``mean``/``var``
    (the batch's own when omitted: then cancellation in the variance counts too).
    ``eps`` says where the model puts eps, which sets how much rounding is amplified;
    ``center`` and ``gain`` describe a model that divides something else than
    x - mean (x, x + mean) by something else than the standard deviation (the
    variance, nothing) or multiplies by it: the same rounding, amplified as it is."""
    batch = mean is None
    if batch:
        mean, var = batch_moments(x)
    x = np.asarray(x, np.float64)
    mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
    with np.errstate(divide="ignore"):
        if eps == "inside":  # |var + eps|: a model may normalize with a (slightly) negative "variance"
            scale = np.sqrt(np.abs(var + EPS))
        elif eps == "outside":
            scale = np.sqrt(np.abs(var)) + EPS
        else:
            scale = np.sqrt(np.abs(var))
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (_max_abs(x) + np.abs(mean)) / scale
        b = 1.0 + (np.square(mean) + np.abs(var)) / (np.abs(var) + EPS) if batch else np.ones_like(a)
        numerator = {"minus_mean": x - mean[..., None, :], "none": x, "plus_mean": x + mean[..., None, :]}[center]
        x_hat = np.abs(numerator) / scale[..., None, :]
        amplify = {"std": 1.0, "var": 1.0 / scale, "times_std": np.square(scale), "none": scale}[gain]
    g, bb = np.abs(gamma)[..., None, :] * np.broadcast_to(amplify, np.shape(scale))[..., None, :], np.abs(beta)[..., None, :]
    return safety(x.shape[-2]) * F32_EPS * (g * (a[..., None, :] + x_hat * b[..., None, :]) + bb) + 1e-30


def stats_tolerance(x: np.ndarray, old_mean: np.ndarray, old_var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tolerances of the running mean and variance after one update with ``x``."""
    x = np.asarray(x, np.float64)
    k = safety(x.shape[-2]) * F32_EPS
    peak = _max_abs(x)
    return (k * (peak + np.abs(old_mean)) + 1e-30, k * (np.square(peak) + np.abs(old_var)) + 1e-30)


def grad_tolerance(x: np.ndarray, gamma: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    mean, var = batch_moments(x)
    x = np.asarray(x, np.float64)
    n = x.shape[-2]
    scale = np.sqrt(var + EPS)
    a = (_max_abs(x) + np.abs(mean)) / scale
    b = 1.0 + (np.square(mean) + var) / (var + EPS)
    w_peak = _max_abs(w)
    k = safety(n) * F32_EPS
    dx = k * (np.abs(gamma) / scale * w_peak * (2.0 + a) * b)[..., None, :]
    return {"x": dx + 1e-30, "gamma": k * n * w_peak * a * b + 1e-30, "beta": k * n * w_peak + 1e-30}


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """Where an observed array is furthest outside its tolerance (no values)."""

    case: int
    index: tuple[int, ...]
    error: float
    tolerance: float
    nonfinite: bool

    def summary(self) -> str:
        where = f" at feature {self.index[-1]}" if self.index else ""
        if self.nonfinite:
            return f"a NaN or infinite value{where}"
        if self.tolerance < 1e-12:  # e.g. gamma = 0: the right value is exact, no rounding to allow for
            return f"max error {self.error:.2g}{where} (the expected value is exact here)"
        return f"max error {self.error:.2g}{where} (tolerance {self.tolerance:.2g})"


def within(observed: np.ndarray, expected: np.ndarray, tol: np.ndarray, undefined_ok: bool = False) -> np.ndarray:
    """Per-case verdicts: True where every element of the case is within ``tol``.

    A NaN or infinity never matches, unless ``undefined_ok`` and the expectation
    itself is not finite: a model of a mistake that divides by zero, where float32
    code may produce anything from NaN to rounding noise. (The contract never
    divides by zero; an expectation computed from a student's NaN state is no
    excuse, so the verdict itself never uses ``undefined_ok``.)
    """
    observed = np.asarray(observed, np.float64)
    expected = np.asarray(expected, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        ok = np.abs(observed - expected) <= tol
        if undefined_ok:
            ok |= ~np.isfinite(expected)
    return ok.reshape(ok.shape[0], -1).all(axis=1)


def worst(observed: np.ndarray, expected: np.ndarray, tol: np.ndarray) -> Mismatch | None:
    """The element furthest outside tolerance, or None if all are within."""
    observed = np.asarray(observed, np.float64)
    expected = np.asarray(expected, np.float64)
    tol = np.broadcast_to(tol, observed.shape)
    nonfinite = ~np.isfinite(observed)
    if nonfinite.any():
        idx = np.unravel_index(int(np.argmax(nonfinite)), observed.shape)
        return Mismatch(int(idx[0]), tuple(int(i) for i in idx[1:]), float("nan"), float(tol[idx]), True)
    with np.errstate(invalid="ignore", over="ignore"):
        ratio = np.abs(observed - expected) / tol
    if not (ratio > 1).any():
        return None
    flat = int(np.nanargmax(ratio))
    idx = np.unravel_index(flat, observed.shape)
    return Mismatch(int(idx[0]), tuple(int(i) for i in idx[1:]),
                    float(abs(observed[idx] - expected[idx])), float(tol[idx]), False)
