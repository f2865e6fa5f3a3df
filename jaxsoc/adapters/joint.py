"""The team as one agent, as Single-DRL sees it: one observation, one flat action.

The observation is every role's observation concatenated in `env.agents` order (float32
`[sum of obs sizes]`), bounded entry by entry as the role's own observation space is (cage4-like's
in [0, 2], soc-hybrid's in [0, score_clip]; the SOC worlds' and the demos' unbounded). The action
is a float32 vector in [-1, 1]: each continuous role's entries as they are, for each discrete
role (the alert triage; the coordinator under soc-v2; every agent of banking and cage4-like) one
score per choice, the highest chosen (ties go to the lowest index, so the all-zero action picks
choice 0 as the `constant` policy does), and for each MultiDiscrete role (soc-hybrid's segment
agents: one choice per host) one score per choice of each entry, each entry's highest chosen.
NaN and inf are refused (a NaN score would win its argmax); values outside [-1, 1] pass (scores
only rank, and the envs clip their continuous actions). Any scenario of `jaxsoc.env.make` has
such roles only. Everything here is NumPy and works on any leading batch shape.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from jaxsoc.argtypes import is_integer
from jaxsoc.env.spaces import Box, Discrete, MultiDiscrete


class JointView:
    """The joint observation and action of `env` (module docstring).

    Attributes:
      agents: the roles in order; obs_slices / action_slices: `{role: slice}` into the joint vectors.
      discrete: `{role: bool}`, a `Discrete` role; nvec: `{role: choices per entry}` of the
      MultiDiscrete roles.
      observation_size, action_size: the joint vectors' lengths.
      observation_low, observation_high: float32 `[observation_size]`, each role's observation
      bounds (its space's `low`/`high`) over its slice; +-inf where the role's box is unbounded.

    A ValueError at construction for a role whose action is none of those (a 1-D Box, Discrete,
    MultiDiscrete) or whose observation is not a vector: no flat vector could hold it.
    """

    def __init__(self, env):
        self.agents = list(env.agents)
        self.discrete = {a: isinstance(env.action_space(a), Discrete) for a in self.agents}
        self.nvec = {a: tuple(int(n) for n in env.action_space(a).nvec) for a in self.agents
                     if isinstance(env.action_space(a), MultiDiscrete)}
        self.obs_slices, self.action_slices = {}, {}
        o = k = 0
        lows, highs = [], []
        for a in self.agents:  # the roles, not envs
            space = env.action_space(a)
            vector_box = isinstance(space, Box) and len(space.shape) == 1
            if not (vector_box or isinstance(space, (Discrete, MultiDiscrete))):
                raise ValueError(f"the joint view needs Discrete, MultiDiscrete or 1-D Box actions; "
                                 f"{a!r} has {space!r}")
            obs_space = env.observation_space(a)
            if len(obs_space.shape) != 1:
                raise ValueError(f"the joint view needs vector observations; {a!r} has shape "
                                 f"{tuple(obs_space.shape)}")
            n_obs = int(obs_space.shape[0])
            lows.append(np.broadcast_to(np.float32(obs_space.low), (n_obs,)))
            highs.append(np.broadcast_to(np.float32(obs_space.high), (n_obs,)))
            n_act = (int(space.n) if self.discrete[a] else sum(self.nvec[a]) if a in self.nvec
                     else int(space.shape[0]))
            self.obs_slices[a], self.action_slices[a] = slice(o, o + n_obs), slice(k, k + n_act)
            o, k = o + n_obs, k + n_act
        self.observation_size, self.action_size = o, k
        self.observation_low, self.observation_high = np.concatenate(lows), np.concatenate(highs)

    def observation(self, obs: Dict[str, np.ndarray]) -> np.ndarray:
        """The joint observation `[..., observation_size]` of per-role observations `{role: [..., n]}`."""
        return np.concatenate([np.asarray(obs[a], dtype=np.float32) for a in self.agents], axis=-1)

    def actions(self, flat, batch: tuple | None = None) -> Dict[str, np.ndarray]:
        """Per-role env actions from joint actions `[..., action_size]` (`[*batch, action_size]`
        when `batch` is given): continuous roles' entries (float32), discrete roles'
        highest-scoring choice (int32 `[...]`), MultiDiscrete roles' highest-scoring choice of
        each entry (int32 `[..., len(nvec)]`). A one-line ValueError for another shape, or for NaN
        or inf anywhere (as float32), naming the env, the entry and its role: a NaN score would win
        its argmax, and a NaN continuous entry idles the SOC worlds' role or turns retail's stock
        NaN for good. Values outside [-1, 1] are accepted: scores only rank, and every env clips
        its continuous actions to [-1, 1]."""
        with np.errstate(over="ignore"):  # past float32's range: inf, refused below
            flat = np.asarray(flat, dtype=np.float32)
        if batch is not None and flat.shape != (*batch, self.action_size):
            # Checked here: the env's vmapped step would fail deep in JAX, or broadcast silently.
            raise ValueError(f"actions must have shape {(*batch, self.action_size)}, got {flat.shape}")
        if flat.ndim == 0 or flat.shape[-1] != self.action_size:
            raise ValueError(f"a joint action has {self.action_size} entries, got shape {flat.shape}")
        finite = np.isfinite(flat)
        if not finite.all():
            self._refuse(flat, finite)
        out = {}
        for a, s in self.action_slices.items():
            if self.discrete[a]:
                out[a] = np.argmax(flat[..., s], axis=-1).astype(np.int32)
            elif a in self.nvec:
                scores = np.split(flat[..., s], np.cumsum(self.nvec[a])[:-1], axis=-1)  # one group per entry
                out[a] = np.stack([np.argmax(g, axis=-1) for g in scores], axis=-1).astype(np.int32)
            else:
                out[a] = flat[..., s]
        return out

    def _refuse(self, flat: np.ndarray, finite: np.ndarray) -> None:
        """The ValueError for the first entry of `flat` that is not `finite`."""
        *env, j = np.argwhere(~finite)[0].tolist()
        role = next(a for a, s in self.action_slices.items() if s.start <= j < s.stop)
        where = "" if not env else f" of env {env[0] if len(env) == 1 else env}"
        raise ValueError(f"joint action entry {j} ({role}'s entry {j - self.action_slices[role].start}){where} "
                         f"is {flat[(*env, j)].item()}; the action space {self.spaces()[1]} takes finite "
                         f"float32 numbers only")

    def spaces(self):
        """`(observation_space, action_space)` of one env, as Gymnasium Boxes: the observation
        within the roles' own bounds (`observation_low`/`observation_high`), the action in [-1, 1]."""
        from gymnasium import spaces

        return (spaces.Box(self.observation_low, self.observation_high, (self.observation_size,), np.float32),
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
    `reward_terms` where the env splits its reward (the SOC worlds do; the demos, cage4-like and
    soc-hybrid do not), and the ended episode's `metrics` where `done` (a bool or bool array)."""
    info = {}
    if "reward_terms" in infos:
        info["reward_terms"] = {k: np.asarray(v) for k, v in infos["reward_terms"].items()}
    if np.any(done):
        info["metrics"] = {k: np.asarray(v) for k, v in infos["metrics"].items()}
    return info
