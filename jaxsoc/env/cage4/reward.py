"""The team reward: CAGE-4's zone x phase table (`params.REWARD_TABLE`) plus blue's action costs.

r = sum over hosts of [local work failed] * R[phase, zone, 0] + [access failed] * R[phase, zone, 1]
    + [OT service stopped by Impact] * R[phase, zone, 2]  +  restore/invalid-action costs,
the zone being that of the green user's host (failures) or of the impacted host.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.env.cage4 import params as P

# [phase, H, 3]: the table read at each host slot's zone.
HOST_REWARD = P.REWARD_TABLE[:, P.SUBNET_ZONE[P.HOST_SUBNET], :]


def phase_of(t: jax.Array, p: P.Cage4Params) -> jax.Array:
    """Mission phase (0, 1, 2) of the step taken when `t` steps are done; `[]` int32."""
    l1, l2, _ = p.phase_lengths()
    return (t >= l1).astype(jnp.int32) + (t >= l1 + l2).astype(jnp.int32)


def team_reward(phase: jax.Array, local_fail: jax.Array, access_fail: jax.Array, impacts: jax.Array,
                cost: jax.Array) -> jax.Array:
    """`[]` f32 from the step's per-host `[H]` bool outcomes and blue's `cost` `[]`."""
    r = jnp.asarray(HOST_REWARD)[phase]                                             # [H, 3]
    hits = jnp.stack([local_fail, access_fail, impacts], axis=1).astype(jnp.float32)  # [H, 3]
    return jnp.sum(r * hits) + cost
