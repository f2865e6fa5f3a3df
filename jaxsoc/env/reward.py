"""The team reward R = w_detect*R_det + w_response*R_resp + w_cost*R_cost + w_fp*R_fp (docs/reference.md §1.8).

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


def response_credit(t, correct, detect_time, first_detection, params: EnvParams) -> jax.Array:
    """Per-host response credit `[S, Hmax]`: 1 / max(1, t - detection time) for each correct isolation.

    v1 measures from the episode's first detection; D8 from the host's own.
    """
    since = detect_time if params.fix_d8_reward_accounting else first_detection
    elapsed = jnp.maximum(1, t - since).astype(jnp.float32)
    return jnp.where(correct, 1.0 / elapsed, 0.0)


def team_reward(*, params: EnvParams, detected_stage, credit, correct, blind, isolated_after,
                contained, exfiltrated, false_scans, suppressed_tp, escalated_fp) -> RewardTerms:
    """The step's team reward from per-segment sums (`[S]`) and scalar counts.

    `detected_stage`: sum of the stages of hosts detected this step; `credit`: sum of
    `response_credit`; `correct`/`blind`: isolations this step; `isolated_after`: hosts isolated at
    the end of the step (availability cost).
    """
    values = jnp.asarray(params.segment_values, jnp.float32)
    r_det = jnp.sum(detected_stage) / 5.0 - params.exfiltration_penalty * exfiltrated
    r_resp = jnp.sum(credit) + params.containment_bonus * contained
    r_cost = jnp.sum(values * (params.isolate_cost * correct + params.blind_isolate_cost * blind
                               + params.availability_cost * isolated_after))
    if params.fix_d8_reward_accounting:
        fp_events = false_scans + suppressed_tp + escalated_fp
    else:  # at most one suppressed true alert per step counts; benign escalations are free
        fp_events = false_scans + (suppressed_tp > 0)
    r_fp = params.fp_unit * jnp.asarray(fp_events, jnp.float32)
    total = (params.w_detect * r_det + params.w_response * r_resp + params.w_cost * r_cost
             + params.w_fp * r_fp)
    return RewardTerms(r_det, r_resp, r_cost, r_fp, total.astype(jnp.float32))
