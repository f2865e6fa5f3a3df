"""What each defender's action does to the world (docs/reference.md §1.6, D6/D7 fixes as switches).

Action conventions (documented in docs/env.md):
* continuous actions are clipped to [-1, 1]; NaN entries are replaced by -1, the idle value
  (the role adds no intensity; the directive's boosts and a budget's focus share still act, see
  `allocate`), so a NaN never reaches the state;
* discrete actions are cast to int32; out-of-range values (and NaN for float inputs) are no-ops:
  triage does nothing, and a v2 coordinator keeps its current directive;
* the triage action is read as the reference reads it (`triage_index`): a scalar as `int(a)`, an
  array as its first element modulo 4, so `[5]` suppresses while `5` does nothing.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxsoc.env import alerts
from jaxsoc.env.network import topology
from jaxsoc.env.params import EnvParams
from jaxsoc.env.rng import Draws
from jaxsoc.env.state import EnvState, Hosts

NO_OP = -1  # any out-of-range discrete action


def action_dims(params: EnvParams) -> dict:
    """Action sizes per role: Box dims for continuous roles, number of choices for discrete ones."""
    s = params.num_segments
    if params.fix_d7_response_actions:
        th, ro = 2 * s, 3 * s
    else:  # the reference's 16 / 12 for 5 segments: per-segment dims plus inert ones (D7)
        th, ro = 2 * s + 6, 2 * s + 2
    coord = params.num_directives if params.fix_d6_directive else 8
    return dict(coordinator=coord, threat_hunter=th, alert_triage=4, response_orchestrator=ro)


def clean_continuous(a: jax.Array, dim: int) -> jax.Array:
    """`[dim]` float32 in [-1, 1]; NaN -> -1 (idle)."""
    a = jnp.asarray(a, jnp.float32).reshape(dim)
    return jnp.clip(jnp.where(jnp.isnan(a), -1.0, a), -1.0, 1.0)


def clean_discrete(a: jax.Array, n: int) -> jax.Array:
    """int32 scalar in `0..n-1`, or `NO_OP` for anything else (incl. NaN)."""
    a = jnp.asarray(a)
    if a.ndim > 0:  # an array's first element, as the reference's triage reads it
        a = a.reshape(-1)[0]
    if jnp.issubdtype(a.dtype, jnp.floating):
        ok = ~jnp.isnan(a) & (a >= 0) & (a < n)
        a = jnp.where(ok, a, NO_OP).astype(jnp.int32)
    a = a.astype(jnp.int32)
    return jnp.where((a >= 0) & (a < n), a, NO_OP)


def triage_index(action: jax.Array) -> jax.Array:
    """The alert-triage choice as the reference reads it (docs/reference.md §1.6): int32 scalar in
    0..3 (escalate, suppress, correlate, enrich), or `NO_OP`.

    `action` is a scalar (a 0-d array counts as one) or an array of any shape. A scalar is
    truncated toward zero (`int(a)`) and is a no-op outside 0..3, as an index matching no branch;
    an array's first element is truncated and taken modulo 4 (Python's sign rule: `[5]` -> 1,
    `[-1]` -> 3). NaN and infinities are no-ops (the reference raises on them).
    """
    a = jnp.asarray(action)
    from_array = a.ndim > 0
    if from_array:
        a = a.reshape(-1)[0]
    if jnp.issubdtype(a.dtype, jnp.floating):
        ok = jnp.isfinite(a)
        a = jnp.trunc(jnp.where(ok, a, 0.0))
    else:
        ok = jnp.ones((), bool)
        a = a.astype(jnp.int32)
    if from_array:
        a = jnp.mod(a, 4)  # floor modulo: the result has the divisor's sign, as in Python
    else:
        ok = ok & (a >= 0) & (a < 4)
    return jnp.where(ok, a, NO_OP).astype(jnp.int32)


class Boosts(NamedTuple):
    """Per-segment modulation the directive adds to tier-2 actions, each `[S]`."""

    hunt: jax.Array
    scope: jax.Array
    urgency: jax.Array


DIRECTIVE_DIM = 8  # hmarl-soc-v1: the directive is a vector in [-1, 1]^8 (only d0, d1, d4 act, D6)


def reads_directive(t: jax.Array, params: EnvParams) -> jax.Array:
    """The directive schedule: bool, whether a step taken at clock `t` (the state's `t`, before
    the step's increment; any shape) reads the coordinator's action: every K =
    `params.directive_period` steps from each episode's start. Between reads the env holds the
    last directive. Learners that must know when their coordinator acts call this, never `t % K`."""
    return (t % params.directive_period) == 0


def held_directive(state: EnvState, params: EnvParams) -> jax.Array:
    """The directive the env holds: the index `focus * num_postures + posture` (int32 `[]`, with
    the D6 fix) or the v1 vector (`[DIRECTIVE_DIM]`)."""
    if params.fix_d6_directive:
        return state.focus * params.num_postures + state.posture
    return state.directive


def update_directive(state: EnvState, action: jax.Array, params: EnvParams) -> EnvState:
    """Read the coordinator's action on the steps of the schedule (`reads_directive`)."""
    read = reads_directive(state.t, params)
    if params.fix_d6_directive:
        a = clean_discrete(action, params.num_directives)
        take = read & (a != NO_OP)
        focus = jnp.where(take, a // params.num_postures, state.focus)
        posture = jnp.where(take, a % params.num_postures, state.posture)
        return state.replace(focus=focus, posture=posture)
    d = clean_continuous(action, DIRECTIVE_DIM)
    return state.replace(directive=jnp.where(read, d, state.directive))


def boosts(state: EnvState, params: EnvParams) -> Boosts:
    s = params.num_segments
    if params.fix_d6_directive:
        on_focus = (jnp.arange(s) == state.focus).astype(jnp.float32)
        ph = jnp.asarray(params.posture_hunt, jnp.float32)[state.posture]
        ps = jnp.asarray(params.posture_scope, jnp.float32)[state.posture]
        pu = jnp.asarray(params.posture_urgency, jnp.float32)[state.posture]
        return Boosts(ph + params.focus_hunt * on_focus, ps + params.focus_scope * on_focus,
                      pu + params.focus_urgency * on_focus)
    d = state.directive
    ones = jnp.ones((s,), jnp.float32)
    # Only d0, d1 and d4 have an effect in the reference (D6).
    return Boosts(params.scan_boost_scale * (d[0] + 1) * ones, params.scope_boost_scale * (d[1] + 1) * ones,
                  params.urgency_scale * (d[4] + 1) * ones)


def allocate(budget: int, weights: jax.Array, focus: jax.Array, share: float, capacity: jax.Array,
             u: jax.Array) -> jax.Array:
    """Split a per-step budget of host actions across segments: `[S]` whole counts.

    The focus segment gets `share * budget` first (the SOC lead assigns analysts there); the rest
    goes in proportion to `weights [S]` (the tier-2 agent's own intensities; all zero -> nothing
    more is spent). Fractions are rounded by systematic sampling with one uniform `u`: each count
    is the floor or the ceiling of its share, the expected count is the share exactly, and the
    counts add up to the budget before the cap: a segment never gets more than its `capacity [S]`
    of hosts, and what the cap cuts off is not handed on (the total can fall short of the budget).
    """
    s = weights.shape[0]
    on_focus = (jnp.arange(s) == focus).astype(jnp.float32)
    total = jnp.sum(weights)
    rest = jnp.where(total > 0, weights / jnp.maximum(total, 1e-12), 0.0)
    share = jnp.where(total > 0, share, 1.0)  # nobody else asks: the focus takes the whole budget
    x = budget * (share * on_focus + (1.0 - share) * rest)
    edges = jnp.floor(jnp.cumsum(x) + u)
    counts = edges - jnp.concatenate([jnp.floor(u)[None], edges[:-1]])
    return jnp.minimum(counts, capacity)


def window(counts: jax.Array, capacity: jax.Array, u: jax.Array, shape) -> jax.Array:
    """Which hosts a segment's `counts [S]` actions reach: a contiguous window (mod the segment's
    `capacity [S]` hosts) at a random offset `u [S]`, so every host is equally likely to be in it.
    `-> bool [S, Hmax]`."""
    j = jnp.arange(shape[1], dtype=jnp.float32)[None, :]
    offset = jnp.floor(u * capacity)[:, None]
    # (j - offset) mod capacity for the segment's hosts (j < capacity, so j - offset > -capacity):
    # one conditional add, where a float remainder was one of the step's costliest kernels.
    pos = j - offset
    pos = jnp.where(pos < 0, pos + capacity[:, None], pos)
    return (pos < counts[:, None]) & (j < capacity[:, None])  # padding hosts are never reached


class HuntResult(NamedTuple):
    """Per-host events of one hunt, each bool `[S, Hmax]` (the step counts them all at once)."""

    detected: jax.Array  # newly detected
    scanned: jax.Array  # host-scans
    clean_scanned: jax.Array  # scans of clean hosts
    false_scan: jax.Array  # false alarms on clean hosts


def hunt(draws: Draws, hosts: Hosts, action: jax.Array, b: Boosts, t, params: EnvParams,
         focus: jax.Array | None = None, host_stealth: jax.Array | None = None):
    """Threat hunter: per segment intensity and scope; returns `(hosts, HuntResult)`.

    With `params.hunt_budget` the scans are rationed (see `allocate`; `focus` is the directive's
    focus segment); `host_stealth [S, Hmax]` replaces `params.stealth` per host (campaigns).
    """
    topo = topology(params)
    s = params.num_segments
    a = clean_continuous(action, action_dims(params)["threat_hunter"])
    intensity = jnp.minimum(1.0, (a[:s] + 1) / 2 + b.hunt)[:, None]
    scope = jnp.minimum(1.0, (a[s:2 * s] + 1) / 2 + b.scope)[:, None]
    hunted = (intensity > params.hunt_threshold) & jnp.asarray(topo.host_valid)
    if params.hunt_budget is not None:
        cap = jnp.asarray(topo.hosts_in_segment)
        u_alloc = draws.uniform((s + 1,))
        want = jnp.where(intensity[:, 0] > params.hunt_threshold, intensity[:, 0], 0.0)
        counts = allocate(params.hunt_budget, want, focus, params.focus_share, cap, u_alloc[s])
        hunted = window(counts, cap, u_alloc[:s], hosts.vuln.shape)
    stealth = params.stealth if host_stealth is None else host_stealth
    # "Detect a compromised host" and "false alarm on a clean host" are exclusive: one uniform.
    u = draws.uniform(hosts.vuln.shape, width=topo.max_hosts)
    p_detect = intensity * scope * (1.0 - params.detect_stealth_factor * stealth) * hosts.stage / 5.0
    target = hunted & hosts.compromised & ~hosts.detected
    found = target & (u < p_detect)
    clean = hunted & ~hosts.compromised
    false = clean & (intensity > params.false_scan_threshold) & (u < params.false_scan_rate)
    hosts = hosts.replace(detected=hosts.detected | found,
                          detect_time=jnp.where(found, t, hosts.detect_time))
    return hosts, HuntResult(found, hunted, clean, false)


def confirm_escalation(hosts: Hosts, host_id: jax.Array, t, params: EnvParams):
    """D2: an escalated true alert sends an analyst to its host; if still compromised and not yet
    detected, it is now detected. Returns `(hosts, newly detected mask [S, Hmax])`."""
    topo = topology(params)
    at_host = jnp.asarray(topo.host_id) == host_id  # one host at most
    # The one host's verdict as a scalar (a reduction), then spread back: the same mask as
    # `at_host & compromised & ~detected`, but XLA:CPU no longer fuses the hunt's per-host chain
    # (its random draws included) into every later consumer of `detected` (soc-v2's step ~20 %
    # cheaper, same-run A/B).
    new = at_host & jnp.any(at_host & hosts.compromised & ~hosts.detected)
    hosts = hosts.replace(detected=hosts.detected | new, detect_time=jnp.where(new, t, hosts.detect_time))
    return hosts, new


class ResponseResult(NamedTuple):
    isolated: jax.Array  # bool [S, Hmax], correct isolations this step
    blind: jax.Array  # bool [S, Hmax], clean hosts isolated this step
    remediated: jax.Array  # bool [S, Hmax]
    released: jax.Array  # bool [S, Hmax]


def respond(draws: Draws, hosts: Hosts, action: jax.Array, b: Boosts, params: EnvParams,
            focus: jax.Array | None = None):
    """Response orchestrator: isolate, remediate (and with D7, release) per segment.

    With `params.response_budget` at most that many isolation attempts are made per step, split
    across segments by `allocate` (focus share, then isolation intensities) and worked in host
    order within a segment.
    """
    topo = topology(params)
    s = params.num_segments
    valid = jnp.asarray(topo.host_valid)
    a = clean_continuous(action, action_dims(params)["response_orchestrator"])
    iso = jnp.minimum(1.0, (a[:s] + 1) / 2 + b.urgency)[:, None]
    rem = ((a[s:2 * s] + 1) / 2)[:, None]
    # "isolate a detected host" / "isolate a clean host": exclusive, one uniform.
    u_iso = draws.uniform(hosts.vuln.shape, width=topo.max_hosts)
    u_rem = draws.uniform(hosts.vuln.shape, width=topo.max_hosts)

    act_iso = iso > params.isolate_threshold
    known = hosts.detected & hosts.compromised & ~hosts.isolated
    if params.response_budget is not None:
        want = jnp.where(act_iso[:, 0], iso[:, 0], 0.0)
        counts = allocate(params.response_budget, want, focus, params.focus_share,
                          jnp.asarray(topo.hosts_in_segment), draws.uniform(()))
        # Work the known hosts of a segment in host order: the first `counts[s]` are attempted.
        rank = alerts.prefix_count_rows(known)
        known = known & (rank < counts[:, None])
        act_iso = act_iso | (counts > 0)[:, None]  # the lead's focus share is worked even if idle
    correct = act_iso & known & (u_iso < iso)
    clean_ok = valid & ~hosts.compromised
    if params.fix_d7_response_actions:
        clean_ok = clean_ok & ~hosts.isolated  # never isolate (and charge for) the same clean host twice
    blind = act_iso & (iso > params.blind_isolation_threshold) & clean_ok & (u_iso < params.blind_isolation_rate)
    isolated = hosts.isolated | correct | blind

    remediated = (rem > params.remediate_threshold) & isolated & hosts.compromised & (u_rem < rem)
    isolated = isolated & ~remediated
    released = jnp.zeros_like(remediated)
    if params.fix_d7_response_actions:
        rel = ((a[2 * s:3 * s] + 1) / 2)[:, None]
        u_rel = draws.uniform(hosts.vuln.shape, width=topo.max_hosts)
        released = (rel > params.release_threshold) & isolated & ~hosts.compromised & (u_rel < rel)
        isolated = isolated & ~released
    hosts = hosts.replace(
        isolated=isolated,
        compromised=hosts.compromised & ~remediated,
        stage=jnp.where(remediated, 0, hosts.stage),
        detected=hosts.detected & ~remediated,
        detect_time=jnp.where(remediated, 0, hosts.detect_time),
    )
    return hosts, ResponseResult(correct, blind, remediated, released)


def is_contained(n_active: jax.Array, n_compromised: jax.Array, begun: jax.Array,
                 params: EnvParams) -> jax.Array:
    """Containment now (docs/reference.md §1.6 / D5), from the counts of active (compromised, connected)
    and compromised hosts after the response."""
    if params.fix_d5_containment:
        return begun & (n_active == 0)
    return (n_active == 0) & (n_compromised > 0)


def ingest_and_triage(queue, new_alerts, action, params: EnvParams):
    """Queue this step's alerts, then apply the triage action (see `alerts.ingest_and_triage`)."""
    return alerts.ingest_and_triage(queue, new_alerts, triage_index(action), params)
