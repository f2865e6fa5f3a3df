"""The network drawn per reset, inside JAX: host counts per subnet, red's foothold.

Each subnet but the internet gets `U ~ UniformInt[min_users, max_users]` users and
`S ~ UniformInt[min_servers, max_servers]` servers (CAGE-4: [3, 10] and [1, 6]); the slots beyond
are absent. Red starts with a user session on a uniformly chosen contractor host.
Random words per reset: 9 (counts) + 9 + 1 (foothold).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.env.cage4 import params as P
from jaxsoc.env.cage4.state import Cage4State, Counters
from jaxsoc.env.rng import Draws


def _zeros_counters() -> Counters:
    z = jnp.zeros((), jnp.float32)
    return Counters(ret=z, red_host_steps=jnp.zeros((3,), jnp.float32), impact_attempts=z, impacts=z,
                    true_alerts=z, false_alerts=z, local_fails=z, access_fails=z, phishing=z, exploits=z,
                    restores=z, invalid=z)


def draw_counts(draws: Draws, p: P.Cage4Params):
    """`(servers [9], users [9])` int32 per subnet; the internet has none."""
    u = draws.uniform((2, P.NUM_SUBNETS))
    span = np.array([p.max_servers - p.min_servers + 1, p.max_users - p.min_users + 1], np.float32)[:, None]
    low = np.array([p.min_servers, p.min_users], np.int32)[:, None]
    counts = low + jnp.minimum((u * span).astype(jnp.int32), span.astype(np.int32) - 1)
    counts = jnp.where(np.arange(P.NUM_SUBNETS)[None] == P.INTERNET, 0, counts)
    return counts[0], counts[1]


def initial_state(draws: Draws, p: P.Cage4Params) -> Cage4State:
    """A fresh episode drawn from `draws`."""
    servers, users = draw_counts(draws, p)
    slot = jnp.asarray(P.HOST_SLOT)
    sub = P.HOST_SUBNET
    present = jnp.where(P.IS_USER, slot - P.MAX_SERVERS < users[sub], slot < servers[sub])
    # Foothold: the k-th of the contractor's hosts (servers first, then users).
    n_c = servers[P.CONTRACTOR] + users[P.CONTRACTOR]
    k = jnp.minimum((draws.uniform(()) * n_c).astype(jnp.int32), n_c - 1)
    foot_slot = jnp.where(k < servers[P.CONTRACTOR], k, P.MAX_SERVERS + k - servers[P.CONTRACTOR])
    foothold = jnp.arange(P.NUM_HOSTS) == P.CONTRACTOR * P.SLOTS + foot_slot
    i6 = jnp.zeros((P.NUM_RED,), jnp.int32)
    i5 = jnp.zeros((5,), jnp.int32)
    return Cage4State(
        t=jnp.zeros((), jnp.int32), present=present,
        red=jnp.where(foothold, P.USER, P.UNKNOWN).astype(jnp.int32),
        finder=jnp.zeros((P.NUM_HOSTS,), jnp.int32),
        discovered=jnp.zeros((P.NUM_SUBNETS,), bool),
        red_src=jnp.full((P.NUM_RED,), P.CONTRACTOR, jnp.int32),
        decoy=jnp.zeros((P.NUM_HOSTS,), bool),
        reliability=jnp.full((P.NUM_HOSTS,), 100, jnp.int32),
        ot_up=present & P.OPERATIONAL,
        blocked=jnp.zeros((P.NUM_SUBNETS, P.NUM_SUBNETS), bool),
        red_host=i6, red_action=i6, red_left=i6, blue_action=i5, blue_left=i5,
        proc=jnp.zeros((P.NUM_HOSTS,), bool), net=jnp.zeros((P.NUM_HOSTS,), bool),
        messages=jnp.zeros((5, 8), bool), counters=_zeros_counters())
