"""`EnvParams`: everything that configures the SOC world, and the registry of presets.

One engine, scenarios as data. `EnvParams` is a `flax.struct.dataclass` with two kinds of fields:

* **static** fields (`pytree_node=False`): sizes, topology structure and the defect switches. They
  fix array shapes and which code is traced, so they are Python values at trace time and part of
  the treedef (hashable; changing one recompiles).
* **numeric** fields (pytree leaves): probabilities, thresholds, segment values, reward weights.
  They may be traced, so a user can `jax.vmap` over scenario parameters (domain randomisation,
  sensitivity sweeps) without recompiling: `jax.vmap(env.step, in_axes=(0, 0, 0, params_axes))`.

`hmarl-soc-v1` reproduces the published HMARL-SOC environment with its defects; `soc-v2` turns on
every fix. Each defect of docs/reference.md §4 that lives in the world (D1..D12, D26) is
a named boolean switch `fix_dN_*` (see `SWITCHES` and docs/switches.md), so any one fix can be
ablated alone: `make("hmarl-soc-v1", fix_d5_containment=True)`.
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import jax
import numpy as np
from flax import struct

from jaxsoc.argtypes import is_integer, is_number, is_switch
from jaxsoc.memory import machine_bytes
from jaxsoc.names import repeated, suggest

AGENTS = ("coordinator", "threat_hunter", "alert_triage", "response_orchestrator")
NUM_PHASES = 5  # recon, initial access, execution, lateral movement, exfiltration
NUM_STAGES = 5  # per-host compromise stage 0..4
# The attacker's phases in order; a compromised host's stage k (1..4) is named after phase k.
PHASE_NAMES = ("reconnaissance", "initial access", "execution", "lateral movement", "exfiltration")
POSTURES = ("watch", "hunt", "contain")  # the v2 directive's postures (D6), in index order

# name -> (defect id, what turning the switch on changes). The single source for docs/switches.md.
SWITCHES: Dict[str, Tuple[str, str]] = {
    "fix_d1_hidden_truth": (
        "D1",
        "Agents see a SOC's view (alerts, hunting results, isolation state, segment values, "
        "telemetry summaries, time, directive) instead of the v1 layouts that carry exact per-segment "
        "compromise fractions/stages, the attacker's phase noise and each alert's true/false label.",
    ),
    "fix_d2_alert_origin": (
        "D2",
        "True alerts come from compromised hosts (per-host rate by stage and stealth, up to "
        "`max_new_alerts` per step) and carry that host's segment and id; escalating a true alert "
        "marks its host detected. v1: one attacker alert per step, always stamped segment 0.",
    ),
    "fix_d3_foothold": (
        "D3",
        "The attacker's foothold is exactly the hosts currently compromised: no re-compromise, "
        "remediated hosts leave the foothold, isolated hosts are not sources, execution only on "
        "compromised hosts. v1: an append-only list with duplicates and stale entries.",
    ),
    "fix_d4_dead_ends": (
        "D4",
        "No attacker dead ends: a phase whose work is done advances after its minimum duration; "
        "lateral movement continues until a high-value foothold exists (and exfiltration falls back "
        "to it when the foothold is lost); an attacker with no foothold and no reachable target "
        "re-enters from recon after `reentry_cooldown` steps. v1: stalls forever in P2/P4.",
    ),
    "fix_d5_containment": (
        "D5",
        "Containment = the attack has begun and no compromised host is left un-isolated, so "
        "remediating the last compromised host IS containment. v1: also requires a compromised "
        "host to remain, so remediation makes containment impossible.",
    ),
    "fix_d6_directive": (
        "D6",
        "The coordinator picks a discrete directive (focus segment, posture); every part has an "
        "effect (focus boosts hunting and containment there; posture sets hunting intensity, the "
        "triage filter and containment urgency), and tier-2 agents observe it. v1: an 8-float "
        "directive of which only d0, d1, d4 do anything.",
    ),
    "fix_d7_response_actions": (
        "D7",
        "Every action dimension is used (threat hunter 2S: intensity, scope; response 3S: isolate, "
        "remediate, release); a clean host is never isolated twice; isolated clean hosts can be "
        "released. v1: inert dims, repeated charging for re-isolating, no release.",
    ),
    "fix_d8_reward_accounting": (
        "D8",
        "Each event counted once per host: response credit uses that host's own detection time; "
        "every suppressed true alert and every escalated benign alert is penalised. v1: time since "
        "the episode's first detection; escalating benign alerts is free.",
    ),
    "fix_d9_metrics": (
        "D9",
        "v2 metrics: MTTD from first compromise to first detection, MTTR from first detection to "
        "containment (both censored at episode end), FPR = benign items acted on as threats / "
        "benign items examined, plus alert precision. v1: step indices from episode start with "
        "max_steps for misses, and a scan-count denominator.",
    ),
    "fix_d10_resample_network": (
        "D10",
        "Host vulnerabilities are re-drawn at every reset (inside the jitted reset). v1: drawn once "
        "per env instance and kept across episodes, so the attacker hits the same hosts.",
    ),
    "fix_d11_no_padding": (
        "D11",
        "The v1 observation layouts lose their pure-noise and constant-zero features (the SOC view "
        "of D1 never has any). v1: 40/50/25 noise dims and 3/35 zero dims.",
    ),
    "fix_d12_truncation": (
        "D12",
        "`infos['discount']` is 0 only on termination, so learners bootstrap through time-limit "
        "truncation. v1 semantics: discount 0 on termination OR truncation. Both flags are always "
        "reported separately.",
    ),
    "fix_d26_detection_stage": (
        "D26",
        "R_det pays each newly detected host's stage as it was when the host was detected, so a host "
        "detected, isolated and remediated in the same step still earns stage / 5. v1: the stage is "
        "read after the response orchestrator acted (the reference computes the reward last), so "
        "such a host earns 0: the fastest response forfeits the detection reward.",
    ),
}

# Defects that are not behaviours of the world, and how jaxsoc treats them (docs/switches.md).
NOT_SWITCHES = {
    "D13": "`reset(seed)` reseeding only part of the env cannot happen: every random draw in jaxsoc "
    "derives from the key passed to reset/step; there is no hidden generator to reproduce.",
    "D14": "Spaces, episode length in infos and reward weights as parameters are API facts, true "
    "under every preset (the v1 preset uses the hard-coded v1 weights as its parameter values).",
}


# The strategic SOC world's mechanisms (docs/strategic.md): name -> what it changes. Each is a
# field of `EnvParams`, off (None / () / False / 0) under hmarl-soc-v1 and soc-v2, so those presets
# are untouched; `soc-strategic` turns them all on. Every one needs the SOC-view fixes D1-D6.
MECHANISMS: Dict[str, str] = {
    "hunt_budget": "Hunting capacity: at most this many host scans per step network-wide. The budget "
    "is split across segments: a share `focus_share` to the directive's focus segment, the rest in "
    "proportion to the hunter's per-segment intensities (segments below `hunt_threshold` get none); "
    "each segment's scans sweep a contiguous window of its hosts at a random offset. None: every "
    "host of every hunted segment is scanned every step (the reference).",
    "response_budget": "Response capacity: at most this many isolation attempts per step "
    "network-wide, split across segments like the hunt budget (focus share, then isolation "
    "intensities); within a segment the known (detected, connected) hosts are worked in host order. "
    "None: every detected host of every segment above `isolate_threshold` is attempted every step.",
    "focus_share": "The share of each budget the SOC lead's focus segment receives before the rest "
    "is split by the tier-2 agents' own intensities (0: the focus gets no reserved share, only its "
    "`focus_hunt`/`focus_urgency` boosts). Whatever the share, a budget no segment asks for goes "
    "whole to the focus segment, so an all -1 hunter or responder still works the focus.",
    "lanes": "Each tier-2 role observes only its own lane: the threat hunter its telemetry, detections "
    "and isolation state (no alert counts); the response orchestrator detections and isolation "
    "state (no alerts, no telemetry); triage the queue. The coordinator keeps the SOC-wide "
    "dashboard (alerts, detections, isolation, telemetry and value per segment): the directive is "
    "how that picture reaches tier 2. False: every role sees the segment block (soc-v2).",
    "campaign_stealth_low": "Competing campaigns: one entry per campaign (with "
    "`campaign_stealth_high`); each campaign's stealth is drawn per reset from U(low, high), its "
    "entry segment is drawn per reset from `entry_segments` (distinct across campaigns), and it runs "
    "its own five-phase attack on its own hosts. (): one campaign with `stealth` (the reference).",
    "campaign_stealth_high": "Upper ends of the campaigns' stealth draws (see `campaign_stealth_low`).",
}


def _static(default=None, **kw):
    return struct.field(pytree_node=False, default=default, **kw)


# The HMARL-SOC topology (docs/reference.md §1.2).
V1_SEGMENT_NAMES = ("DMZ", "Corporate", "Development", "DataCenter", "Cloud")
V1_SEGMENT_VALUES = (0.6, 0.8, 0.7, 1.0, 0.9)
V1_VULN_MEANS = (0.40, 0.30, 0.35, 0.20, 0.25)
V1_ADJACENCY = ((1, 2), (0, 2, 3), (1, 3, 4), (1, 2, 4), (2, 3))


@struct.dataclass
class EnvParams:
    """Static configuration and numeric parameters of one SOC scenario.

    Static fields shape the arrays and select code paths; numeric fields are leaves (vmappable).
    Defaults are the HMARL-SOC reference values (docs/reference.md §1); presets change what differs.
    """

    # ---- static: identity, topology, sizes ------------------------------------------------
    name: str = _static("custom")
    segment_names: Tuple[str, ...] = _static(V1_SEGMENT_NAMES)
    hosts_per_segment: Tuple[int, ...] = _static((40,) * 5)
    adjacency: Tuple[Tuple[int, ...], ...] = _static(V1_ADJACENCY)  # directed, for lateral movement
    entry_segments: Tuple[int, ...] = _static((0,))
    high_value_segments: Tuple[int, ...] = _static((3, 4))  # exfiltration targets (v1: value >= 0.9)
    max_steps: int = _static(200)
    directive_period: int = _static(5)  # K: the env reads the coordinator every K steps
    queue_capacity: int = _static(50)
    visible_alerts: int = _static(10)  # alerts shown to the triage agent, oldest first
    recon_targets: int = _static(5)
    phase_min_steps: int = _static(3)
    num_postures: int = _static(3)  # v2 directive: watch / hunt / contain
    telemetry_features: int = _static(8)
    max_new_alerts: int = _static(3)  # v2: true alerts enqueued per step at most
    rng_impl: str = _static("hash")  # "hash" (fast counter hash) or "threefry" (jax.random)
    # Put `world_state`/`final_world_state` in step infos (centralised critics); off by default
    # because it costs two concatenations of every role's observation per step.
    with_world_state: bool = _static(False)

    # ---- static: defect switches (False = reference behaviour) -----------------------------
    fix_d1_hidden_truth: bool = _static(False)
    fix_d2_alert_origin: bool = _static(False)
    fix_d3_foothold: bool = _static(False)
    fix_d4_dead_ends: bool = _static(False)
    fix_d5_containment: bool = _static(False)
    fix_d6_directive: bool = _static(False)
    fix_d7_response_actions: bool = _static(False)
    fix_d8_reward_accounting: bool = _static(False)
    fix_d9_metrics: bool = _static(False)
    fix_d10_resample_network: bool = _static(False)
    fix_d11_no_padding: bool = _static(False)
    fix_d12_truncation: bool = _static(False)
    fix_d26_detection_stage: bool = _static(False)

    # ---- static: the strategic SOC world (MECHANISMS; off = the reference) -----------------
    hunt_budget: Optional[int] = _static(None)
    response_budget: Optional[int] = _static(None)
    lanes: bool = _static(False)
    # A learnable red agent (`red` in the agents dict) chooses the campaign's moves instead of the
    # script (docs/redblue.md); off in every preset but soc-v2-redblue.
    red_control: bool = _static(False)
    # red_control: may red go quiet without a foothold (i.e. not attack at all)? False: quiet needs
    # a foothold to hide in, or the re-entry cool-down (docs/redblue.md: why).
    red_quiet_anywhere: bool = _static(False)
    # The detector's per-host anomaly scores as an observation feature (jaxsoc.env.scores,
    # docs/hybrid.md): the folder of a detector saved for this scenario, or None (off: the world,
    # rewards and observations are exactly those without it). Needs the SOC view (D1).
    detector_scores: Optional[str] = _static(None)
    # The roles whose observation gets one score feature per host appended (the two that act on
    # hosts: the hunter chooses where to scan, the response orchestrator where to isolate).
    detector_score_roles: Tuple[str, ...] = _static(("threat_hunter", "response_orchestrator"))

    # ---- numeric: network --------------------------------------------------------------------
    segment_values: Tuple[float, ...] = V1_SEGMENT_VALUES
    vuln_means: Tuple[float, ...] = V1_VULN_MEANS
    vuln_std: float = 0.1
    vuln_min: float = 0.05
    vuln_max: float = 0.95

    # ---- numeric: attacker -------------------------------------------------------------------
    stealth: float = 0.7
    p_initial_access: float = 0.5  # x host vulnerability
    p_execution: float = 0.6
    p_lateral: float = 0.4  # x target vulnerability
    p_exfiltration: float = 0.3
    phase_noise: Tuple[float, ...] = (0.1, 0.3, 0.5, 0.4, 0.6)  # x (1 - stealth)
    reentry_cooldown: int = 10  # v2 (D4): steps before an evicted attacker re-enters
    red_quiet_noise: float = 0.5  # red_control: a quiet red's noise, as a share of its usual noise
    # Competing campaigns (MECHANISMS): per-campaign stealth ranges; () = one campaign at `stealth`.
    campaign_stealth_low: Tuple[float, ...] = ()
    campaign_stealth_high: Tuple[float, ...] = ()

    # ---- numeric: alerts ---------------------------------------------------------------------
    tp_alert_scale: float = 2.0  # v1: P(true alert) = scale * noise
    tp_host_alert_scale: float = 1.0  # v2: per host P = scale * phase_noise[stage] * (1 - stealth)
    tp_severity_per_stage: float = 0.15  # v2 true alert severity = stage*this + U(0, noise)
    tp_severity_noise: float = 0.4
    tp_confidence_low: float = 0.2  # v2 true alert confidence ~ U(low, high)
    tp_confidence_high: float = 0.8
    fp_alert_rate: float = 0.3
    fp_severity_max: float = 0.5
    fp_confidence_max: float = 0.4
    fp_noise_max: float = 0.3
    enrich_gain: float = 0.2

    # ---- numeric: defenders ------------------------------------------------------------------
    hunt_threshold: float = 0.3
    false_scan_threshold: float = 0.7
    false_scan_rate: float = 0.05
    detect_stealth_factor: float = 0.5  # P(detect) *= 1 - factor * stealth
    isolate_threshold: float = 0.5
    blind_isolation_threshold: float = 0.9
    blind_isolation_rate: float = 0.02
    remediate_threshold: float = 0.5
    release_threshold: float = 0.5
    # v1 directive -> boosts: scan = s*(d0+1), scope = s*(d1+1), urgency = s*(d4+1)
    scan_boost_scale: float = 0.15
    scope_boost_scale: float = 0.1
    urgency_scale: float = 0.1
    # v2 directive (D6): per posture (watch, hunt, contain), plus a bonus on the focus segment
    posture_hunt: Tuple[float, ...] = (0.0, 0.2, 0.1)
    posture_scope: Tuple[float, ...] = (0.0, 0.1, 0.05)
    posture_urgency: Tuple[float, ...] = (0.0, 0.1, 0.2)
    posture_triage_filter: Tuple[float, ...] = (0.3, 0.15, 0.0)  # alerts below this severity are dropped
    focus_hunt: float = 0.2
    focus_scope: float = 0.1
    focus_urgency: float = 0.2
    focus_share: float = 0.0  # share of the hunt/response budgets given to the focus segment

    # ---- numeric: telemetry (v2 observations) ------------------------------------------------
    telemetry_noise: float = 1.0  # per-host std; segment summaries average it
    telemetry_stage_drift: Tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    telemetry_direction: Tuple[float, ...] = (1.0, 0.6, -0.4, 0.8, 1.0, -0.2, 0.5, 0.9)

    # ---- numeric: reward (docs/reference.md §1.8) ----------------------------------------------------
    w_detect: float = 1.0
    w_response: float = 1.5
    w_cost: float = -0.3
    w_fp: float = -2.0
    containment_bonus: float = 5.0
    exfiltration_penalty: float = 10.0
    fp_unit: float = 0.5
    isolate_cost: float = 0.1  # x segment value, correct isolation
    blind_isolate_cost: float = 0.2  # x segment value, clean host isolated
    availability_cost: float = 0.0  # x segment value, per isolated host per step (v2)

    # ---- derived helpers (Python values, trace-time) -----------------------------------------
    @property
    def num_segments(self) -> int:
        return len(self.hosts_per_segment)

    @property
    def max_hosts(self) -> int:
        return max(self.hosts_per_segment)

    @property
    def num_hosts(self) -> int:
        return int(sum(self.hosts_per_segment))

    @property
    def edges(self) -> Tuple[Tuple[int, int], ...]:
        """Directed (source, target) pairs in the reference's iteration order."""
        return tuple((s, t) for s, targets in enumerate(self.adjacency) for t in targets)

    @property
    def num_campaigns(self) -> int:
        """Concurrent attack campaigns: 1 (the reference) unless `campaign_stealth_low` lists more."""
        return max(1, len(self.campaign_stealth_low))

    @property
    def multi_campaign(self) -> bool:
        """Whether campaigns are tracked per host (`campaign_stealth_low` is set, even with one)."""
        return len(self.campaign_stealth_low) > 0

    @property
    def num_directives(self) -> int:
        """v2 (D6): directive index = focus * num_postures + posture."""
        return self.num_segments * self.num_postures

    def replace(self, **kw) -> "EnvParams":
        return dataclasses.replace(self, **kw)


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(EnvParams))
_TOPOLOGY_FIELDS = (
    "segment_names",
    "hosts_per_segment",
    "adjacency",
    "entry_segments",
    "high_value_segments",
    "segment_values",
    "vuln_means",
)


def generated_topology(num_segments: int, hosts_per_segment) -> Dict[str, Any]:
    """A layered topology for `num_segments` (the v1 table itself when it is 5).

    Segment 0 is the entry (DMZ-like); values rise and vulnerability means fall with depth; each
    segment reaches its neighbours and the one two steps deeper, so from 4 segments on the deepest
    (high-value) segments are at least two hops from the entry, as in v1. With 2 or 3 segments the
    entry reaches the high-value one in a single hop; 1 segment is refused by `make` (the entry
    would be the high-value segment with no edges, so no lateral movement and no exfiltration).
    """
    if num_segments == 5:
        names, values, vulns, adj = V1_SEGMENT_NAMES, V1_SEGMENT_VALUES, V1_VULN_MEANS, V1_ADJACENCY
        hv = (3, 4)
    else:
        depth = np.linspace(0.0, 1.0, num_segments)
        names = tuple(f"seg{i}" for i in range(num_segments))
        values = tuple(float(round(v, 4)) for v in 0.6 + 0.4 * depth)
        vulns = tuple(float(round(v, 4)) for v in 0.40 - 0.20 * depth)
        adj = tuple(
            tuple(j for j in (i - 1, i + 1, i + 2) if 0 <= j < num_segments and j != i)
            for i in range(num_segments)
        )
        hv = tuple(i for i, v in enumerate(values) if v >= 0.9) or (num_segments - 1,)
    if isinstance(hosts_per_segment, int):
        hosts_per_segment = (hosts_per_segment,) * num_segments
    return dict(
        segment_names=names,
        hosts_per_segment=tuple(hosts_per_segment),
        adjacency=adj,
        entry_segments=(0,),
        high_value_segments=hv,
        segment_values=values,
        vuln_means=vulns,
    )


def _v1() -> EnvParams:
    return EnvParams(name="hmarl-soc-v1")


def _v2(**topology) -> EnvParams:
    switches = {name: True for name in SWITCHES}
    return EnvParams(name="soc-v2", availability_cost=0.01, **switches, **topology)


# The strategic SOC world (docs/strategic.md): ten segments of mixed value, three internet-facing
# entries, two crown jewels (Finance, DataCenter) reachable only through the interior.
STRATEGIC_SEGMENT_NAMES = ("DMZ", "VPN", "Mail", "CorpA", "CorpB", "Dev", "HR", "Finance",
                           "DataCenter", "Cloud")
STRATEGIC_SEGMENT_VALUES = (0.3, 0.3, 0.4, 0.5, 0.5, 0.6, 0.7, 1.0, 1.0, 0.8)
STRATEGIC_VULN_MEANS = (0.40, 0.40, 0.40, 0.35, 0.35, 0.30, 0.30, 0.20, 0.20, 0.25)
STRATEGIC_ADJACENCY = ((3,), (4,), (3, 4), (5, 6), (5, 6), (8, 9), (7,), (8,), (7,), (8,))


def _strategic() -> EnvParams:
    """`soc-strategic`: soc-v2 plus finite capacity, lanes and two competing campaigns."""
    return _v2(
        segment_names=STRATEGIC_SEGMENT_NAMES,
        hosts_per_segment=(20,) * 10,
        adjacency=STRATEGIC_ADJACENCY,
        entry_segments=(0, 1, 2),
        high_value_segments=(7, 8),
        segment_values=STRATEGIC_SEGMENT_VALUES,
        vuln_means=STRATEGIC_VULN_MEANS,
    ).replace(
        name="soc-strategic",
        hunt_budget=30,
        response_budget=4,
        focus_share=0.5,
        lanes=True,
        # A slower campaign than soc-v2's, so a well-aimed SOC has time to act (docs/strategic.md).
        phase_min_steps=5,
        p_lateral=0.25,
        p_exfiltration=0.1,
        # A targeted (budgeted) hunt rarely raises a false alarm.
        false_scan_rate=0.01,
        # A breach of the crown jewels costs what 50 wasted investigations cost (a false alarm is
        # fp_unit x w_fp = -1): at soc-v2's 10 the constant action, which never contains,
        # out-earned a lead that contains a third of the campaigns, because false alarms
        # outweighed the breaches prevented (docs/strategic.md).
        exfiltration_penalty=50.0,
        # campaign 0: a loud intrusion (commodity malware); campaign 1: a quiet APT.
        campaign_stealth_low=(0.0, 0.85),
        campaign_stealth_high=(0.2, 0.95),
    )


_PRESETS: Dict[str, Callable[[], EnvParams]] = {
    "hmarl-soc-v1": _v1,
    "soc-v2": _v2,
    "soc-v2-10x100": lambda: _v2(**generated_topology(10, 100)).replace(name="soc-v2-10x100"),
    "soc-v2-20x250": lambda: _v2(**generated_topology(20, 250)).replace(name="soc-v2-20x250"),
    "soc-strategic": _strategic,
    # soc-v2 with the learnable red agent (docs/redblue.md)
    "soc-v2-redblue": lambda: _v2().replace(name="soc-v2-redblue", red_control=True),
}


def register(name: str, factory: Callable[[], EnvParams]) -> None:
    """Add (or replace) a preset: `factory()` returns its `EnvParams`, which `make(name)` names
    `name`. A name that is not a non-empty string, or a factory that is not a function returning
    `EnvParams` (it is called once here), is refused before the registry changes."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a preset's name must be a non-empty string, got {name!r}")
    if name.endswith((".yaml", ".yml")):
        raise ValueError(f"preset {name!r}: a name ending in .yaml/.yml is read as a scenario file's path")
    if not callable(factory):
        raise ValueError(f"preset {name!r}: the factory must be a function returning EnvParams, "
                         f"got {type(factory).__name__}")

    def named() -> EnvParams:
        params = factory()
        if not isinstance(params, EnvParams):
            raise ValueError(f"preset {name!r}: its factory returned {type(params).__name__}, not EnvParams "
                             "(build them with soc.build_params)")
        return params.replace(name=name)

    params = named()  # refused now, not at the first make: no EnvParams, or params no `make` could build
    try:
        validate(params)
    except ValueError as e:
        raise ValueError(f"preset {name!r}: {e}") from None
    _PRESETS[name] = named


def preset_names() -> Tuple[str, ...]:
    return tuple(sorted(_PRESETS))



def _as_tuple(value, cast):
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(cast(v) for v in value)
    return value


def _host_value(value):
    """A concrete JAX array as numpy's (a 0-d one as its Python number), so that every check and
    conversion below treats `jnp.asarray(...)` as it treats `np.asarray(...)` (and the params,
    part of the env's static hash, never hold an unhashable jax.Array); tracers pass unchanged."""
    if isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer):
        value = np.asarray(value)
    if isinstance(value, (np.ndarray, np.generic)) and np.ndim(value) == 0:
        return value.item()
    return value


def _coerce(name: str, value):
    """YAML/CLI values into the field's Python type (tuples stay hashable); numpy and JAX scalars
    are Python numbers already (`_host_value`)."""
    if name == "adjacency":
        return tuple(tuple(int(t) for t in row) for row in value)
    if name in ("hosts_per_segment", "entry_segments", "high_value_segments"):
        return _as_tuple(value, int)
    if name in ("segment_names", "detector_score_roles"):
        return _as_tuple(value, str)
    if isinstance(value, (list, np.ndarray)):
        return tuple(float(v) for v in value)
    return value


def read_scenario_file(path: str, _within: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """A scenario file's contents, resolved: its fields (numbers in scientific notation read as
    numbers, as in configs), `name` (default: the file's name without folders or suffix) and
    `base`: a preset name, or the resolved contents of the scenario file it names. What a run
    stores (config `scenario_spec`) so that it is rebuilt without the file (`scenario_params`).
    ValueError naming the file: not found, not a mapping, no `base`, an unknown base."""
    from jaxsoc.config import load_yaml  # the config's YAML reader: `1e-1` is a number there too

    if not os.path.isfile(path):
        where = "" if os.path.isabs(path) else f" (relative to {os.getcwd()})"
        raise ValueError(f"scenario file not found: {path}{where}")
    spec = dict(load_yaml(path, what="scenario"))
    presets = ", ".join(preset_names())
    if "base" not in spec:
        # No default: a forgotten line would silently build hmarl-soc-v1, every defect on.
        raise ValueError(f"{path}: a scenario file needs base: the preset it changes ({presets}) "
                         "or another scenario file")
    base = spec["base"]
    if isinstance(base, str) and base.endswith((".yaml", ".yml")):
        if os.path.abspath(base) in _within + (os.path.abspath(path),):
            raise ValueError(f"{path}: base {base} leads back to itself")
        spec["base"] = read_scenario_file(base, _within + (os.path.abspath(path),))
    elif not isinstance(base, str) or base not in _PRESETS:
        hint = suggest(base, _PRESETS) if isinstance(base, str) else ""
        raise ValueError(f"{path}: unknown base {base!r}{hint}; a preset ({presets}) or another scenario file")
    spec.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    return spec


def scenario_params(spec: Mapping[str, Any], /, **overrides) -> EnvParams:
    """The params of a scenario file's resolved contents (`read_scenario_file`, a run's
    `scenario_spec`) with `overrides` applied, as `build_params(path, **overrides)` builds them
    from the file, validating everything."""
    spec = dict(spec)
    base = spec.pop("base")
    params = scenario_params(base) if isinstance(base, Mapping) else build_params(base)
    name = spec.get("name", params.name)
    params = _override(params, name, spec)
    return _override(params, name, overrides) if overrides else params


def load_yaml_preset(path: str) -> EnvParams:
    """A scenario file: `base: <preset>` plus field overrides (see configs/scenarios/)."""
    return scenario_params(read_scenario_file(path))


def build_params(scenario: str, /, **overrides) -> EnvParams:
    """Resolve a preset (or a `.yaml` scenario file) and apply overrides, validating everything."""
    name = scenario
    if isinstance(name, str) and name.endswith((".yaml", ".yml")):
        base = load_yaml_preset(name)
    elif name in _PRESETS:
        base = _PRESETS[name]()
    else:
        raise ValueError(
            f"unknown scenario {name!r}{suggest(name, _PRESETS)}. "
            f"Known presets: {', '.join(preset_names())}."
        )
    return _override(base, name, overrides)


def _override(base: EnvParams, name: str, overrides: Mapping[str, Any]) -> EnvParams:
    """`base` with `overrides` applied (`name`: the scenario, for messages), validated."""
    overrides = {k: _host_value(v) for k, v in overrides.items()}
    num_segments = overrides.pop("num_segments", None)
    for key in overrides:
        if key not in FIELD_NAMES:
            raise ValueError(
                f"unknown env parameter {key!r} for scenario {name!r}{suggest(key, FIELD_NAMES)}"
            )
    if num_segments is not None:
        _check_positive_int("num_segments", num_segments)
        explicit = [k for k in _TOPOLOGY_FIELDS if k in overrides and k != "hosts_per_segment"]
        if num_segments != base.num_segments and not explicit:
            # A bare size change gets a generated topology; explicit topology fields win.
            if num_segments < 2:  # lateral movement needs a second segment: no breach could happen
                raise ValueError(f"num_segments={num_segments}: a generated network needs at least 2 "
                                 "segments (one has no lateral movement, so no exfiltration)")
            hps = overrides.pop("hosts_per_segment", base.hosts_per_segment[0])
            overrides = {**generated_topology(int(num_segments), hps), **overrides}
    if "hosts_per_segment" in overrides:
        hps = overrides["hosts_per_segment"]
        if not isinstance(hps, (list, tuple, np.ndarray, jax.Array)) and not (
                is_integer(hps) and hps > 0):
            raise ValueError(f"hosts_per_segment must be a positive integer or a list of them, got {hps!r}")
    # Types first, so that the conversions below never turn "0.5" or 2.5 into a valid-looking value.
    check_fields(EnvParams, {k: v for k, v in overrides.items()
                             if not (k == "hosts_per_segment" and isinstance(v, (int, np.integer)))})
    if isinstance(overrides.get("hosts_per_segment"), (int, np.integer)):
        s = len(overrides.get("segment_values", base.segment_values))
        overrides["hosts_per_segment"] = (int(overrides["hosts_per_segment"]),) * s
    coerced = {k: _coerce(k, v) for k, v in overrides.items()}
    params = base.replace(**coerced)
    if num_segments is not None and params.num_segments != num_segments:
        raise ValueError(
            f"num_segments={num_segments} but the topology given has {params.num_segments} segments"
        )
    validate(params)
    inert = inert_fields(params)
    for key in coerced:  # a value the scenario's switches never read: it would change nothing
        if key in inert and not _same(getattr(params, key), getattr(base, key)):
            raise InertOverride(key, f"{key} is not read by scenario {name!r}: {inert[key]}")
    return params


class InertOverride(ValueError):
    """An override of a field the scenario's switches never read (`inert_fields`): refused by
    `make`; `key` names it, so that a saved run's config (made before the refusal) can be rebuilt
    without it (`jaxsoc.engine.make_env_checked`): the same world."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def _same(a, b) -> bool:
    """Whether `a == b`; True for a traced value, which cannot be told here (it is let through)."""
    try:
        return bool(a == b)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return True


def inert_fields(p: EnvParams) -> Dict[str, str]:
    """`{field: why}`: the numeric fields `p`'s own switches leave unread, so that another value
    builds the same world (checked on `make`'s overrides and on meta-learning's task ranges)."""
    out = {}
    if p.multi_campaign:
        out["stealth"] = ("each campaign draws its own stealth per reset from campaign_stealth_low / "
                          "campaign_stealth_high: set those")
    if not p.red_control:
        why = "only a learnable red (red_control) goes quiet"
        out["red_quiet_noise"] = out["red_quiet_anywhere"] = why
    if p.detector_scores is None:
        out["detector_score_roles"] = "no detector scores are shown (detector_scores is not set)"
    return out


INT32_MAX = 2**31 - 1  # sizes and counts become int32 arrays: a larger one overflows them


def _check_value(name: str, hint, default, value) -> None:
    """`value` against the type `hint` of a params field (see `check_fields`)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:  # Optional[T]
        if value is None and type(None) in args:
            return
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is tuple or origin is tuple:
        if isinstance(value, (jax.Array, np.ndarray)) and value.ndim == 1 and value.dtype.kind in "iuf":
            value = list(value)  # an array of numbers is a list of them (kept as given)
        if not isinstance(value, (tuple, list)):
            raise ValueError(f"{name} must be a list, got {value!r}")
        if args and args[-1] is Ellipsis:
            item = args[0]
        elif hint is tuple and default:  # a bare `tuple` field: its default's items say what it holds
            item = str if isinstance(default[0], str) else float
        else:
            return
        if item is float and any(is_number(x) and not math.isfinite(x) for x in value):
            raise ValueError(f"{name} must be a finite number, got {tuple(value)}")
        for i, x in enumerate(value):
            _check_value(f"{name}[{i}]", item, None, x)
        return
    if isinstance(value, (jax.Array, np.ndarray)) and hint in (int, float):
        # A numeric leaf may be given as an array (vmapped tasks); its dtype is checked here, and
        # its values too unless they are traced (ranges: `validate`).
        if value.dtype.kind not in ("iu" if hint is int else "iuf"):
            raise ValueError(f"{name} must be {'an integer' if hint is int else 'a number'}, "
                             f"got an array of {value.dtype}")
        numbers = _numbers(value)
        if numbers is not None and not np.all(np.isfinite(numbers)):
            raise ValueError(f"{name} must be a finite number, got {numbers.tolist()}")
        return
    if hint is bool and not is_switch(value):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if hint is str and not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    if hint is float:
        if not is_number(value):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):  # reward weights, costs, noise: NaN or inf poisons every step
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if hint is int:
        if not is_integer(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if abs(int(value)) > INT32_MAX:
            raise ValueError(f"{name} must fit in int32 (|{name}| <= {INT32_MAX}), got {value!r}")


def _numbers(value) -> Optional[np.ndarray]:
    """The numbers of a number, a tuple of numbers (a per-segment field) or a concrete array as
    float64, or None (a traced value, or not numbers at all), so range checks see numpy's and JAX's
    numbers as they see Python's."""
    if isinstance(value, tuple):
        items = [_numbers(v) for v in value]
        return None if any(x is None or x.ndim for x in items) else np.asarray(items, np.float64)
    if isinstance(value, jax.core.Tracer) or is_switch(value):
        return None
    if is_number(value) or (isinstance(value, (jax.Array, np.ndarray)) and value.dtype.kind in "iuf"):
        return np.asarray(value, np.float64)
    return None


def check_fields(cls, values: Mapping[str, Any]) -> None:
    """Raise a one-line `ValueError` for a value of the wrong type for its field of the params
    dataclass `cls`, judged by the field's annotation, so a new field is covered as it is added:
    switches (`bool`) take only True/False (a string such as "no" is truthy and would turn the
    switch ON), numbers must be finite numbers (not bools or strings), `int` fields whole numbers
    within int32, `str` fields strings, tuples lists of those. Fields of other types (pytrees such
    as a detector) are not checked here. Every world's validation calls this first."""
    hints = typing.get_type_hints(cls)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for name, value in values.items():
        if name in hints:
            _check_value(name, hints[name], defaults.get(name), value)


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def validate(p: EnvParams) -> None:
    """Raise a clear `ValueError` for any impossible configuration, before anything is traced."""
    check_fields(EnvParams, {f.name: getattr(p, f.name) for f in dataclasses.fields(p)})
    s = len(p.hosts_per_segment)
    if s == 0:
        raise ValueError("the network needs at least one segment (hosts_per_segment is empty)")
    for i, h in enumerate(p.hosts_per_segment):
        _check_positive_int(f"hosts_per_segment[{i}]", h)
    for name in ("max_steps", "directive_period", "queue_capacity", "visible_alerts", "recon_targets",
                 "phase_min_steps", "num_postures", "telemetry_features", "max_new_alerts"):
        _check_positive_int(name, getattr(p, name))
    for name in ("segment_names", "segment_values", "vuln_means", "adjacency"):
        n = len(getattr(p, name))
        if n != s:
            raise ValueError(f"{name} has {n} entries but the network has {s} segments "
                             f"(hosts_per_segment={p.hosts_per_segment})")
    twice = repeated(p.segment_names)
    if twice:  # they label observation features, red's moves and the explainer's map
        raise ValueError(f"segment_names repeats {', '.join(map(repr, twice))}: each segment needs its own name")
    for src, targets in enumerate(p.adjacency):
        for t in targets:
            if not (0 <= t < s):
                raise ValueError(f"adjacency[{src}] names segment {t}, which does not exist "
                                 f"(segments are 0..{s - 1})")
            if t == src:
                raise ValueError(f"adjacency[{src}] names the segment itself")
        if len(set(targets)) != len(targets):
            raise ValueError(f"adjacency[{src}] repeats a segment: {targets}")
    for name in ("entry_segments", "high_value_segments"):
        segs = getattr(p, name)
        if len(segs) == 0:
            raise ValueError(f"{name} must name at least one segment")
        for t in segs:
            if not (0 <= t < s):
                raise ValueError(f"{name} names segment {t}, which does not exist (0..{s - 1})")
        if len(set(segs)) != len(segs):
            raise ValueError(f"{name} repeats a segment: {segs}")
    if p.visible_alerts > p.queue_capacity:
        raise ValueError(f"visible_alerts={p.visible_alerts} exceeds queue_capacity={p.queue_capacity}")
    if len(p.phase_noise) != NUM_PHASES:
        raise ValueError(f"phase_noise needs {NUM_PHASES} entries, got {len(p.phase_noise)}")
    if len(p.telemetry_stage_drift) != NUM_STAGES:
        raise ValueError(f"telemetry_stage_drift needs {NUM_STAGES} entries")
    if len(p.telemetry_direction) != p.telemetry_features:
        raise ValueError(f"telemetry_direction has {len(p.telemetry_direction)} entries but "
                         f"telemetry_features={p.telemetry_features}")
    for name in ("posture_hunt", "posture_scope", "posture_urgency", "posture_triage_filter"):
        if len(getattr(p, name)) != p.num_postures:
            raise ValueError(f"{name} needs num_postures={p.num_postures} entries")
    if p.rng_impl not in ("hash", "threefry"):
        raise ValueError(f"rng_impl must be 'hash' or 'threefry', got {p.rng_impl!r}")
    for name in ("stealth", "p_initial_access", "p_execution", "p_lateral", "p_exfiltration",
                 "fp_alert_rate", "false_scan_rate", "blind_isolation_rate"):
        v = _numbers(getattr(p, name))
        if v is not None and not np.all((0.0 <= v) & (v <= 1.0)):
            raise ValueError(f"{name} is a probability and must lie in [0, 1], got {v.tolist()}")
    # vuln_means: vulnerabilities are probabilities; the thresholds: the roles' intensities lie in
    # [0, 1] (outside, a role always or never acts); posture_triage_filter: alert severities lie in
    # [0, 1] (above 1 every alert is dropped); detect_stealth_factor: above 1 a stealthy host's
    # detection probability, 1 - factor x stealth, goes negative.
    for name in ("vuln_std", "vuln_min", "vuln_max", "vuln_means", "hunt_threshold", "false_scan_threshold",
                 "isolate_threshold", "blind_isolation_threshold", "remediate_threshold", "release_threshold",
                 "posture_triage_filter", "detect_stealth_factor"):
        v = _numbers(getattr(p, name))
        if v is not None and not np.all((0.0 <= v) & (v <= 1.0)):
            raise ValueError(f"{name} must lie in [0, 1], got {v.tolist()}")
    for low, high in (("vuln_min", "vuln_max"), ("tp_confidence_low", "tp_confidence_high")):
        a, b = getattr(p, low), getattr(p, high)
        if is_number(a) and is_number(b) and not a <= b:
            raise ValueError(f"need {low} <= {high}, got {a} > {b}")
    for name in ("tp_confidence_low", "tp_confidence_high"):
        v = getattr(p, name)
        if is_number(v) and not (0.0 <= v <= 1.0):
            raise ValueError(f"{name} is a confidence and must lie in [0, 1], got {v}")
    # Scales of noise (stds, per-phase noise), alert rates' scales, the segments' values (what a
    # breach costs), the re-entry wait and enrichment's confidence gain cannot be negative.
    for name in ("phase_noise", "telemetry_noise", "reentry_cooldown", "vuln_std", "tp_severity_noise",
                 "fp_severity_max", "fp_confidence_max", "fp_noise_max", "segment_values", "tp_alert_scale",
                 "tp_host_alert_scale", "scan_boost_scale", "enrich_gain"):
        v = getattr(p, name)
        for i, x in enumerate(v) if isinstance(v, tuple) else ((None, v),):
            if is_number(x) and x < 0:
                at = name if i is None else f"{name}[{i}]"
                raise ValueError(f"{at} must be >= 0, got {x}")
    unknown = [r for r in p.detector_score_roles if r not in AGENTS]
    if unknown:
        raise ValueError(f"detector_score_roles names unknown role {unknown[0]!r}"
                         f"{suggest(unknown[0], AGENTS)}. Roles: {', '.join(AGENTS)}.")
    check_memory(p)
    validate_mechanisms(p)


def check_memory(p: EnvParams) -> None:
    """Refuse sizes whose arrays cannot exist on this machine (before reset spends seconds finding
    out): ranking the alert queue and each segment's hosts builds an `[n, n]` float32 matrix
    (`alerts.prefix_count_rows`), so n = queue_capacity or the largest segment's host count
    must keep 4 n^2 bytes within the machine's physical memory."""
    memory = machine_bytes()
    if memory is None:  # no limit known
        return
    for name, n in (("queue_capacity", p.queue_capacity),
                    ("hosts_per_segment", max(p.hosts_per_segment))):
        if 4 * n * n > memory:
            raise ValueError(f"{name} is too large: a size of {n} needs a {n} x {n} float32 matrix "
                             f"({4 * n * n / 2**30:.3g} GiB), more than this machine's "
                             f"{memory / 2**30:.3g} GiB of memory")


def validate_mechanisms(p: EnvParams) -> None:
    """The strategic world's fields (MECHANISMS): budgets, focus share, campaigns, lanes."""
    n = p.num_hosts
    for name in ("hunt_budget", "response_budget"):
        b = getattr(p, name)
        if b is None:
            continue
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not (1 <= b <= n):
            raise ValueError(f"{name} must be a whole number of host actions per step from 1 to the "
                             f"network's {n} hosts (or null for no budget), got {b!r}")
        if not p.fix_d6_directive:
            raise ValueError(f"{name} splits the budget by the coordinator's focus segment, which "
                             "needs the discrete directive (fix_d6_directive=True)")
    fs = p.focus_share
    if isinstance(fs, (int, float)) and not (0.0 <= fs <= 1.0 and np.isfinite(fs)):
        raise ValueError(f"focus_share is a share of a budget and must lie in [0, 1], got {fs}")
    if isinstance(fs, (int, float)) and fs > 0 and p.hunt_budget is None and p.response_budget is None:
        raise ValueError("focus_share > 0 does nothing without hunt_budget or response_budget")
    low, high = p.campaign_stealth_low, p.campaign_stealth_high
    if len(low) != len(high):
        raise ValueError(f"campaign_stealth_low has {len(low)} campaigns but campaign_stealth_high "
                         f"has {len(high)}")
    if low:
        for i, (a, b) in enumerate(zip(low, high)):
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not (0.0 <= a <= b <= 1.0):
                raise ValueError(f"campaign {i}: stealth range must satisfy 0 <= low <= high <= 1, "
                                 f"got [{a}, {b}]")
        if len(low) > len(p.entry_segments):
            raise ValueError(f"{len(low)} campaigns need as many distinct entry segments, but "
                             f"entry_segments has {len(p.entry_segments)}: {p.entry_segments}")
        # D1: v1's observations read one campaign's phase (observe._v1_obs), so [C] campaigns crash
        # there; D2-D4: hosts, alerts and footholds are tracked per campaign.
        missing = [f for f in ("fix_d1_hidden_truth", "fix_d2_alert_origin", "fix_d3_foothold",
                               "fix_d4_dead_ends") if not getattr(p, f)]
        if missing:
            raise ValueError("competing campaigns need the SOC view's observations and per-campaign "
                             "hosts, alerts and footholds: set " + ", ".join(f"{m}=True" for m in missing))
    if p.red_control:
        missing = [f for f in ("fix_d1_hidden_truth", "fix_d2_alert_origin", "fix_d3_foothold",
                               "fix_d4_dead_ends") if not getattr(p, f)]
        if p.multi_campaign:
            raise ValueError("red_control plays soc-v2's single campaign; it needs no competing campaigns "
                             "(campaign_stealth_low empty)")
        if missing:
            raise ValueError("red_control plays soc-v2's single campaign; it needs "
                             + ", ".join(f"{m}=True" for m in missing))
    q = p.red_quiet_noise
    if isinstance(q, (int, float)) and not 0.0 <= q <= 1.0:
        raise ValueError(f"red_quiet_noise is a share of the attacker's noise and must lie in [0, 1], got {q}")
    if p.lanes and not p.fix_d1_hidden_truth:
        raise ValueError("lanes split the SOC view between roles and needs fix_d1_hidden_truth=True")
    if p.detector_scores is not None:
        from jaxsoc.env import scores  # the detectors import the env: loaded when asked for

        scores.check(p)


def switches_markdown() -> str:
    """The switches table of docs/switches.md, generated so it never drifts from the code."""
    v1, v2 = _PRESETS["hmarl-soc-v1"](), _PRESETS["soc-v2"]()
    lines = [
        "| defect | switch | hmarl-soc-v1 | soc-v2 | turning it on |",
        "|---|---|---|---|---|",
    ]
    for name, (defect, text) in SWITCHES.items():
        lines.append(f"| {defect} | `{name}` | {getattr(v1, name)} | {getattr(v2, name)} | {text} |")
    for defect, text in NOT_SWITCHES.items():
        lines.append(f"| {defect} | (none) | | | {text} |")
    lines += ["", "Numeric parameters that differ between the presets (everything else is equal):", "",
              "| parameter | hmarl-soc-v1 | soc-v2 |", "|---|---|---|"]
    for f in dataclasses.fields(EnvParams):
        if f.name in SWITCHES or f.name == "name":
            continue
        a, b = getattr(v1, f.name), getattr(v2, f.name)
        if a != b:
            lines.append(f"| `{f.name}` | {a} | {b} |")
    return "\n".join(lines) + "\n"


def posture_names(params: "EnvParams") -> Tuple[str, ...]:
    """The name of each of the v2 directive's `num_postures` postures (extra ones by number)."""
    return (POSTURES + tuple(str(i) for i in range(len(POSTURES), params.num_postures)))[: params.num_postures]
