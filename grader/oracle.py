"""Independent NumPy float64 model of BatchNorm, correct or with a named mistake.

The grader never trusts the reference module for expected values: it recomputes
every step here, in float64, from the float32 inputs the student's code saw. The
same function, with a :class:`Variant`, models each pitfall, so that a failed
comparison can be explained by the mistake that reproduces it.

All functions take inputs with any leading case axes: ``x`` is ``(..., N, D)``,
per-feature arrays are ``(..., D)``.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Literal

import numpy as np

MOMENTUM = 0.9
EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way of computing BatchNorm; the defaults are the contract."""

    axis: Literal["batch", "features", "features_broadcast"] = "batch"
    norm_ddof: int = 0
    update_ddof: int = 0
    eps: Literal["inside", "outside", "none"] = "inside"
    train_stats: Literal["batch", "running_old", "running_new"] = "batch"
    eval_stats: Literal["running", "batch"] = "running"
    update_in_train: bool = True
    update_in_eval: bool = False
    momentum_reversed: bool = False
    momentum: float = MOMENTUM  # another value: flax.linen.BatchNorm's default 0.99, say
    eps_value: float = EPS  # another value: Keras's default 1e-3, say
    affine: Literal["normal", "none", "swapped", "no_gamma", "no_beta", "minus_beta"] = "normal"
    # "unclipped": the one-pass E[x^2] - E[x]^2 in float32 without max(., 0): where it
    # cancels (|mean| >> std, e.g. a constant feature) it may come out negative, and
    # the output is NaN there or the contract's value (the model allows either).
    variance: Literal["clipped", "unclipped"] = "clipped"

    def differs_in(self) -> set[str]:
        return {f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(CONTRACT, f.name)}


CONTRACT = Variant()


@dataclasses.dataclass(frozen=True)
class Step:
    """Output and running statistics after one ``apply``."""

    y: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float64)


_MOMENTS: dict[tuple[int, int], tuple[weakref.ref, tuple[np.ndarray, np.ndarray]]] = {}


def batch_moments(x: np.ndarray, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and variance over the batch axis (-2), two-pass.

    Remembered per input array (while it lives): every check and every model of a
    mistake asks for the moments of the same hidden inputs.
    """
    key = (id(x), ddof)
    hit = _MOMENTS.get(key)
    if hit is not None and hit[0]() is x:
        return hit[1]
    source = x
    x = _f64(x)
    mean = x.mean(axis=-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.square(x - mean[..., None, :]).sum(axis=-2) / (x.shape[-2] - ddof)
    try:
        if len(_MOMENTS) > 4096:
            _MOMENTS.clear()
        _MOMENTS[key] = (weakref.ref(source), (mean, var))
    except TypeError:  # not weak-referenceable: just don't remember it
        pass
    return mean, var


def _feature_moments(x: np.ndarray, ddof: int, broadcast: bool) -> tuple[np.ndarray, np.ndarray]:
    """LayerNorm-style statistics, as a student who reduced over axis 1 gets them,
    already shaped to broadcast against ``x``."""
    mean = x.mean(axis=-1)  # (..., N)
    with np.errstate(divide="ignore", invalid="ignore"):
        if broadcast:  # (N,) against (N, D) lines up with the features: needs N == D
            var = np.square(x - mean[..., None, :]).sum(axis=-1) / (x.shape[-1] - ddof)
            return mean[..., None, :], var[..., None, :]
        var = np.square(x - mean[..., :, None]).sum(axis=-1) / (x.shape[-1] - ddof)
    return mean[..., :, None], var[..., :, None]


def _normalize(x: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: str, value: float = EPS) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if eps == "inside":
            return (x - mean) / np.sqrt(var + value)
        if eps == "outside":
            return (x - mean) / (np.sqrt(var) + value)
        return (x - mean) / np.sqrt(var)


def step(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    train: bool,
    variant: Variant = CONTRACT,
    momentum: float = MOMENTUM,
    output: bool = True,
) -> Step:
    """One ``apply`` on ``x``; in training mode the statistics update as ``variant`` says.

    With ``output=False`` only the statistics are computed (``y`` is empty).
    """
    source = x
    x, gamma, beta = _f64(x), _f64(gamma), _f64(beta)
    old_mean, old_var = _f64(running_mean), _f64(running_var)

    if variant.axis == "batch":
        batch_mean, batch_var = batch_moments(source, variant.norm_ddof)
        upd_mean, upd_var = batch_moments(source, variant.update_ddof)
        batch_mean, batch_var = batch_mean[..., None, :], batch_var[..., None, :]
    else:
        broadcast = variant.axis == "features_broadcast"
        batch_mean, batch_var = _feature_moments(x, variant.norm_ddof, broadcast)
        if broadcast:  # the (N,) row statistics land in the (D,) running ones
            upd_mean, upd_var = _feature_moments(x, variant.update_ddof, True)
            upd_mean, upd_var = upd_mean[..., 0, :], upd_var[..., 0, :]
        else:  # (N, 1) statistics: no (D,) update to model, only the output
            upd_mean, upd_var = old_mean, old_var

    if variant.update_in_train if train else variant.update_in_eval:
        momentum = variant.momentum if variant.momentum != MOMENTUM else momentum
        m = 1.0 - momentum if variant.momentum_reversed else momentum
        new_mean = m * old_mean + (1.0 - m) * upd_mean
        new_var = m * old_var + (1.0 - m) * upd_var
    else:
        new_mean, new_var = old_mean, old_var

    if not output:
        return Step(y=np.empty(0), running_mean=new_mean, running_var=new_var)
    source = variant.train_stats if train else variant.eval_stats
    if source in ("running", "running_old"):
        mean, var = old_mean[..., None, :], old_var[..., None, :]
    elif source == "running_new":
        mean, var = new_mean[..., None, :], new_var[..., None, :]
    else:
        mean, var = batch_mean, batch_var

    x_hat = _normalize(x, mean, var, variant.eps, variant.eps_value)
    if variant.variance == "unclipped" and source == "batch":
        # float32 cancellation of the one-pass form: about eps32 * mean^2 of error
        cancels = batch_var <= 64.0 * float(np.finfo(np.float32).eps) * np.square(batch_mean)
        x_hat = np.where(cancels, np.nan, x_hat)
    g, b = gamma[..., None, :], beta[..., None, :]
    if variant.affine == "normal":
        y = g * x_hat + b
    elif variant.affine == "swapped":
        y = b * x_hat + g
    elif variant.affine == "no_gamma":
        y = x_hat + b
    elif variant.affine == "no_beta":
        y = g * x_hat
    elif variant.affine == "minus_beta":
        y = g * x_hat - b
    else:
        y = x_hat
    return Step(y=y, running_mean=new_mean, running_var=new_var)


def train_grads(x: np.ndarray, gamma: np.ndarray, w: np.ndarray, stop_stats: bool = False) -> dict[str, np.ndarray]:
    """Gradients of ``sum(w * y)`` in training mode w.r.t. x, gamma and beta.

    With ``stop_stats`` the batch mean and variance are treated as constants, as
    in a module that wraps them in ``stop_gradient``.
    """
    mean, var = batch_moments(x)
    x, gamma, w = _f64(x), _f64(gamma)[..., None, :], _f64(w)
    inv_std = 1.0 / np.sqrt(var + EPS)[..., None, :]
    x_hat = (x - mean[..., None, :]) * inv_std
    g = w * gamma
    if stop_stats:
        dx = g * inv_std
    else:
        dx = inv_std * (g - g.mean(axis=-2, keepdims=True) - x_hat * (g * x_hat).mean(axis=-2, keepdims=True))
    return {"x": dx, "gamma": (w * x_hat).sum(axis=-2), "beta": w.sum(axis=-2)}
