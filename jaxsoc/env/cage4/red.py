"""Red: six finite-state agents over per-host knowledge, CAGE-4's `FiniteStateRedAgent`.

Agent 0 works from the contractor foothold; agents 1-5 own the defended zone groups (RZ-A, OZ-A,
RZ-B, OZ-B, HQ). A zone's agent is active once red holds a session there (agent 0 always is). A
known host is worked by its zone's agent when that agent is active, otherwise by the agent that
found it (`finder`) if that one is active, else by agent 0: that is how red pivots into a
zone and hands the zone over to its agent.

Each step every idle, active agent picks one host uniformly among the known hosts it works,
draws an action from the host's FSM row (`params.FSM`: state K/S/U/R, "D" when the subnet was
swept) and starts it; the action runs `RED_TICKS` ticks and takes effect at the end of its last
tick, on the state of that moment (a session restored away meanwhile makes it fail). Effects:

* DiscoverRemoteSystems: every host of the subnet becomes known; the subnet is swept ("D").
* Aggressive / Stealth ServiceDiscovery: K -> S; a network event with p 0.75 / 0.25.
* ExploitRemoteService (needs S): a user session, unless blue blocks traffic into the target's
  subnet from the agent's source subnet (`red_src`), or the exploit picks a decoy (p_decoy_trap:
  fails and always raises a process event); success raises a process event with p 0.95.
* PrivilegeEscalate (needs a user session): root; root on a subnet's server 0 reveals the server 0
  of each linked subnet (`params.LINKS`).
* Impact (needs root): stops the host's OT service if it runs (operational zones only).
* DegradeServices (needs root): the host's reliability drops by `degrade_step` (floor 0).
* DiscoverDeception: no effect (red has no use for what it would learn here). Withdraw (never
  drawn by the FSM): the session ends.

Random words per step: 12 (six agents x four 16-bit uniforms).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.env.cage4 import params as P

_AGENTS = np.arange(P.NUM_RED)
_SUBS = np.arange(P.NUM_SUBNETS)
_HOSTS = np.arange(P.NUM_HOSTS)
# Inclusive prefix sums as masked sums with triangular constants: XLA:CPU's cumsum is a reduce-window
# and a [6, 16] @ [16, 16] product under vmap a batch of tiny matmuls, both slow.
_TRI9 = np.triu(np.ones((P.NUM_SUBNETS, P.NUM_SUBNETS), bool))
_TRI16 = np.triu(np.ones((P.SLOTS, P.SLOTS), bool))


def _prefix(x: jax.Array, tri: np.ndarray) -> jax.Array:
    """Inclusive prefix sums along the last axis of `x` `[..., n]` (`tri`: `[n, n]` upper-triangular)."""
    return jnp.sum(jnp.where(tri, x[..., :, None], 0), axis=-2)
_SCAN, _EXPLOIT, _PRIVESC, _DEGRADE, _WITHDRAW, _IMPACT, _PROC, _NET = (1 << i for i in range(8))
_BITS = np.array([_SCAN, _EXPLOIT, _PRIVESC, _DEGRADE, _WITHDRAW, _IMPACT, _PROC, _NET], np.int32)
_FSM_CUM = np.cumsum(P.FSM.astype(np.float64), axis=1)[:, :-1].astype(np.float32)   # [8, 8]


class RedEvents(NamedTuple):
    proc: jax.Array             # bool [H]: process events red raised
    net: jax.Array              # bool [H]: network events red raised
    impacts: jax.Array          # bool [H]: OT services stopped this step
    impact_attempts: jax.Array  # f32 []: Impact actions executed
    exploits: jax.Array         # f32 []: sessions gained by exploits


def working(state) -> jax.Array:
    """`[6, H]` bool: the known hosts each red agent works this step (see the module doc)."""
    # Zones are whole subnets, so activity is reduced per subnet first and every [6, ...] table here
    # is [6, 9]: with [6, H] compares XLA:CPU recomputed the per-host logic once per agent.
    session = jnp.any((state.red >= P.USER).reshape(P.NUM_SUBNETS, P.SLOTS), axis=1)      # [9]
    active = jnp.any(session[None] & P.RED_ZONE, axis=1) | (_AGENTS == 0)                   # [6]
    zone_active = jnp.any(active[:, None] & P.RED_ZONE, axis=0)                              # [9]
    # An agent with no session cannot act: its hosts fall to the finder, else to the contractor agent.
    finder_active = jnp.any(active[None] & (state.finder[:, None] == _AGENTS[None]), axis=1)   # [H]
    owner = jnp.where(P.per_host(zone_active), P.HOST_RED,
                      jnp.where(finder_active, state.finder, 0))
    return (owner[None] == _AGENTS[:, None]) & ((state.red >= P.KNOWN) & state.present)[None]


def pick_hosts(cand: jax.Array, u: jax.Array) -> jax.Array:
    """`[6]` host index uniform among each agent's `cand` `[6, H]` (garbage where it has none), from
    one uniform per agent `u` `[6]`: the subnet by its count, then the slot within it."""
    c = cand.reshape(P.NUM_RED, P.NUM_SUBNETS, P.SLOTS).astype(jnp.float32)
    per_sub = jnp.sum(c, axis=2)                                           # [6, 9]
    total = jnp.sum(per_sub, axis=1)
    k = jnp.minimum(jnp.floor(u * total), total - 1)                       # rank of the chosen host
    cum = _prefix(per_sub, _TRI9)                                                 # inclusive prefix sums
    sub = jnp.minimum(jnp.sum(cum <= k[:, None], axis=1), P.NUM_SUBNETS - 1)
    before = jnp.take_along_axis(cum - per_sub, sub[:, None], axis=1)[:, 0]
    row = jnp.take_along_axis(c, sub[:, None, None], axis=1)[:, 0]         # [6, 16]
    slot = jnp.minimum(jnp.sum(_prefix(row, _TRI16) <= (k - before)[:, None], axis=1), P.SLOTS - 1)
    return (sub * P.SLOTS + slot).astype(jnp.int32)


def step(u: jax.Array, state, p: P.Cage4Params):
    """Choose, tick and execute red actions. `u`: `[6, 4]` uniforms. Returns `(state, RedEvents)`."""
    cand = working(state)
    idle = state.red_left == 0
    choose = idle & jnp.any(cand, axis=1)
    host_new = pick_hosts(cand, u[:, 0])
    st_new = state.red[host_new]
    row = 2 * (jnp.maximum(st_new, P.KNOWN) - 1) + state.discovered[host_new // P.SLOTS].astype(jnp.int32)
    act_new = jnp.sum(u[:, 1:2] >= jnp.asarray(_FSM_CUM)[row], axis=1).astype(jnp.int32)
    host = jnp.where(choose, host_new, state.red_host)
    act = jnp.where(choose, act_new, state.red_action)
    left = jnp.where(choose, jnp.asarray(P.RED_TICKS)[act_new], state.red_left)
    run = left > 0
    left = jnp.where(run, left - 1, 0)
    ex = run & (left == 0)

    # ---- execution, against the state of this moment -----------------------------------------
    st = state.red[host]                                      # [6] red's knowledge of each target
    sub = host // P.SLOTS                                     # the subnet (host slots are subnet-major)
    is_ = lambda k: ex & (act == k)                           # noqa: E731
    u_det, u_trap = u[:, 2], u[:, 3]

    # Discovery: the agents' swept subnets; the finder of a newly known host is the sweeping agent.
    swept = is_(P.DRS)[:, None] & (_SUBS[None, :] == sub[:, None])          # [6, 9]
    sweeper = jnp.max(jnp.where(swept, _AGENTS[:, None], -1), axis=0)       # [9]
    # Links: root on a server 0 reveals the linked subnets' server 0.
    pe = is_(P.PRIVESC) & (st == P.USER)
    links = (pe & (host % P.SLOTS == 0))[:, None] & jnp.asarray(P.LINKS)[sub]   # [6, 9]
    linker = jnp.max(jnp.where(links, _AGENTS[:, None], -1), axis=0)        # [9]
    found = jnp.maximum(P.per_host(sweeper), jnp.where(P.HOST_SLOT == 0, P.per_host(linker), -1))
    newly = (found >= 0) & (state.red == P.UNKNOWN) & state.present

    scan = is_(P.AGGRESSIVE) | is_(P.STEALTH)
    rate = jnp.where(act == P.AGGRESSIVE, p.p_detect_aggressive, p.p_detect_stealth)
    blocked = state.blocked[sub, state.red_src] & (sub != state.red_src)
    tried = is_(P.EXPLOIT) & (st >= P.SCANNED) & ~blocked
    trap = tried & state.decoy[host] & (u_trap < p.p_decoy_trap)
    exploit = tried & ~trap
    root = st == P.ROOT
    impact = is_(P.IMPACT) & root & state.ot_up[host]
    # Every per-host effect of an agent's action as one bit of a code, OR-ed over the agents acting
    # on the host: one [6, H] pass instead of one per effect.
    flags = jnp.stack([scan, exploit, pe, is_(P.DEGRADE) & root, is_(P.WITHDRAW) & (st >= P.USER), impact,
                       (exploit & (u_det < p.p_detect_exploit)) | trap, scan & (u_det < rate)], axis=1)   # [6, 8]
    # A reduction, so XLA materialises the [6] codes: as an elementwise expression it fused the
    # whole per-agent computation into the [6, H] loop below and redid it for every host (10 us of
    # a ~12 us step per env; jax.lax.optimization_barrier does not survive XLA:CPU's passes).
    bits = jnp.sum(jnp.where(flags, _BITS, 0), axis=1)
    code = jnp.max(jnp.where(_HOSTS[None, :] == host[:, None], bits[:, None], 0), axis=0)       # [H]

    has = lambda b: (code & b) != 0                           # noqa: E731

    red = state.red
    red = jnp.where(newly, P.KNOWN, red)
    red = jnp.where(has(_SCAN) & (red == P.KNOWN), P.SCANNED, red)
    red = jnp.where(has(_EXPLOIT), jnp.maximum(red, P.USER), red)
    red = jnp.where(has(_PRIVESC) & (red == P.USER), P.ROOT, red)
    red = jnp.where(has(_WITHDRAW), P.SCANNED, red)
    impacted = has(_IMPACT)
    state = state.replace(
        red=red, finder=jnp.where(newly, found, state.finder),
        discovered=state.discovered | (sweeper >= 0),
        ot_up=state.ot_up & ~impacted,
        reliability=jnp.where(has(_DEGRADE), jnp.maximum(state.reliability - p.degrade_step, 0),
                              state.reliability),
        red_host=host, red_action=act, red_left=left)
    events = RedEvents(
        proc=has(_PROC), net=has(_NET), impacts=impacted,
        impact_attempts=jnp.sum(is_(P.IMPACT)).astype(jnp.float32),
        exploits=jnp.sum(exploit & (st < P.USER)).astype(jnp.float32))
    return state, events
