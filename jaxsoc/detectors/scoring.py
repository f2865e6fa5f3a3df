"""Scoring with any detector pytree: which score function it takes, and one window per host.

The env-facing half of the detectors (the hybrid scenario and the SOC world's `detector_scores`
switch both score a rolling telemetry window `[W, N, F]` of N hosts every step) lives here so the
two envs share it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsoc.detectors.autoencoder import AutoencoderDetector, autoencoder_scores
from jaxsoc.detectors.zscore import zscore_scores


def score_fn(detector):
    """The scoring function of a detector pytree: `(detector, windows [..., W, F]) -> [...]`."""
    return autoencoder_scores if isinstance(detector, AutoencoderDetector) else zscore_scores


def window_scores(detector, window: jax.Array) -> jax.Array:
    """Scores `[N]` f32 of a telemetry window `[W, N, F]` (one window per host, oldest step first)."""
    return score_fn(detector)(detector, jnp.swapaxes(window, 0, 1)).astype(jnp.float32)
