"""Per-role observations, the world state for centralised critics, and available actions.

Two layouts (docs/observations.md lists every feature):
* the **v1 layouts** (docs/reference.md §1.5, `fix_d1_hidden_truth=False`): 64/128/64/96 floats per role,
  with the ground truth they leak (D1) and, unless `fix_d11_no_padding`, pure-noise and
  constant-zero features (D11);
* the **SOC view** (`fix_d1_hidden_truth=True`): what a SOC can see — alerts, hunting results,
  isolation state, segment values, per-segment telemetry summaries, the time and the directive.
With `fix_d6_directive` every role also sees the current directive (one-hot focus and posture).

Observation noise is drawn from `state.obs_seed`, so `get_obs(state)` is a pure function of the
state (JaxMARL's `get_obs` signature) and the terminal observation can be recomputed.
"""
from __future__ import annotations

from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.env.attacker import noise_level, overall, red_move_targets, red_target_ranks
from jaxsoc.env.network import host_summary, segment_sums, topology
from jaxsoc.env.params import AGENTS, NUM_PHASES, PHASE_NAMES, EnvParams, posture_names
from jaxsoc.env import scores
from jaxsoc.env.rng import SeededDraws
from jaxsoc.env.state import (CONFIDENCE, IS_TP, NOISE, SEGMENT, SEVERITY, TIMESTAMP, VALID,
                              EnvState)

V1_SIZES = dict(coordinator=64, threat_hunter=128, alert_triage=64, response_orchestrator=96)
V1_TH_HOSTS = 48  # the reference shows hosts 0..47 only (D11)


def _directive_features(state: EnvState, params: EnvParams) -> jax.Array:
    """`[S + P]` one-hot focus and posture (D6), or the v1 directive's three used entries."""
    if params.fix_d6_directive:
        return jnp.concatenate([
            jax.nn.one_hot(state.focus, params.num_segments, dtype=jnp.float32),
            jax.nn.one_hot(state.posture, params.num_postures, dtype=jnp.float32),
        ])
    d = state.directive
    return jnp.stack([d[0], d[1], d[4]])


def _pad(x: jax.Array, size: int, fill: jax.Array | None = None) -> jax.Array:
    """Pad `x` to `size` with `fill` (or zeros); no-op when it is already that long or longer."""
    extra = size - x.shape[0]
    if extra <= 0:
        return x
    tail = jnp.zeros((extra,), jnp.float32) if fill is None else fill[:extra]
    return jnp.concatenate([x, tail])


def draw_noise(seed: jax.Array, params: EnvParams) -> Dict[str, jax.Array]:
    """Every random number an observation needs, from the state's `obs_seed`.

    Drawn once per step and shared by the terminal and the auto-reset observation (only one of
    them is returned as `obs`), so the step pays for one set of normals.
    """
    draws = SeededDraws(seed, params.rng_impl)
    s = params.num_segments
    if params.fix_d1_hidden_truth:
        return {"telemetry": draws.normal((s, params.telemetry_features))}
    out = {"th_hosts": draws.normal((V1_TH_HOSTS,))}
    if not params.fix_d11_no_padding:
        out["sc"] = draws.normal((max(0, V1_SIZES["coordinator"] - (4 * s + 4)),))
        out["th_flow"] = draws.normal((s, 8))
        out["th_intel"] = draws.normal((10,))
        out["ro"] = draws.normal((s, 5))
    return out


def _v1_obs(state: EnvState, params: EnvParams, noise, summary) -> Dict[str, jax.Array]:
    """The reference layouts (D1 leaks included); D11 drops the noise and zero padding."""
    topo = topology(params)
    h, q = state.hosts, state.queue
    s, n_hosts = topo.num_segments, float(topo.num_hosts)
    pad = not params.fix_d11_no_padding
    per_seg = jnp.asarray(topo.hosts_in_segment)
    comp_frac = summary["compromised"] / per_seg
    stage_mean = summary["stage"] / per_seg / 5.0
    det_frac = summary["detected"] / per_seg
    iso_frac = summary["isolated"] / per_seg
    net_state = jnp.stack([comp_frac, stage_mean, det_frac, iso_frac], axis=-1).reshape(-1)  # [4S]
    t = state.t.astype(jnp.float32)
    qlen = jnp.sum(q[:, VALID]) / params.queue_capacity
    total_comp = jnp.sum(summary["compromised"])
    total_det = jnp.sum(summary["detected"])
    noise_lvl = noise_level(state.attacker.phase, params)

    sc = jnp.concatenate([net_state, jnp.stack([t / params.max_steps, qlen, total_comp / n_hosts,
                                                total_det / jnp.maximum(1.0, total_comp + 1.0)])])
    if pad:
        sc = _pad(sc, V1_SIZES["coordinator"], 0.1 * noise["sc"])

    seg_feats = [comp_frac[:, None], jnp.full((s, 1), noise_lvl)]
    if pad:
        seg_feats.append(0.2 * noise["th_flow"])  # "flow features": pure noise
    th_parts = [net_state, jnp.concatenate(seg_feats, axis=-1).reshape(-1)]
    if pad:
        th_parts.append(0.1 * noise["th_intel"])  # "threat intel": pure noise
    # Host ids count real hosts only: neither the axis' padding to HOST_LANES nor a smaller
    # segment's slots up to the largest segment's size are part of the layout (with uneven
    # segments those slots were features that never moved, and later real hosts were cut off).
    real = np.flatnonzero(topo.host_valid.reshape(-1))[:V1_TH_HOSTS]
    flat_stage = h.stage.reshape(-1)[real].astype(jnp.float32)
    host_feat = flat_stage / 5.0 * (1.0 - params.stealth) + 0.15 * noise["th_hosts"][: flat_stage.shape[0]]
    th_parts.append(_pad(host_feat, V1_TH_HOSTS))
    th = jnp.concatenate(th_parts)

    vis = q[: params.visible_alerts]
    alert_feats = jnp.stack([vis[:, SEVERITY], vis[:, CONFIDENCE], vis[:, SEGMENT] / s, vis[:, IS_TP],
                             vis[:, TIMESTAMP] / params.max_steps, vis[:, NOISE]], axis=-1)
    alert_feats = jnp.where(vis[:, VALID:VALID + 1] > 0.5, alert_feats, 0.0).reshape(-1)
    at = jnp.concatenate([qlen[None], alert_feats])
    if pad:
        at = _pad(at, V1_SIZES["alert_triage"])

    values = jnp.asarray(params.segment_values, jnp.float32)
    ro_seg = [comp_frac[:, None], iso_frac[:, None], values[:, None]]
    if pad:
        ro_seg.append(0.1 * noise["ro"])
    ro = jnp.concatenate([net_state, (jnp.sum(summary["isolated"]) / n_hosts)[None],
                          jnp.concatenate(ro_seg, axis=-1).reshape(-1)])
    if pad:
        ro = _pad(ro, V1_SIZES["response_orchestrator"])
    obs = dict(coordinator=sc, threat_hunter=th, alert_triage=at, response_orchestrator=ro)
    if params.fix_d6_directive:
        d = _directive_features(state, params)
        obs = {k: jnp.concatenate([v, d]) for k, v in obs.items()}
    return obs


def telemetry_summary(state: EnvState, params: EnvParams, noise: jax.Array) -> jax.Array:
    """`[S, F]` per-segment mean of connected hosts' telemetry.

    Host telemetry = stage drift (compromised hosts only) times a fixed direction, plus
    N(0, telemetry_noise) per host and feature; the mean of n such hosts is drawn exactly as
    drift mean + N(0, telemetry_noise / sqrt(n)). Isolated hosts are off the network.
    """
    topo = topology(params)
    h = state.hosts
    connected = jnp.asarray(topo.host_valid) & ~h.isolated
    drift_table = jnp.asarray(params.telemetry_stage_drift, jnp.float32)
    drift = sum(jnp.where(h.stage == k, drift_table[k], 0.0) for k in range(1, len(params.telemetry_stage_drift)))
    drift_sum, n = segment_sums(jnp.where(connected & h.compromised, drift, 0.0), connected,
                                width=topo.max_hosts)
    mean_drift = drift_sum / jnp.maximum(n, 1.0)
    direction = jnp.asarray(params.telemetry_direction, jnp.float32)
    summary = mean_drift[:, None] * direction[None, :] + params.telemetry_noise * noise / jnp.sqrt(jnp.maximum(n, 1.0))[:, None]
    return jnp.where(n[:, None] > 0, summary, 0.0)


def _soc_view(state: EnvState, params: EnvParams, noise, summary) -> Dict[str, jax.Array]:
    """D1: only what a SOC can see (no compromise state, no alert labels, no attacker phase)."""
    topo = topology(params)
    q = state.queue
    s = topo.num_segments
    per_seg = jnp.asarray(topo.hosts_in_segment)
    valid_q = q[:, VALID]
    seg_onehot = jax.nn.one_hot(q[:, SEGMENT].astype(jnp.int32), s, dtype=jnp.float32)  # [Q, S]
    alerts_per_seg = valid_q @ seg_onehot
    pending = summary["pending"] / per_seg
    isolated = summary["isolated"] / per_seg
    values = jnp.asarray(params.segment_values, jnp.float32)
    tele = telemetry_summary(state, params, noise["telemetry"])
    seg_block = jnp.concatenate([
        jnp.stack([alerts_per_seg / params.queue_capacity, pending, isolated, values], axis=-1), tele,
    ], axis=-1).reshape(-1)
    t = (state.t.astype(jnp.float32) / params.max_steps)[None]
    qlen = (jnp.sum(valid_q) / params.queue_capacity)[None]
    d = _directive_features(state, params)

    vis = q[: params.visible_alerts]
    vis_valid = vis[:, VALID:VALID + 1]
    age = (state.t.astype(jnp.float32) - vis[:, TIMESTAMP]) / params.max_steps
    alert_feats = jnp.concatenate([
        vis[:, SEVERITY:SEVERITY + 1], vis[:, CONFIDENCE:CONFIDENCE + 1],
        seg_onehot[: params.visible_alerts], age[:, None], vis_valid,
    ], axis=-1) * vis_valid
    known_clean_isolated = summary["clean_isolated"] / per_seg
    if params.lanes:
        # Each tier-2 role sees its own lane; only the coordinator sees the whole dashboard.
        hunter_block = jnp.concatenate([jnp.stack([pending, isolated, values], axis=-1), tele], axis=-1)
        response_block = jnp.stack([pending, isolated, values, known_clean_isolated], axis=-1)
        return dict(
            coordinator=jnp.concatenate([seg_block, qlen, t, d]),
            threat_hunter=jnp.concatenate([hunter_block.reshape(-1), t, d]),
            alert_triage=jnp.concatenate([qlen, alert_feats.reshape(-1), t, d]),
            response_orchestrator=jnp.concatenate([response_block.reshape(-1), t, d]),
        )
    return dict(
        coordinator=jnp.concatenate([seg_block, qlen, t, d]),
        threat_hunter=jnp.concatenate([seg_block, t, d]),
        alert_triage=jnp.concatenate([qlen, alert_feats.reshape(-1), t, d]),
        response_orchestrator=jnp.concatenate([seg_block, known_clean_isolated, t, d]),
    )


def get_obs(state: EnvState, params: EnvParams, noise: Dict[str, jax.Array] | None = None,
            summary: Dict[str, jax.Array] | None = None) -> Dict[str, jax.Array]:
    """`{agent: float32 [obs_dim(agent)]}` for one env.

    `noise` defaults to `draw_noise(state.obs_seed)`, `summary` to `host_summary(state.hosts)`;
    the step passes both because it has them already.
    """
    if noise is None:
        noise = draw_noise(state.obs_seed, params)
    if summary is None:
        summary = host_summary(state.hosts)
    if params.fix_d1_hidden_truth:
        obs = _soc_view(state, params, noise, summary)
        if params.detector_scores is not None:
            obs = scores.append(obs, state, params)
        if params.red_control:
            obs["red"] = red_obs(state, params)
        return obs
    return _v1_obs(state, params, noise, summary)


RED_SEGMENT_FEATURES = ("foothold", "stage", "lost", "reachable", "high_value")


def red_obs(state: EnvState, params: EnvParams) -> jax.Array:
    """`[5S + NUM_PHASES + 5 + recon_targets]` f32: what the intruder knows (`params.red_control`).

    Per segment (`RED_SEGMENT_FEATURES`): its footholds (compromised, connected hosts) as a share
    of the segment, their highest stage / 4, the hosts it held and lost (remediated or cut off by
    isolation) as a share, whether lateral movement can reach the segment now, whether it is a
    high-value (exfiltration) segment; then its phase (one-hot), steps in the phase, the re-entry
    cool-down left, recon targets not yet taken, the time, whether it has a host yet; then the
    vulnerability of each open recon target by rank (what "exploit:k" tries; 0 where none: recon
    scanned them, so the intruder knows). Nothing the SOC alone knows: no alerts, no detections,
    no directive, no telemetry, no observation noise.
    """
    topo = topology(params)
    h, a = state.hosts, state.attacker
    valid = jnp.asarray(topo.host_valid)
    foothold = h.compromised & ~h.isolated & valid
    lost = h.ever_compromised & ~foothold & valid
    targets_left = h.target & ~h.compromised & ~h.isolated & valid
    counts = segment_sums(foothold, lost)  # [2, S]
    ranked = red_target_ranks(h, params)[..., None] == jnp.arange(params.recon_targets)  # [S, Hmax, R]
    target_vuln = jnp.sum(jnp.where(ranked, h.vuln[..., None], 0.0), axis=(0, 1))  # [R]
    per_seg = jnp.asarray(topo.hosts_in_segment)
    top_stage = jnp.max(jnp.where(foothold, h.stage, 0), axis=-1).astype(jnp.float32) / 4.0
    segments = jnp.stack([
        counts[0] / per_seg, top_stage, counts[1] / per_seg,
        red_move_targets(h, a, params).astype(jnp.float32),
        jnp.asarray(topo.is_high_value, jnp.float32),
    ], axis=-1).reshape(-1)
    return jnp.concatenate([
        segments,
        jax.nn.one_hot(a.phase, NUM_PHASES, dtype=jnp.float32),
        jnp.stack([a.steps_in_phase / params.max_steps,
                   a.cooldown / jnp.maximum(jnp.asarray(params.reentry_cooldown, jnp.float32), 1.0),
                   jnp.sum(targets_left) / params.recon_targets,
                   state.t / params.max_steps,
                   a.begun]).astype(jnp.float32),
        target_vuln,
    ])


def ground_truth(state: EnvState, params: EnvParams, summary=None) -> jax.Array:
    """`[3S + NUM_PHASES + 3]`: what the critics may know and the agents may not."""
    topo = topology(params)
    a = overall(state.attacker)
    if summary is None:
        summary = host_summary(state.hosts)
    per_seg = jnp.asarray(topo.hosts_in_segment)
    comp = summary["compromised"] / per_seg
    active = summary["active"] / per_seg
    stage = summary["stage_compromised"] / per_seg / 4.0
    return jnp.concatenate([
        comp, active, stage, jax.nn.one_hot(a.phase, NUM_PHASES, dtype=jnp.float32),
        jnp.stack([a.begun, a.exfiltrated, state.t / params.max_steps]).astype(jnp.float32),
    ])


def world_state(obs: Dict[str, jax.Array], state: EnvState, params: EnvParams) -> jax.Array:
    """Centralised-critic input: every role's observation, then the ground truth, `[world_dim]`."""
    return jnp.concatenate([obs[a] for a in AGENTS] + [ground_truth(state, params)])


def feature_names(params: EnvParams) -> Dict[str, list]:
    """The name of every observation feature, per role, in order (docs, explanations, tests).

    Mirrors `_v1_obs` / `_soc_view`; `tests/env/test_observe.py` checks the lengths match.
    """
    seg = list(params.segment_names)
    if params.fix_d6_directive:
        directive = [f"directive.focus={n}" for n in seg] + [
            f"directive.posture={p}" for p in posture_names(params)]
    else:
        directive = ["directive.scan(d0)", "directive.scope(d1)", "directive.urgency(d4)"]
    if params.fix_d1_hidden_truth:
        names = _soc_view_names(params, seg, directive)
        if params.detector_scores is not None:
            extra = scores.feature_names(params)
            names = {k: v + extra if k in params.detector_score_roles else v for k, v in names.items()}
    else:
        names = _v1_names(params, seg, directive)
    if params.red_control:
        names["red"] = red_feature_names(params)
    return names


def red_feature_names(params: EnvParams) -> list:
    """`red_obs`'s feature names, in order."""
    return ([f"{n}.{k}" for n in params.segment_names for k in RED_SEGMENT_FEATURES]
            + [f"phase={name}" for name in PHASE_NAMES]
            + ["steps_in_phase", "cooldown", "targets_left", "time", "has_host"]
            + [f"target{r}.vuln" for r in range(params.recon_targets)])


def _soc_view_names(params: EnvParams, seg: list, directive: list) -> Dict[str, list]:
    """`_soc_view`'s feature names per role."""
    tele = [f"telemetry{f}" for f in range(params.telemetry_features)]
    block = [f"{n}.{k}" for n in seg for k in ["alerts_queued", "detected_pending", "isolated", "value"] + tele]
    alerts = [f"alert{i}.{k}" for i in range(params.visible_alerts)
              for k in ["severity", "confidence"] + [f"segment={n}" for n in seg] + ["age", "valid"]]
    if params.lanes:
        hunter = [f"{n}.{k}" for n in seg for k in ["detected_pending", "isolated", "value"] + tele]
        response = [f"{n}.{k}" for n in seg
                    for k in ("detected_pending", "isolated", "value", "clean_isolated")]
        return dict(
            coordinator=block + ["queue_length", "time"] + directive,
            threat_hunter=hunter + ["time"] + directive,
            alert_triage=["queue_length"] + alerts + ["time"] + directive,
            response_orchestrator=response + ["time"] + directive,
        )
    return dict(
        coordinator=block + ["queue_length", "time"] + directive,
        threat_hunter=block + ["time"] + directive,
        alert_triage=["queue_length"] + alerts + ["time"] + directive,
        response_orchestrator=block + [f"{n}.clean_isolated" for n in seg] + ["time"] + directive,
    )


def _v1_names(params: EnvParams, seg: list, directive: list) -> Dict[str, list]:
    """`_v1_obs`'s feature names per role."""
    pad = not params.fix_d11_no_padding
    net = [f"{n}.{k}" for n in seg for k in ("compromised*", "stage*", "detected", "isolated")]
    sc = net + ["time", "queue_length", "total_compromised*", "detected_per_compromised*"]
    if pad:
        sc += [f"noise{i}" for i in range(max(0, V1_SIZES["coordinator"] - len(sc)))]
    th = net + [f"{n}.{k}" for n in seg for k in (["compromised*", "attacker_noise*"] +
                                                  ([f"flow_noise{i}" for i in range(8)] if pad else []))]
    if pad:
        th += [f"intel_noise{i}" for i in range(10)]
    th += [f"host{i}.stage*+noise" for i in range(V1_TH_HOSTS)]
    at = ["queue_length"] + [f"alert{i}.{k}" for i in range(params.visible_alerts)
                             for k in ("severity", "confidence", "segment", "is_true*", "timestamp", "noise")]
    if pad:
        at += [f"zero{i}" for i in range(max(0, V1_SIZES["alert_triage"] - len(at)))]
    ro = net + ["total_isolated"] + [f"{n}.{k}" for n in seg for k in
                                     (["compromised*", "isolated", "value"] + ([f"noise{i}" for i in range(5)] if pad else []))]
    if pad:
        ro += [f"zero{i}" for i in range(max(0, V1_SIZES["response_orchestrator"] - len(ro)))]
    out = dict(coordinator=sc, threat_hunter=th, alert_triage=at, response_orchestrator=ro)
    if params.fix_d6_directive:
        out = {k: v + directive for k, v in out.items()}
    return out


def segment_token_layout(params: EnvParams, role: str):
    """Static indices that split a role's observation into per-segment tokens and the rest.

    Returns `(tokens [S, F] int, rest [G] int, token_feature_names [F])`: `obs[..., tokens]` is
    `[..., S, F]` (one token per network segment, the same features for every segment) and
    `obs[..., rest]` the global features (time, queue length, directive, noise...). An attention
    encoder over these tokens can then say which segments drove a decision.
    """
    import numpy as np

    names = feature_names(params)[role]
    seg = list(params.segment_names)
    per = {s: [i for i, n in enumerate(names) if n.startswith(f"{s}.")] for s in seg}
    counts = {len(v) for v in per.values()}
    if len(counts) != 1 or 0 in counts:
        raise ValueError(f"{role}: segments do not have the same features ({counts})")
    tokens = np.asarray([per[s] for s in seg], np.int32)
    used = set(tokens.reshape(-1).tolist())
    rest = np.asarray([i for i in range(len(names)) if i not in used], np.int32)
    token_names = [names[i].split(".", 1)[1] for i in tokens[0]]
    return tokens, rest, token_names
