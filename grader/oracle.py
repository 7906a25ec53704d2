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

    axis: Literal["batch", "features", "features_broadcast", "all"] = "batch"
    norm_ddof: int = 0
    update_ddof: int = 0
    eps: Literal["inside", "outside", "none"] = "inside"
    train_stats: Literal["batch", "running_old", "running_new"] = "batch"
    # crossed: mean and variance read from each other's running statistic; the
    # *_twice ones read one of them for both
    eval_stats: Literal["running", "batch", "crossed", "mean_twice", "var_twice"] = "running"
    update_in_train: bool = True
    update_in_eval: bool = False
    momentum_reversed: bool = False
    momentum: float = MOMENTUM  # another value: flax.linen.BatchNorm's default 0.99, say
    eps_value: float = EPS  # another value: Keras's default 1e-3, say
    affine: Literal["normal", "none", "swapped", "no_gamma", "no_beta", "minus_beta", "one_plus_gamma", "minus_gamma",
                    "gamma_both", "beta_both"] = "normal"
    # How the running statistics move: the contract's EMA; Haiku-style debiased
    # (an EMA of zeros-started hidden values divided by 1 - momentum^t); or the
    # first update replacing them with the batch's (Equinox-style), EMA after.
    update_rule: Literal["ema", "debiased", "first_overwrite"] = "ema"
    # Fitted to what was observed: running = keep * running + take * batch + constant.
    update_weights: tuple[float, float, float] | None = None
    center: Literal["minus_mean", "none", "plus_mean"] = "minus_mean"  # what is divided: x - mean, x, x + mean
    scale: Literal["std", "var", "times_std", "none"] = "std"  # divided by sqrt(var + eps), by var + eps, ...
    # "unclipped": the one-pass E[x^2] - E[x]^2 in float32 without max(., 0): where it
    # cancels (|mean| >> std, e.g. a constant feature) it may come out negative, and
    # the output is NaN there or the contract's value (the model allows either).
    # Other things than mean((x - mean)^2) over the batch: mean(x^2) ("uncentered"),
    # mean((x + mean)^2), or one variance pooled over every element ("pooled").
    variance: Literal["clipped", "unclipped", "uncentered", "plus_mean", "pooled"] = "clipped"

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


def _normalize(x: np.ndarray, mean: np.ndarray, var: np.ndarray, variant: Variant) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        centered = {"minus_mean": x - mean, "none": x, "plus_mean": x + mean}[variant.center]
        if variant.eps == "inside":
            std = np.sqrt(var + variant.eps_value)
        elif variant.eps == "outside":
            std = np.sqrt(var) + variant.eps_value
        else:
            std = np.sqrt(var)
        if variant.scale == "std":
            return centered / std
        if variant.scale == "var":  # divided by the variance: std squared
            return centered / np.square(std)
        if variant.scale == "times_std":
            return centered * std
        return centered


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
    t: int = 1,
) -> Step:
    """One ``apply`` on ``x``; in training mode the statistics update as ``variant`` says.

    ``t`` counts the updates so far including this one (1: the first after init),
    for the update rules that depend on it. With ``output=False`` only the
    statistics are computed (``y`` is empty).
    """
    source = x
    x, gamma, beta = _f64(x), _f64(gamma), _f64(beta)
    old_mean, old_var = _f64(running_mean), _f64(running_var)

    if variant.axis == "batch" and variant.variance in ("uncentered", "plus_mean", "pooled"):
        batch_mean = x.mean(axis=-2)
        mean_row = batch_mean[..., None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            squares = {"uncentered": np.square(x), "plus_mean": np.square(x + mean_row),
                       "pooled": np.square(x - mean_row)}[variant.variance]
            total = squares.sum(axis=-2)
            if variant.variance == "pooled":  # one number for all features
                total = np.broadcast_to(total.sum(axis=-1, keepdims=True) / x.shape[-1], total.shape)
            batch_var = total / (x.shape[-2] - variant.norm_ddof)
            upd_mean, upd_var = batch_mean, total / (x.shape[-2] - variant.update_ddof)
        batch_mean, batch_var = mean_row, batch_var[..., None, :]
    elif variant.axis == "batch":
        batch_mean, batch_var = batch_moments(source, variant.norm_ddof)
        upd_mean, upd_var = batch_moments(source, variant.update_ddof)
        batch_mean, batch_var = batch_mean[..., None, :], batch_var[..., None, :]
    elif variant.axis == "all":  # a mean and variance over every element (no axis given)
        flat = x.reshape(*x.shape[:-2], -1)
        mean_all = flat.mean(axis=-1)[..., None]
        with np.errstate(divide="ignore", invalid="ignore"):
            var_n = np.square(flat - mean_all).sum(axis=-1)[..., None]
            var_norm, var_upd = (var_n / (flat.shape[-1] - ddof) for ddof in (variant.norm_ddof, variant.update_ddof))
        shape = x.shape[:-2] + (x.shape[-1],)
        upd_mean, upd_var = np.broadcast_to(mean_all, shape), np.broadcast_to(var_upd, shape)
        batch_mean, batch_var = mean_all[..., None, :], var_norm[..., None, :]
    else:
        broadcast = variant.axis == "features_broadcast"
        batch_mean, batch_var = _feature_moments(x, variant.norm_ddof, broadcast)
        if broadcast:  # the (N,) row statistics land in the (D,) running ones
            upd_mean, upd_var = _feature_moments(x, variant.update_ddof, True)
            upd_mean, upd_var = upd_mean[..., 0, :], upd_var[..., 0, :]
        elif not output:  # (N, 1) statistics have no (D,) update: this model cannot say what is stored
            raise ValueError("row statistics do not fit the (D,) running statistics")
        else:  # only the output is modelled
            upd_mean, upd_var = old_mean, old_var

    if variant.update_in_train if train else variant.update_in_eval:
        momentum = variant.momentum if variant.momentum != MOMENTUM else momentum
        m = 1.0 - momentum if variant.momentum_reversed else momentum
        if variant.update_weights is not None:
            keep, take, constant = variant.update_weights
            new_mean = keep * old_mean + take * upd_mean + constant
            new_var = keep * old_var + take * upd_var + constant
        elif variant.update_rule == "first_overwrite" and t == 1:
            new_mean, new_var = upd_mean + 0.0 * old_mean, upd_var + 0.0 * old_var
        elif variant.update_rule == "debiased":  # hidden_{t-1} = running_{t-1} * (1 - m^(t-1))
            keep, scale = m * (1.0 - m ** (t - 1)), 1.0 / (1.0 - m ** t)
            new_mean = (keep * old_mean + (1.0 - m) * upd_mean) * scale
            new_var = (keep * old_var + (1.0 - m) * upd_var) * scale
        else:
            new_mean = m * old_mean + (1.0 - m) * upd_mean
            new_var = m * old_var + (1.0 - m) * upd_var
    else:
        new_mean, new_var = old_mean, old_var

    if not output:
        return Step(y=np.empty(0), running_mean=new_mean, running_var=new_var)
    source = variant.train_stats if train else variant.eval_stats
    if source in ("running", "running_old"):
        mean, var = old_mean[..., None, :], old_var[..., None, :]
    elif source in ("crossed", "mean_twice", "var_twice"):
        mean = (old_var if source in ("crossed", "var_twice") else old_mean)[..., None, :]
        var = (old_mean if source in ("crossed", "mean_twice") else old_var)[..., None, :]
    elif source == "running_new":
        mean, var = new_mean[..., None, :], new_var[..., None, :]
    else:
        mean, var = batch_mean, batch_var

    x_hat = _normalize(x, mean, var, variant)
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
    elif variant.affine == "one_plus_gamma":
        y = (1.0 + g) * x_hat + b
    elif variant.affine == "minus_gamma":
        y = b - g * x_hat
    elif variant.affine == "gamma_both":  # gamma as the shift too
        y = g * x_hat + g
    elif variant.affine == "beta_both":  # beta as the scale too
        y = b * x_hat + b
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


def model_grads(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                running_var: np.ndarray, w: np.ndarray, variant: Variant) -> dict[str, np.ndarray]:
    """Gradients of ``sum(w * y)`` in training mode under ``variant``, by central
    differences in float64: the gradient a module with that (named) mistake has,
    so that its gradients are judged apart from the mistake charged elsewhere.

    Every perturbed input is one more case of a single batched :func:`step`.
    """
    x, gamma, beta, w = _f64(x), _f64(gamma), _f64(beta), _f64(w)
    cases, n, d = x.shape
    out: dict[str, np.ndarray] = {}
    for name, base in (("x", x), ("gamma", gamma), ("beta", beta)):
        size = base[0].size
        h = 1e-6 * (1.0 + np.abs(base).reshape(cases, size))  # (cases, size)
        eye = np.eye(size)
        plus, minus = [], []
        for sign, into in ((1.0, plus), (-1.0, minus)):
            bumped = base.reshape(cases, 1, size) + sign * h[:, :, None] * eye[None]  # (cases, size, size)
            into.append(bumped.reshape(cases * size, *base.shape[1:]))
        args = {"x": x, "gamma": gamma, "beta": beta}

        def loss(values: np.ndarray) -> np.ndarray:
            full = {k: np.repeat(v, size, axis=0) for k, v in args.items()}
            full[name] = values
            y = step(full["x"], full["gamma"], full["beta"], np.repeat(_f64(running_mean), size, axis=0),
                     np.repeat(_f64(running_var), size, axis=0), True, variant).y
            return (y * np.repeat(w, size, axis=0)).sum(axis=(-2, -1)).reshape(cases, size)

        out[name] = ((loss(plus[0]) - loss(minus[0])) / (2.0 * h)).reshape(base.shape)
    return out
