"""`HybridEnv`: seed 000's hybrid SOC behind the JaxMARL `MultiAgentEnv` surface of `SOCEnv`.

Agents: `segment_0 .. segment_{S-1}`, one per network segment, each choosing for every host of its
segment between 0 no action, 1 investigate, 2 lock down (`[H]` int32, a MultiDiscrete action);
and `network`, one network-wide agent whose continuous action `[S]` in [-1, 1] sets each segment's
automatic lock-down threshold on the anomaly scores.

Step order (one env; host arrays are flat `[N = S * H]`, segment-major):
  1. defenders act on what they saw (the previous step's scores):
       auto   = score > threshold * low * (high / low) ** ((a_network[s] + 1) / 2)   (use_scores;
                a_network[s] > 1, outside the box, is "off": the scripted no-defender's setting)
       locked = lock-down chosen | auto   (hosts already isolated are skipped)
       investigated hosts reveal their true state: `found_compromised` or `cleared` in the obs
     A locked host is isolated from the network for the rest of the episode (the SOC engine's
     `isolated`: no foothold for the attacker, no telemetry).
  2. the SOC engine's attacker moves (`jaxsoc.env.attacker.step`, soc-v2's campaign);
  3. every connected host emits telemetry (`jaxsoc.detectors.host_telemetry`); the window of the
     last W steps is scored by the detector of `params` (`params.detector`);
  4. reward (below), termination: exfiltration (lost) or containment (the campaign has begun and
     no compromised host is connected: won); truncation at `max_steps`. `step` auto-resets.

Reward (team, every agent gets it), per step:
    r = catch_reward * #(compromised hosts locked down)
      - false_alarm_cost * #(clean hosts locked down)
      - investigate_cost * #(investigations)
      - damage_cost * #(compromised, connected hosts after the attacker's move)
      - downtime_cost * #(clean hosts isolated)
      - exfil_cost * [exfiltration this step]

Observations (`HOST_FEATURES`, `SEGMENT_FEATURES` in params.py):
  segment_i `[4 H + S + 1]`: per host (score feature = min(score / threshold, clip), 0 when
    `use_scores` is off or the host is locked; found compromised; cleared within `clear_memory`
    steps; locked), then the segment's one-hot id (segment agents may share a network), then t / T.
  network `[4 S + 1]`: per segment (mean and max score feature over connected hosts, share of
    hosts locked, share found compromised), then t / T.
  world state `[sum of obs + 2 N]`: every observation, then each host's compromised flag and
    stage / 4 (ground truth, for centralised critics and mixers only).
"""
from __future__ import annotations

import functools
from typing import Dict, Optional

import jax
import jax.numpy as jnp
from flax import struct

from jaxsoc.detectors.scoring import window_scores
from jaxsoc.detectors.telemetry import flatten_hosts, prefill_window, push_frame
from jaxsoc.env import attacker
from jaxsoc.env.core import initial_state
from jaxsoc.env.defenders import is_contained
from jaxsoc.env.hybrid import params as P
from jaxsoc.env.network import topology
from jaxsoc.env.rng import Draws
from jaxsoc.env.spaces import Box, MultiDiscrete, check_action_dict
from jaxsoc.env.state import EnvState
from jaxsoc.env.surface import WorldEnv

Obs = Dict[str, jax.Array]
METRIC_KEYS = ("return", "length", "csr", "mttd", "mttr", "fpr", "recall", "exfiltrated", "hosts_compromised",
               "catches", "false_alarms", "investigations", "auto_locks", "mttd_censored")


@struct.dataclass
class Counters:
    """Episode bookkeeping (scalars)."""

    catches: jax.Array        # int32 compromised hosts locked down
    false_alarms: jax.Array   # int32 clean hosts locked down
    investigations: jax.Array  # int32
    auto_locks: jax.Array     # int32 lock-downs made by the network agent's thresholds
    detect_time: jax.Array    # int32 first step a compromised host was locked or found (0 = none)
    contained: jax.Array      # bool
    ret: jax.Array            # f32 episode return


@struct.dataclass
class HybridState:
    """One env. `soc` holds the SOC engine's hosts `[S, Hmax]`, attacker, `t` and `episode` (its
    alert queue and counters are unused); host arrays below are flat `[N]`."""

    soc: EnvState
    window: jax.Array   # f32 [W, N, F] telemetry of the last W steps, oldest first
    scores: jax.Array   # f32 [N] detector scores of the windows ending now (0 for locked hosts)
    found: jax.Array    # bool [N] investigated and found compromised
    cleared: jax.Array  # int32 [N] steps since last found clean (clear_memory + 1: not recently)
    counters: Counters


def to_hosts(x: jax.Array, p: P.HybridParams) -> jax.Array:
    """`[N] -> [S, Hmax]` (padding lanes get 0/False): flat host values into the SOC layout."""
    topo = topology(p.soc)
    x = x.reshape(p.num_segments, p.hosts_per_segment)
    return jnp.pad(x, ((0, 0), (0, topo.host_axis - p.hosts_per_segment)))


def _zero_counters() -> Counters:
    z = jnp.zeros((), jnp.int32)
    return Counters(catches=z, false_alarms=z, investigations=z, auto_locks=z, detect_time=z,
                    contained=jnp.zeros((), bool), ret=jnp.zeros((), jnp.float32))


def episode_metrics(state: HybridState, p: P.HybridParams) -> Dict[str, jax.Array]:
    """`{name: f32 []}` of the episode so far (METRIC_KEYS).

    recall: compromised hosts locked down / hosts ever compromised (NaN when none was);
    fpr: clean hosts locked down / hosts never compromised; mttd: steps from the first compromise
    to the first catch or positive investigation (censored at the episode's end; NaN before any
    compromise); mttr: from that detection to containment (censored at the episode's end; NaN
    without a detection); csr: contained.
    """
    c, a = state.counters, state.soc.attacker
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    ever = jnp.sum(flatten_hosts(state.soc.hosts.ever_compromised, p.soc))
    t = f(state.soc.t)
    detected = c.detect_time > 0
    mttd = jnp.where(a.begun, jnp.where(detected, f(c.detect_time - a.first_compromise), t - f(a.first_compromise)),
                     jnp.nan)
    # An episode ends at containment, so its last step is the containment step when contained.
    mttr = jnp.where(detected, t - f(c.detect_time), jnp.nan)
    return {"return": c.ret, "length": t, "csr": f(c.contained), "mttd": mttd, "mttr": mttr,
            "fpr": f(c.false_alarms) / jnp.maximum(1.0, f(p.num_hosts - ever)),
            "recall": jnp.where(ever > 0, f(c.catches) / jnp.maximum(1.0, f(ever)), jnp.nan),
            "exfiltrated": f(a.exfiltrated), "hosts_compromised": f(ever), "catches": f(c.catches),
            "false_alarms": f(c.false_alarms), "investigations": f(c.investigations),
            "auto_locks": f(c.auto_locks), "mttd_censored": f(a.begun & ~detected)}


class HybridEnv(WorldEnv):
    """The hybrid SOC. Build it with `jaxsoc.env.hybrid.make()` (or `jaxsoc.env.make("soc-hybrid")`).
    Pure methods; `params=None` means `self.default_params`; shapes are for one env (vmap for many)."""

    def __init__(self, params: P.HybridParams):
        self.default_params = params
        self._value = params.value_key()
        s, h = params.num_segments, params.hosts_per_segment
        self.segment_agents = [f"segment_{i}" for i in range(s)]
        self.agents = self.segment_agents + ["network"]
        self.num_agents = len(self.agents)
        self.world_state_observers = tuple(self.agents)  # `world_state`: every observation, then the hosts
        self.always_legal = tuple(self.agents)  # `get_avail_actions`: acting on a locked host is a no-op
        self.action_spaces = self._action_spaces(params)
        self.segment_obs_dim = len(P.HOST_FEATURES) * h + s + 1
        self.network_obs_dim = len(P.SEGMENT_FEATURES) * s + 1
        self.observation_spaces = {a: Box(0.0, float(params.score_clip), (self.segment_obs_dim,))
                                   for a in self.segment_agents}
        self.observation_spaces["network"] = Box(0.0, float(params.score_clip), (self.network_obs_dim,))
        self.world_state_size = s * self.segment_obs_dim + self.network_obs_dim + 2 * params.num_hosts
        self.policies = {"no-defender": no_defender, "detector-alone": detector_alone, "random": random_policy}

    # ---- JaxMARL surface: jaxsoc.env.surface.WorldEnv ----------------------------------------
    @property
    def agent_classes(self) -> dict:
        return {"segments": list(self.segment_agents), "network": ["network"]}

    def identity(self):
        """By the value of its params, as the other worlds' envs; the key is taken once, when the
        env is made (it reads the detector's arrays off the device), not at every jitted call."""
        return type(self), self._value

    def _action_spaces(self, p: P.HybridParams) -> dict:
        """`{agent: space}` under `p`: the shapes `step` reads (its params may differ from the default)."""
        out = {a: MultiDiscrete((len(P.ACTIONS),) * p.hosts_per_segment) for a in self.segment_agents}
        out["network"] = Box(-1.0, 1.0, (p.num_segments,))
        return out

    def idle_actions(self, params=None) -> Dict[str, jax.Array]:
        """No action anywhere; the network agent at its highest threshold."""
        p = self.params_or_default(params)
        out = {a: jnp.zeros((p.hosts_per_segment,), jnp.int32) for a in self.segment_agents}
        out["network"] = jnp.ones((p.num_segments,), jnp.float32)
        return out

    def get_avail_actions(self, state, params=None) -> Dict[str, jax.Array]:
        """Every action is always legal (acting on a locked host is a no-op): all-True masks,
        `[H, 3]` per segment agent, `[S]` for the network agent."""
        p = self.params_or_default(params)
        out = {a: jnp.ones((p.hosts_per_segment, len(P.ACTIONS)), bool) for a in self.segment_agents}
        out["network"] = jnp.ones((p.num_segments,), bool)
        return out

    # ---- pure functions ----------------------------------------------------------------------
    def _initial(self, key: jax.Array, p: P.HybridParams, episode) -> HybridState:
        k_soc, k_tel = jax.random.split(key)
        soc = initial_state(k_soc, p.soc).replace(episode=episode)
        window = prefill_window(k_tel, soc, p.soc, p.window, p.stealth_damping)
        n = p.num_hosts
        return HybridState(soc=soc, window=window, scores=window_scores(p.detector, window),
                           found=jnp.zeros((n,), bool), cleared=jnp.full((n,), p.clear_memory + 1, jnp.int32),
                           counters=_zero_counters())

    def reset(self, key: jax.Array, params: Optional[P.HybridParams] = None):
        """`key -> (obs {agent: [obs_dim]}, state)`; draws a new network."""
        p = self.params_or_default(params)
        state = self._initial(key, p, jnp.zeros((), jnp.int32))
        return self.get_obs(state, p), state

    def score_features(self, state: HybridState, params=None) -> jax.Array:
        """`[N]` f32: `min(score / threshold, clip)` of connected hosts, 0 for locked ones or
        without scores."""
        p = self.params_or_default(params)
        if not p.use_scores:
            return jnp.zeros_like(state.scores)
        locked = flatten_hosts(state.soc.hosts.isolated, p.soc)
        feat = jnp.clip(state.scores / p.threshold, 0.0, p.score_clip)
        return jnp.where(locked, 0.0, feat)

    def get_obs(self, state: HybridState, params=None) -> Obs:
        p = self.params_or_default(params)
        s, h = p.num_segments, p.hosts_per_segment
        score = self.score_features(state, p).reshape(s, h)
        locked = flatten_hosts(state.soc.hosts.isolated, p.soc).reshape(s, h).astype(jnp.float32)
        found = state.found.reshape(s, h).astype(jnp.float32)
        cleared = (state.cleared <= p.clear_memory).reshape(s, h).astype(jnp.float32)
        tfrac = jnp.full((s, 1), state.soc.t / p.max_steps, jnp.float32)
        per_host = jnp.stack([score, found, cleared, locked], axis=-1).reshape(s, 4 * h)
        seg_obs = jnp.concatenate([per_host, jnp.eye(s, dtype=jnp.float32), tfrac], axis=-1)  # [S, obs]
        connected = 1.0 - locked
        mean_score = jnp.sum(score * connected, -1) / jnp.maximum(1.0, jnp.sum(connected, -1))
        net = jnp.concatenate([jnp.stack([mean_score, jnp.max(score, -1), locked.mean(-1), found.mean(-1)], -1)
                               .reshape(-1), tfrac[0]])
        obs = {a: seg_obs[i] for i, a in enumerate(self.segment_agents)}
        obs["network"] = net
        return obs

    def get_world_state(self, state: HybridState, params=None) -> jax.Array:
        p = self.params_or_default(params)
        return world_state(self.get_obs(state, p), state, p, self.agents)

    def _transition(self, key: jax.Array, state: HybridState, actions, p: P.HybridParams):
        """One step without reset: `(state, reward [], terminated [], exfiltrated_now [])`."""
        # step and step_env both come here; the check runs at trace time and costs nothing per step.
        check_action_dict(actions, self.agents, self._action_spaces(p))
        k_att, k_tel = jax.random.split(key)
        sp = p.soc
        t = state.soc.t + 1
        hosts = state.soc.hosts
        comp = flatten_hosts(hosts.compromised, sp)
        iso = flatten_hosts(hosts.isolated, sp)
        choice = jnp.concatenate([jnp.asarray(actions[a], jnp.int32) for a in self.segment_agents])  # [N]
        if p.use_scores:
            u = (jnp.clip(jnp.asarray(actions["network"], jnp.float32), -1.0, 1.0) + 1.0) / 2.0  # [S]
            level = p.threshold * p.threshold_low * (p.threshold_high / p.threshold_low) ** u
            # A value above the box (scripted policies only) switches a segment's automation off.
            level = jnp.where(jnp.asarray(actions["network"]) > 1.0, jnp.inf, level)
            auto = (state.scores > jnp.repeat(level, p.hosts_per_segment)) & ~iso
        else:
            auto = jnp.zeros_like(iso)
        chosen = (choice == P.LOCKDOWN) & ~iso
        lock = chosen | auto
        investigate = (choice == P.INVESTIGATE) & ~iso & ~lock
        catch, false_alarm = lock & comp, lock & ~comp
        found_now = investigate & comp
        c = state.counters
        detect_time = jnp.where((c.detect_time == 0) & jnp.any(catch | found_now), t, c.detect_time)
        iso = iso | lock
        hosts = hosts.replace(isolated=to_hosts(iso, p),
                              detected=hosts.detected | to_hosts(catch | found_now, p))

        draws = Draws(k_att, sp.rng_impl)
        was_exfiltrated = state.soc.attacker.exfiltrated
        hosts, att, _ = attacker.step(draws, hosts, state.soc.attacker, sp, t)
        soc = state.soc.replace(t=t, hosts=hosts, attacker=att)
        window = push_frame(k_tel, state.window, soc, sp, p.stealth_damping)
        scores = jnp.where(iso, 0.0, window_scores(p.detector, window))

        comp = flatten_hosts(hosts.compromised, sp)
        active = comp & ~iso
        n_active = jnp.sum(active)
        contained = c.contained | is_contained(n_active, jnp.sum(comp), att.begun, sp)
        exfil_now = att.exfiltrated & ~was_exfiltrated
        f = lambda x: jnp.sum(x).astype(jnp.float32)  # noqa: E731
        reward = (p.catch_reward * f(catch) - p.false_alarm_cost * f(false_alarm)
                  - p.investigate_cost * f(investigate) - p.damage_cost * f(active)
                  - p.downtime_cost * f(iso & ~comp) - p.exfil_cost * exfil_now.astype(jnp.float32))
        i32 = lambda x: jnp.sum(x).astype(jnp.int32)  # noqa: E731
        counters = Counters(catches=c.catches + i32(catch), false_alarms=c.false_alarms + i32(false_alarm),
                            investigations=c.investigations + i32(investigate),
                            auto_locks=c.auto_locks + i32(auto), detect_time=detect_time, contained=contained,
                            ret=c.ret + reward)
        cleared = jnp.where(investigate & ~comp, 0, jnp.minimum(state.cleared + 1, p.clear_memory + 1))
        state = HybridState(soc=soc, window=window, scores=scores, found=(state.found | found_now) & ~iso,
                            cleared=cleared, counters=counters)
        return state, reward, contained | att.exfiltrated

    def _finish(self, state, reward, terminated, p):
        truncated = state.soc.t >= p.max_steps
        done = terminated | truncated
        rewards = {a: reward for a in self.agents}
        dones = {a: done for a in self.agents}
        dones["__all__"] = done
        infos = {"terminated": terminated, "truncated": truncated,
                 "discount": 1.0 - terminated.astype(jnp.float32), "metrics": episode_metrics(state, p)}
        return rewards, dones, infos

    @functools.partial(jax.jit, static_argnums=(0,))
    def step_env(self, key: jax.Array, state: HybridState, actions, params=None):
        """One transition without auto-reset: `(obs, state, rewards, dones, infos)`."""
        p = self.params_or_default(params)
        state, reward, terminated = self._transition(key, state, actions, p)
        rewards, dones, infos = self._finish(state, reward, terminated, p)
        return self.get_obs(state, p), state, rewards, dones, infos

    def step(self, key: jax.Array, state: HybridState, actions, params=None):
        """One transition with auto-reset: `(obs, state, rewards, dones, infos)`.

        When `dones["__all__"]`, `obs`/`state` are the next episode's first ones and
        `infos["final_obs"]` the terminal ones (`final_world_state`/`world_state` too with
        `params.with_world_state`); `infos["metrics"]` describes the finished episode.
        """
        p = self.params_or_default(params)
        k_step, k_reset = jax.random.split(key)
        st, reward, terminated = self._transition(k_step, state, actions, p)
        rewards, dones, infos = self._finish(st, reward, terminated, p)
        done = dones["__all__"]
        fresh = self._initial(k_reset, p, st.soc.episode + 1)
        new = jax.tree.map(lambda r, s: jax.lax.select(done, r, s), fresh, st)
        obs_st, obs = self.get_obs(st, p), self.get_obs(new, p)
        infos["final_obs"] = obs_st
        if p.with_world_state:
            infos["final_world_state"] = world_state(obs_st, st, p, self.agents)
            infos["world_state"] = world_state(obs, new, p, self.agents)
        return obs, new, rewards, dones, infos


def world_state(obs: Obs, state: HybridState, p: P.HybridParams, agents) -> jax.Array:
    """`[world_state_size]`: every agent's observation, then per host compromised and stage / 4."""
    hosts = state.soc.hosts
    comp = flatten_hosts(hosts.compromised, p.soc).astype(jnp.float32)
    stage = flatten_hosts(jnp.where(hosts.compromised, hosts.stage, 0), p.soc).astype(jnp.float32) / 4.0
    return jnp.concatenate([obs[a] for a in agents] + [comp, stage])


# ---- scripted policies: `policy(key, obs, state, params) -> actions` (the scripted family's API) --
def no_defender(key, obs, state, params: P.HybridParams):
    """Nobody acts; the automatic response is off (a network action above the box, 2)."""
    del key, obs
    out = {f"segment_{i}": jnp.zeros((params.hosts_per_segment,), jnp.int32) for i in range(params.num_segments)}
    out["network"] = jnp.full((params.num_segments,), 2.0, jnp.float32)
    return out


def detector_alone(key, obs, state: HybridState, params: P.HybridParams):
    """The detector alone: lock down every host whose score is above the calibrated threshold
    (the network agent's threshold at `threshold_low`, 1 x the calibrated threshold by default);
    nobody investigates."""
    out = no_defender(key, obs, state, params)
    out["network"] = -jnp.ones((params.num_segments,), jnp.float32)
    return out


def random_policy(key, obs, state, params: P.HybridParams):
    """Uniform actions for every agent."""
    del obs, state
    k_seg, k_net = jax.random.split(key)
    seg = jax.random.randint(k_seg, (params.num_segments, params.hosts_per_segment), 0, len(P.ACTIONS))
    out = {f"segment_{i}": seg[i] for i in range(params.num_segments)}
    out["network"] = jax.random.uniform(k_net, (params.num_segments,), jnp.float32, -1.0, 1.0)
    return out
