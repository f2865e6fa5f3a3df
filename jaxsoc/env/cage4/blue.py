"""Blue agents' action layout, masks, durations and effects.

Layout of agent i with subnets `BLUE_SUBNETS[i]` (k subnets, 16 host slots each, n = 16k):
`[Analyse x n, DeployDecoy x n, Remove x n, Restore x n, Allow x 8k, Block x 8k, Monitor, Sleep]`
(hosts subnet-major, slot-minor; Allow/Block per (own subnet, each of the 8 other subnets in
subnet order)). Agents 0-3: 82 actions, agent 4: 242 (CAGE-4's `BlueFixedActionWrapper` sizes).
The layout is a static table per agent, padded to 242 rows: `KIND`, `HOST` (global slot or -1),
`TO`/`FROM` (subnets of a traffic rule or -1).

An agent whose previous action is still running ignores its new choice (CAGE-4: `IN_PROGRESS`,
not cancellable); a new action runs for `BLUE_TICKS[kind]` ticks and takes effect at the end of
its last tick. Taking a masked action (a host slot that is empty this episode) does nothing and
costs `invalid_cost`; starting a Restore costs `restore_cost`.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.env.cage4 import params as P

MAX_ACTIONS = 242


def _layout(subnets):
    kind, host, to, frm = [], [], [], []
    hosts = [s * P.SLOTS + j for s in subnets for j in range(P.SLOTS)]
    for k in (P.ANALYSE, P.DECOY, P.REMOVE, P.RESTORE):
        kind += [k] * len(hosts)
        host += hosts
        to += [-1] * len(hosts)
        frm += [-1] * len(hosts)
    pairs = [(s, o) for s in subnets for o in range(P.NUM_SUBNETS) if o != s]
    for k in (P.ALLOW, P.BLOCK):
        kind += [k] * len(pairs)
        host += [-1] * len(pairs)
        to += [s for s, _ in pairs]
        frm += [o for _, o in pairs]
    kind += [P.MONITOR, P.SLEEP]
    host += [-1, -1]
    to += [-1, -1]
    frm += [-1, -1]
    return kind, host, to, frm


def _tables():
    rows = [_layout(s) for s in P.BLUE_SUBNETS]
    n = np.array([len(r[0]) for r in rows])
    pad = lambda xs, v: np.array([x + [v] * (MAX_ACTIONS - len(x)) for x in xs], np.int32)  # noqa: E731
    return (n, pad([r[0] for r in rows], P.SLEEP), pad([r[1] for r in rows], -1),
            pad([r[2] for r in rows], -1), pad([r[3] for r in rows], -1))


NUM_ACTIONS, KIND, HOST, TO, FROM = _tables()   # [5]; [5, 242] each
MONITOR_ACTION = NUM_ACTIONS - 2                # [5] index of Monitor per agent
SLEEP_ACTION = NUM_ACTIONS - 1


def action_label(agent: int, index: int) -> str:
    """Human-readable name of agent `agent`'s action `index`, e.g. 'Restore restricted_zone_a/server_0'."""
    k, h = int(KIND[agent, index]), int(HOST[agent, index])
    name = P.BLUE_KINDS[k]
    if h >= 0:
        slot = h % P.SLOTS
        host = f"server_{slot}" if slot < P.MAX_SERVERS else f"user_{slot - P.MAX_SERVERS}"
        return f"{name} {P.SUBNETS[h // P.SLOTS]}/{host}"
    if k in (P.ALLOW, P.BLOCK):
        return f"{name} {P.SUBNETS[TO[agent, index]]} <- {P.SUBNETS[FROM[agent, index]]}"
    return name


def masks(present: jax.Array, pad: bool = False) -> jax.Array:
    """`[5, 242]` bool, or per agent `[n_i]` when not `pad` (a list): legal actions. Host actions need
    a host in the slot this episode; padding rows are False. `present`: `[H]` bool.

    Built from static slices of `present` (the layout repeats the agent's slots 4 times), not
    a gather: this runs in every rollout step."""
    per_sub = present.reshape(P.NUM_SUBNETS, P.SLOTS)
    out = []
    for i, subs in enumerate(P.BLUE_SUBNETS):
        own = per_sub[np.array(subs)].reshape(-1)
        m = jnp.concatenate([own, own, own, own, jnp.ones((NUM_ACTIONS[i] - 4 * own.shape[0],), bool)])
        out.append(jnp.pad(m, (0, MAX_ACTIONS - NUM_ACTIONS[i])) if pad else m)
    return jnp.stack(out) if pad else out


class BlueStep(NamedTuple):
    action: jax.Array    # int32 [5] pending action after this step
    left: jax.Array      # int32 [5]
    cost: jax.Array      # f32 []: action costs of this step
    restores: jax.Array  # f32 []: Restores started
    invalid: jax.Array   # f32 []: masked actions submitted
    kind: jax.Array      # int32 [5]: kind of the action that executes now (SLEEP when none)
    host: jax.Array      # int32 [5]: its host slot (-1 none)
    to: jax.Array        # int32 [5]
    frm: jax.Array       # int32 [5]


def schedule(actions: jax.Array, pending: jax.Array, left: jax.Array, present: jax.Array,
             p: P.Cage4Params) -> BlueStep:
    """Start new actions for idle agents, tick, and name the actions that execute this step.

    actions, pending, left: `[5]` int32.
    """
    actions = jnp.clip(actions.astype(jnp.int32), 0, MAX_ACTIONS - 1)
    idle = left == 0
    agent = np.arange(5)
    table = lambda x, a: jnp.asarray(x)[agent, a]  # noqa: E731  (5 lookups, not a [5, 242] mask)
    target = table(HOST, actions)
    legal = (target < 0) | present[jnp.maximum(target, 0)]
    legal = legal & (actions < NUM_ACTIONS)
    act = jnp.where(idle, jnp.where(legal, actions, SLEEP_ACTION), pending)
    kind = table(KIND, act)
    started = idle & legal
    left = jnp.where(idle, jnp.asarray(P.BLUE_TICKS)[kind], left) - 1
    restores = jnp.sum(started & (kind == P.RESTORE)).astype(jnp.float32)
    invalid = jnp.sum(idle & ~legal).astype(jnp.float32)
    cost = p.restore_cost * restores + p.invalid_cost * invalid
    now = left == 0
    return BlueStep(act, left, cost, restores, invalid, jnp.where(now, kind, P.SLEEP),
                    jnp.where(now, table(HOST, act), -1), table(TO, act), table(FROM, act))


def apply(state, b: BlueStep):
    """Effects of the actions that execute this step, on the state's host arrays and firewall.

    Returns `(state, analysed [H] bool)`: the hosts Analyse found red on (seen as process events).
    Restore: red loses every session on the host (its knowledge falls back to SCANNED), services
    are restored (reliability 100, OT service up) and any decoy is gone. Remove: red's user-level
    session dies; a root session survives (CAGE-4). DeployDecoy: the host gets a decoy.
    """
    # Each agent's host actions are on its own subnets, so at most one acts on a host: one [5, H]
    # pass gives each host the kind done to it (-1 none).
    hosts = jnp.arange(P.NUM_HOSTS)
    done_to = jnp.max(jnp.where(hosts[None, :] == b.host[:, None], b.kind[:, None], -1), axis=0)   # [H]
    restore, remove, decoy, analyse = (done_to == P.RESTORE, done_to == P.REMOVE, done_to == P.DECOY,
                                       done_to == P.ANALYSE)
    red = state.red
    session = red >= P.USER
    red = jnp.where((restore & session) | (remove & (red == P.USER)), P.SCANNED, red)
    # Traffic rules: a (to, from) pair belongs to the agent owning `to`, so one rule at most per pair.
    pair = jnp.where((b.kind == P.BLOCK) | (b.kind == P.ALLOW), b.to * P.NUM_SUBNETS + b.frm, -1)
    rule = jnp.max(jnp.where(jnp.arange(P.NUM_SUBNETS ** 2)[None] == pair[:, None], b.kind[:, None], -1), axis=0)
    block = (rule == P.BLOCK).reshape(P.NUM_SUBNETS, P.NUM_SUBNETS)
    allow = (rule == P.ALLOW).reshape(P.NUM_SUBNETS, P.NUM_SUBNETS)
    state = state.replace(
        red=red,
        decoy=(state.decoy | decoy) & ~restore,
        reliability=jnp.where(restore, 100, state.reliability),
        ot_up=state.ot_up | (restore & state.present & P.OPERATIONAL),
        blocked=(state.blocked | block) & ~allow)
    return state, analyse & session
