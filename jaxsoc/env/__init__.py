"""jaxsoc.env: the SOC world as pure JAX functions.

    import jax, jaxsoc.env as soc
    env, params = soc.make("hmarl-soc-v1")          # or "soc-v2", "soc-strategic", or a .yaml
    obs, state = env.reset(jax.random.key(0), params)
    obs, state, rewards, dones, infos = env.step(key, state, actions, params)

`make(name, **overrides)` validates everything before anything is traced. See docs/env.md.
`make` also builds the scenarios that are not SOC worlds (`ENV_MODULES`: the retail and banking
demos of docs/demos.md, the CAGE-4-like world of docs/cage4.md, seed 000's hybrid SOC of
docs/hybrid.md), so every learner and the CLI reach them by name.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Dict, Tuple

from jaxsoc.env.core import SOCEnv, hmarl_directive, initial_state
from jaxsoc.env.metrics import METRIC_KEYS, episode_metrics
from jaxsoc.env.params import (AGENTS, MECHANISMS, SWITCHES, EnvParams, build_params, preset_names,
                               validate)
from jaxsoc.env.params import register as register_preset
from jaxsoc.names import suggest
from jaxsoc.env.policies import POLICIES
from jaxsoc.env.spaces import Box, Discrete, MultiDiscrete
from jaxsoc.env.state import EnvState


# Scenarios that are not SOC presets: name -> a module whose `make(**overrides) -> (env, params)`
# builds it, imported only when asked for (as `jaxsoc.algos` imports learners).
ENV_MODULES: Dict[str, str] = {"retail": "jaxsoc.demos.retail", "banking": "jaxsoc.demos.banking",
                               "cage4-like": "jaxsoc.env.cage4", "soc-hybrid": "jaxsoc.env.hybrid"}


def register(name: str, factory) -> None:
    """Add (or replace) a SOC preset: `factory()` returns its `EnvParams` (see
    `jaxsoc.env.params.register`); a name `ENV_MODULES` already holds is refused, since `make`
    would build that world instead."""
    if isinstance(name, str) and name in ENV_MODULES:
        raise ValueError(f"{name!r} is a world of ENV_MODULES ({ENV_MODULES[name]}): a preset by that name "
                         "could not be reached; choose another name")
    register_preset(name, factory)


def register_env(name: str, module: str) -> None:
    """Add (or replace) a scenario built by `module.make(**overrides)` instead of a SOC preset.
    The module must be importable now (it is imported when `make` first asks for it: a module
    may register itself before its own `make` is defined), and the name must not be a SOC
    preset's (which `make` would then no longer reach)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a scenario's name must be a non-empty string, got {name!r}")
    if name in preset_names():
        raise ValueError(f"{name!r} is a SOC preset: a world by that name would hide it; choose another name")
    try:
        found = isinstance(module, str) and importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is not there, an empty name
        found = False
    if not found:
        raise ValueError(f"scenario {name!r}: no module {module!r} to import (give a module's dotted "
                         "name, e.g. 'mypackage.myworld', whose make(**overrides) returns (env, params))")
    ENV_MODULES[name] = module


def scenario_names() -> Tuple[str, ...]:
    """Every scenario `make` knows by name: the SOC presets and the `ENV_MODULES` ones."""
    return tuple(sorted(set(preset_names()) | set(ENV_MODULES)))


def make(scenario: str = "hmarl-soc-v1", /, **overrides) -> Tuple[SOCEnv, EnvParams]:
    """Build a scenario: a preset name (see `preset_names()`), a `.yaml` scenario file, or a
    scenario of `ENV_MODULES` (then the env and params are that module's).

    Unknown names or override keys, non-positive sizes and inconsistent topologies raise a
    `ValueError` (with close-match suggestions) before anything is traced.
    """
    if not isinstance(scenario, str):
        raise ValueError(f"scenario must be a name or a .yaml file's path, got {type(scenario).__name__} "
                         f"{scenario!r}. Known scenarios: {', '.join(scenario_names())}.")
    if scenario in ENV_MODULES:
        build = getattr(importlib.import_module(ENV_MODULES[scenario]), "make", None)
        if not callable(build):
            raise ValueError(f"scenario {scenario!r}: module {ENV_MODULES[scenario]!r} has no make(**overrides) "
                             "returning (env, params)")
        return build(**overrides)
    if not (scenario in preset_names() or scenario.endswith((".yaml", ".yml"))):
        # Here, not in build_params, because only make also knows the ENV_MODULES scenarios.
        raise ValueError(f"unknown scenario {scenario!r}{suggest(scenario, scenario_names())}. "
                         f"Known scenarios: {', '.join(scenario_names())}.")
    params = build_params(scenario, **overrides)
    return SOCEnv(params), params


__all__ = [
    "AGENTS", "ENV_MODULES", "MECHANISMS", "Box", "Discrete", "EnvParams", "EnvState", "METRIC_KEYS", "MultiDiscrete", "POLICIES", "SOCEnv",
    "SWITCHES", "build_params", "episode_metrics", "hmarl_directive", "initial_state", "make",
    "preset_names", "register", "register_env", "scenario_names", "validate",
]
