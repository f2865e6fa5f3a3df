"""Scripted policies: pure, vmappable functions `policy(key, obs, state, params) -> actions`.

They act for ONE env (vmap them for many). Scripted policies may read the state; learned agents
only get observations. `POLICIES` maps the names the CLI and evaluation use to the functions.

Shapes (one env; `dims = defenders.action_dims(params)`): `obs` `{agent: [obs_dim]}` (unread
here), and the actions `{"coordinator": [] int32 directive index (D6 fixed) or [8] float32 (v1's
continuous directive), "threat_hunter": [dims["threat_hunter"]] float32 in [-1, 1],
"alert_triage": [] int32 in 0..3, "response_orchestrator": [dims["response_orchestrator"]]
float32 in [-1, 1]}`.
"""
from __future__ import annotations

from typing import Callable, Dict

import jax
import jax.numpy as jnp

from jaxsoc.env import alerts, defenders
from jaxsoc.env.core import hmarl_directive
from jaxsoc.env.leads import LEADS
from jaxsoc.env.params import AGENTS, EnvParams
from jaxsoc.env.state import EnvState


def no_defender(key, obs, state: EnvState, params: EnvParams) -> Dict[str, jax.Array]:
    """Every role idles: the reference's missing agent keys (docs/reference.md §0)."""
    dims = defenders.action_dims(params)
    return {
        "coordinator": jnp.asarray(0, jnp.int32) if params.fix_d6_directive else hmarl_directive(0),
        "threat_hunter": -jnp.ones((dims["threat_hunter"],), jnp.float32),
        "alert_triage": jnp.asarray(alerts.ENRICH, jnp.int32),
        "response_orchestrator": -jnp.ones((dims["response_orchestrator"],), jnp.float32),
    }


def random_policy(key, obs, state: EnvState, params: EnvParams) -> Dict[str, jax.Array]:
    """Uniform over every role's action space."""
    dims = defenders.action_dims(params)
    k = jax.random.split(key, 4)
    coord = (jax.random.randint(k[0], (), 0, dims["coordinator"]) if params.fix_d6_directive
             else jax.random.uniform(k[0], (8,), minval=-1.0, maxval=1.0))
    return {
        "coordinator": coord,
        "threat_hunter": jax.random.uniform(k[1], (dims["threat_hunter"],), minval=-1.0, maxval=1.0),
        "alert_triage": jax.random.randint(k[2], (), 0, 4),
        "response_orchestrator": jax.random.uniform(k[3], (dims["response_orchestrator"],),
                                                    minval=-1.0, maxval=1.0),
    }


def constant(key, obs, state: EnvState, params: EnvParams) -> Dict[str, jax.Array]:
    """The all-zero action: raw 0 for continuous roles, index 0 for discrete ones.

    Under v1 this already hunts every segment and isolates detected hosts (docs/reference.md §1.6), and
    beats every published learner (D5).
    """
    dims = defenders.action_dims(params)
    return {
        "coordinator": jnp.asarray(0, jnp.int32) if params.fix_d6_directive else jnp.zeros((8,), jnp.float32),
        "threat_hunter": jnp.zeros((dims["threat_hunter"],), jnp.float32),
        "alert_triage": jnp.asarray(0, jnp.int32),
        "response_orchestrator": jnp.zeros((dims["response_orchestrator"],), jnp.float32),
    }


def rule_soar(key, obs, state: EnvState, params: EnvParams) -> Dict[str, jax.Array]:
    """Rule-SOAR (docs/reference.md §2.7): scan everything, escalate every alert, isolate and remediate at
    raw 0.5 on all segments whenever an incident is known.

    Under the v1 layouts the trigger is the ground-truth count of compromised hosts, exactly as the
    reference (privileged information, D23). Under the SOC view (D1 fixed) it is what a SOC knows:
    a detected, not yet isolated host, or a queued alert. With the v2 directive the coordinator
    holds the "contain" posture on segment 0; release is never used.
    """
    s = params.num_segments
    dims = defenders.action_dims(params)
    if params.fix_d1_hidden_truth:
        incident = jnp.any(state.hosts.detected & ~state.hosts.isolated) | (alerts.count(state.queue) > 0)
    else:
        incident = jnp.sum(state.hosts.compromised) > 0
    ro = jnp.zeros((dims["response_orchestrator"],), jnp.float32)
    ro = ro.at[: 2 * s].set(jnp.where(incident, 0.5, 0.0))
    if params.fix_d7_response_actions:
        ro = ro.at[2 * s: 3 * s].set(-1.0)
    if params.fix_d6_directive:
        coord = jnp.asarray(params.num_postures - 1, jnp.int32)  # focus 0, the strongest posture
    else:
        coord = jnp.zeros((8,), jnp.float32).at[0].set(1.0)
    return {
        "coordinator": coord,
        "threat_hunter": jnp.zeros((dims["threat_hunter"],), jnp.float32),
        "alert_triage": jnp.asarray(alerts.ESCALATE, jnp.int32),
        "response_orchestrator": ro,
    }


Policy = Callable[..., Dict[str, jax.Array]]
POLICIES: Dict[str, Policy] = {
    "no-defender": no_defender,
    "random": random_policy,
    "constant": constant,
    "rule-soar": rule_soar,
    # scripted SOC leads over one scripted tier 2 (jaxsoc/env/leads.py, docs/strategic.md)
    **LEADS,
}
