"""The team as one agent, as Single-DRL sees it: one observation, one flat action.

The observation is every role's observation concatenated in `env.agents` order (float32
`[sum of obs sizes]`). The action is a float32 vector in [-1, 1]: each continuous role's entries
as they are, and for each discrete role (the alert triage; the coordinator under soc-v2) one score
per choice, the highest chosen (ties go to the lowest index, so the all-zero action picks choice 0
as the `constant` policy does). Everything here is NumPy and works on any leading batch shape.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from jaxsoc.argtypes import is_integer
from jaxsoc.env.spaces import Discrete


class JointView:
    """The joint observation and action of `env` (module docstring).

    Attributes:
      agents: the roles in order; obs_slices / action_slices: `{role: slice}` into the joint vectors.
      observation_size, action_size: the joint vectors' lengths.
    """

    def __init__(self, env):
        self.agents = list(env.agents)
        self.discrete = {a: isinstance(env.action_space(a), Discrete) for a in self.agents}
        self.obs_slices, self.action_slices = {}, {}
        o = k = 0
        for a in self.agents:  # the four roles, not envs
            n_obs = int(env.observation_space(a).shape[0])
            space = env.action_space(a)
            n_act = int(space.n) if self.discrete[a] else int(space.shape[0])
            self.obs_slices[a], self.action_slices[a] = slice(o, o + n_obs), slice(k, k + n_act)
            o, k = o + n_obs, k + n_act
        self.observation_size, self.action_size = o, k

    def observation(self, obs: Dict[str, np.ndarray]) -> np.ndarray:
        """The joint observation `[..., observation_size]` of per-role observations `{role: [..., n]}`."""
        return np.concatenate([np.asarray(obs[a], dtype=np.float32) for a in self.agents], axis=-1)

    def actions(self, flat, batch: tuple | None = None) -> Dict[str, np.ndarray]:
        """Per-role env actions from joint actions `[..., action_size]` (`[*batch, action_size]`
        when `batch` is given): continuous roles' entries (float32), discrete roles'
        highest-scoring choice (int32)."""
        flat = np.asarray(flat, dtype=np.float32)
        if batch is not None and flat.shape != (*batch, self.action_size):
            # Checked here: the env's vmapped step would fail deep in JAX, or broadcast silently.
            raise ValueError(f"actions must have shape {(*batch, self.action_size)}, got {flat.shape}")
        if flat.ndim == 0 or flat.shape[-1] != self.action_size:
            raise ValueError(f"a joint action has {self.action_size} entries, got shape {flat.shape}")
        return {a: (np.argmax(flat[..., s], axis=-1).astype(np.int32) if self.discrete[a] else flat[..., s])
                for a, s in self.action_slices.items()}

    def spaces(self):
        """`(observation_space, action_space)` of one env, as Gymnasium Boxes."""
        from gymnasium import spaces

        return (spaces.Box(-np.inf, np.inf, (self.observation_size,), np.float32),
                spaces.Box(-1.0, 1.0, (self.action_size,), np.float32))


def check_seed(seed, largest: int | None = None) -> None:
    """ValueError unless `seed` is None or an integer in [0, `largest`] (numpy's too; not a bool):
    a float or a string would fail deep in JAX or NumPy, and past `largest` a key would drop bits."""
    if seed is None:
        return
    if not is_integer(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if largest is not None and not 0 <= seed <= largest:
        raise ValueError(f"seed must be in [0, {largest}], got {seed}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


def draw_key(np_random: np.random.Generator):
    """A JAX key drawn from a Gymnasium env's `np_random`, so that `reset(seed=s)` fixes the
    episode and an unseeded reset continues the seeded stream."""
    import jax

    return jax.random.PRNGKey(int(np_random.integers(0, 2**31 - 1)))


def step_info(infos: dict, done) -> dict:
    """A Gymnasium info dict from the env's `infos` (NumPy, any batch shape): the step's
    `reward_terms`, and the ended episode's `metrics` where `done` (a bool or bool array)."""
    info = {"reward_terms": {k: np.asarray(v) for k, v in infos["reward_terms"].items()}}
    if np.any(done):
        info["metrics"] = {k: np.asarray(v) for k, v in infos["metrics"].items()}
    return info
