"""The engine: `SOCEnv`, the reset/step composition with auto-reset, and the MultiAgentEnv surface.

Follows JaxMARL's `MultiAgentEnv` conventions (`agents`, `reset(key)`, `step(key, state, actions)`
returning per-agent dicts with `dones["__all__"]`, `get_avail_actions`, `observation_space(agent)`,
`action_space(agent)`) so jaxmarl's wrappers work on it unchanged, with gymnax's explicit, optional
`params` argument so a user can vmap over scenario parameters.

Step order (docs/reference.md §1.7): t += 1; the attacker moves; alerts are generated; the coordinator's
directive is read (every K steps); threat hunter; alert triage; response orchestrator and the
containment check; reward (reading the hosts after the response, as the reference does, unless
`fix_d26_detection_stage`); termination; observations. `step` auto-resets finished envs, keeping the
terminal observation in `infos["final_obs"]` for bootstrapping.
"""
from __future__ import annotations

import functools
from typing import Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from jaxsoc.env import alerts, attacker, defenders, metrics, observe, scores
from jaxsoc.env.network import (HOST_SUMMARY, MAX_STAGE, draw_vulnerabilities, host_summary_rows,
                                 segment_sums, topology)
from jaxsoc.env.params import AGENTS, EnvParams
from jaxsoc.env.reward import response_credit, team_reward
from jaxsoc.env.rng import Draws, seed_words
from jaxsoc.env.spaces import Box, Discrete, check_action_dict
from jaxsoc.env.state import Attacker, Counters, EnvState, Hosts, with_window
from jaxsoc.env.surface import WorldEnv

Obs = Dict[str, jax.Array]


def _zeros_counters() -> Counters:
    z = jnp.zeros((), jnp.int32)
    return Counters(detection_time=z, containment_time=z, contained=jnp.zeros((), bool),
                    false_positives=z, true_positives=z, total_scans=z, false_scans=z, clean_scans=z,
                    fp_escalated=z, tp_escalated=z, tp_suppressed=z, fp_triaged=z, isolations=z,
                    blind_isolations=z, episode_return=jnp.zeros((), jnp.float32))


def initial_state(key: jax.Array, params: EnvParams, vuln: Optional[jax.Array] = None) -> EnvState:
    """A fresh episode's state for ONE env (leaves as `EnvState` documents them, e.g. hosts
    `[S, Hmax]`). `vuln` `[S, Hmax]` keeps a previous network (v1, D10); otherwise it is drawn
    from `key`."""
    topo = topology(params)
    shape = (topo.num_segments, topo.host_axis)
    k_net, k_obs = jax.random.split(key)
    draws = Draws(k_net, params.rng_impl)
    if vuln is None:
        vuln = draw_vulnerabilities(draws, params)
    f = jnp.zeros(shape, bool)
    i = jnp.zeros(shape, jnp.int32)
    hosts = Hosts(vuln=vuln, compromised=f, stage=i, detected=f, isolated=f, listed=i, target=f,
                  detect_time=i, ever_compromised=f, owner=i)
    if params.multi_campaign:
        stealth, entry = draw_campaigns(draws, params)
    else:
        stealth = jnp.asarray(params.stealth, jnp.float32)
        entry = jnp.asarray(params.entry_segments[0], jnp.int32)
    z = jnp.zeros(stealth.shape, jnp.int32)
    no = jnp.zeros(stealth.shape, bool)
    att = Attacker(phase=z, steps_in_phase=z, phase_success=no, exfiltrated=no, begun=no,
                   first_compromise=z, cooldown=z, stealth=stealth, entry=entry)
    z = jnp.zeros((), jnp.int32)
    state = EnvState(t=z, hosts=hosts, attacker=att, queue=alerts.empty(params),
                     directive=jnp.zeros((8,), jnp.float32), focus=z, posture=z,
                     counters=_zeros_counters(), obs_seed=seed_words(k_obs), episode=z)
    if params.detector_scores is not None:  # its own key stream: the draws above are unchanged
        state = with_window(state, scores.initial_window(key, state, params))
    return state


def draw_campaigns(draws: Draws, params: EnvParams) -> Tuple[jax.Array, jax.Array]:
    """Competing campaigns' per-reset draws: `(stealth [C] f32, entry segment [C] int32)`.

    Stealth ~ U(campaign_stealth_low, campaign_stealth_high); entries are distinct segments of
    `entry_segments` in a uniformly random order (a random permutation: argsort of uniforms).
    """
    low = jnp.asarray(params.campaign_stealth_low, jnp.float32)
    high = jnp.asarray(params.campaign_stealth_high, jnp.float32)
    stealth = low + (high - low) * draws.uniform(low.shape)
    order = jnp.argsort(draws.uniform((len(params.entry_segments),)))
    entry = jnp.asarray(params.entry_segments, jnp.int32)[order[: params.num_campaigns]]
    return stealth, entry


def hmarl_directive(index: jax.Array) -> jax.Array:
    """HMARL-SOC's agent-side map from the coordinator's 8 discrete actions to the v1 directive.

    priority = a % 4, p = -1 + 2*priority/3, focus = a // 4;
    d = [p, 0.8p, p, focus, p, 0.6p, 0.5p, 0.5*focus] (docs/reference.md §1.6). `[] int -> [8] f32`.
    """
    index = jnp.asarray(index, jnp.int32)
    p = -1.0 + 2.0 * (index % 4).astype(jnp.float32) / 3.0
    focus = (index // 4).astype(jnp.float32)
    return jnp.stack([p, 0.8 * p, p, focus, p, 0.6 * p, 0.5 * p, 0.5 * focus])


def campaign_infos(campaigns, hosts, params: EnvParams) -> Dict[str, jax.Array]:
    """Per-campaign ground truth for analysis, each `[C]`: phase, entry, stealth, exfiltrated and
    begun, and the hosts each campaign holds now, compromised and not isolated (`active`)."""
    c = jnp.arange(params.num_campaigns)[:, None, None]
    owned = hosts.owner[None] == c
    active = jnp.sum(owned & hosts.compromised[None] & ~hosts.isolated[None], axis=(1, 2))
    return {"phase": campaigns.phase, "entry": campaigns.entry, "stealth": campaigns.stealth,
            "exfiltrated": campaigns.exfiltrated, "begun": campaigns.begun,
            "active": active.astype(jnp.int32)}


class Layout(NamedTuple):
    """What fixes a SOC env's shapes, read off its params: one env's observation shapes by agent,
    its state's leaf shapes (`ShapeDtypeStruct`s), and the action sizes by role."""

    obs: Dict[str, jax.ShapeDtypeStruct]
    state: EnvState
    actions: Tuple


def layout(params: EnvParams) -> Layout:
    """The `Layout` of `params` (numeric leaves may be traced: only their shapes are read). Cached
    by the params' static fields and leaf shapes, so checking a call costs one dict lookup."""
    leaves, treedef = jax.tree.flatten(params)
    return _layout(treedef, tuple(jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)) for x in leaves))


@functools.lru_cache(maxsize=64)
def _layout(treedef, specs) -> Layout:
    def build(leaves, key):
        p = jax.tree.unflatten(treedef, leaves)
        state = initial_state(key, p)
        return observe.get_obs(state, p), state

    obs, state = jax.eval_shape(build, list(specs), jax.random.key(0))
    p = jax.tree.unflatten(treedef, list(specs))  # the static fields decide the action sizes
    dims = defenders.action_dims(p)
    return Layout(obs, state, (tuple(sorted(dims.items())), p.fix_d6_directive, p.red_control))


def _shape_gap(given, wanted) -> Optional[Tuple[str, tuple, tuple]]:
    """The first leaf whose shape differs (`path, given shape, wanted shape`), or None."""
    for (path, g), w in zip(jax.tree_util.tree_flatten_with_path(given)[0], jax.tree.leaves(wanted)):
        if tuple(jnp.shape(g)) != tuple(w.shape):
            return jax.tree_util.keystr(path, simple=True, separator="."), tuple(jnp.shape(g)), tuple(w.shape)
    return None


class SOCEnv(WorldEnv):
    """The SOC world. Build it with `jaxsoc.env.make(name, **overrides)`.

    All methods are pure; `params=None` means `self.default_params`. Shapes are for one env:
    `jax.vmap` over keys/states/actions for many (see README).
    """

    def __init__(self, params: EnvParams):
        self.default_params = params
        self.agents = list(AGENTS)
        self.num_agents = len(self.agents)
        self.world_state_observers = tuple(AGENTS)  # `observe.world_state`: the roles' observations, then truth
        self.always_legal = tuple(AGENTS)  # the defenders (`get_avail_actions`); red follows its phase rules
        dims = defenders.action_dims(params)
        coord = Discrete(dims["coordinator"]) if params.fix_d6_directive else Box(-1.0, 1.0, (8,))
        self.action_spaces = {
            "coordinator": coord,
            "threat_hunter": Box(-1.0, 1.0, (dims["threat_hunter"],)),
            "alert_triage": Discrete(4),
            "response_orchestrator": Box(-1.0, 1.0, (dims["response_orchestrator"],)),
        }
        if params.red_control:  # the learnable attacker joins the agents (docs/redblue.md)
            self.agents.append("red")
            self.num_agents += 1
            self.action_spaces["red"] = Discrete(attacker.red_num_actions(params))
        def shapes(k):
            obs, state = self.reset(k, params)
            return obs, self.get_world_state(state, params)

        obs_shapes, ws_shape = jax.eval_shape(shapes, jax.random.key(0))
        self.observation_spaces = {a: Box(-jnp.inf, jnp.inf, obs_shapes[a].shape) for a in self.agents}
        self.world_state_size = ws_shape.shape[0]

    def params_or_default(self, params: Optional[EnvParams] = None) -> EnvParams:
        """`params`, or `default_params` for None; a one-line `ValueError` when `params` would give
        this env other shapes than its spaces say (another preset's or size's params: build the env
        from them). Numeric fields may differ (a task's stealth, a sweep's rates). Runs at trace
        time, once per jitted program, so it costs nothing per step."""
        if params is None or params is self.default_params:
            return self.default_params
        if not isinstance(params, EnvParams):
            raise ValueError(f"params must be EnvParams (from soc.make), got {type(params).__name__}")
        mine, theirs = layout(self.default_params), layout(params)
        if theirs.actions != mine.actions:
            gap = "their actions differ (sizes, the coordinator's kind, a learnable red)"
        elif jax.tree.structure(theirs.state) != jax.tree.structure(mine.state):
            gap = "their state has other parts"
        else:
            obs = next((f"observations[{a!r}] would have shape {theirs.obs[a].shape}, not {mine.obs[a].shape}"
                        for a in mine.obs if theirs.obs[a].shape != mine.obs[a].shape), None)
            state = _shape_gap(theirs.state, mine.state)
            gap = obs or (state and f"state.{state[0]} would have shape {state[1]}, not {state[2]}")
            if not gap:
                return params
        raise ValueError(f"params of {params.name!r} do not fit this env of {self.name!r}: {gap}; "
                         "build the env from these params (soc.make or SOCEnv(params))")

    def check_state(self, state: EnvState, p: EnvParams) -> None:
        """A one-line `ValueError` unless `state` is one env's state of this world (trace time)."""
        wanted = layout(p).state
        if not isinstance(state, EnvState) or jax.tree.structure(state) != jax.tree.structure(wanted):
            raise ValueError(f"state must be this env's EnvState (from env.reset), got {type(state).__name__}")
        gap = _shape_gap(state, wanted)
        if gap is None:
            return
        path, given, want = gap
        if len(given) > len(want) and given[len(given) - len(want):] == want:
            raise ValueError(f"state.{path} has shape {given}, one env's is {want}: a batch of states "
                             "steps under jax.vmap (jax.vmap(env.step) over keys, states and actions)")
        raise ValueError(f"state.{path} has shape {given}, this env's is {want}: the state is another "
                         "scenario's (reset it with this env)")

    # ---- JaxMARL surface: jaxsoc.env.surface.WorldEnv ----------------------------------------
    def random_words_per_step(self, params: Optional[EnvParams] = None) -> Dict[str, int]:
        """How many 32-bit random words one `step` of one env draws, by purpose (counted at trace time).

        `transition`: attacker, alerts, hunting, response; `observation`: observation noise (shared by
        the terminal and the reset observation); `reset`: a new network when D10 re-draws it.
        """
        p = self.params_or_default(params)
        obs, state = jax.eval_shape(lambda k: self.reset(k, p), jax.random.key(0))
        jax.eval_shape(lambda k, s, a: self._step_env(k, s, a, p, None), jax.random.key(0), state,
                       jax.eval_shape(lambda: self.idle_actions(p)))
        noise = jax.eval_shape(lambda: observe.draw_noise(jnp.zeros((2,), jnp.uint32), p))
        net = topology(p)
        return {
            "transition": int(self.transition_words),
            "observation": int(sum(x.size for x in jax.tree.leaves(noise))),
            "reset": net.num_segments * net.max_hosts if p.fix_d10_resample_network else 0,
        }

    # ---- pure functions ----------------------------------------------------------------------
    @functools.partial(jax.jit, static_argnums=(0,))
    def reset(self, key: jax.Array, params: Optional[EnvParams] = None) -> Tuple[Obs, EnvState]:
        """`key -> (obs {agent: [obs_dim]}, state)`; draws a new network."""
        p = self.params_or_default(params)
        state = initial_state(key, p)
        return observe.get_obs(state, p), state

    def get_obs(self, state: EnvState, params: Optional[EnvParams] = None) -> Obs:
        p = self.params_or_default(params)
        self.check_state(state, p)
        return observe.get_obs(state, p)

    def get_world_state(self, state: EnvState, params: Optional[EnvParams] = None) -> jax.Array:
        """`[world_state_size]`: all roles' observations then ground truth (for centralised critics)."""
        p = self.params_or_default(params)
        self.check_state(state, p)
        return observe.world_state(observe.get_obs(state, p), state, p)

    def get_avail_actions(self, state: EnvState, params: Optional[EnvParams] = None) -> Dict[str, jax.Array]:
        """Boolean masks per agent: `[n]` for discrete roles, `[dim]` (all True) for Box roles.

        Every defender action is always legal (an action with nothing to act on is a no-op), so
        their masks are all True; they exist so that masked learners and jaxmarl wrappers work
        unchanged. A learnable red's mask is `attacker.red_avail_actions` (the phase rules).
        """
        out = {}
        for a, space in self.action_spaces.items():
            n = space.n if isinstance(space, Discrete) else space.shape[0]
            out[a] = jnp.ones((n,), bool)
        if "red" in out:  # red's choices follow the campaign's phase rules
            out["red"] = attacker.red_avail_actions(state.hosts, state.attacker, self.params_or_default(params))
        return out

    def idle_actions(self, params: Optional[EnvParams] = None) -> Dict[str, jax.Array]:
        """The reference's "agent does nothing", expressed in the fixed-shape API (docs/reference.md §0)."""
        p = self.params_or_default(params)
        dims = defenders.action_dims(p)
        coord = jnp.asarray(0, jnp.int32) if p.fix_d6_directive else hmarl_directive(0)
        return {
            "coordinator": coord,
            "threat_hunter": -jnp.ones((dims["threat_hunter"],), jnp.float32),
            "alert_triage": jnp.asarray(alerts.ENRICH, jnp.int32),
            "response_orchestrator": -jnp.ones((dims["response_orchestrator"],), jnp.float32),
            **({"red": jnp.asarray(attacker.RED_QUIET, jnp.int32)} if p.red_control else {}),
        }

    @functools.partial(jax.jit, static_argnums=(0,))
    def step_env(self, key: jax.Array, state: EnvState, actions: Dict[str, jax.Array],
                 params: Optional[EnvParams] = None):
        """One transition of ONE env without auto-reset: `(obs, state, rewards, dones, infos)`,
        shaped as `step` returns them (obs `{agent: [obs_dim]}`, rewards `{agent: []}`, dones
        `{agent: [], "__all__": []}`); `actions` as `check_actions` takes them."""
        return self._step_env(key, state, actions, self.params_or_default(params), None)

    @staticmethod
    def check_actions(actions: Dict[str, jax.Array], p: EnvParams) -> None:
        """A `ValueError` naming the role for a missing, unknown or wrongly sized action (ONE env's
        `{role: action}`: a continuous role's `[action_dims[role]]`, a discrete role's `[]`). Keys and
        shapes are static, so this runs once at trace time (jit and vmap see only valid dicts) and
        costs nothing per step; a misspelt key would otherwise be ignored and its role left idle."""
        dims = defenders.action_dims(p)
        boxes = ["threat_hunter", "response_orchestrator"] + ([] if p.fix_d6_directive else ["coordinator"])
        # Only the continuous actions' sizes are checked, and any shape of that size works: they
        # are reshaped to [dim]. Red may be left out: the scripted campaign then advances.
        check_action_dict(actions, AGENTS, {a: Box(-1.0, 1.0, (dims[a],)) for a in boxes},
                          optional=SOCEnv.optional_agents(p), any_shape=boxes)
        if p.fix_d6_directive and jnp.size(jnp.asarray(actions["coordinator"])) != 1:
            # The directive is an index; a one-hot or logits vector would be read by its first
            # entry and pick directive 0 or 1 (or none) without a word.
            raise ValueError(f"actions['coordinator'] has shape {jnp.shape(jnp.asarray(actions['coordinator']))}: "
                             f"the coordinator picks one of {dims['coordinator']} directives by index "
                             "(a scalar, not a one-hot or logits vector)")

    @staticmethod
    def optional_agents(p: EnvParams) -> list:
        """The roles `step` may be given no action for: red under `red_control` (its scripted
        campaign then advances, as without red control); every other role must act."""
        return ["red"] if p.red_control else []

    def _step_env(self, key, state, actions, p: EnvParams, noise):
        """`step_env` with the observation noise optionally supplied (shared with the reset obs)."""
        self.check_actions(actions, p)
        self.check_state(state, p)
        draws = Draws(key, p.rng_impl)
        t = state.t + 1
        c = state.counters

        # A learnable red's action (absent: it advances, which is the scripted campaign's move).
        red = actions.get("red", attacker.RED_ADVANCE) if p.red_control else None
        hosts, campaigns, events = attacker.step(draws, state.hosts, state.attacker, p, t, red=red)
        att = attacker.overall(campaigns)  # every campaign at once (the campaign itself when one)
        new_alerts = alerts.generate(draws, hosts, events, t, state.posture, p)
        directed = defenders.update_directive(state, actions["coordinator"], p)
        boosts = defenders.boosts(directed, p)

        hosts, hunt = defenders.hunt(draws, hosts, actions["threat_hunter"], boosts, t, p,
                                     focus=directed.focus, host_stealth=events.host_stealth)
        queue, tri = defenders.ingest_and_triage(state.queue, new_alerts, actions["alert_triage"], p)
        new_detected = hunt.detected
        if p.fix_d2_alert_origin:
            hosts, confirmed = defenders.confirm_escalation(hosts, tri["host"], t, p)
            new_detected = new_detected | confirmed
        stage_at_detection = hosts.stage
        detect_time = hosts.detect_time
        first_detection = jnp.where((c.detection_time == 0) & jnp.any(new_detected), t, c.detection_time)

        hosts, resp = defenders.respond(draws, hosts, actions["response_orchestrator"], boosts, p,
                                        focus=directed.focus)
        # The reference computes the reward after the response, so a host remediated in the step
        # it was detected reads stage 0 (D26); the fix pays the stage it was detected at.
        detected_stage = jnp.where(new_detected, stage_at_detection if p.fix_d26_detection_stage
                                   else hosts.stage, 0)
        self.transition_words = draws.offset  # trace-time count of random words per transition
        credit = response_credit(t, resp.isolated, detect_time, first_detection, p)
        # Every count this step needs, per segment, in one product (see network.segment_sums).
        names = HOST_SUMMARY + ("det_stage", "credit", "correct", "blind", "scanned", "clean_scanned",
                                "false_scan", "th_detected")
        sums = dict(zip(names, segment_sums(
            *host_summary_rows(hosts), (detected_stage, MAX_STAGE), credit, resp.isolated, resp.blind,
            hunt.scanned, hunt.clean_scanned, hunt.false_scan, hunt.detected, width=topology(p).max_hosts)))
        total = {k: jnp.sum(v) for k, v in sums.items()}
        summary = {k: sums[k] for k in HOST_SUMMARY}

        # Containment needs every campaign found: one contained while another has not struck yet
        # is not the end of the incident.
        begun = attacker.all_begun(campaigns) if p.multi_campaign else att.begun
        contained_now = defenders.is_contained(total["active"], total["compromised"], begun, p)
        contained = c.contained | contained_now
        n = lambda k: total[k].astype(jnp.int32)
        false_scans = n("false_scan")
        terms = team_reward(
            params=p, detected_stage=sums["det_stage"], credit=sums["credit"], correct=sums["correct"],
            blind=sums["blind"], isolated_after=sums["isolated"], contained=contained,
            exfiltrated=att.exfiltrated, false_scans=false_scans, suppressed_tp=tri["suppressed_tp"],
            escalated_fp=tri["escalated_fp"])

        counters = Counters(
            detection_time=first_detection,
            containment_time=jnp.where((c.containment_time == 0) & contained_now, t, c.containment_time),
            contained=contained,
            false_positives=c.false_positives + false_scans + tri["escalated_fp"],
            true_positives=c.true_positives + n("th_detected") + tri["escalated_tp"],
            total_scans=c.total_scans + n("scanned"),
            false_scans=c.false_scans + false_scans,
            clean_scans=c.clean_scans + n("clean_scanned"),
            fp_escalated=c.fp_escalated + tri["escalated_fp"],
            tp_escalated=c.tp_escalated + tri["escalated_tp"],
            tp_suppressed=c.tp_suppressed + tri["suppressed_tp"],
            fp_triaged=c.fp_triaged + tri["triaged_fp"],
            isolations=c.isolations + n("correct"),
            blind_isolations=c.blind_isolations + n("blind"),
            episode_return=c.episode_return + terms.total,
        )
        new_state = directed.replace(t=t, hosts=hosts, attacker=campaigns, queue=queue, counters=counters,
                                     obs_seed=seed_words(jax.random.fold_in(key, 1)))
        if p.detector_scores is not None:  # the hosts' telemetry after this step, from its own keys
            new_state = new_state.replace(host_window=scores.next_window(key, new_state, p))
        if noise is None:
            noise = observe.draw_noise(new_state.obs_seed, p)
        terminated = contained | att.exfiltrated
        truncated = t >= p.max_steps
        done = terminated | truncated
        obs = observe.get_obs(new_state, p, noise, summary)
        rewards = {a: terms.total for a in self.agents}
        if p.red_control:  # zero-sum: red earns what the SOC team loses
            rewards["red"] = -terms.total
        dones = {a: done for a in self.agents}
        dones["__all__"] = done
        bootstrap_stop = terminated if p.fix_d12_truncation else done
        infos = {
            "terminated": terminated,
            "truncated": truncated,
            "discount": 1.0 - bootstrap_stop.astype(jnp.float32),
            "metrics": metrics.episode_metrics(new_state, p, summary),
            "reward_terms": {"detect": terms.detect, "response": terms.response, "cost": terms.cost,
                             "false_positive": terms.false_positive},
            "attack_phase": att.phase,
            **({"campaigns": campaign_infos(campaigns, hosts, p)} if p.multi_campaign else {}),
            "compromised": n("compromised"),
            "detected": n("detected"),
            "isolated": n("isolated"),
        }
        return obs, new_state, rewards, dones, infos

    @functools.partial(jax.jit, static_argnums=(0,))
    def step(self, key: jax.Array, state: EnvState, actions: Dict[str, jax.Array],
             params: Optional[EnvParams] = None, reset_state: Optional[EnvState] = None):
        """One transition with auto-reset. Returns `(obs, state, rewards, dones, infos)`.

        When `dones["__all__"]`, `obs`/`state` are the next episode's first ones (a `reset_state`,
        if given, as in JaxMARL), and `infos["final_obs"]` / `infos["final_world_state"]` hold
        the terminal observation for bootstrapping; `infos["metrics"]` describes the finished
        episode. With `params.with_world_state`, `infos["world_state"]` is the world state that
        goes with the returned `obs` and `infos["final_world_state"]` the terminal one.
        """
        p = self.params_or_default(params)
        key_step, key_reset = jax.random.split(key)
        # The stepped state's observation seed is fold_in(key_step, 1) (see _step_env); draw its
        # noise here once so the terminal and the first observation share it.
        noise = observe.draw_noise(seed_words(jax.random.fold_in(key_step, 1)), p)
        obs_st, st, rewards, dones, infos = self._step_env(key_step, state, actions, p, noise)
        done = dones["__all__"]
        if reset_state is None:
            keep = None if p.fix_d10_resample_network else st.hosts.vuln  # v1: one network per env (D10)
            st_re = initial_state(key_reset, p, vuln=keep)
            # The terminal and the first observation may share their noise draws: only one is
            # returned as `obs`, and the noise never influenced whether the episode ended.
            st_re = st_re.replace(obs_seed=st.obs_seed, episode=st.episode + 1)
        else:
            st_re = reset_state.replace(episode=st.episode + 1)
        obs_re = observe.get_obs(st_re, p, noise if reset_state is None else None)
        state = jax.tree.map(lambda r, s: jax.lax.select(done, r, s), st_re, st)
        obs = jax.tree.map(lambda r, s: jax.lax.select(done, r, s), obs_re, obs_st)
        infos = dict(infos)
        infos["final_obs"] = obs_st
        if p.with_world_state:
            infos["final_world_state"] = observe.world_state(obs_st, st, p)
            infos["world_state"] = observe.world_state(obs, state, p)
        return obs, state, rewards, dones, infos
