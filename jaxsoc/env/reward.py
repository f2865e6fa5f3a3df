"""The team reward R = w_detect*R_det + w_response*R_resp + w_cost*R_cost + w_fp*R_fp (reference §1.8).

D8 (`fix_d8_reward_accounting`) switches the accounting to one event per host: response credit from
the host's own detection time, every suppressed true alert and every escalated benign alert.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxsoc.env.params import EnvParams


class RewardTerms(NamedTuple):
    detect: jax.Array
    response: jax.Array
    cost: jax.Array
    false_positive: jax.Array
    total: jax.Array


def team_reward(*, params: EnvParams, t, stage_at_detection, new_detected, isolated_now, blind_now,
                isolated_after, detect_time, first_detection, contained, exfiltrated, false_scans,
                suppressed_tp, escalated_fp) -> RewardTerms:
    """All host arguments are `[S, Hmax]`; counts and flags are scalars of this step.

    `stage_at_detection` is the stage of each host when it was detected this step, `detect_time`
    the per-host detection step (before any remediation), `first_detection` the episode's first.
    """
    values = jnp.asarray(params.segment_values, jnp.float32)[:, None]
    r_det = jnp.sum(jnp.where(new_detected, stage_at_detection / 5.0, 0.0))
    r_det = r_det - params.exfiltration_penalty * exfiltrated

    since = detect_time if params.fix_d8_reward_accounting else first_detection
    elapsed = jnp.maximum(1, t - since).astype(jnp.float32)
    r_resp = jnp.sum(jnp.where(isolated_now, 1.0 / elapsed, 0.0)) + params.containment_bonus * contained

    r_cost = jnp.sum(jnp.where(isolated_now, params.isolate_cost * values, 0.0))
    r_cost = r_cost + jnp.sum(jnp.where(blind_now, params.blind_isolate_cost * values, 0.0))
    r_cost = r_cost + params.availability_cost * jnp.sum(jnp.where(isolated_after, values, 0.0))

    if params.fix_d8_reward_accounting:
        fp_events = false_scans + suppressed_tp + escalated_fp
    else:  # at most one suppressed true alert per step counts; benign escalations are free
        fp_events = false_scans + (suppressed_tp > 0)
    r_fp = params.fp_unit * fp_events.astype(jnp.float32)

    total = (params.w_detect * r_det + params.w_response * r_resp + params.w_cost * r_cost
             + params.w_fp * r_fp)
    return RewardTerms(r_det, r_resp, r_cost, r_fp, total.astype(jnp.float32))
