"""Scripted defenders as a (non-learning) algorithm family: random, constant, no-defender, rule-soar,
and the scripted SOC leads lead-informed and lead-oracle (jaxsoc/env/leads.py).

Each update rolls `num_envs` envs forward `scripted.rollout` steps with a policy from
`jaxsoc.env.policies` and reports the episodes that ended, so baselines run, log, checkpoint and
evaluate through the same engine as learners. The train state is `ScriptedState`; there is
nothing to learn, so `policy_params` is empty.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxsoc.algos.base import Trainer, mean_episode_metrics, per_update_trainer
from jaxsoc.env import leads

DEFAULTS = {"rollout": 128}
POSITIVE = ("rollout",)


class ScriptedState(NamedTuple):
    """Train state of one seed: env state and obs `[num_envs, ...]`, RNG key, env steps done."""

    env_state: Any
    obs: Any
    key: jax.Array
    env_steps: jax.Array


def policy_for(name: str, env=None):
    """The scripted policy `policy(key, obs, state, params) -> actions` behind algorithm `name`:
    the env's own (`env.policies`, a demo env's heuristics, docs/demos.md) if it has any, else the
    SOC's (`jaxsoc.env.POLICIES` uses the same names as the algorithm registry)."""
    import jaxsoc.env as soc
    from jaxsoc.config import ConfigError

    policies = getattr(env, "policies", None)
    if policies is None:
        policies = soc.POLICIES
    if name not in policies:
        raise ConfigError(f"scripted policy {name!r} does not act on this scenario; it has: "
                          f"{', '.join(sorted(policies))}")
    return policies[name]


def make_train(config: dict, env, env_params) -> Trainer:
    num_envs = config["num_envs"]
    rollout = config["scripted"]["rollout"]
    steps_per_update = num_envs * rollout
    policy = policy_for(config["algo"], env)
    if config["algo"] in leads.LEADS:
        try:  # the env's own check (a ValueError: jaxsoc.env knows no config), as a config refusal
            leads.check_scenario(env_params)
        except ValueError as e:
            from jaxsoc.config import ConfigError

            raise ConfigError(str(e)) from None

    def act(policy_params, key, obs, env_state, greedy):
        del policy_params, greedy
        return policy(key, obs, env_state, env_params)

    batched_act = jax.vmap(lambda k, o, s: act((), k, o, s, True))
    batched_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def init(key):
        key, reset_key = jax.random.split(key)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(reset_key, num_envs), env_params
        )
        return ScriptedState(env_state, obs, key, jnp.zeros((), jnp.int32))

    def update(state):
        def step(carry, _):
            env_state, obs, key = carry
            key, act_key, step_key = jax.random.split(key, 3)
            actions = batched_act(jax.random.split(act_key, num_envs), obs, env_state)
            obs, env_state, rewards, dones, infos = batched_step(
                jax.random.split(step_key, num_envs), env_state, actions, env_params
            )
            team_reward = jnp.mean(jnp.stack(jax.tree.leaves(rewards)), axis=0)
            return (env_state, obs, key), (infos["metrics"], dones["__all__"], team_reward)

        (env_state, obs, key), (metrics, done, reward) = jax.lax.scan(
            step, (state.env_state, state.obs, state.key), None, length=rollout
        )
        out = mean_episode_metrics(metrics, done)
        out["reward"] = reward.mean()
        env_steps = state.env_steps + steps_per_update
        out["env_steps"] = env_steps
        return ScriptedState(env_state, obs, key, env_steps), out

    return per_update_trainer(config, steps_per_update, init=init, update=update, act=act,
                        policy_params=lambda state: (),
                        env_axes=lambda s: ScriptedState(env_state=0, obs=0, key=None, env_steps=None))
