"""`EnvState`: everything that changes during an episode, as a pytree of arrays.

Shapes are for ONE env (vmap adds a leading `[num_envs]`). Hosts are laid out `[S, Hmax]`
(segments x hosts per segment, padded when segments differ in size; `topology.host_valid` masks
the padding), host id = `s * Hmax + j`. The alert queue is a packed FIFO: valid alerts occupy rows
`0..count-1`, oldest first.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Hosts:
    """Per-host state, every field `[S, Hmax]`."""

    vuln: jax.Array  # f32 vulnerability in [vuln_min, vuln_max]
    compromised: jax.Array  # bool
    stage: jax.Array  # int32 0..4 (v1 can set stage 2 on a clean host: D3)
    detected: jax.Array  # bool
    isolated: jax.Array  # bool
    listed: jax.Array  # int32, v1 attacker list multiplicity (D3); v2 unused
    target: jax.Array  # bool, chosen by recon for initial access
    detect_time: jax.Array  # int32 step of this host's detection (0 = none), D8 response credit
    ever_compromised: jax.Array  # bool, for v2 metrics
    owner: jax.Array  # int32 campaign that compromised the host (competing campaigns; else 0)


# Alert queue columns: the queue is ONE float32 array `[Q, NUM_ALERT_FIELDS]` so that pushing,
# popping and compacting move every field with a single array operation. Integer fields (segment,
# host, step) are exact in float32 below 2**24.
SEVERITY, CONFIDENCE, SEGMENT, HOST, IS_TP, TIMESTAMP, NOISE, VALID = range(8)
NUM_ALERT_FIELDS = 8
ALERT_FIELDS = ("severity", "confidence", "segment", "host", "is_tp", "timestamp", "noise", "valid")


@struct.dataclass
class Attacker:
    """The ATT&CK campaign's state: scalars, or `[C]` per campaign with competing campaigns."""

    phase: jax.Array  # int32 0..4
    steps_in_phase: jax.Array  # int32
    phase_success: jax.Array  # bool, any success since entering the phase (v2 D4)
    exfiltrated: jax.Array  # bool
    begun: jax.Array  # bool, a host has been compromised this episode
    first_compromise: jax.Array  # int32 step of the first compromise (0 = none)
    cooldown: jax.Array  # int32 steps left before re-entry (v2 D4)
    stealth: jax.Array  # f32 this campaign's stealth (drawn per reset; else params.stealth)
    entry: jax.Array  # int32 this campaign's entry segment (drawn per reset; else entry_segments[0])


@struct.dataclass
class Counters:
    """Episode bookkeeping for the reward and the metrics (scalars)."""

    detection_time: jax.Array  # int32 first detection step (0 = none)
    containment_time: jax.Array  # int32 (0 = none)
    contained: jax.Array  # bool, sticky
    false_positives: jax.Array  # int32, v1 definition (false scans + FP escalations)
    true_positives: jax.Array  # int32, v1 definition (detections + TP escalations)
    total_scans: jax.Array  # int32 host-scans
    false_scans: jax.Array  # int32
    clean_scans: jax.Array  # int32 scans of clean hosts (v2 FPR denominator)
    fp_escalated: jax.Array  # int32
    tp_escalated: jax.Array  # int32
    tp_suppressed: jax.Array  # int32
    fp_triaged: jax.Array  # int32 benign alerts escalated or suppressed
    isolations: jax.Array  # int32 correct isolations
    blind_isolations: jax.Array  # int32 clean hosts isolated
    episode_return: jax.Array  # f32


@struct.dataclass
class EnvState:
    """The whole world of one env."""

    t: jax.Array  # int32 steps taken this episode
    hosts: Hosts
    attacker: Attacker
    queue: jax.Array  # f32 [Q, NUM_ALERT_FIELDS], packed FIFO: valid rows first, oldest at 0
    directive: jax.Array  # f32[8] v1 directive held between coordinator decisions
    focus: jax.Array  # int32 v2 directive focus segment
    posture: jax.Array  # int32 v2 directive posture
    counters: Counters
    obs_seed: jax.Array  # uint32[2]: the observation noise of this state (keeps get_obs pure)
    episode: jax.Array  # int32 episodes started in this env slot (auto-reset count)


@struct.dataclass
class ScoredEnvState(EnvState):
    """`EnvState` plus each host's last W telemetry frames, the state of a world with
    `EnvParams.detector_scores` (jaxsoc.env.scores). A subclass, not a new field of `EnvState`, so
    the state of every other world, and so every saved checkpoint, keeps its exact structure."""

    host_window: jax.Array  # f32 [W, N, F], oldest frame first, real hosts in host-id order


def with_window(state: EnvState, window: jax.Array) -> ScoredEnvState:
    """`state` as a `ScoredEnvState` holding `window` `[W, N, F]`."""
    fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(EnvState)}
    return ScoredEnvState(**fields, host_window=window)


def without_window(state: EnvState) -> EnvState:
    """The plain `EnvState` of a (possibly scored) state: what the world itself holds."""
    return EnvState(**{f.name: getattr(state, f.name) for f in dataclasses.fields(EnvState)})
