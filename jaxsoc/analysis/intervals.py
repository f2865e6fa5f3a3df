"""Confidence intervals of a mean: the one way jaxsoc's tables state their uncertainty.

Every "± half width" and "[low, high]" that a tool prints (sweeps, paired comparisons, the
strategic leads, PSRO, red-blue, meta adaptation, seed 004's study) is the two-sided Student t
interval of a mean over independent units (seeds, episodes, pairs):

    mean ± t_{(1 + level) / 2, n - 1} * sd / sqrt(n)        (sd: the sample sd, ddof = 1)

t rather than the normal 1.96 because most tables have 2-25 seeds, where 1.96 is too narrow
(t for 4 degrees of freedom is 2.776); over thousands of episodes the two agree to 3 digits.
The quantile comes from scipy, which jax itself depends on.
"""
from __future__ import annotations

import math
from typing import Dict, Sequence

import numpy as np


def finite_mean(values, axis=None):
    """Mean of the finite values of `values` over `axis` (every axis when None): NaN where there
    are none, e.g. the first step in a phase no episode of a seed reached, or the MTTD of a seed
    that detected nothing. A float for a whole reduction, else an array (`[n, ...] -> [...]` for
    axis 0). Unlike `np.nanmean`, infinities are left out too, and no "Mean of empty slice"
    warning is printed for an empty column (it is a result, not a fault)."""
    x = np.asarray(values, np.float64)
    ok = np.isfinite(x)
    count = ok.sum(axis=axis)
    total = np.where(ok, x, 0.0).sum(axis=axis)
    mean = np.divide(total, count, out=np.full(np.shape(total), np.nan), where=count > 0)
    return float(mean) if mean.ndim == 0 else mean


def finite_std(values, axis=None):
    """Population sd (ddof 0) of the finite values of `values` over `axis`, as `finite_mean`
    counts them (NaN where there are none): the spread a figure's band draws around that mean."""
    x = np.asarray(values, np.float64)
    mean = finite_mean(x, axis=axis)
    centred = np.asarray(x - (np.expand_dims(mean, axis) if axis is not None else mean))
    return np.sqrt(finite_mean(np.square(centred), axis=axis))


def t_quantile(dof: int, level: float = 0.95) -> float:
    """The two-sided `level` Student t quantile for `dof` degrees of freedom (NaN below 1)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"the confidence level must lie strictly between 0 and 1, got {level}")
    if dof < 1:
        return float("nan")
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, dof))


def mean_half_width(values, axis: int = 0, level: float = 0.95):
    """Half width of the mean's t interval over `axis` of `values` (`[n, ...] -> [...]`; a float
    for 1-D input); NaN with fewer than 2 values."""
    x = np.asarray(values, float)
    n = x.shape[axis] if x.ndim else 0
    if n < 2:
        t_quantile(1, level)  # the level is checked even when there is nothing to measure
        return np.full(np.delete(x.shape, axis), np.nan) if x.ndim > 1 else float("nan")
    half = t_quantile(n - 1, level) * x.std(axis=axis, ddof=1) / math.sqrt(n)
    return float(half) if x.ndim == 1 else half


def mean_interval(values: Sequence[float], level: float = 0.95) -> Dict[str, float]:
    """`{"mean", "low", "high", "n"}` of `values` `[n]` (e.g. paired differences); the bounds are
    NaN with fewer than 2 values."""
    x = np.asarray([float(v) for v in values], float)
    mean = float(x.mean()) if x.size else float("nan")
    half = mean_half_width(x, level=level)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(x.size)}
