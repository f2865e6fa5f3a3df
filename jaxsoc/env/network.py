"""Topology: the static arrays a scenario's structure implies, and host vulnerability draws.

Everything here that depends only on static params is NumPy, computed once at trace time and
baked into the program as constants.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.env.params import EnvParams
from jaxsoc.env.rng import Draws


@dataclasses.dataclass(frozen=True)
class Topology:
    """Static structure of a scenario (NumPy arrays, `[S, Hmax]` host layout)."""

    num_segments: int
    max_hosts: int
    host_valid: np.ndarray  # bool [S, Hmax]
    hosts_in_segment: np.ndarray  # f32 [S]
    host_id: np.ndarray  # int32 [S, Hmax], s * Hmax + j
    segment_of_host: np.ndarray  # int32 [S, Hmax]
    edge_src: np.ndarray  # int32 [E]
    edge_dst: np.ndarray  # int32 [E]
    is_entry: np.ndarray  # bool [S]
    is_high_value: np.ndarray  # bool [S]
    num_hosts: int


@functools.lru_cache(maxsize=64)
def _topology(hosts_per_segment, adjacency, entry, high_value) -> Topology:
    s = len(hosts_per_segment)
    hmax = max(hosts_per_segment)
    valid = np.arange(hmax)[None, :] < np.asarray(hosts_per_segment)[:, None]
    edges = [(a, b) for a, targets in enumerate(adjacency) for b in targets]
    src = np.asarray([e[0] for e in edges], np.int32).reshape(-1)
    dst = np.asarray([e[1] for e in edges], np.int32).reshape(-1)
    return Topology(
        num_segments=s,
        max_hosts=hmax,
        host_valid=valid,
        hosts_in_segment=np.asarray(hosts_per_segment, np.float32),
        host_id=(np.arange(s)[:, None] * hmax + np.arange(hmax)[None, :]).astype(np.int32),
        segment_of_host=np.broadcast_to(np.arange(s, dtype=np.int32)[:, None], (s, hmax)).copy(),
        edge_src=src,
        edge_dst=dst,
        is_entry=np.isin(np.arange(s), entry),
        is_high_value=np.isin(np.arange(s), high_value),
        num_hosts=int(sum(hosts_per_segment)),
    )


def topology(params: EnvParams) -> Topology:
    return _topology(params.hosts_per_segment, params.adjacency, params.entry_segments,
                     params.high_value_segments)


def draw_vulnerabilities(draws: Draws, params: EnvParams) -> jax.Array:
    """Per-host vulnerability `clip(N(vuln_mean_s, vuln_std), vuln_min, vuln_max)`, `[S, Hmax]`.

    Padding hosts get 0, so nothing can compromise them.
    """
    topo = topology(params)
    means = jnp.asarray(params.vuln_means, jnp.float32)[:, None]
    z = draws.normal((topo.num_segments, topo.max_hosts))
    v = jnp.clip(means + params.vuln_std * z, params.vuln_min, params.vuln_max)
    return jnp.where(topo.host_valid, v, 0.0)


def segment_sum(x: jax.Array) -> jax.Array:
    """`[S, Hmax] -> [S]` (padding hosts must already be zero/False)."""
    return jnp.sum(x.astype(jnp.float32), axis=-1)


def segment_fraction(x: jax.Array, params: EnvParams) -> jax.Array:
    """Fraction of each segment's hosts for which `x` holds, `[S]`."""
    return segment_sum(x) / topology(params).hosts_in_segment
