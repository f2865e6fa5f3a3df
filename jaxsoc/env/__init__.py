"""jaxsoc.env: the SOC world as pure JAX functions.

    import jax, jaxsoc.env as soc
    env, params = soc.make("hmarl-soc-v1")          # or "soc-v2", "soc-strategic", or a .yaml
    obs, state = env.reset(jax.random.key(0), params)
    obs, state, rewards, dones, infos = env.step(key, state, actions, params)

`make(name, **overrides)` validates everything before anything is traced. See docs/env.md.
"""
from __future__ import annotations

from typing import Tuple

from jaxsoc.env.core import SOCEnv, hmarl_directive, initial_state
from jaxsoc.env.metrics import METRIC_KEYS, episode_metrics
from jaxsoc.env.params import (AGENTS, MECHANISMS, SWITCHES, EnvParams, build_params, preset_names,
                               register, validate)
from jaxsoc.env.policies import POLICIES
from jaxsoc.env.spaces import Box, Discrete
from jaxsoc.env.state import EnvState


def make(scenario: str = "hmarl-soc-v1", /, **overrides) -> Tuple[SOCEnv, EnvParams]:
    """Build a scenario: a preset name (see `preset_names()`) or a `.yaml` scenario file.

    Unknown names or override keys, non-positive sizes and inconsistent topologies raise a
    `ValueError` (with close-match suggestions) before anything is traced.
    """
    params = build_params(scenario, **overrides)
    return SOCEnv(params), params


__all__ = [
    "AGENTS", "MECHANISMS", "Box", "Discrete", "EnvParams", "EnvState", "METRIC_KEYS", "POLICIES", "SOCEnv",
    "SWITCHES", "build_params", "episode_metrics", "hmarl_directive", "initial_state", "make",
    "preset_names", "register", "validate",
]
