"""Scripted SOC leads (coordinators) over one scripted tier 2: the strategic world's yardsticks.

A lead picks the directive (focus segment, posture); the tier 2 below it is the same for every
lead, so differences between leads are differences of strategy alone (docs/strategic.md):

* `fixed_lead(index)`: one directive for the whole episode — a SOC without a lead. The best of
  them (searched over every index by `eval/strategic.py`) is the bar a coordinator must clear.
* `informed_lead`: reads ONLY the coordinator's observation (the SOC dashboard) and focuses the
  segment with the most value-weighted evidence: queued alerts plus the telemetry anomaly.
* `oracle_lead`: reads the ground truth and focuses the segment where un-isolated compromised
  hosts weigh most (value x hosts, undetected ones first): what no real lead can know, an upper
  bound on what focusing can reach.

Every function here acts for ONE env (vmap for many) with the `jaxsoc.env.POLICIES` signature
`policy(key, obs, state, params) -> actions`. Leads need the discrete directive (D6).
"""
from __future__ import annotations

from typing import Callable, Dict

import jax
import jax.numpy as jnp

from jaxsoc.env import alerts, defenders
from jaxsoc.env.network import topology
from jaxsoc.env.params import EnvParams
from jaxsoc.env.state import CONFIDENCE, VALID, EnvState

HUNT = 1  # the "hunt" posture (watch, hunt, contain): the leads' posture


def check_scenario(params: EnvParams) -> None:
    """Leads issue discrete directives and read the SOC dashboard: ValueError otherwise."""
    if not isinstance(params, EnvParams):  # another world (a demo, cage4-like, soc-hybrid)
        raise ValueError(f"scripted leads direct the SOC team (its coordinator's discrete directive); "
                         f"{getattr(params, 'name', type(params).__name__)!r} is another world: "
                         "use soc-strategic or soc-v2")
    if not (params.fix_d6_directive and params.fix_d1_hidden_truth):
        raise ValueError(f"scripted leads need the discrete directive and the SOC view "
                         f"(fix_d6_directive and fix_d1_hidden_truth), which {params.name!r} lacks; "
                         "use soc-strategic or soc-v2")
SEGMENT_BLOCK = ("alerts_queued", "detected_pending", "isolated", "value")  # then telemetry


def scripted_tier2(state: EnvState, params: EnvParams) -> Dict[str, jax.Array]:
    """The tier 2 every lead directs: hunt everywhere at 0.6 intensity and full scope (below the
    false-alarm threshold unless the directive boosts it), escalate an alert whose confidence
    exceeds the benign maximum and suppress the rest, isolate at 0.55 and remediate at 0.75
    everywhere, never release. Reads only what a SOC knows (the queue head). Isolation stays below
    the blind-isolation threshold (0.9) except on the focus in the contain posture: 0.55 + 0.2 +
    0.2 = 0.95 isolates clean hosts there (80 blind isolations in 300 steps of `fixed_lead(2)` on
    soc-strategic), and the best-fixed-directive search includes those directives."""
    s = params.num_segments
    dims = defenders.action_dims(params)
    hunter = jnp.concatenate([jnp.full((s,), 0.2), jnp.ones((s,))]).astype(jnp.float32)
    head = state.queue[0]
    confident = (head[VALID] > 0.5) & (head[CONFIDENCE] > params.fp_confidence_max)
    triage = jnp.where(confident, alerts.ESCALATE, alerts.SUPPRESS).astype(jnp.int32)
    ro = jnp.concatenate([jnp.full((s,), 0.1), jnp.full((s,), 0.5),
                          -jnp.ones((dims["response_orchestrator"] - 2 * s,))]).astype(jnp.float32)
    return {"threat_hunter": hunter, "alert_triage": triage, "response_orchestrator": ro}


def directive_index(focus: jax.Array, posture: jax.Array, params: EnvParams) -> jax.Array:
    """The env's directive index of (focus segment, posture): `focus * num_postures + posture`."""
    return (focus * params.num_postures + posture).astype(jnp.int32)


def fixed_lead(index) -> Callable[..., Dict[str, jax.Array]]:
    """A lead that always issues directive `index` (no coordination): an int, or a traced int32
    scalar (`jaxsoc.analysis.leads.lead_act` searches every index in one program)."""

    def policy(key, obs, state: EnvState, params: EnvParams) -> Dict[str, jax.Array]:
        del key, obs
        return {"coordinator": jnp.asarray(index, jnp.int32), **scripted_tier2(state, params)}

    policy.__name__ = f"fixed_lead_{index}" if isinstance(index, int) else "fixed_lead"
    return policy


def dashboard(obs_coordinator: jax.Array, params: EnvParams) -> Dict[str, jax.Array]:
    """The coordinator's per-segment dashboard, `{name: [S]}` (and `telemetry [S, F]`), decoded
    from its observation `[obs_dim]` (the SOC view's segment block comes first)."""
    s, f = params.num_segments, params.telemetry_features
    width = len(SEGMENT_BLOCK) + f
    block = obs_coordinator[: s * width].reshape(s, width)
    out = {name: block[:, i] for i, name in enumerate(SEGMENT_BLOCK)}
    out["telemetry"] = block[:, len(SEGMENT_BLOCK):]
    return out


def anomaly(telemetry: jax.Array, params: EnvParams) -> jax.Array:
    """`[S]` the telemetry's mean drift along the known attack direction (0 for a clean segment
    up to noise): a SOC's anomaly score per segment."""
    direction = jnp.asarray(params.telemetry_direction, jnp.float32)
    return telemetry @ direction / jnp.sum(direction * direction)


# An anomaly below this is noise: the projected mean of a clean 20-host segment has a standard
# deviation of about 0.11 (telemetry_noise / sqrt(20) / |direction|), so 0.15 is ~1.4 sigma.
ANOMALY_FLOOR = 0.15
# One unit of anomaly above the floor weighs as much as ten queued alerts: a stage-3 host moves its
# segment's mean by 1.5 / 20 = 0.075, so a few quiet hosts outweigh a handful of loud alerts.
ANOMALY_WEIGHT = 10.0


def evidence(d: Dict[str, jax.Array], params: EnvParams) -> jax.Array:
    """`[S]` a segment's unexplained evidence on the dashboard `d`: queued alerts plus the
    telemetry anomaly above its noise floor (see `dashboard`)."""
    queued = d["alerts_queued"] * params.queue_capacity
    return queued + ANOMALY_WEIGHT * jnp.maximum(anomaly(d["telemetry"], params) - ANOMALY_FLOOR, 0.0)


def informed_lead(key, obs, state: EnvState, params: EnvParams) -> Dict[str, jax.Array]:
    """Focus where value-weighted evidence is largest, in the hunt posture; reads only
    `obs["coordinator"]` for the directive (the tier 2 reads the queue head as every lead's does).
    Variants tried (docs/strategic.md): dividing by pending detections, no value weight, alerts
    only, anomaly only, the watch/contain postures — none did better by more than the noise."""
    del key
    d = dashboard(obs["coordinator"], params)
    focus = jnp.argmax(d["value"] * evidence(d, params))
    return {"coordinator": directive_index(focus, HUNT, params), **scripted_tier2(state, params)}


def oracle_lead(key, obs, state: EnvState, params: EnvParams) -> Dict[str, jax.Array]:
    """Focus where the un-isolated compromise weighs most (ground truth: an upper bound)."""
    del key, obs
    h = state.hosts
    topo = topology(params)
    live = h.compromised & ~h.isolated & jnp.asarray(topo.host_valid)
    weight = jnp.sum(jnp.where(live, jnp.where(h.detected, 1.0, 2.0), 0.0), axis=-1)
    score = jnp.asarray(params.segment_values, jnp.float32) * weight
    focus = jnp.argmax(score)
    return {"coordinator": directive_index(focus, HUNT, params), **scripted_tier2(state, params)}


LEADS = {"lead-informed": informed_lead, "lead-oracle": oracle_lead}
