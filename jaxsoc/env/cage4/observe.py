"""Blue observations in CAGE-4's `BlueFlatWrapper` layout, as float32 vectors.

Agent i's vector: `[mission phase (0, 1 or 2)]`, then per own subnet (alphabetical) a 59-block
`[one-hot subnet (9), blocked from (9), policy says blocked from (9), process event per host slot
(16), network event per host slot (16)]`, then the 4 x 8 message bits of the other agents (index
order, zeros when either side's zone is cut off by the mission). Agents 0-3: 92 floats, agent 4:
210 (`pad_spaces`: all 210). Event bits are what monitoring saw in the last step (red activity,
green false positives, and hosts Analyse found red on), not the compromise state.
"""
from __future__ import annotations

from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.env.cage4 import params as P
from jaxsoc.env.cage4.reward import phase_of

BLOCK = 3 * P.NUM_SUBNETS + 2 * P.SLOTS   # 59
OBS_DIMS = tuple(1 + BLOCK * len(s) + 32 for s in P.BLUE_SUBNETS)
PROC_AT = 1 + 3 * P.NUM_SUBNETS           # offset of the process bits inside an agent's vector
NET_AT = PROC_AT + P.SLOTS
# Senders each agent hears, in index order.
OTHERS = np.array([[j for j in range(5) if j != i] for i in range(5)])


def subnet_blocks(state, phase: jax.Array) -> jax.Array:
    """`[9, 59]` the per-subnet blocks of every subnet."""
    rows = [jnp.eye(P.NUM_SUBNETS, dtype=jnp.float32), state.blocked.astype(jnp.float32),
            jnp.asarray(P.POLICY, jnp.float32)[phase],
            state.proc.reshape(P.NUM_SUBNETS, P.SLOTS).astype(jnp.float32),
            state.net.reshape(P.NUM_SUBNETS, P.SLOTS).astype(jnp.float32)]
    return jnp.concatenate(rows, axis=1)


def get_obs(state, p: P.Cage4Params) -> Dict[str, jax.Array]:
    """`{agent: [92] or [210]}` float32."""
    phase = phase_of(state.t, p)
    blocks = subnet_blocks(state, phase)
    cut = jnp.asarray(P.ISOLATED)[phase]                                            # [5]
    heard = state.messages[OTHERS] & ~(cut[:, None] | cut[OTHERS])[..., None]       # [5, 4, 8]
    heard = heard.reshape(5, 32).astype(jnp.float32)
    ph = phase.astype(jnp.float32)[None]
    out = {}
    for i, (agent, subs) in enumerate(zip(P.BLUE_AGENTS, P.BLUE_SUBNETS)):
        v = jnp.concatenate([ph, blocks[np.array(subs)].reshape(-1), heard[i]])
        if p.pad_spaces:
            v = jnp.pad(v, (0, max(OBS_DIMS) - v.shape[0]))
        out[agent] = v
    return out


def world_state(obs: Dict[str, jax.Array], state) -> jax.Array:
    """`[sum of obs dims + 144]`: every blue observation, then where red holds a session."""
    return jnp.concatenate([obs[a] for a in P.BLUE_AGENTS] + [(state.red >= P.USER).astype(jnp.float32)])
