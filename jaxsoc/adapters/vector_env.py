"""The joint view (`joint.JointView`) of `num_envs` envs of a jaxsoc scenario as one Gymnasium `VectorEnv`.

    from jaxsoc.adapters.vector_env import SOCVectorEnv
    envs = SOCVectorEnv(1024, scenario="soc-v2")              # or gymnasium.make_vec("jaxsoc/SOC-v0",
    obs, info = envs.reset(seed=0)                             #   num_envs=1024, vectorization_mode=
    obs, rewards, terminated, truncated, info = envs.step(     #   "vector_entry_point")
        envs.action_space.sample())                            # [1024, action_size] in, [1024, ...] out

Every env steps in one jitted, vmapped call of the env's own `step`, which resets an env whose
episode ended in the same call: `metadata["autoreset_mode"]` is `AutoresetMode.SAME_STEP`. So,
as Gymnasium's same-step convention has it, where `terminated | truncated` the returned
observation is the next episode's first one, `info["final_obs"][i]` is the terminal observation
(an object array, None elsewhere; mask `info["_final_obs"]`) and `info["final_info"]["metrics"]`
holds the ended episode's metrics (mask `info["_final_info"]`). `info["reward_terms"]` splits
every env's team reward, every step, where the env splits it (the SOC worlds). Any scenario of
`jaxsoc.env.scenario_names()` works, as for `single_agent.SOCJointEnv`.
"""
from __future__ import annotations

import functools

import jax
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from jaxsoc.argtypes import is_integer
from jaxsoc.adapters import single_agent  # noqa: F401  (registers "jaxsoc/SOC-v0", this env its vector entry point)
import jaxsoc.env as soc
from jaxsoc.adapters.joint import JointView, check_seed, draw_key, step_info


@functools.lru_cache(maxsize=8)
def _programs(env):
    """`(reset, step)` of `env` over a batch of envs, jitted once per world (every env hashes and
    compares by its class and params, so two `jaxsoc.env.make` of one world are one key here) and
    shared by every vector env of it."""
    reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    return reset, step


class SOCVectorEnv(VectorEnv):
    """`num_envs` envs of a jaxsoc scenario (`jaxsoc.env.make(scenario, **overrides)`), batched."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int, scenario: str = "soc-v2", render_mode: str | None = None, **overrides):
        # 2.7 would build 2 envs; a bool would build one.
        if not is_integer(num_envs):
            raise ValueError(f"num_envs must be an integer, got {num_envs!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be positive, got {num_envs}")
        if render_mode is not None:  # gymnasium.make_vec passes it
            raise ValueError(f"{type(self).__name__} draws nothing (no render modes); eval/replay.py watches a policy")
        self.render_mode = None
        self.num_envs = int(num_envs)
        self.env, self.params = soc.make(scenario, **overrides)
        self.view = JointView(self.env)
        self.single_observation_space, self.single_action_space = self.view.spaces()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._reset, self._step = _programs(self.env)
        self._key = self._state = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """`(observations [num_envs, observation_size], {})`; `seed` fixes every env's episode."""
        check_seed(seed)  # Gymnasium seeds from every bit of it
        super().reset(seed=seed)
        self._key, k = jax.random.split(draw_key(self.np_random))
        obs, self._state = self._reset(jax.random.split(k, self.num_envs), self.params)
        return self.view.observation(jax.device_get(obs)), {}

    def step(self, actions):
        """Joint actions `[num_envs, action_size]` -> observations, rewards `[num_envs]` float32,
        terminated and truncated `[num_envs]` bool, and the info (module docstring)."""
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        acts = self.view.actions(actions, batch=(self.num_envs,))
        self._key, k = jax.random.split(self._key)
        obs, self._state, rewards, dones, infos = self._step(
            jax.random.split(k, self.num_envs), self._state, acts, self.params)
        obs, reward, infos = jax.device_get((obs, rewards[self.env.agents[0]], infos))
        terminated = np.asarray(infos["terminated"], bool)
        truncated = np.asarray(infos["truncated"], bool) & ~terminated
        done = terminated | truncated
        info = step_info(infos, False)
        if done.any():
            final = self.view.observation(infos["final_obs"])
            info["final_obs"] = np.array([final[i] if d else None for i, d in enumerate(done)], dtype=object)
            info["_final_obs"] = done
            info["final_info"] = {"metrics": {k: np.asarray(v) for k, v in infos["metrics"].items()},
                                  "_metrics": done}
            info["_final_info"] = done
        return self.view.observation(obs), np.asarray(reward, np.float32), terminated, truncated, info
