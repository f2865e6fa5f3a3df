"""Alerts: generation (docs/reference.md §1.4, D2 fix) and the fixed-size FIFO queue.

The queue is one float32 array `[Q, NUM_ALERT_FIELDS]` (columns in `state.py`), packed: valid rows
come first, oldest at row 0. Every operation keeps it packed, so the triage agent's "oldest alerts"
are a static slice.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.env.network import table_lookup, topology
from jaxsoc.env.params import EnvParams
from jaxsoc.env.rng import Draws
from jaxsoc.env.state import CONFIDENCE, HOST, IS_TP, NUM_ALERT_FIELDS, SEGMENT, SEVERITY, VALID

ESCALATE, SUPPRESS, CORRELATE, ENRICH = 0, 1, 2, 3


def empty(params: EnvParams) -> jax.Array:
    """An empty queue `[Q, NUM_ALERT_FIELDS]`."""
    return jnp.zeros((params.queue_capacity, NUM_ALERT_FIELDS), jnp.float32)


def make_alert(severity, confidence, segment, host, is_tp, timestamp, noise, valid) -> jax.Array:
    """Stack alert fields (each `[k]` or scalar) into rows `[k, NUM_ALERT_FIELDS]`."""
    cols = [severity, confidence, segment, host, is_tp, timestamp, noise, valid]
    cols = jnp.broadcast_arrays(*[jnp.asarray(c, jnp.float32) for c in cols])
    return jnp.stack(cols, axis=-1).reshape(-1, NUM_ALERT_FIELDS)


def count(queue: jax.Array) -> jax.Array:
    return jnp.sum(queue[:, VALID] > 0.5).astype(jnp.int32)


def prefix_count_rows(mask: jax.Array) -> jax.Array:
    """Exclusive prefix count along the last axis, `[..., n] bool -> [..., n] int32` (one dot)."""
    n = mask.shape[-1]
    strictly_lower = jnp.asarray(np.tri(n, n, -1, dtype=np.float32).T)  # [i, j] = 1 if i < j
    return (mask.astype(jnp.float32) @ strictly_lower).astype(jnp.int32)


def first_hosts(mask: jax.Array, k: int):
    """The first `k` True hosts of `mask [S, Hmax]` in host-id (flat) order: `(found [k] bool,
    flat_id [k] int32)`, `flat_id` 0 where fewer than `k` hosts are set.

    Each segment's hosts are packed into 24-bit words by one matrix product (a sum of distinct
    powers of two below 2^24, exact in float32), and the k hosts are read off the `[S * words]`
    bit sets: take the first non-empty word, its lowest set bit, clear it. Each pick then works
    on `S * words` integers (10 in soc-v2) instead of every host: k max-reductions over rank keys
    of all hosts, each followed by a rewrite of the keys, cost soc-v2 ~5 % of its step on
    XLA:CPU (rewards-only benchmark), and a cumulative count or a `[k, hosts]` selection matrix
    cost more.
    """
    s, hmax = mask.shape
    nw = -(-hmax // 24)
    j = np.arange(hmax)
    pack = np.zeros((hmax, nw), np.float32)
    pack[j, j // 24] = 2.0 ** (j % 24)
    words = (mask.astype(jnp.float32) @ jnp.asarray(pack)).astype(jnp.int32).reshape(-1)  # [S*nw]
    # host id of each word's bit 0 (segments are `Hmax` apart in the flat host order)
    first_id = jnp.asarray((np.arange(s)[:, None] * hmax + np.arange(nw)[None, :] * 24).reshape(-1), jnp.int32)
    slot = jnp.arange(words.shape[0])
    found, ids = [], []
    for _ in range(k):
        which = slot == jnp.argmax(words != 0)  # one-hot: the first non-empty word (word 0 if none)
        word = jnp.sum(jnp.where(which, words, 0))
        low = word & -word  # its lowest set bit (0 if empty)
        bit = 31 - jax.lax.clz(low)
        found.append(word != 0)
        ids.append(jnp.where(word != 0, jnp.sum(jnp.where(which, first_id, 0)) + bit, 0))
        words = words ^ jnp.where(which, low, 0)
    return jnp.stack(found), jnp.stack(ids)


def ingest_and_triage(queue: jax.Array, new: jax.Array, action: jax.Array, params: EnvParams):
    """Push this step's alerts, then let the triage agent act on the oldest (docs/reference.md §1.4, §1.6).

    `queue [Q, F]`, `new [k, F]` (invalid rows allowed), `action` int32: 0 escalate, 1 suppress,
    2 correlate, 3 enrich; any other value is a no-op (as an index matching no branch in the
    reference), as is any action on an empty queue.

    Equivalent to appending the valid new rows, dropping the oldest beyond capacity, then acting,
    but done as ONE scatter of the surviving rows of (queue ++ new) to their packed positions:
    no concatenation, no shifting (each was a full pass over the queue on XLA:CPU).
    Returns `(queue [Q, F], result dict of int32 scalars)`; `result["host"]` is the escalated true
    alert's host id (-1 if none).
    """
    q, k = queue.shape[0], new.shape[0]
    old_valid = queue[:, VALID] > 0.5
    new_valid = new[:, VALID] > 0.5
    n = jnp.sum(old_valid.astype(jnp.int32))
    new_rank = prefix_count_rows(new_valid)
    total = n + jnp.sum(new_valid.astype(jnp.int32))
    drop = jnp.clip(total - q, 0, k)  # oldest alerts pushed out by the new ones (packed: rows 0..drop-1)
    old_pos = jnp.arange(q)
    new_pos = n + new_rank
    old_live = old_valid & (old_pos >= drop)
    new_live = new_valid  # the new rows are the youngest: never dropped when k <= Q

    # The head is the oldest surviving alert: old row `drop` if the queue had alerts, else the
    # first new one. When drop > 0 the old queue was (nearly) full, so row `drop` exists.
    first_new = jnp.sum(jnp.where((new_rank == 0) & new_valid, 1.0, 0.0)[:, None] * new, axis=0)
    head_old = jax.lax.select_n(jnp.minimum(drop, k), *[queue[i] for i in range(k + 1)])
    head = jnp.where(n > drop, head_old, first_new)
    nonempty = total > drop
    head_pos = drop  # position of the head in (queue ++ new) order
    is_tp = head[IS_TP] > 0.5
    esc = nonempty & (action == ESCALATE)
    sup = nonempty & (action == SUPPRESS)
    cor = nonempty & (action == CORRELATE)
    enr = nonempty & (action == ENRICH)

    # Correlate: among live alerts of the head's segment keep the first of maximal severity.
    old_same = old_live & (queue[:, SEGMENT] == head[SEGMENT])
    new_same = new_live & (new[:, SEGMENT] == head[SEGMENT])
    n_same = jnp.sum(old_same.astype(jnp.int32)) + jnp.sum(new_same.astype(jnp.int32))
    best_sev = jnp.maximum(jnp.max(jnp.where(old_same, queue[:, SEVERITY], -1.0)),
                           jnp.max(jnp.where(new_same, new[:, SEVERITY], -1.0)))
    big = q + k + 1
    best_pos = jnp.minimum(
        jnp.min(jnp.where(old_same & (queue[:, SEVERITY] == best_sev), old_pos, big)),
        jnp.min(jnp.where(new_same & (new[:, SEVERITY] == best_sev), new_pos, big)))
    correlating = cor & (n_same > 1)
    old_keep = old_live & ~(correlating & old_same & (old_pos != best_pos))
    new_keep = new_live & ~(correlating & new_same & (new_pos != best_pos))
    popping = esc | sup
    old_keep = old_keep & ~(popping & (old_pos == head_pos))
    new_keep = new_keep & ~(popping & (new_pos == head_pos))

    old_dest = jnp.where(old_keep, prefix_count_rows(old_keep), q)
    kept_old = jnp.sum(old_keep.astype(jnp.int32))
    new_dest = jnp.where(new_keep, kept_old + prefix_count_rows(new_keep), q)
    out = jnp.zeros_like(queue).at[old_dest].set(queue, mode="drop")
    out = out.at[new_dest].set(new, mode="drop")
    # Enrich raises the head's confidence; the head stays at row 0.
    out = out.at[0, CONFIDENCE].set(
        jnp.where(enr, jnp.minimum(1.0, head[CONFIDENCE] + params.enrich_gain), out[0, CONFIDENCE]))
    result = dict(
        escalated_tp=(esc & is_tp).astype(jnp.int32),
        escalated_fp=(esc & ~is_tp).astype(jnp.int32),
        suppressed_tp=(sup & is_tp).astype(jnp.int32),
        triaged_fp=((esc | sup) & ~is_tp).astype(jnp.int32),
        host=jnp.where(esc & is_tp, head[HOST], -1.0).astype(jnp.int32),
    )
    return out, result


def generate(draws: Draws, hosts, events, t, posture, params: EnvParams) -> jax.Array:
    """This step's new alerts `[k, F]` (invalid rows allowed), true alerts first (reference order)."""
    topo = topology(params)
    u = draws.uniform((6,))
    t = jnp.asarray(t, jnp.float32)

    # Benign activity (keeps v1's rate and distributions under every preset).
    fp_seg = jnp.minimum((u[3] * topo.num_segments).astype(jnp.int32), topo.num_segments - 1)
    if params.fix_d2_alert_origin:
        n_in_seg = jnp.asarray(topo.hosts_in_segment)[fp_seg]
        fp_host = fp_seg * topo.host_axis + jnp.minimum((u[5] * n_in_seg).astype(jnp.int32),
                                                        n_in_seg.astype(jnp.int32) - 1)
    else:
        fp_host = -1
    benign = make_alert(u[1] * params.fp_severity_max, u[2] * params.fp_confidence_max, fp_seg,
                        fp_host, 0.0, t, u[4] * params.fp_noise_max, u[0] < params.fp_alert_rate)

    if params.fix_d2_alert_origin:
        true = _host_alerts(draws, hosts, t, params, events.host_stealth)
    else:
        # v1: one attacker alert per step, stamped with the entry segment wherever the activity is.
        noise = events.noise
        tp_draw = draws.uniform(())
        raised = (events.phase_before >= 1) & (tp_draw < params.tp_alert_scale * noise)
        true = make_alert(jnp.minimum(1.0, events.phase_before / 4.0), 0.5 + 0.5 * noise,
                          params.entry_segments[0], -1, 1.0, t, noise, raised)
    new = jnp.concatenate([true, benign], axis=0)
    if params.fix_d6_directive:
        # The posture's triage filter: the SIEM drops low-severity alerts before they queue.
        cutoff = jnp.asarray(params.posture_triage_filter, jnp.float32)[posture]
        keep = new[:, SEVERITY] >= cutoff
        new = new.at[:, VALID].set(jnp.where(keep, new[:, VALID], 0.0))
    return new


def _host_alerts(draws: Draws, hosts, t, params: EnvParams, host_stealth=None) -> jax.Array:
    """v2 true alerts: each compromised, connected host alerts w.p. scale*phase_noise[stage]*(1-stealth).

    At most `max_new_alerts` per step are enqueued, in host-id order. `[max_new_alerts, F]`.
    `host_stealth [S, Hmax]`: the stealth of each host's own campaign (competing campaigns);
    None: `params.stealth` for every host.
    """
    topo = topology(params)
    k = params.max_new_alerts
    if host_stealth is None:
        noise_by_stage = jnp.asarray(params.phase_noise, jnp.float32) * (1.0 - params.stealth)
        p = params.tp_host_alert_scale * table_lookup(noise_by_stage, hosts.stage)
    else:
        p = (params.tp_host_alert_scale * table_lookup(jnp.asarray(params.phase_noise, jnp.float32), hosts.stage)
             * (1.0 - host_stealth))
    u = draws.uniform(hosts.vuln.shape, width=topo.max_hosts)
    emitting = hosts.compromised & ~hosts.isolated & (u < p)
    found, flat_id = first_hosts(emitting, k)  # the first k emitters in host-id order
    host = flat_id.astype(jnp.float32)
    seg = (flat_id // topo.host_axis).astype(jnp.float32)
    st = jnp.where(found, jnp.take(hosts.stage.reshape(-1), flat_id), 0).astype(jnp.float32)
    u = draws.uniform((k, 2))
    severity = jnp.clip(st * params.tp_severity_per_stage + u[:, 0] * params.tp_severity_noise, 0.0, 1.0)
    confidence = params.tp_confidence_low + u[:, 1] * (params.tp_confidence_high - params.tp_confidence_low)
    return make_alert(severity, confidence, seg, host, 1.0, t, 0.0, found)


