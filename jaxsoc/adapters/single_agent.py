"""A jaxsoc world as one Gymnasium `Env`: the whole team seen as a single agent (`joint.JointView`).

    import gymnasium, jaxsoc.adapters.single_agent           # registers "jaxsoc/SOC-v0"
    env = gymnasium.make("jaxsoc/SOC-v0", scenario="soc-v2", hosts_per_segment=8)
    obs, info = env.reset(seed=0)                             # float32 [observation_size]
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

Any scenario of `jaxsoc.env.scenario_names()` (the SOC presets and scenario files, retail,
banking, cage4-like, soc-hybrid). One env per instance, stepped by the env's own jitted `step_env`
(no auto-reset: call `reset` after `terminated or truncated`, as Gymnasium expects).
`terminated`: the world's own end (in the SOC worlds containment or exfiltration; retail, banking
and cage4-like never terminate); `truncated`: the time limit (`max_steps`) without it. The reward
is the team reward. `info["reward_terms"]` splits it where the env does (the SOC worlds);
`info["metrics"]` holds the episode's metrics on its last step. Nothing is drawn (`render_modes`
is empty): eval/replay.py watches a policy.
"""
from __future__ import annotations

import gymnasium
import jax
import numpy as np

import jaxsoc.env as soc
from jaxsoc.adapters.joint import JointView, check_seed, draw_key, step_info

ENV_ID = "jaxsoc/SOC-v0"


class SOCJointEnv(gymnasium.Env):
    """A jaxsoc scenario (`jaxsoc.env.make(scenario, **overrides)`) as a single-agent Gymnasium Env."""

    metadata = {"render_modes": []}

    def __init__(self, scenario: str = "soc-v2", render_mode: str | None = None, **overrides):
        if render_mode is not None:
            raise ValueError(f"{type(self).__name__} draws nothing (no render modes); eval/replay.py watches a policy")
        self.env, self.params = soc.make(scenario, **overrides)
        self.view = JointView(self.env)
        self.observation_space, self.action_space = self.view.spaces()
        self._key = self._state = None
        self._ended = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        check_seed(seed)  # Gymnasium seeds from every bit of it
        super().reset(seed=seed)
        self._key, k = jax.random.split(draw_key(self.np_random))
        obs, self._state = self.env.reset(k, self.params)
        self._ended = False
        return self.view.observation(jax.device_get(obs)), {}

    def step(self, action):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if self._ended:  # step_env does not reset: the ended episode would be charged again
            raise RuntimeError("the episode has ended (terminated or truncated): call reset()")
        acts = self.view.actions(action, batch=())
        self._key, k = jax.random.split(self._key)
        obs, self._state, rewards, _, infos = self.env.step_env(k, self._state, acts, self.params)
        obs, reward, infos = jax.device_get((obs, rewards[self.env.agents[0]], infos))
        terminated = bool(infos["terminated"])
        truncated = bool(infos["truncated"]) and not terminated
        self._ended = terminated or truncated
        info = {name: {k: float(v) for k, v in part.items()}
                for name, part in step_info(infos, terminated or truncated).items()}
        return self.view.observation(obs), float(reward), terminated, truncated, info


if ENV_ID not in gymnasium.registry:
    gymnasium.register(ENV_ID, entry_point=f"{__name__}:SOCJointEnv",
                       vector_entry_point="jaxsoc.adapters.vector_env:SOCVectorEnv")
