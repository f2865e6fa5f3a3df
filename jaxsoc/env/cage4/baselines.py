"""Scripted blue baselines for the CAGE-4-like scenario.

Each is `policy(key, obs {agent: [D]}, masks {agent: [n] bool}) -> {agent: int32 []}` reading only
what a blue agent sees (vmap for many envs):

* `monitor`: every agent Monitors (CAGE-4's "Sleep" blue: monitoring runs by itself anyway).
* `random_masked`: a uniform legal action per agent.
* `restore_on_alert`: Restore the first of the agent's hosts with a process event in its
  observation (Remove cannot kill a root session), else Monitor.
"""
from __future__ import annotations

from typing import Callable, Dict

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.env.cage4 import blue
from jaxsoc.env.cage4 import params as P
from jaxsoc.env.cage4.observe import BLOCK, PROC_AT

Policy = Callable[[jax.Array, Dict[str, jax.Array], Dict[str, jax.Array]], Dict[str, jax.Array]]


def monitor(key, obs, masks):
    del key, obs
    return {a: jnp.asarray(blue.MONITOR_ACTION[i], jnp.int32) for i, a in enumerate(P.BLUE_AGENTS)}


def random_masked(key, obs, masks):
    keys = jax.random.split(key, len(P.BLUE_AGENTS))
    out = {}
    for k, a in zip(keys, P.BLUE_AGENTS):
        m = masks[a]
        out[a] = jnp.argmax(jnp.where(m, jax.random.uniform(k, m.shape), -1.0)).astype(jnp.int32)
    return out


def restore_on_alert(key, obs, masks):
    del key, masks
    out = {}
    for i, a in enumerate(P.BLUE_AGENTS):
        k = len(P.BLUE_SUBNETS[i])
        proc = jnp.concatenate([obs[a][PROC_AT + j * BLOCK: PROC_AT + j * BLOCK + P.SLOTS] for j in range(k)]) > 0.5
        restore0 = 3 * P.SLOTS * k   # first Restore action in the layout
        out[a] = jnp.where(jnp.any(proc), restore0 + jnp.argmax(proc), blue.MONITOR_ACTION[i]).astype(jnp.int32)
    return out


BASELINES: Dict[str, Policy] = {"monitor": monitor, "random": random_masked, "restore": restore_on_alert}
