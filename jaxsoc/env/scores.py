"""A frozen detector's per-host anomaly scores as an observation feature of the SOC roles.

`EnvParams.detector_scores = DIR` (a detector saved by `jaxsoc.detectors.save_detector` for this
scenario, with its calibrated threshold) switches it on. Each step every host then emits telemetry
(the detectors' model, `jaxsoc.detectors.host_telemetry`: stage drift along a fixed direction plus
noise, zero while isolated), `ScoredEnvState.host_window` `[W, N, F]` keeps each host's last W frames
(a subclass of `EnvState`: other worlds and their checkpoints keep their exact state),
and every role of `detector_score_roles` sees N more features at the end of its observation:

    score_feature[h] = min(score[h] / threshold, SCORE_CLIP)     (0 while host h is isolated)

with `score[h]` the detector applied to host h's window and `threshold` its calibrated alarm
threshold, so 1 is "at the alarm threshold" (the hybrid scenario's score feature, docs/hybrid.md).

Nothing else moves: the telemetry keys are `fold_in(key, TELEMETRY_STREAM)` of the reset's and the
step's own keys, which the world never draws from, so with the switch on the world, the rewards,
the infos and every other observation feature are bit for bit those with it off (tested). The
segment telemetry summaries of the SOC view stay the env's own draw: the detector reads a second,
per-host sensor of the same model, not the hosts those summaries averaged.

The detector is read from its folder once per process (`detector_of`) and enters the jitted step
as constants; a detector saved for another scenario or telemetry width is refused when the
scenario is built.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple

import jax
import jax.numpy as jnp

from jaxsoc.env.params import AGENTS, EnvParams
from jaxsoc.env.state import EnvState

SCORE_CLIP = 10.0
# fold_in constant of the telemetry keys: the world draws from its step key itself and from
# fold_in(key, 1) (the observation seed), never from this stream.
TELEMETRY_STREAM = 0x7E1E
_LOADED: Dict[Tuple[str, str, int], Tuple[Any, float]] = {}


def detector_of(params: EnvParams) -> Tuple[Any, float]:
    """`(detector, threshold)` saved at `params.detector_scores` (read once per process).

    `CheckpointError` (a `ValueError`) for a detector of another scenario or telemetry width,
    `ValueError` for one saved without a calibrated threshold.
    """
    from jaxsoc.detectors.store import load_detector  # the detectors import the env

    path = os.path.abspath(os.fspath(params.detector_scores))
    key = (path, params.name, int(params.telemetry_features))
    if key not in _LOADED:
        detector, meta = load_detector(path, params)
        if meta.get("threshold") is None:
            raise ValueError(f"detector_scores: the detector at {path} was saved without a calibrated "
                             "threshold (save_detector(..., threshold, target_fpr))")
        _LOADED[key] = (detector, float(meta["threshold"]))
    return _LOADED[key]


def check(params: EnvParams) -> None:
    """One-line `ValueError` for a switch that cannot work: no SOC view, unknown or repeated roles,
    a missing folder, a detector of another scenario or telemetry width."""
    if not params.fix_d1_hidden_truth:
        raise ValueError("detector_scores extends the SOC view's observations and needs "
                         "fix_d1_hidden_truth=True (soc-v2 and its variants)")
    roles = params.detector_score_roles
    if not roles or len(set(roles)) != len(roles) or any(r not in AGENTS for r in roles):
        raise ValueError(f"detector_score_roles must name distinct SOC roles from {AGENTS}, got {roles}")
    if not os.path.isdir(os.fspath(params.detector_scores)):
        raise ValueError(f"detector_scores: no detector folder at {params.detector_scores!r} "
                         "(save one with eval/train_detector.py)")
    detector_of(params)


def initial_window(key: jax.Array, state: EnvState, params: EnvParams) -> jax.Array:
    """`[W, N, F]`: a fresh episode's window, W draws of its clean, connected hosts."""
    from jaxsoc.detectors.telemetry import prefill_window

    detector, _ = detector_of(params)
    return prefill_window(jax.random.fold_in(key, TELEMETRY_STREAM), state, params, detector.window)


def next_window(key: jax.Array, state: EnvState, params: EnvParams) -> jax.Array:
    """`[W, N, F]`: `state.host_window` with the telemetry of `state` (after the step) pushed in."""
    from jaxsoc.detectors.telemetry import push_frame

    return push_frame(jax.random.fold_in(key, TELEMETRY_STREAM), state.host_window, state, params)


def features(state: EnvState, params: EnvParams) -> jax.Array:
    """`[N]` f32: `min(score / threshold, SCORE_CLIP)` per host, 0 for isolated hosts."""
    from jaxsoc.detectors.scoring import window_scores
    from jaxsoc.detectors.telemetry import flatten_hosts

    detector, threshold = detector_of(params)
    feat = jnp.clip(window_scores(detector, state.host_window) / threshold, 0.0, SCORE_CLIP)
    return jnp.where(flatten_hosts(state.hosts.isolated, params), 0.0, feat)


def append(obs: Dict[str, jax.Array], state: EnvState, params: EnvParams) -> Dict[str, jax.Array]:
    """`obs` with the score features `[N]` appended to each role of `detector_score_roles`."""
    feat = features(state, params)
    return {k: jnp.concatenate([v, feat]) if k in params.detector_score_roles else v for k, v in obs.items()}


def feature_names(params: EnvParams) -> List[str]:
    """The appended features' names, `host<i>.score` in host-id order (real hosts only)."""
    return [f"host{i}.score" for i in range(params.num_hosts)]
