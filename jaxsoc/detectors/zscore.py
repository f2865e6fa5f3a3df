"""The per-feature z-score baseline: how far a window's mean sits from the fleet's usual values.

Fit: a centre and a scale per telemetry feature over every step of every training window —
mean / standard deviation, or (`robust=True`) median / 1.4826 x MAD, which attacked windows in a
contaminated training stream barely move.

Score of a window `x [W, F]`: `z = (x - centre) / scale` per step and feature, then
`W * sum_f mean_t(z[t, f])**2`. Averaging over the window before squaring adds up a drift that
persists over the window (a compromised host's) while independent noise averages out; for clean
Gaussian telemetry with the exact centre and scale the score is chi-square with F degrees of
freedom, whatever W is.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxsoc.detectors.telemetry import check_windows

MAD_TO_STD = 1.4826  # the MAD of a normal distribution is 0.6745 sigma


@struct.dataclass
class ZScoreDetector:
    """centre, scale: f32 `[F]`; `window` (W) and `robust` are static."""

    center: jax.Array
    scale: jax.Array
    window: int = struct.field(pytree_node=False)
    robust: bool = struct.field(pytree_node=False, default=False)

    @property
    def features(self) -> int:
        return int(self.center.shape[-1])


def fit_zscore(windows: jax.Array, robust: bool = False, min_scale: float = 1e-6) -> ZScoreDetector:
    """Fit on unlabelled windows `[M, W, F]` (contaminated: no labels are used).

    `min_scale` floors the scale so a constant feature cannot divide by zero.
    """
    windows = jnp.asarray(windows, jnp.float32)
    if windows.ndim != 3 or windows.shape[0] < 2:
        raise ValueError(f"fit_zscore needs windows [M >= 2, W, F], got shape {tuple(windows.shape)}")
    frames = windows.reshape(-1, windows.shape[-1])  # every step of every window
    if robust:
        center = jnp.median(frames, axis=0)
        scale = MAD_TO_STD * jnp.median(jnp.abs(frames - center), axis=0)
    else:
        center = jnp.mean(frames, axis=0)
        scale = jnp.std(frames, axis=0)
    return ZScoreDetector(center=center, scale=jnp.maximum(scale, min_scale),
                          window=int(windows.shape[1]), robust=robust)


def standardize(center: jax.Array, scale: jax.Array, windows: jax.Array) -> jax.Array:
    """`(windows - center) / scale` per feature: `[..., W, F] -> [..., W, F]`."""
    return (windows - center) / scale


def zscore_scores(detector: ZScoreDetector, windows: jax.Array) -> jax.Array:
    """Anomaly scores `[...]` of windows `[..., W, F]` (higher = more anomalous)."""
    check_windows(windows, detector.window, detector.features)
    z = standardize(detector.center, detector.scale, windows)
    return detector.window * jnp.sum(jnp.mean(z, axis=-2) ** 2, axis=-1)
