"""`Cage4Env`: the CAGE-4-like scenario behind the JaxMARL `MultiAgentEnv` surface of `SOCEnv`.

Step order: blue actions start/tick/execute (so a Block or Restore that finishes this step acts
before red moves, like CAGE-4's priority for ControlTraffic); red agents choose/tick/execute;
green users act; reward; event bits and messages are stored for the observations; t += 1. An
episode is `max_steps` steps and ends by truncation only. `step` auto-resets, keeping the
terminal observation in `infos["final_obs"]`.

Actions: `{blue_agent_i: int32 []}`, plus optionally `"messages"`: `[5, 8]` bool, the bits each
agent sends this step (read by the others in their next observation; zeros when absent).

Randomness: one `Draws` per step (one threefry pair, then counter hashes): 12 + 288 words for the
transition and 19 for the reset that auto-reset computes on every step.
"""
from __future__ import annotations

import functools
from typing import Dict, Optional

import jax
import jax.numpy as jnp

from jaxsoc.env.cage4 import baselines, blue, green, observe, red
from jaxsoc.env.cage4 import params as P
from jaxsoc.env.cage4.generator import initial_state
from jaxsoc.env.cage4.reward import phase_of, team_reward
from jaxsoc.env.cage4.state import Cage4State
from jaxsoc.env.rng import Draws
from jaxsoc.env.spaces import Box, Discrete, check_action_dict
from jaxsoc.env.surface import WorldEnv

Obs = Dict[str, jax.Array]
METRIC_KEYS = ("return", "length", "red_hosts_phase1", "red_hosts_phase2", "red_hosts_phase3",
               "impact_attempts", "impacts", "true_alerts", "false_alerts", "local_fails", "access_fails",
               "phishing", "exploits", "restores", "invalid")
_DEFENDED = P.HOST_SUBNET != P.CONTRACTOR
# The optional "messages" action: each blue agent's 8 bits (0/1), stored as bool.
MESSAGES_SPACE = Box(0.0, 1.0, (len(P.BLUE_AGENTS), 8))


def episode_metrics(state: Cage4State, p: P.Cage4Params) -> Dict[str, jax.Array]:
    """`{name: f32 []}` for the episode so far (METRIC_KEYS); `red_hosts_phaseK` is the mean number
    of hosts in defended zones where red holds a session, over phase K's steps."""
    c = state.counters
    lengths = jnp.asarray(p.phase_lengths(), jnp.float32)
    red_hosts = c.red_host_steps / lengths
    return {"return": c.ret, "length": state.t.astype(jnp.float32),
            "red_hosts_phase1": red_hosts[0], "red_hosts_phase2": red_hosts[1], "red_hosts_phase3": red_hosts[2],
            "impact_attempts": c.impact_attempts, "impacts": c.impacts, "true_alerts": c.true_alerts,
            "false_alerts": c.false_alerts, "local_fails": c.local_fails, "access_fails": c.access_fails,
            "phishing": c.phishing, "exploits": c.exploits, "restores": c.restores, "invalid": c.invalid}


class Cage4Env(WorldEnv):
    """The CAGE-4-like world. Build it with `jaxsoc.env.cage4.make()`. Pure methods; `params=None`
    means `self.default_params`; shapes are for one env (vmap for many)."""

    def __init__(self, params: P.Cage4Params):
        self.default_params = params
        self.agents = list(P.BLUE_AGENTS)
        self.num_agents = len(self.agents)
        self.world_state_observers = tuple(P.BLUE_AGENTS)  # `observe.world_state`: blue's views, then red's sessions
        width = blue.MAX_ACTIONS if params.pad_spaces else None
        dims = [max(observe.OBS_DIMS)] * 5 if params.pad_spaces else observe.OBS_DIMS
        self.action_spaces = {a: Discrete(int(width or blue.NUM_ACTIONS[i])) for i, a in enumerate(self.agents)}
        self.observation_spaces = {a: Box(0.0, 2.0, (d,)) for a, d in zip(self.agents, dims)}
        self.world_state_size = sum(dims) + P.NUM_HOSTS
        # The scripted family's policies (`policy(key, obs, state, params) -> actions`, as
        # `--algo random` runs them): the baselines, which act on the action masks. Monitoring
        # everywhere is CAGE-4's "Sleep" blue, a team that never defends.
        self.policies = {"random": self._on_masks(baselines.random_masked),
                         "no-defender": self._on_masks(baselines.monitor)}

    def _on_masks(self, baseline):
        return lambda key, obs, state, params=None: baseline(key, obs, self.get_avail_actions(state, params))

    # ---- JaxMARL surface: jaxsoc.env.surface.WorldEnv ----------------------------------------
    def action_labels(self, agent: str):
        """Names of the agent's actions, in index order."""
        i = self.agents.index(agent)
        return [blue.action_label(i, k) for k in range(self.action_spaces[agent].n)]

    def random_words_per_step(self, params: Optional[P.Cage4Params] = None) -> Dict[str, int]:
        """32-bit random words one auto-resetting `step` of one env draws, by purpose (trace-time count)."""
        p = self.params_or_default(params)
        counts = {}

        def count(k):
            d = Draws(k, p.rng_impl)
            _, s = self.reset(k, p)
            self._transition(d, s, self.idle_actions(p), p)
            counts["transition"] = d.offset
            start = d.offset
            initial_state(d, p)
            counts["reset"] = d.offset - start
            return 0

        jax.eval_shape(count, jax.random.key(0))
        return counts

    # ---- pure functions ----------------------------------------------------------------------
    def reset(self, key: jax.Array, params: Optional[P.Cage4Params] = None):
        """`key -> (obs {agent: [obs_dim]}, state)`; draws a new network."""
        p = self.params_or_default(params)
        state = initial_state(Draws(key, p.rng_impl), p)
        return observe.get_obs(state, p), state

    def get_obs(self, state: Cage4State, params=None) -> Obs:
        return observe.get_obs(state, self.params_or_default(params))

    def get_world_state(self, state: Cage4State, params=None) -> jax.Array:
        """`[world_state_size]`: every blue observation, then where red holds sessions."""
        return observe.world_state(self.get_obs(state, params), state)

    def get_avail_actions(self, state: Cage4State, params=None) -> Dict[str, jax.Array]:
        """`{agent: [n] bool}`: host actions need a host in the slot this episode."""
        p = self.params_or_default(params)
        if p.pad_spaces:
            return dict(zip(self.agents, blue.masks(state.present, pad=True)))
        return dict(zip(self.agents, blue.masks(state.present)))

    def idle_actions(self, params=None) -> Dict[str, jax.Array]:
        """Monitor for every agent (monitoring also runs by itself every step)."""
        return {a: jnp.asarray(blue.MONITOR_ACTION[i], jnp.int32) for i, a in enumerate(self.agents)}

    def _transition(self, draws: Draws, state: Cage4State, actions, p: P.Cage4Params):
        """One step on `draws`: `(state, reward [], infos-so-far)`, no observation, no reset."""
        # step and step_env both come here; the check runs at trace time and costs nothing per step.
        check_action_dict(actions, self.agents, {**self.action_spaces, "messages": MESSAGES_SPACE},
                          optional=["messages"])
        phase = phase_of(state.t, p)
        acts = jnp.stack([jnp.asarray(actions[a]) for a in self.agents])
        b = blue.schedule(acts, state.blue_action, state.blue_left, state.present, p)
        state, analysed = blue.apply(state.replace(blue_action=b.action, blue_left=b.left), b)
        before = state.red
        u_red = draws.uniform16(P.NUM_RED, 4)
        u_green = draws.uniform16(P.NUM_HOSTS, 4)
        state, rev = red.step(u_red, state, p)
        state, gev = green.step(u_green, state, phase, p)
        # Each zone agent's exploits come from the subnet of its latest new session.
        gained = (before < P.USER) & (state.red >= P.USER)
        # Per subnet first (zones are whole subnets): a [6, H] compare here made XLA:CPU redo red's
        # whole per-host update once per agent.
        gained_sub = jnp.any(gained.reshape(P.NUM_SUBNETS, P.SLOTS), axis=1)                   # [9]
        src = jnp.max(jnp.where(gained_sub[None] & P.RED_ZONE, jnp.arange(P.NUM_SUBNETS)[None], -1), axis=1)
        reward = team_reward(phase, gev.local_fail, gev.access_fail, rev.impacts, b.cost)
        proc = rev.proc | gev.proc_fp | analysed
        net = rev.net | gev.net_fp
        f = lambda x: jnp.sum(x).astype(jnp.float32)  # noqa: E731
        c = state.counters
        holding = f((state.red >= P.USER) & state.present & _DEFENDED)
        counters = c.replace(
            ret=c.ret + reward,
            red_host_steps=c.red_host_steps + jnp.where(jnp.arange(3) == phase, holding, 0.0),
            impact_attempts=c.impact_attempts + rev.impact_attempts, impacts=c.impacts + f(rev.impacts),
            true_alerts=c.true_alerts + f(rev.proc) + f(rev.net),
            false_alerts=c.false_alerts + f(gev.proc_fp & ~rev.proc) + f(gev.net_fp & ~rev.net),
            local_fails=c.local_fails + f(gev.local_fail), access_fails=c.access_fails + f(gev.access_fail),
            phishing=c.phishing + f(gev.phished & (before < P.USER)), exploits=c.exploits + rev.exploits,
            restores=c.restores + b.restores, invalid=c.invalid + b.invalid)
        messages = actions.get("messages", jnp.zeros(MESSAGES_SPACE.shape, bool))
        state = state.replace(t=state.t + 1, red_src=jnp.where(src >= 0, src, state.red_src), proc=proc, net=net,
                              messages=jnp.asarray(messages).astype(bool), counters=counters)
        return state, reward

    def _finish(self, state, reward, p):
        truncated = state.t >= p.max_steps
        rewards = {a: reward for a in self.agents}
        dones = {a: truncated for a in self.agents}
        dones["__all__"] = truncated
        infos = {"terminated": jnp.zeros((), bool), "truncated": truncated,
                 "discount": jnp.ones((), jnp.float32), "metrics": episode_metrics(state, p),
                 "phase": phase_of(state.t - 1, p)}
        return rewards, dones, infos

    @functools.partial(jax.jit, static_argnums=(0,))
    def step_env(self, key: jax.Array, state: Cage4State, actions, params=None):
        """One transition without auto-reset: `(obs, state, rewards, dones, infos)`."""
        p = self.params_or_default(params)
        state, reward = self._transition(Draws(key, p.rng_impl), state, actions, p)
        rewards, dones, infos = self._finish(state, reward, p)
        return observe.get_obs(state, p), state, rewards, dones, infos

    def step(self, key: jax.Array, state: Cage4State, actions, params=None):
        """One transition with auto-reset: `(obs, state, rewards, dones, infos)`.

        When `dones["__all__"]`, `obs`/`state` are the next episode's first ones and
        `infos["final_obs"]` (and `["final_world_state"]`) the terminal ones; `infos["metrics"]`
        describes the finished episode. The reset draws come from the same stream as the step.
        """
        p = self.params_or_default(params)
        draws = Draws(key, p.rng_impl)
        st, reward = self._transition(draws, state, actions, p)
        rewards, dones, infos = self._finish(st, reward, p)
        done = dones["__all__"]
        fresh = initial_state(draws, p)
        obs_st = observe.get_obs(st, p)
        state = jax.tree.map(lambda r, s: jax.lax.select(done, r, s), fresh, st)
        obs = observe.get_obs(state, p)
        infos["final_obs"] = obs_st
        if p.with_world_state:
            infos["final_world_state"] = observe.world_state(obs_st, st)
            infos["world_state"] = observe.world_state(obs, state)
        return obs, state, rewards, dones, infos
