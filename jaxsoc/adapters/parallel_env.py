"""A jaxsoc world as a PettingZoo `ParallelEnv`: one entry per role, NumPy in and out.

    from jaxsoc.adapters.parallel_env import SOCParallelEnv
    env = SOCParallelEnv("soc-v2", hosts_per_segment=8)
    obs, infos = env.reset(seed=0)                 # {role: float32 [obs_dim]}
    while env.agents:
        actions = {a: env.action_space(a).sample(infos[a].get("action_mask")) for a in env.agents}
        obs, rewards, terminations, truncations, infos = env.step(actions)

Any scenario of `jaxsoc.env.scenario_names()`: the SOC presets and scenario files (the defender
roles, and `red` under soc-v2-redblue), retail's warehouses, banking's routers, cage4-like's blue
agents, soc-hybrid's segment agents and network agent. Spaces are the env's, as Gymnasium's
(an int32 `Discrete` for the SOC alert triage, under soc-v2 the coordinator, banking's and
cage4-like's agents; an int32 `MultiDiscrete` for soc-hybrid's segment agents, one choice per
host; float32 `Box` otherwise; `spaces.to_gymnasium`). Discrete roles get `infos[role]["action_mask"]` (int8 `[n]`, from
`env.get_avail_actions`: in the SOC worlds every defender choice is legal, an action with nothing
to act on is a no-op; banking masks the channels that are down, cage4-like the host slots left
empty), MultiDiscrete roles a tuple of one such mask per entry (what
`gymnasium.spaces.MultiDiscrete.sample(mask=...)` takes), as PettingZoo recommends for masks
outside the observation; continuous roles have none. Every role gets the team reward, and
`infos[role]["reward_terms"]` splits it where the env does (the SOC worlds). All roles end
together: on the step where the world ends (`terminations`: in the SOC worlds containment or
exfiltration) or hits the time limit (`truncations`, at `max_steps`), `env.agents` empties, the
infos hold the episode's `metrics` and `reset` starts the next episode. A role left out of
`actions` idles (`env.idle_actions()`), except `red` under soc-v2-redblue, whose scripted campaign
then attacks as the JAX env's does (`env.optional_agents`); an action the env would misread (a choice that is no whole
number or out of range, NaN or inf, another shape than the space's) is refused before the episode
moves (`role_action`). `state()` is the world state a centralised critic reads.
"""
from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np
from gymnasium import spaces as gym_spaces
from pettingzoo import ParallelEnv

import jaxsoc.env as soc
from jaxsoc.adapters.joint import check_seed
from jaxsoc.adapters.spaces import to_gymnasium
from jaxsoc.env.spaces import Discrete, MultiDiscrete
from jaxsoc.names import suggest


def role_action(role: str, value, space: gym_spaces.Space) -> np.ndarray:
    """`value` as the env takes it for `role`, whose Gymnasium action space is `space`: int32 `[]`
    (`Discrete`) or `[len(nvec)]` (`MultiDiscrete`), float32 of the `Box`'s shape. A one-line
    ValueError naming the role, the value and the space for what the env would misread: a choice
    that is not a whole number (2.7 would be cast to choice 2; 2.0 and NumPy integers are fine) or
    out of range (the env would clamp or ignore it), NaN or inf in a Box (retail's stock would turn
    NaN, the SOC worlds would idle the role), a bool, a non-number, or another shape than the
    space's. A Box value outside its bounds is accepted: every Box role's env clips it to [-1, 1]."""
    a = np.asarray(value)
    described = " ".join(str(space).split())  # one line: numpy wraps a long nvec
    shape = tuple(space.shape)
    if a.dtype.kind not in "iuf":  # bool, str, object, complex: no number the env could read
        raise ValueError(f"{role}'s action {value!r} is not a number ({a.dtype}); its space is {described}")
    if a.shape != shape:
        raise ValueError(f"{role}'s action has shape {a.shape}; its space {described} takes shape {shape}")
    if isinstance(space, gym_spaces.Box):
        with np.errstate(over="ignore"):  # past float32's range: inf, refused just below
            f = a.astype(np.float32)
        bad = ~np.isfinite(f)
        if bad.any():
            i = tuple(np.argwhere(bad)[0].tolist())
            raise ValueError(f"{role}'s action has {a[i].item()}{_at(i)}; its space {described} takes "
                             f"finite float32 numbers only")
        return f
    n = np.full(shape, space.n) if isinstance(space, gym_spaces.Discrete) else np.asarray(space.nvec)
    with np.errstate(invalid="ignore"):  # NaN and inf compare False below: refused, not warned about
        bad = ~((a == np.floor(a)) & (a >= 0) & (a < n))
    if bad.any():
        i = tuple(np.argwhere(bad)[0].tolist())
        raise ValueError(f"{role}'s action {a[i].item()!r}{_at(i)} is not a choice of {described} "
                         f"(a whole number in [0, {n[i].item()}))")
    return a.astype(np.int32)


def _at(index: tuple) -> str:
    """Where in an action a refused value sits: nothing for a scalar, " at entry 3" in a vector."""
    return "" if not index else f" at entry {index[0] if len(index) == 1 else list(index)}"


class SOCParallelEnv(ParallelEnv):
    """A jaxsoc scenario (`jaxsoc.env.make(scenario, **overrides)`) as a PettingZoo ParallelEnv."""

    metadata = {"name": "jaxsoc_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(self, scenario: str = "soc-v2", render_mode: str | None = None, **overrides):
        if render_mode is not None:
            raise ValueError(f"{type(self).__name__} draws nothing (no render modes); eval/replay.py watches a policy")
        self.render_mode = None
        self.env, self.params = soc.make(scenario, **overrides)
        self.possible_agents = list(self.env.agents)
        self.agents: list[str] = []
        # One space object per role, returned every time (PettingZoo seeds and compares them).
        self._observation_spaces = {a: to_gymnasium(self.env.observation_space(a)) for a in self.possible_agents}
        self._action_spaces = {a: to_gymnasium(self.env.action_space(a)) for a in self.possible_agents}
        self.state_space = gym_spaces.Box(-np.inf, np.inf, (self.env.world_state_size,), np.float32)
        self._idle = jax.device_get(self.env.idle_actions(self.params))
        # Roles the env plays itself when they are left out (red's scripted campaign under
        # soc-v2-redblue): left out here too, not idled (an idle red would be no attacker at all).
        optional = getattr(self.env, "optional_agents", None)
        self._optional = set(optional(self.params)) if optional else set()
        self._key = self._state = None

    def observation_space(self, agent: str) -> gym_spaces.Space:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> gym_spaces.Space:
        return self._action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None):
        """`(observations, infos)` of a new episode; `seed` fixes it (and the ones after it)."""
        check_seed(seed, 2**32 - 1)  # a key holds 32 bits of the seed: 2**32 would replay seed 0
        if seed is not None:
            self._key = jax.random.PRNGKey(seed)
        elif self._key is None:  # never seeded: fresh entropy
            self._key = jax.random.PRNGKey(np.random.SeedSequence().entropy % 2**31)
        self._key, k = jax.random.split(self._key)
        obs, self._state = self.env.reset(k, self.params)
        self.agents = list(self.possible_agents)
        return self._observations(obs), self._infos({})

    def step(self, actions: dict):
        """Every live role's action -> observations, rewards, terminations, truncations, infos."""
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if not self.agents:
            raise RuntimeError("the episode has ended (env.agents is empty): call reset()")
        if not isinstance(actions, Mapping):
            raise ValueError(f"actions must be a dict {{role: action}}, got {type(actions).__name__}")
        unknown = [a for a in actions if a not in self.possible_agents]
        if unknown:  # as the JAX env's step refuses one (jaxsoc.env.spaces.check_action_dict)
            raise ValueError(f"unknown role {unknown[0]!r} in actions{suggest(str(unknown[0]), self.possible_agents)} "
                             f"(roles: {', '.join(self.possible_agents)})")
        # Every action checked before the key or the state moves: a refused step leaves the episode as it was.
        acts = {a: role_action(a, actions[a], self._action_spaces[a]) if a in actions else self._idle[a]
                for a in self.possible_agents if a in actions or a not in self._optional}
        self._key, k = jax.random.split(self._key)
        obs, self._state, rewards, _, infos = self.env.step_env(k, self._state, acts, self.params)
        obs, rewards, infos = jax.device_get((obs, rewards, infos))
        terminated = bool(infos["terminated"])
        truncated = bool(infos["truncated"]) and not terminated
        extra = {}
        if "reward_terms" in infos:  # the SOC worlds split their reward; the others do not
            extra["reward_terms"] = {k: float(v) for k, v in infos["reward_terms"].items()}
        if terminated or truncated:
            extra["metrics"] = {k: float(v) for k, v in infos["metrics"].items()}
        out = (self._observations(obs), {a: float(rewards[a]) for a in self.agents},
               {a: terminated for a in self.agents}, {a: truncated for a in self.agents}, self._infos(extra))
        if terminated or truncated:
            self.agents = []
        return out

    def state(self) -> np.ndarray:
        """The world state `[world_state_size]` (every role's observation, then ground truth)."""
        if self._state is None:
            raise RuntimeError("call reset() before state()")
        return np.asarray(self.env.get_world_state(self._state, self.params), np.float32)

    def close(self) -> None:
        pass

    def _observations(self, obs) -> dict:
        return {a: np.asarray(obs[a], np.float32) for a in self.agents}

    def _infos(self, extra: dict) -> dict:
        """Per role: `extra`, and the action mask of discrete and MultiDiscrete roles."""
        masks = jax.device_get(self.env.get_avail_actions(self._state, self.params))
        out = {}
        for a in self.agents:
            space = self.env.action_space(a)
            if isinstance(space, Discrete):
                out[a] = {**extra, "action_mask": masks[a].astype(np.int8)}
            elif isinstance(space, MultiDiscrete):  # the env's [entries, choices]: one row per entry
                rows = np.asarray(masks[a]).astype(np.int8)
                out[a] = {**extra, "action_mask": tuple(rows[i, :n] for i, n in enumerate(space.nvec))}
            else:
                out[a] = dict(extra)
        return out
