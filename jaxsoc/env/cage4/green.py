"""Green users: one per user host, each step LocalWork, AccessService or Sleep (1/3 each).

* LocalWork fails with p = 1 - reliability/100 (DegradeServices lowers it); raises a false process
  event with p_green_fp; is phished with p_phishing (red gains a user session on the host).
* AccessService picks a server uniformly among the subnets the mission's policy allows from the
  user's subnet (its own always included) and fails when blue blocks traffic from the user's
  subnet into the server's; raises a false network event with p_green_fp.

Random words per step: 288 (144 host slots x four 16-bit uniforms).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.env.cage4 import params as P


class GreenEvents(NamedTuple):
    local_fail: jax.Array    # bool [H]
    access_fail: jax.Array   # bool [H]
    proc_fp: jax.Array       # bool [H]
    net_fp: jax.Array        # bool [H]
    phished: jax.Array       # bool [H]: red's new sessions by phishing


def access_fail_prob(state, phase: jax.Array) -> jax.Array:
    """`[9]` per source subnet: the chance a uniformly chosen allowed server sits behind a block."""
    servers = jnp.sum(state.present.reshape(P.NUM_SUBNETS, P.SLOTS)[:, :P.MAX_SERVERS], axis=1)   # [9]
    allowed = ~jnp.asarray(P.POLICY)[phase] | np.eye(P.NUM_SUBNETS, dtype=bool)                   # [to, from]
    weight = jnp.where(allowed, servers[:, None], 0).astype(jnp.float32)
    blocked = jnp.sum(jnp.where(state.blocked, weight, 0.0), axis=0)
    return blocked / jnp.maximum(jnp.sum(weight, axis=0), 1.0)


def step(u: jax.Array, state, phase: jax.Array, p: P.Cage4Params):
    """`u`: `[H, 4]` uniforms. Returns `(state, GreenEvents)`."""
    user = state.present & P.IS_USER
    local = user & (u[:, 0] < 1.0 / 3.0)
    access = user & (u[:, 0] >= 1.0 / 3.0) & (u[:, 0] < 2.0 / 3.0)
    # u[:, 1] decides the failure of whichever action the user took (they are exclusive).
    local_fail = local & (u[:, 1] * 100.0 >= state.reliability)
    access_fail = access & (u[:, 1] < P.per_host(access_fail_prob(state, phase)))
    fp = u[:, 2] < p.p_green_fp
    phished = local & (u[:, 3] < p.p_phishing)
    state = state.replace(red=jnp.where(phished, jnp.maximum(state.red, P.USER), state.red))
    return state, GreenEvents(local_fail, access_fail, local & fp, access & fp, phished)
