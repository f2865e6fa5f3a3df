"""The attacker: a five-phase MITRE ATT&CK campaign (docs/reference.md §1.3), with the D3/D4 fixes as switches.

Phases: 0 reconnaissance (T1595), 1 initial access (T1190), 2 execution (T1059), 3 lateral movement
(T1021), 4 exfiltration (T1048). The attacker acts once per env step, before the defenders.
Under vmap every phase's arithmetic runs every step and `phase` selects the result, so the phases
are written as masked array updates rather than branches.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.env.network import put_rows, segment_sums, table_lookup, take_rows, topology
from jaxsoc.env.params import EnvParams
from jaxsoc.env.rng import Draws
from jaxsoc.env.state import Attacker, Hosts


# The learnable red agent's actions (`params.red_control`, docs/redblue.md): one Discrete choice
# per step: quiet, advance, `RED_MOVE + d` for each segment d, then `red_exploit(params, k)` for
# each rank k < `recon_targets`.
RED_QUIET = 0  # go quiet: no attack work this step; alerts and hunting see `red_quiet_noise` of the noise
RED_ADVANCE = 1  # work the phase as the scripted campaign does (recon / exploit / execute / spread / exfiltrate)
RED_MOVE = 2  # lateral movement (phase 3) only into segment `action - RED_MOVE`


def red_exploit(params: EnvParams, k: int = 0) -> int:
    """Red's action "exploit:k": initial access (phase 1) tries only the k-th most vulnerable
    target still open (0: the most vulnerable; ties to the lower host id, as recon ranks them)."""
    return RED_MOVE + params.num_segments + k


def red_num_actions(params: EnvParams) -> int:
    """The size of red's `Discrete` action space: quiet, advance, a move per segment and an
    exploit per recon-target rank."""
    return red_exploit(params, params.recon_targets)


def red_action_names(params: EnvParams) -> tuple[str, ...]:
    """`[red_num_actions]` names: "quiet", "advance", "move:<segment>", "exploit:<rank>"."""
    return (("quiet", "advance") + tuple(f"move:{n}" for n in params.segment_names)
            + tuple(f"exploit:{k}" for k in range(params.recon_targets)))


class AttackEvents(NamedTuple):
    phase_before: jax.Array  # int32, the phase that acted this step (competing campaigns: [C])
    noise: jax.Array  # f32, the attacker's noise level after this step's transition
    new_compromise: jax.Array  # bool [S, Hmax], hosts compromised this step
    # f32 [S, Hmax] stealth of the campaign owning each host (competing campaigns), else None:
    # alerts and hunting then read the host's own campaign's stealth instead of `params.stealth`.
    host_stealth: Optional[jax.Array] = None


def noise_level(phase: jax.Array, params: EnvParams) -> jax.Array:
    """`phase_noise[phase] * (1 - stealth)`: how visible the attacker is (alerts, v1 TH obs)."""
    return jnp.asarray(params.phase_noise, jnp.float32)[phase] * (1.0 - params.stealth)


def recon_targets(hosts: Hosts, params: EnvParams,
                  entry: Optional[jax.Array] = None) -> tuple[jax.Array, jax.Array]:
    """The `recon_targets` most vulnerable clean, non-isolated entry hosts.

    Returns `(target mask [S, Hmax], any candidate)`. Ties go to the lower host id, as Python's
    stable sort does in the reference: each key holds 20 bits of vulnerability, then the reversed
    host index, so keys are unique and k max-reductions pick the k best in order. `entry` (int32
    scalar) restricts the search to one segment drawn at reset (competing campaigns); None
    searches every segment of `params.entry_segments`.
    """
    topo = topology(params)
    segments = np.asarray(params.entry_segments)
    cand = take_rows(jnp.asarray(topo.host_valid) & ~hosts.compromised & ~hosts.isolated, segments)
    if entry is not None:
        # A drawn entry (one of the static entry segments): search only those, masked to it.
        cand = cand & (jnp.asarray(segments)[:, None] == entry)
    cand = cand.reshape(-1)
    picked = vulnerability_ranks(cand, take_rows(hosts.vuln, segments).reshape(-1), params) < params.recon_targets
    mask = put_rows(picked.reshape(len(segments), -1), segments, topo.num_segments)
    return mask, jnp.any(cand)


def vulnerability_ranks(cand: jax.Array, vuln: jax.Array, params: EnvParams) -> jax.Array:
    """`[n]` int32: each candidate's rank by vulnerability (0: the highest; ties: lower index)
    among the first `recon_targets`; `recon_targets` for the rest and for non-candidates.

    `cand [n]` bool, `vuln [n]` f32. Each key holds 20 bits of vulnerability, then the reversed
    index, so keys are unique and k max-reductions find the k best in order."""
    n = cand.shape[0]
    idx_bits = max(1, int(np.ceil(np.log2(n))))
    v = jnp.round(vuln * (1 << 20)).astype(jnp.int32)
    key = jnp.where(cand, (v << idx_bits) | (n - 1 - jnp.arange(n, dtype=jnp.int32)), -1)
    rank = jnp.full((n,), params.recon_targets, jnp.int32)
    for r in range(min(params.recon_targets, n)):
        best = jnp.max(key)
        hit = (key == best) & (best >= 0)
        rank = jnp.where(hit, r, rank)
        key = jnp.where(hit, -1, key)
    return rank


def red_open_targets(hosts: Hosts) -> jax.Array:
    """bool `[S, Hmax]`: recon targets initial access can still try (not taken, not isolated)."""
    return hosts.target & ~hosts.compromised & ~hosts.isolated


def red_target_ranks(hosts: Hosts, params: EnvParams) -> jax.Array:
    """int32 `[S, Hmax]`: each open target's `vulnerability_ranks` rank (what "exploit:k" picks),
    `recon_targets` elsewhere."""
    shape = hosts.vuln.shape
    return vulnerability_ranks(red_open_targets(hosts).reshape(-1), hosts.vuln.reshape(-1), params).reshape(shape)


def _edge_rounds(edges):
    """Split edges (in reference order) into rounds whose targets are distinct.

    An edge must see the hosts taken by earlier edges into the same segment, so the r-th edge
    into each segment runs in round r; edges of one round are independent and run together.
    """
    seen, rounds = {}, []
    for e, (s, d) in enumerate(edges):
        r = seen.get(d, 0)
        seen[d] = r + 1
        if r == len(rounds):
            rounds.append([])
        rounds[r].append((e, s, d))
    return rounds


def _unique_keys(words: jax.Array) -> jax.Array:
    """Random non-negative int32 keys whose low bits are the host's position, so no two tie.

    `words [..., n] uint32 -> [..., n] int32`. The maximum key over a candidate set picks one
    candidate uniformly (up to 2**-(31 - log2 n)) with a plain max-reduction.
    """
    n = words.shape[-1]
    bits = max(1, int(np.ceil(np.log2(n))))
    high = (words >> np.uint32(bits + 1)) << np.uint32(bits)
    return (high | jnp.arange(n, dtype=jnp.uint32)).astype(jnp.int32)


def _lateral(draws: Draws, hosts: Hosts, src_active: jax.Array, params: EnvParams,
             dst_ok: Optional[jax.Array] = None):
    """Lateral movement along every directed edge, in the reference's order.

    For each edge (s -> d) whose source segment holds a usable foothold (`src_active [S]`): pick
    one clean, non-isolated host of d uniformly, compromise it w.p. `p_lateral * vuln`.
    `dst_ok [S]` (a controlled red's chosen destination) keeps only the edges into those segments;
    the draws are the same either way. Returns the new compromise mask `[S, Hmax]`.
    """
    topo = topology(params)
    edges = params.edges
    if not edges:
        return jnp.zeros_like(hosts.compromised)
    keys = _unique_keys(draws.words((len(edges), topo.host_axis), width=topo.max_hosts))
    u_hit = draws.uniform((len(edges),))
    open_rows = jnp.asarray(topo.host_valid) & ~hosts.compromised & ~hosts.isolated
    taken = jnp.zeros_like(hosts.compromised)
    for rnd in _edge_rounds(edges):
        e_idx = np.asarray([e for e, _, _ in rnd])
        src = np.asarray([s for _, s, _ in rnd])
        dst = np.asarray([d for _, _, d in rnd])
        cand = take_rows(open_rows & ~taken, dst)  # [E_r, Hmax]
        k = jnp.where(cand, take_rows(keys, e_idx), -1)
        pick = cand & (k == jnp.max(k, axis=-1, keepdims=True))
        # One host is picked, so "compromise it w.p. p*vuln" can be tested at every host at once.
        took = (pick & take_rows(src_active, src)[:, None]
                & (take_rows(u_hit, e_idx)[:, None] < params.p_lateral * take_rows(hosts.vuln, dst)))
        if dst_ok is not None:
            took = took & take_rows(dst_ok, dst)[:, None]
        taken = taken | put_rows(took, dst, topo.num_segments)
    return taken


def step(draws: Draws, hosts: Hosts, att: Attacker, params: EnvParams, t: jax.Array,
         red: Optional[jax.Array] = None):
    """One attacker move. Returns `(hosts, attacker, AttackEvents)`; `t` is the 1-based step.

    `red` (int32 scalar, `params.red_control` only): the learnable red agent's action (`RED_*`,
    see `controlled_step`); None: the scripted campaign.

    With competing campaigns (`params.multi_campaign`) every `att` field is `[C]` and the campaigns
    move one after another (a static loop over a handful of campaigns), each on its own hosts
    (`hosts.owner`): a host one campaign took is not clean for the next.
    """
    if red is not None:
        return controlled_step(draws, hosts, att, params, t, red)
    if not params.multi_campaign:
        return campaign_step(draws, hosts, att, params, t)
    per_campaign, phases = [], []
    new_any = jnp.zeros_like(hosts.compromised)
    for c in range(params.num_campaigns):
        mine = hosts.owner == c
        hosts, att_c, ev = campaign_step(draws, hosts, jax.tree.map(lambda x: x[c], att), params, t,
                                         campaign=c, mine=mine)
        per_campaign.append(att_c)
        phases.append(ev.phase_before)
        new_any = new_any | ev.new_compromise
    att = jax.tree.map(lambda *xs: jnp.stack(xs), *per_campaign)
    host_stealth = table_lookup(att.stealth, hosts.owner)
    events = AttackEvents(phase_before=jnp.stack(phases), noise=jnp.zeros((), jnp.float32),
                          new_compromise=new_any, host_stealth=host_stealth)
    return hosts, att, events


def overall(att: Attacker) -> Attacker:
    """The campaigns seen as one attacker (scalars), for the reward, termination and metrics.

    phase: the most advanced; begun: any campaign has compromised a host; exfiltrated: any;
    first_compromise: the earliest. The identity for one campaign (scalar fields).
    """
    if att.phase.ndim == 0:
        return att
    begun = att.begun
    first = jnp.min(jnp.where(begun, att.first_compromise, jnp.iinfo(jnp.int32).max))
    return att.replace(
        phase=jnp.max(att.phase), steps_in_phase=jnp.max(att.steps_in_phase),
        phase_success=jnp.any(att.phase_success), exfiltrated=jnp.any(att.exfiltrated),
        begun=jnp.any(begun), first_compromise=jnp.where(jnp.any(begun), first, 0),
        cooldown=jnp.min(att.cooldown), stealth=jnp.mean(att.stealth), entry=att.entry[0])


def all_begun(att: Attacker) -> jax.Array:
    """Every campaign has compromised a host (containment needs them all found): bool scalar."""
    return jnp.all(att.begun)


def campaign_step(draws: Draws, hosts: Hosts, att: Attacker, params: EnvParams, t: jax.Array,
                  campaign: int = 0, mine: Optional[jax.Array] = None,
                  red: Optional[jax.Array] = None):
    """One campaign's move (scalar `att`). `mine` (bool `[S, Hmax]`): the hosts this campaign owns,
    with competing campaigns; None: every compromised host is the one attacker's (the reference).
    `red`: a controlled red's action (`controlled_step`); None: the scripted move."""
    topo = topology(params)
    d3, d4 = params.fix_d3_foothold, params.fix_d4_dead_ends
    valid = jnp.asarray(topo.host_valid)
    is_hv = jnp.asarray(topo.is_high_value)[:, None]
    # P1 and P2 never run in the same step: one array serves both.
    u_host = draws.uniform(hosts.vuln.shape, width=topo.max_hosts)
    u_exfil = draws.uniform(())

    phase = att.phase
    steps = att.steps_in_phase + 1
    idle = att.cooldown > 0  # v2 re-entry wait: the attacker does nothing
    acting = ~idle
    # `moving`: the attacker works its phase this step (a quiet red does not; the phase's clock,
    # advance, fall-back and eviction rules still run). `dst_ok`: where lateral movement may go.
    # `exploit_ok`: which targets initial access may try.
    moving, dst_ok, exploit_ok = acting, None, True
    if red is not None:
        first_exploit = red_exploit(params)
        is_move = (red >= RED_MOVE) & (red < first_exploit)
        is_exploit = red >= first_exploit
        # A move works only in lateral movement and an exploit only in initial access; elsewhere
        # (masked out by `red_avail_actions`) they do no attack work, as quiet.
        moving = (acting & (red != RED_QUIET) & (~is_move | (phase == 3)) & (~is_exploit | (phase == 1)))
        moving_to = jnp.where(is_move, red - RED_MOVE, -1)  # the chosen segment, or -1: any
        dst_ok = (moving_to < 0) | (jnp.arange(topo.num_segments) == moving_to)
        exploit_ok = ~is_exploit | (red_target_ranks(hosts, params) == red - first_exploit)
    comp, iso, stage, listed = hosts.compromised, hosts.isolated, hosts.stage, hosts.listed
    # v1 keeps an append-only list (D3): duplicates, remediated and clean hosts stay in it.
    foothold = (comp if d3 else listed > 0) & ~iso & valid
    if mine is not None:
        foothold = foothold & mine
    hv = foothold & (stage >= 3) & is_hv
    pre = segment_sums(foothold, hv)  # [2, S]

    # P0 reconnaissance: choose the targets for initial access.
    if mine is None:
        new_targets, any_candidate = recon_targets(hosts, params)
        others_targets = False
    else:
        # Each campaign targets only its own entry segment (entries are distinct), so the shared
        # `target` mask holds every campaign's targets side by side.
        new_targets, any_candidate = recon_targets(hosts, params, entry=att.entry)
        my_entry = jnp.asarray(topo.segment_of_host) == att.entry
        others_targets = hosts.target & ~my_entry
        new_targets = new_targets | others_targets
    in0 = moving & (phase == 0)
    target = jnp.where(in0 & any_candidate, new_targets, hosts.target)
    my_target = target if mine is None else target & my_entry

    # P1 initial access on the targets.
    triable = my_target & ~iso & (~comp if d3 else True)
    hit1 = moving & (phase == 1) & triable & exploit_ok & (u_host < params.p_initial_access * hosts.vuln)

    # P2 execution on the foothold. v1 rolls once per list entry: P = 1 - (1 - p)^multiplicity.
    if d3:
        p2 = params.p_execution
    else:
        p2 = 1.0 - jnp.exp(listed.astype(jnp.float32) * jnp.log1p(-params.p_execution))
    hit2 = moving & (phase == 2) & foothold & (stage < 2) & (u_host < p2)

    # P3 lateral movement from every segment holding a foothold.
    hit3 = _lateral(draws, hosts, (pre[0] > 0) & moving & (phase == 3), params, dst_ok)

    # P4 exfiltration from high-value footholds that reached stage >= 3.
    any_hv = jnp.sum(pre[1]) > 0
    in4 = acting & (phase == 4)
    working4 = moving & (phase == 4)
    exfil = working4 & any_hv & (u_exfil < params.p_exfiltration)

    # Apply host changes (at most one phase acted).
    new_comp = hit1 | hit3
    stage = jnp.where(hit1, 1, stage)
    stage = jnp.where(hit2, 2, stage)
    stage = jnp.where(hit3, 3, stage)
    stage = jnp.where(working4 & hv, 4, stage)
    comp = comp | new_comp
    if not d3:
        listed = listed + new_comp.astype(listed.dtype)

    post_rows = [hit1 | hit2 | hit3, new_comp]
    if d4:
        foothold_now = comp & ~iso
        if mine is not None:
            foothold_now = foothold_now & (mine | new_comp)
        post_rows += [foothold_now, foothold_now & (stage >= 3) & is_hv, my_target & ~iso & ~comp,
                      foothold_now & (stage < 2)]
    post = jnp.sum(segment_sums(*post_rows), axis=-1) > 0  # [K] any-flags
    hit_any, begun_now = post[0], post[1]
    success = jnp.stack([any_candidate, hit_any, hit_any, hit_any, exfil])[phase] & moving
    min_ok = steps >= params.phase_min_steps
    if d4:
        any_foothold, hv_now, targets_left, unexecuted = post[2], post[3], post[4], post[5]
        phase_success = att.phase_success | success
        work_done = jnp.stack([
            jnp.array(False),
            any_foothold & ~targets_left,
            ~unexecuted,
            jnp.array(False),
            jnp.array(False),
        ])[phase]
        advance = jnp.where(phase == 3, min_ok & hv_now, min_ok & (phase_success | work_done))
        advance = acting & advance & (phase < 4)
        # Exfiltration lost its high-value foothold: go back to moving laterally.
        fall_back = in4 & ~hv_now & ~exfil
        # Evicted (no foothold, nothing left to try after recon): re-enter after a cool-down.
        # Open recon targets are something to try in initial access only: past it, a campaign
        # that lost every host cannot act on them (until 2026-12-07 they kept it waiting in
        # lateral movement with no host, for good, on soc-strategic up to 115 steps).
        evicted = acting & (phase >= 1) & ~any_foothold & ~(targets_left & (phase == 1))
        new_phase = jnp.where(advance, phase + 1, jnp.where(fall_back, 3, phase))
        new_phase = jnp.where(evicted, 0, new_phase)
        restart = advance | fall_back | evicted
        cooldown = jnp.where(evicted, jnp.asarray(params.reentry_cooldown, jnp.int32),
                             jnp.maximum(att.cooldown - 1, 0))
        phase_success = jnp.where(restart, False, phase_success)
        target = jnp.where(evicted, others_targets, target)
    else:
        advance = acting & success & min_ok & (phase < 4)
        new_phase = jnp.where(advance, phase + 1, phase)
        restart = advance
        cooldown = att.cooldown
        phase_success = att.phase_success | success
    steps = jnp.where(restart, 0, jnp.where(idle, att.steps_in_phase, steps))

    att = att.replace(
        phase=new_phase,
        steps_in_phase=steps,
        phase_success=phase_success,
        exfiltrated=att.exfiltrated | exfil,
        begun=att.begun | begun_now,
        first_compromise=jnp.where(~att.begun & begun_now, t, att.first_compromise),
        cooldown=cooldown,
    )
    hosts = hosts.replace(
        compromised=comp,
        stage=stage,
        listed=listed,
        target=target,
        ever_compromised=hosts.ever_compromised | new_comp,
        owner=hosts.owner if mine is None else jnp.where(new_comp, campaign, hosts.owner),
    )
    events = AttackEvents(phase_before=phase, noise=noise_level(new_phase, params), new_compromise=new_comp)
    return hosts, att, events


def controlled_step(draws: Draws, hosts: Hosts, att: Attacker, params: EnvParams, t: jax.Array,
                    action: jax.Array):
    """The scripted campaign's move with a learnable red choosing it (`params.red_control`).

    `action` (int32 scalar): `RED_ADVANCE` is exactly the scripted move (same draws, same phase
    rules, durations and probabilities); `RED_QUIET` does no attack work this step (the phase
    clock runs and the advance / fall-back / eviction rules apply as scripted) and lowers the
    noise its hosts make this step: alerts and hunting see stealth `1 - (1 - stealth) *
    red_quiet_noise`; `RED_MOVE + d` in lateral movement spreads only along the edges into
    segment d; `red_exploit(params, k)` in initial access tries only the k-th most vulnerable open
    target (`red_target_ranks`). A move outside lateral movement and an exploit outside initial
    access do no attack work (as quiet, without its stealth); `red_avail_actions` masks them.
    Returns what `step` does.
    """
    action = jnp.asarray(action, jnp.int32)
    hosts, att, events = campaign_step(draws, hosts, att, params, t, red=action)
    quiet = action == RED_QUIET
    stealth = jnp.where(quiet, 1.0 - (1.0 - att.stealth) * params.red_quiet_noise, att.stealth)
    host_stealth = jnp.broadcast_to(stealth.astype(jnp.float32), hosts.vuln.shape)
    return hosts, att, events._replace(host_stealth=host_stealth)


def red_move_targets(hosts: Hosts, att: Attacker, params: EnvParams) -> jax.Array:
    """bool `[S]`: segments lateral movement can reach now: an edge into them from a segment
    holding a foothold (compromised, not isolated), and a clean, non-isolated host there."""
    topo = topology(params)
    valid = jnp.asarray(topo.host_valid)
    foothold_seg, open_seg = segment_sums(hosts.compromised & ~hosts.isolated & valid,
                                          valid & ~hosts.compromised & ~hosts.isolated)
    adjacency = np.zeros((topo.num_segments, topo.num_segments), np.float32)  # [src, dst]
    for a, b in params.edges:
        adjacency[a, b] = 1.0
    reach = (foothold_seg > 0).astype(jnp.float32) @ adjacency > 0
    return reach & (open_seg > 0)


def red_avail_actions(hosts: Hosts, att: Attacker, params: EnvParams) -> jax.Array:
    """bool `[red_num_actions]`: what the phase rules allow red now.

    Quiet: while red holds a foothold (a compromised, connected host) to hide in, or waits out the
    re-entry cool-down; anywhere with `params.red_quiet_anywhere` (then not attacking at all is a
    choice). Advance: unless waiting out the cool-down. Move into d: in lateral movement (phase 3,
    not cooling down) when d is a `red_move_targets` segment. Exploit k: in initial access (phase
    1, not cooling down) while more than k targets are open (`red_open_targets`).
    """
    acting = att.cooldown <= 0
    moves = red_move_targets(hosts, att, params) & (att.phase == 3) & acting
    valid = jnp.asarray(topology(params).host_valid)
    open_targets = jnp.sum(red_open_targets(hosts) & valid)
    exploits = (jnp.arange(params.recon_targets) < open_targets) & (att.phase == 1) & acting
    if params.red_quiet_anywhere:
        quiet = jnp.array(True)
    else:
        quiet = ~acting | jnp.any(hosts.compromised & ~hosts.isolated & valid)
    return jnp.concatenate([jnp.stack([quiet, acting]), moves, exploits])
