"""The algorithm registry: names the CLI accepts -> the family module that trains them.

A family is one module `jaxsoc/algos/<family>.py` exposing

    DEFAULTS: dict                                    # its config section, `<family>:` in YAML
    make_train(config, env, env_params) -> Trainer    # see `jaxsoc.algos.base`
    env_overrides(config) -> dict                     # optional: env keys its section sets
                                                      # (hmarl.k -> directive_period)

Modules are imported only when their algorithm is asked for, so a broken or slow-to-import learner
never affects the others. Adding a learner is one new file plus one line per name below; the
config section of a family is named after it (`ppo:` for the names whose family is "ppo").
"""
from __future__ import annotations

import copy
import importlib
from types import ModuleType
from typing import Any

from jaxsoc.names import suggest

# name -> family (the module `jaxsoc.algos.<family>`, unless `_FAMILY_MODULES` says otherwise).
ALGORITHMS: dict[str, str] = {
    "random": "scripted",
    "constant": "scripted",
    "no-defender": "scripted",
    "rule-soar": "scripted",
    "lead-informed": "scripted",  # scripted SOC leads (jaxsoc/env/leads.py; need soc-strategic-like
    "lead-oracle": "scripted",    # scenarios with the discrete directive)
    "base-stock": "scripted",     # the demos' textbook heuristics (jaxsoc/demos, docs/demos.md):
    "least-cost": "scripted",     # retail's base-stock ordering, banking's least-cost and
    "round-robin": "scripted",    # round-robin routing; they act on those scenarios only
    "detector-alone": "scripted",  # soc-hybrid: lock down every host the detector alarms on (docs/hybrid.md)
    # on-policy learners (ppo.py, a2c.py, trpo.py)
    "ippo": "ppo",
    "mappo": "ppo",
    "single-drl": "ppo",
    "iac": "a2c",
    "maac": "a2c",
    "trpo": "trpo",     # trust-region policy optimisation (trpo.py, docs/trpo.md)
    "matrpo": "trpo",
    "coma": "coma",  # counterfactual multi-agent policy gradients (docs/coma.md)
    "impala": "impala",  # V-trace actor-learner with lagged actors (docs/impala.md)
    "mappo-comm": "comm",  # MAPPO with learned CommNet messages between roles (docs/comm.md)
    # off-policy learners (docs/offpolicy.md)
    "dqn": "dqn",
    "iql": "dqn",
    "vdn": "dqn",
    "qmix": "dqn",
    "sac": "sac",
    "maddpg": "maddpg",
    # the hierarchical HMARL-SOC team (docs/hmarl.md)
    "hmarl": "hmarl",
    # seed 000's hybrid team on soc-hybrid: QMIX segment agents + a MADDPG network agent (docs/hybrid.md)
    "hybrid": "hybrid",
    # meta-learning across scenarios: Reptile over a PPO team (docs/meta.md)
    "reptile": "meta",
    # the learnable red agent on soc-v2-redblue (docs/redblue.md): PPO red vs a scripted SOC
    # team, and alternating red/blue PPO in one program
    "red-ppo": "redblue",
    "redblue": "redblue",
}

# Algorithms that play one scenario only (their checks refuse any other): the scenario tools and
# tests build for them. Every other algorithm plays any SOC preset.
HOME_SCENARIO: dict[str, str] = {
    "red-ppo": "soc-v2-redblue", "redblue": "soc-v2-redblue",
    "hybrid": "soc-hybrid", "detector-alone": "soc-hybrid",
}

# family -> import path, for families living outside `jaxsoc.algos` (plugins, test toys).
_FAMILY_MODULES: dict[str, str] = {}


def register(name: str, family: str, module: str | None = None) -> None:
    """Adds (or replaces) an algorithm name; `module` imports a family outside `jaxsoc.algos`."""
    ALGORITHMS[name] = family
    if module is not None:
        _FAMILY_MODULES[family] = module


def family_of(name: str) -> str:
    """The family (config section) of algorithm `name`; ValueError with suggestions if unknown."""
    if name not in ALGORITHMS:
        raise ValueError(
            f"unknown algorithm {name!r}{suggest(name, ALGORITHMS)}; known: "
            + ", ".join(sorted(ALGORITHMS))
        )
    return ALGORITHMS[name]


def family_module(name: str) -> ModuleType:
    """Imports the family module of algorithm `name`."""
    family = family_of(name)
    return importlib.import_module(_FAMILY_MODULES.get(family, f"jaxsoc.algos.{family}"))


def default_section(name: str) -> dict[str, Any]:
    """A copy of the default config section of algorithm `name`'s family."""
    return copy.deepcopy(getattr(family_module(name), "DEFAULTS", {}))


def env_overrides(config: dict) -> dict[str, Any]:
    """The env keys `config`'s algorithm section sets on the world it trains in (a family's
    optional `env_overrides(config)`; `{}` for most). `engine.make_env_checked` applies them, so
    the trained world is rebuilt by every tool that rebuilds the run (evaluation, replay, the
    explainer), not by the trainer alone."""
    if config.get("algo") is None:  # an env's config alone (no learner)
        return {}
    hook = getattr(family_module(config["algo"]), "env_overrides", None)
    return dict(hook(config)) if hook is not None else {}


def make_train(config: dict, env, env_params):
    """Builds the `Trainer` of `config["algo"]`; a one-line ConfigError when the algorithm cannot
    act in `env` (a family module's `SOC_TEAM = True`: `common.check_soc_team`)."""
    module = family_module(config["algo"])
    if getattr(module, "SOC_TEAM", False):
        from jaxsoc.algos.common import check_soc_team

        check_soc_team(config["algo"], config["scenario"], env)
    return module.make_train(config, env, env_params)
