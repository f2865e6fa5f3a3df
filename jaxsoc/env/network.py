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
    """Static structure of a scenario (NumPy arrays, `[S, Hmax]` host layout).

    `Hmax` is the host axis: the largest segment rounded up to a multiple of `HOST_LANES` (see
    there); hosts past a segment's size are padding (`host_valid` False), inert in every rule.
    """

    num_segments: int
    max_hosts: int  # the largest segment's hosts (random streams are drawn at this width)
    host_axis: int  # Hmax, the arrays' host axis: max_hosts padded to a multiple of HOST_LANES
    host_valid: np.ndarray  # bool [S, Hmax]
    hosts_in_segment: np.ndarray  # f32 [S]
    host_id: np.ndarray  # int32 [S, Hmax], s * Hmax + j
    segment_of_host: np.ndarray  # int32 [S, Hmax]
    edge_src: np.ndarray  # int32 [E]
    edge_dst: np.ndarray  # int32 [E]
    is_entry: np.ndarray  # bool [S]
    is_high_value: np.ndarray  # bool [S]
    num_hosts: int


# XLA:CPU vectorises the host axis 8 float32 lanes wide (AVX2). A host axis that is not a multiple
# of 8 leaves a ragged tail in every per-host kernel and every per-segment reduction: soc-strategic's
# 10 x 20 layout stepped 20 % slower than the same arrays padded to 10 x 24 (docs/strategic.md,
# Speed). Segments of up to 8 hosts stay unpadded (one vector either way).
HOST_LANES = 8


def host_axis(max_hosts: int) -> int:
    """The host axis for a largest segment of `max_hosts` hosts (see `HOST_LANES`)."""
    if max_hosts <= HOST_LANES:
        return max_hosts
    return -(-max_hosts // HOST_LANES) * HOST_LANES


@functools.lru_cache(maxsize=64)
def _topology(hosts_per_segment, adjacency, entry, high_value) -> Topology:
    s = len(hosts_per_segment)
    largest = max(hosts_per_segment)
    hmax = host_axis(largest)
    valid = np.arange(hmax)[None, :] < np.asarray(hosts_per_segment)[:, None]
    edges = [(a, b) for a, targets in enumerate(adjacency) for b in targets]
    src = np.asarray([e[0] for e in edges], np.int32).reshape(-1)
    dst = np.asarray([e[1] for e in edges], np.int32).reshape(-1)
    return Topology(
        num_segments=s,
        max_hosts=largest,
        host_axis=hmax,
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
    z = draws.normal((topo.num_segments, topo.host_axis), width=topo.max_hosts)
    v = jnp.clip(means + params.vuln_std * z, params.vuln_min, params.vuln_max)
    return jnp.where(topo.host_valid, v, 0.0)


def segment_sums(*xs, width: int | None = None) -> jax.Array:
    """Per-segment sums of several `[S, Hmax]` host arrays at once: `-> [K, S]` float32.

    Each argument is a bool array, a float array, or `(int_array, max_value)` with small
    non-negative ints. A step needs dozens of such counts, and on XLA:CPU each reduction over the
    hosts cost a separate, unfused kernel of ~1 ms at 4096 envs. Counts are therefore packed side
    by side into float32 words (fields wide enough for `Hmax * max_value`, 24 bits per word so
    every sum stays exact), summed by one matrix-vector product per word and unpacked: sixteen
    counts cost about a twentieth of what sixteen reductions did. Float arrays get a product each,
    over their first `width` hosts when given (the topology's `max_hosts`): a float sum's rounding
    depends on how the product blocks the host axis, and summing the padding's zeros too would
    move a reward's last bit against the unpadded layout.
    """
    hmax = xs[0][0].shape[-1] if isinstance(xs[0], tuple) else xs[0].shape[-1]
    ones = jnp.ones((hmax,), jnp.float32)
    real = hmax if width is None else width
    out = [None] * len(xs)
    words, used = [[]], 0
    for i, x in enumerate(xs):
        if isinstance(x, tuple):
            x, top = x
        elif x.dtype == jnp.bool_:
            top = 1
        else:
            out[i] = x[..., :real].astype(jnp.float32) @ ones[:real]
            continue
        width = int(np.ceil(np.log2(hmax * int(top) + 1)))
        if width > 24:
            raise ValueError(f"segment of {hmax} hosts x values up to {top} cannot be counted exactly")
        if used + width > 24:
            words.append([])
            used = 0
        words[-1].append((i, x, used, width))
        used += width
    for fields in words:
        if not fields:
            continue
        packed = sum(x.astype(jnp.float32) * np.float32(1 << off) for _, x, off, _ in fields)
        total = (packed @ ones).astype(jnp.int32)
        for i, _, off, width in fields:
            out[i] = ((total >> off) & ((1 << width) - 1)).astype(jnp.float32)
    return jnp.stack(out)


def table_lookup(table, index: jax.Array) -> jax.Array:
    """`table[index]` for a short table (a few entries: per stage, per campaign) and a per-host
    `index [...]` of valid entries, as a chain of selects.

    Under vmap `jnp.asarray(table)[index]` is a batched gather, which XLA:CPU runs element by
    element; a select per entry fuses with its neighbours.
    `table` may be a tuple of (possibly traced) scalars or a 1-D array.
    """
    table = jnp.asarray(table)
    out = jnp.broadcast_to(table[0], index.shape)
    for i in range(1, table.shape[0]):
        out = jnp.where(index == i, table[i], out)
    return out


def take_rows(x: jax.Array, rows) -> jax.Array:
    """`x[rows]` for static row indices (segments): `[S, ...] -> [len(rows), ...]`.

    Written as static slices so XLA fuses them; indexing with an index array is a gather, and
    under vmap XLA:CPU runs gathers and scatters element by element.
    """
    return jnp.stack([x[int(r)] for r in rows])


def put_rows(values: jax.Array, rows, num_rows: int) -> jax.Array:
    """The `[num_rows, ...]` array that holds `values[i]` at row `rows[i]` (static, distinct) and
    zeros elsewhere: `zeros.at[rows].set(values)` without a scatter (see `take_rows`)."""
    where = {int(r): i for i, r in enumerate(rows)}
    zero = jnp.zeros_like(values[0])
    return jnp.stack([values[where[r]] if r in where else zero for r in range(num_rows)])


MAX_STAGE = 4
HOST_SUMMARY = ("compromised", "stage", "detected", "isolated", "active", "ever", "pending",
                "clean_isolated", "stage_compromised")


def host_summary_rows(hosts) -> tuple:
    """The arrays `host_summary` counts, in `HOST_SUMMARY` order (for `segment_sums`)."""
    return (hosts.compromised, (hosts.stage, MAX_STAGE), hosts.detected, hosts.isolated,
            hosts.compromised & ~hosts.isolated, hosts.ever_compromised,
            hosts.detected & ~hosts.isolated, hosts.isolated & ~hosts.detected,
            (jnp.where(hosts.compromised, hosts.stage, 0), MAX_STAGE))


def host_summary(hosts) -> dict:
    """Per-segment counts of the host state, `{name: [S]}` (see `HOST_SUMMARY`), in one dot.

    active = compromised and connected; pending = detected, not yet isolated; clean_isolated =
    isolated without a detection (what a SOC knows were isolated blindly).
    """
    rows = segment_sums(*host_summary_rows(hosts))
    return dict(zip(HOST_SUMMARY, rows))
