"""Evaluating a policy: one jitted rollout of `num_episodes` parallel envs.

Each env runs from reset for up to `max_steps` steps (the env's episode limit, so every env
finishes at least one episode; envs auto-reset) and keeps its FIRST episode's `infos["metrics"]`.
The rollout stops once every env has finished its first episode (a `while_loop` checking after
every step; a scan of 8-step blocks inside it ran each step 1.4-1.8x slower on XLA:CPU). On
soc-v2, first episodes last 11-21 steps on average and under 100 at most, against a limit of
200, so running out the limit did 2-4x the work for the same numbers (hmarl-soc-v1's undefended
episodes can reach the limit: no gain there). Step t draws from `split(key, max_steps)[t]`
either way, so stopping early changes no result. Learned policies and scripted ones evaluate
the same way: a scripted `act` ignores its policy params.
"""
from __future__ import annotations

from typing import Any, Callable, Dict

import jax
import jax.numpy as jnp

from jaxsoc import xla
from jaxsoc.argtypes import is_integer


def episode_limit(env, env_params) -> int:
    """The env's episode length limit (`max_steps` of its params, or of the env)."""
    for owner in (env_params, env):
        limit = getattr(owner, "max_steps", None)
        if limit is not None:
            return int(limit)
    raise ValueError("cannot tell the env's episode limit; pass max_steps")


def episode_metric_names(env, env_params) -> tuple[str, ...]:
    """The names of the env's episode metrics (its `infos["metrics"]`), sorted: read off the
    shapes of one reset and idle step, so nothing runs or compiles (0.02-0.34 s to trace on 2
    cores)."""
    def one_step(key):
        _, state = env.reset(key, env_params)
        return env.step(key, state, env.idle_actions(env_params), env_params)[4]["metrics"]

    return tuple(sorted(jax.eval_shape(one_step, jax.random.key(0))))


def make_evaluator(
    env,
    env_params,
    act: Callable[..., Dict[str, jax.Array]],
    num_episodes: int,
    greedy: bool = True,
    max_steps: int | None = None,
) -> Callable[[Any, jax.Array], Dict[str, jax.Array]]:
    """A pure `(policy_params, key) -> per-episode metrics` function, to jit or vmap over seeds.

    Returns a function whose result is `{name: f32[num_episodes]}` for every name in the env's
    `infos["metrics"]` (NaN for an env whose first episode did not end within `max_steps`) plus
    `"completed": bool[num_episodes]`. ValueError unless `num_episodes` and `max_steps` (when
    given) are positive integers.
    """
    # Checked before tracing: 0 would return empty metrics (NaN means), others fail deep in JAX.
    for name, value in (("num_episodes", num_episodes), ("max_steps", max_steps)):
        if value is None and name == "max_steps":
            continue
        if not is_integer(value) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    steps = episode_limit(env, env_params) if max_steps is None else int(max_steps)

    def act_one(policy_params, key, obs, state):
        return act(policy_params, key, obs, state, greedy)

    batched_act = jax.vmap(act_one, in_axes=(None, 0, 0, 0))
    batched_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    batched_reset = jax.vmap(env.reset, in_axes=(0, None))

    def rollout(policy_params, key):
        reset_key, run_key = jax.random.split(key)
        obs, state = batched_reset(jax.random.split(reset_key, num_episodes), env_params)

        def step(carry, step_key):
            obs, state, finished, first = carry
            act_key, env_key = jax.random.split(step_key)
            actions = batched_act(policy_params, jax.random.split(act_key, num_episodes), obs, state)
            obs, state, _, dones, infos = batched_step(
                jax.random.split(env_key, num_episodes), state, actions, env_params
            )
            ends_first = dones["__all__"] & ~finished
            first = jax.tree.map(
                lambda kept, new: jnp.where(ends_first, new.astype(jnp.float32), kept),
                first, infos["metrics"],
            )
            return obs, state, finished | dones["__all__"], first

        # The metrics' names and shapes, without running a step.
        shapes = jax.eval_shape(
            lambda: batched_step(
                jax.random.split(run_key, num_episodes),
                state,
                batched_act(policy_params, jax.random.split(run_key, num_episodes), obs, state),
                env_params,
            )[4]["metrics"]
        )
        first = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), shapes)
        finished = jnp.zeros((num_episodes,), bool)
        keys = jax.random.split(run_key, steps)

        def unfinished(carry):
            t, (_, _, finished, _) = carry
            return (t < steps) & ~jnp.all(finished)

        def next_step(carry):
            t, inner = carry
            return t + 1, step(inner, keys[t])

        _, (_, _, finished, first) = jax.lax.while_loop(unfinished, next_step, (0, (obs, state, finished, first)))
        out = {name: jnp.where(finished, value, jnp.nan) for name, value in first.items()}
        out["completed"] = finished
        return out

    return rollout


def evaluate(
    env,
    params,
    act: Callable[..., Dict[str, jax.Array]],
    policy_params: Any,
    key: jax.Array,
    num_episodes: int,
    greedy: bool = True,
    max_steps: int | None = None,
) -> Dict[str, jax.Array]:
    """Per-episode metrics of `act` over `num_episodes` parallel envs (see `make_evaluator`).

    Compiles on every call; to evaluate many times, jit `make_evaluator(...)` once instead.
    """
    rollout = make_evaluator(env, params, act, num_episodes, greedy, max_steps)
    return xla.jit(rollout)(policy_params, key)
