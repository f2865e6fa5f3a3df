"""Scripted SOC leads compared on the same held-out episodes: does strategy matter in a world?

`compare_leads` answers the strategic world's first question before any learning
(docs/strategic.md): with one scripted tier 2, does an *informed* lead (the coordinator's
observation only) beat the *best fixed directive* by a wide margin, and how far is the *oracle*
(ground truth)? The best fixed directive is chosen on a separate search set of episodes and then
measured on the held-out set with every other lead, so its row is not flattered by selection.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc import xla
from jaxsoc.analysis.intervals import mean_half_width
from jaxsoc.env import leads, policies
from jaxsoc.env.params import posture_names
from jaxsoc.evaluation import make_evaluator

ROW_METRICS = ("return", "csr", "exfiltrated", "mttd", "length", "false_positives")


@dataclasses.dataclass(frozen=True)
class LeadRow:
    """One lead on the held-out episodes: `mean[m]`, `half_width[m]` (95 % CI) per metric."""

    name: str
    directive: str
    mean: Dict[str, float]
    half_width: Dict[str, float]

    def interval(self, metric: str) -> tuple[float, float]:
        return self.mean[metric] - self.half_width[metric], self.mean[metric] + self.half_width[metric]


def summarise(name: str, directive: str, metrics: Dict[str, np.ndarray]) -> LeadRow:
    """Mean and 95 % half-width of each `ROW_METRICS` over episodes (NaN-aware: MTTD of an episode
    without compromise is undefined)."""
    mean, half = {}, {}
    for m in ROW_METRICS:
        x = np.asarray(metrics[m], np.float64)
        x = x[np.isfinite(x)]
        mean[m] = float(x.mean()) if x.size else float("nan")
        half[m] = mean_half_width(x)
    return LeadRow(name, directive, mean, half)


def directive_name(index: int, params) -> str:
    """`"focus=<segment>, <posture>"` of directive `index`."""
    postures = posture_names(params)
    return f"focus={params.segment_names[index // params.num_postures]}, {postures[index % params.num_postures]}"


# The three leads direct the same scripted tier 2; the last two rows are whole teams without a
# lead, the yardsticks a learned team must also beat (the strategic world's goal): the all-zero constant action
# (not idle: raw 0 hunts at 0.5, triage 0 escalates, the focus urgency isolates; docs/strategic.md) and
# Rule-SOAR (every rule fired everywhere).
LEAD_NAMES = ("best fixed directive", "informed lead", "oracle lead", "constant action", "Rule-SOAR")
LEAD_TEXTS = ("argmax value x evidence, hunt", "argmax value x live compromise, hunt",
              "hunt 0.5 everywhere, escalate all, never remediate", "hunt all, escalate all, isolate on incident")


def lead_act(params):
    """One `act` for every row, so each evaluation compiles once: the policy parameter
    `(lead, directive)` picks the fixed directive (lead 0), the informed (1) or the oracle lead
    (2), the constant action (3) or Rule-SOAR (4); all five are computed (a few dozen flops each)
    and one is selected per role."""

    def act(pp, key, obs, state, greedy):
        lead, directive = pp
        rows = [
            leads.fixed_lead(directive)(key, obs, state, params),
            leads.informed_lead(key, obs, state, params),
            leads.oracle_lead(key, obs, state, params),
            policies.constant(key, obs, state, params),
            policies.rule_soar(key, obs, state, params),
        ]
        out = {}
        for role in rows[0]:  # a loop over the four roles, at trace time
            dtype = jnp.result_type(*[r[role] for r in rows])
            out[role] = jnp.stack([jnp.asarray(r[role], dtype) for r in rows])[lead]
        return out

    return act


ROWS_PER_CALL = len(LEAD_NAMES)  # rows of `episodes` envs stepped together by one program call


def lead_program(env, params, episodes: int):
    """The compiled evaluation of `ROWS_PER_CALL` rows `((lead [R], directive [R]), keys [R])`,
    each row `episodes` episodes of one lead: `{metric: [R, episodes]}`."""
    return xla.jit(jax.vmap(make_evaluator(env, params, lead_act(params), episodes), in_axes=(0, 0)))


def evaluate_leads(program, lead: np.ndarray, directive: np.ndarray, keys: jax.Array) -> Dict[str, np.ndarray]:
    """Per-episode metrics `{name: [rows, episodes]}` of rows `(lead[i], directive[i], keys[i])` run
    by `program` (`lead_program`); rows with equal keys see the same episodes. The rows go through
    in calls of `ROWS_PER_CALL` (the last one padded), so every evaluation of a comparison
    reuses one compiled program."""
    rows = len(lead)
    pad = -rows % ROWS_PER_CALL
    lead = np.concatenate([np.asarray(lead, np.int32), np.zeros(pad, np.int32)])
    directive = np.concatenate([np.asarray(directive, np.int32), np.zeros(pad, np.int32)])
    keys = jnp.concatenate([keys, jnp.stack([keys[0]] * pad)]) if pad else keys
    out = []
    for a in range(0, rows + pad, ROWS_PER_CALL):
        b = slice(a, a + ROWS_PER_CALL)
        out.append(jax.device_get(program((jnp.asarray(lead[b]), jnp.asarray(directive[b])), keys[b])))
    return {k: np.concatenate([o[k] for o in out])[:rows] for k in out[0]}


def compare_leads(env, params, episodes: int, search_episodes: int, key: jax.Array) -> List[LeadRow]:
    """Rows for the best fixed directive (picked by mean return on `search_episodes` episodes drawn
    from a key of their own), the informed and the oracle lead, the constant action and Rule-SOAR
    (`LEAD_NAMES` order), all on the same held-out episodes:
    `episodes` rounded up to a multiple of `search_episodes`, run in chunks of that size with a
    key each, so the search and the held-out comparison share one compiled program."""
    leads.check_scenario(params)
    search_key, heldout_key = jax.random.split(key)
    program = lead_program(env, params, search_episodes)
    n = params.num_directives
    search = evaluate_leads(program, np.zeros(n), np.arange(n), jnp.stack([search_key] * n))
    best = int(np.argmax(np.nanmean(search["return"], axis=1)))
    chunks = -(-episodes // search_episodes)
    chunk_keys = jax.random.split(heldout_key, chunks)
    nl = len(LEAD_NAMES)
    held = evaluate_leads(program, np.repeat(np.arange(nl), chunks), np.full(nl * chunks, best),
                          jnp.concatenate([chunk_keys] * nl))  # rows: lead 0's chunks, lead 1's, ...
    texts = (directive_name(best, params),) + LEAD_TEXTS
    return [summarise(name, text, {k: v[i * chunks:(i + 1) * chunks].reshape(-1) for k, v in held.items()})
            for i, (name, text) in enumerate(zip(LEAD_NAMES, texts))]


def to_markdown(rows: List[LeadRow]) -> str:
    """The leads table (mean ± 95 % half-width)."""
    head = "| lead | directive | return | CSR | exfiltrated | MTTD | length | false positives |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = [f"{r.mean[m]:.2f} ± {r.half_width[m]:.2f}" if m == "return" else
                 f"{r.mean[m]:.3f} ± {r.half_width[m]:.3f}" if m in ("csr", "exfiltrated") else
                 f"{r.mean[m]:.1f}" for m in ROW_METRICS]
        lines.append(f"| {r.name} | {r.directive} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
