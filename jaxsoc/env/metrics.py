"""Episode metrics (v1: docs/reference.md §1.9; the v2 definitions: docs/reference.md §4 D9).

`episode_metrics(state, params)` reads the final (pre-reset) state of an episode. Every preset
returns the same keys, so learners and evaluation treat them alike; `mttd`, `mttr` and `fpr` follow
the v1 or the v2 definition according to `fix_d9_metrics`. Under v2 a metric that is undefined for
an episode (no compromise, so no MTTD; no detection, so no MTTR) is NaN, and aggregations use
nan-means; `*_censored` says whether the clock was stopped by the episode's end.
"""
from __future__ import annotations

import jax.numpy as jnp

from jaxsoc.env.attacker import overall
from jaxsoc.env.network import host_summary
from jaxsoc.env.params import EnvParams
from jaxsoc.env.state import EnvState

# Each role's own counts, reported as the `Counters` fields of the same names (v2's FPR mixes the
# hunter's and the triage's): the threat hunter's scans of clean hosts and the false ones among
# them, the triage's benign alerts handled and escalated and the true ones it suppressed, the
# responder's isolations of compromised and of clean hosts.
ROLE_COUNTS = ("clean_scans", "false_scans", "fp_triaged", "fp_escalated", "tp_suppressed", "isolations",
               "blind_isolations")
METRIC_KEYS = (
    "return", "length", "csr", "mttd", "mttr", "fpr", "exfiltrated", "compromised",
    "hosts_compromised", "alert_precision", "mttd_censored", "mttr_censored", "detected",
    "false_positives", "true_positives",
) + ROLE_COUNTS


def episode_metrics(state: EnvState, params: EnvParams, summary: dict | None = None) -> dict:
    """Scalars (float32) describing the episode that ended in `state`.

    `summary` is `network.host_summary(state.hosts)` when the caller has it already.
    """
    c, a, h = state.counters, overall(state.attacker), state.hosts
    if summary is None:
        summary = host_summary(h)
    f = lambda x: jnp.asarray(x, jnp.float32)
    t = f(state.t)
    detected = c.detection_time > 0
    if params.fix_d9_metrics:
        begun = a.begun
        mttd = jnp.where(begun, jnp.where(detected, f(c.detection_time - a.first_compromise),
                                          t - f(a.first_compromise)), jnp.nan)
        mttd_cens = begun & ~detected
        mttr = jnp.where(detected, jnp.where(c.contained, f(c.containment_time - c.detection_time),
                                             t - f(c.detection_time)), jnp.nan)
        mttr_cens = detected & ~c.contained
        benign_seen = c.clean_scans + c.fp_triaged
        fpr = f(c.false_scans + c.fp_escalated) / jnp.maximum(1.0, f(benign_seen))
    else:
        mttd = jnp.where(detected, f(c.detection_time), f(params.max_steps))
        mttr = jnp.where(c.containment_time > 0, f(c.containment_time), f(params.max_steps))
        mttd_cens, mttr_cens = ~detected, c.containment_time == 0
        fpr = jnp.minimum(1.0, f(c.false_positives) / jnp.maximum(1.0, f(c.total_scans - c.true_positives)))
    escalated = c.tp_escalated + c.fp_escalated
    return {
        "return": f(c.episode_return),
        "length": t,
        "csr": f(c.contained),
        "mttd": f(mttd),
        "mttr": f(mttr),
        "fpr": f(fpr),
        "exfiltrated": f(a.exfiltrated),
        "compromised": jnp.sum(summary["compromised"]),
        "hosts_compromised": jnp.sum(summary["ever"]),
        "alert_precision": jnp.where(escalated > 0, f(c.tp_escalated) / jnp.maximum(1.0, f(escalated)), jnp.nan),
        "mttd_censored": f(mttd_cens),
        "mttr_censored": f(mttr_cens),
        "detected": jnp.sum(summary["detected"]),
        "false_positives": f(c.false_positives),
        "true_positives": f(c.true_positives),
        **{k: f(getattr(c, k)) for k in ROLE_COUNTS},
    }
