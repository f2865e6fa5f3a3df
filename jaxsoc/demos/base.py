"""What the demo envs share: the SOC env's step contract (jaxsoc/env/core.py) around a demo's
own transition, and `make` with checked overrides.

A demo env is a `DemoEnv` subclass. It defines its world as pure functions of a state pytree and
static params (a flax struct whose fields are all static, so params are hashable and jit-free):

    initial_state(key, params) -> state          a fresh episode (state.t == 0)
    transition(key, state, actions, params)      one step: (state, team reward f32[], terminated bool[])
    get_obs(state, params)                       {agent: f32[obs_dim]}
    get_world_state(state, params)               f32[world_state_size], for centralised critics
    get_avail_actions(state, params)             {agent: bool[n]} (all True for continuous agents)
    episode_metrics(state, params)               {name: f32[]}: the episode so far ("return", "length", ...)

and `DemoEnv.step` adds what the learners read, exactly as the SOC env does: time-limit truncation
at `params.max_steps`, auto-reset (the returned obs/state are the next episode's first when an
episode ends), `infos` with "terminated", "truncated", "discount" (0 only on termination: a
time-limit cut bootstraps), "final_obs" (the obs the step reached, before any reset), "metrics",
and with `params.with_world_state` "world_state"/"final_world_state". Every agent gets the team
reward; `dones["__all__"]` ends the episode for all. `DemoEnv.step_env` is the same step without
the auto-reset and `DemoEnv.idle_actions` each agent's lowest action, as the SOC env has them (the
PettingZoo and Gymnasium adapters of jaxsoc/adapters step and idle through them).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Dict, Tuple

import jax
import jax.numpy as jnp

from jaxsoc.env.params import check_fields
from jaxsoc.env.spaces import Discrete, check_action_dict
from jaxsoc.env.surface import WorldEnv
from jaxsoc.names import suggest


class DemoEnv(WorldEnv):
    """Base class (module docstring). Subclasses set `params_cls`, `name` (the scenario's),
    `policies` (the scripted ones, `{name: policy(key, obs, state, params) -> actions}`), and
    `__init__`'s spaces via `_spaces(params)` -> `(agents, action_spaces, observation_spaces,
    world_state_size)`. The JaxMARL surface (spaces per agent, `params_or_default`) and the
    identity by params, which lets a second `make` of a world reuse the first one's compiled
    programs, are `WorldEnv`'s."""

    params_cls = None
    policies: Dict = {}

    def __init__(self, params):
        params.validate()
        self.default_params = params
        self.agents, self.action_spaces, self.observation_spaces, self.world_state_size = self._spaces(params)
        self.num_agents = len(self.agents)

    def _spaces(self, params):
        raise NotImplementedError

    def reset(self, key: jax.Array, params=None):
        """`(obs {agent: [obs_dim]}, state)` of a fresh episode."""
        p = self.params_or_default(params)
        state = self.initial_state(key, p)
        return self.get_obs(state, p), state

    def idle_actions(self, params=None) -> Dict[str, jax.Array]:
        """Each agent's lowest action (`Discrete`: 0, int32 `[]`; `Box`: its lower bound, float32,
        its shape): in retail no order, in banking the internal channel, the one always up (a
        transaction cannot stay unrouted). What a role left out does (the SOC env's
        `idle_actions`); a demo with another "nothing" overrides this."""
        out = {}
        for a in self.agents:
            space = self.action_spaces[a]
            out[a] = (jnp.zeros((), jnp.int32) if isinstance(space, Discrete)
                      else jnp.full(tuple(space.shape), space.low, jnp.float32))
        return out

    def _advance(self, key, state, actions, p):
        """One transition, no reset: `(stepped state, its obs, rewards, dones, infos)`; the part of
        `step` that `step_env` is."""
        check_action_dict(actions, self.agents, self.action_spaces)  # at trace time: free under jit
        stepped, reward, terminated = self.transition(key, state, actions, p)
        truncated = (stepped.t >= p.max_steps) & ~terminated
        done = terminated | truncated
        infos = {"terminated": terminated, "truncated": truncated,
                 "discount": 1.0 - terminated.astype(jnp.float32), "metrics": self.episode_metrics(stepped, p)}
        rewards = {a: reward for a in self.agents}
        dones = {a: done for a in self.agents} | {"__all__": done}
        return stepped, self.get_obs(stepped, p), rewards, dones, infos

    @functools.partial(jax.jit, static_argnums=(0,))
    def step_env(self, key: jax.Array, state, actions: Dict[str, jax.Array], params=None):
        """One step without auto-reset: `(obs, state, rewards, dones, infos)`, the state and obs
        the step reached (an ended episode stays ended: call `reset`); `infos` as `step`'s without
        "final_obs" and the world states. `key` drives the transition (as `step`'s first split)."""
        stepped, obs, rewards, dones, infos = self._advance(key, state, actions, self.params_or_default(params))
        return obs, stepped, rewards, dones, infos

    def step(self, key: jax.Array, state, actions: Dict[str, jax.Array], params=None):
        """One auto-resetting step of ONE env: `(obs, state, rewards, dones, infos)` (module docstring).
        `actions` holds one action per agent, shaped as its space says (else a one-line ValueError)."""
        p = self.params_or_default(params)
        k_step, k_reset = jax.random.split(key)
        stepped, final_obs, rewards, dones, infos = self._advance(k_step, state, actions, p)
        done = dones["__all__"]
        reset_obs, fresh = self.reset(k_reset, p)
        new_state = jax.tree.map(lambda r, s: jnp.where(done, r, s), fresh, stepped)
        obs = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_obs, final_obs)
        infos = {**infos, "final_obs": final_obs}
        if p.with_world_state:
            infos["world_state"] = self.get_world_state(new_state, p)
            infos["final_world_state"] = self.get_world_state(stepped, p)
        return obs, new_state, rewards, dones, infos


def make_demo(env_cls, overrides: dict) -> Tuple[DemoEnv, object]:
    """`(env, params)` of `env_cls` with `overrides` on its default params; unknown keys and bad
    values raise a one-line ValueError before anything is traced. Lists (YAML, --set) become tuples."""
    fields = {f.name for f in dataclasses.fields(env_cls.params_cls)}
    for key in overrides:
        if key not in fields:
            raise ValueError(f"unknown parameter {key!r} for {env_cls.__name__}{suggest(key, sorted(fields))}. "
                             f"Known: {', '.join(sorted(fields))}.")
    check_fields(env_cls.params_cls, overrides)  # types first: "0.5" is no number, "yes" no switch
    coerced = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    params = env_cls.params_cls(**coerced)
    return env_cls(params), params


def check(condition: bool, message: str) -> None:
    """A params check: ValueError(message) unless `condition`."""
    if not condition:
        raise ValueError(message)
