"""The contract between a learning algorithm, the training engine and evaluation.

Every algorithm module in `jaxsoc.algos` exposes

    make_train(config: dict, env: SOCEnv, env_params: EnvParams) -> Trainer

where `config` is the resolved config (a plain nested dict, see `jaxsoc.config`). A `Trainer`
is PureJaxRL's `train(key)` split into its two halves so that the host can drive the compiled
program in chunks (log, evaluate, checkpoint between chunks) without changing the maths:

    state = trainer.init(key)                      # pure, one seed
    state, metrics = trainer.update(state)         # pure, one update iteration
    trainer.train(key) == lax.scan(update, init(key), length=num_updates)

All functions work on ONE seed. The engine `vmap`s them over seeds, `jit`s them, and scans
`update` `chunk` times per host call. Nothing inside may depend on Python-side mutable state.

Metrics returned by `update` are a flat dict of scalar arrays (per seed, after vmap `[num_seeds]`).
Conventions the engine and `eval/` rely on:
  * "env_steps": total env transitions consumed so far (all envs of this seed), int.
  * "episodes": number of episodes that ended during this update.
  * episode metrics, averaged over the episodes that ended during this update, named as the env's
    `infos["metrics"]` keys ("return", "length", "csr", "mttd", "mttr", "fpr", "exfiltrated", ...);
    their value is NaN when "episodes" == 0 (the engine writes null).
  * anything else (losses, entropies, epsilon, alpha...) under a short descriptive name.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict

import jax
import jax.numpy as jnp

Metrics = Dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Trainer:
    """A training algorithm as pure functions of one seed.

    Attributes:
      init: `key -> train_state`, the whole training state as a pytree (parameters, optimiser
        states, env states, replay buffers, RNG keys, counters). Checkpointing saves exactly this.
      update: `train_state -> (train_state, metrics)`, one update iteration (rollout + learning).
      num_updates: iterations needed for the configured total env steps.
      env_steps_per_update: env transitions per iteration (num_envs * rollout length).
      act: `(policy_params, key, obs, env_state, greedy) -> actions` for ONE env: obs is the env's
        per-agent dict for a single env, env_state its state, `greedy` a Python bool; an action
        for every agent, each inside `env.action_space(agent)` (a sampled Box action clipped to
        its bounds: tests/test_registry.py checks it, though the env would clip too). What an
        actor may read: scripted policies (`scripted.py`) anything, they are the env's own rules.
        A learned actor reads `obs`, and of `env_state` only what the env's interface exposes to
        every agent rather than its hidden world: the avail-action masks
        (`env.get_avail_actions`, the on-policy learners), and the directive schedule and the
        directive the env holds (`defenders.reads_directive(env_state.t, params)`,
        `defenders.held_directive`: the hierarchical team conditions tier 2 on the directive in
        force, which the v1 observations do not show). The off-policy learners read `obs` and,
        for the roles the env may forbid actions of, the avail-action masks.
      policy_params: `train_state -> policy_params`, the part of the state `act` needs.
      name: the algorithm's registry name.
      env_axes: optional `train_state -> axes`, where `axes` is a pytree prefix of the (single
        seed, possibly abstract) train state giving, for each leaf, the position of its env axis
        (an int) or None when it has none (parameters, optimiser states, keys, counters). E.g.
        `lambda s: s._replace(params=None, opt_state=None, env_state=0, obs=0, key=None)`.
        The engine uses it only to shard the env axis over devices when `num_seeds` is not a
        multiple of the device count; it never changes the maths (XLA inserts the reductions),
        only where the arrays live. A trainer without it runs on several devices only by
        sharding seeds.
      policy_env_params: optional `(policy_params, env_params) -> env_params`, the world a
        trained policy acts in, when part of it was learned with the policy (the hybrid's online
        detector scores the env's own telemetry). Evaluation, `load_policy` and replays use it;
        None: the scenario's env params unchanged.
    """

    init: Callable[[jax.Array], Any]
    update: Callable[[Any], tuple[Any, Metrics]]
    num_updates: int
    env_steps_per_update: int
    act: Callable[..., Dict[str, jax.Array]]
    policy_params: Callable[[Any], Any]
    name: str = ""
    env_axes: Callable[[Any], Any] | None = None
    policy_env_params: Callable[[Any, Any], Any] | None = None

    def train(self, key: jax.Array) -> tuple[Any, Metrics]:
        """The whole run in one pure function: `[num_updates]`-stacked metrics."""
        state = self.init(key)

        def body(s, _):
            return self.update(s)

        return jax.lax.scan(body, state, None, length=self.num_updates)


def per_update_trainer(config: dict, steps_per_update: int, **parts) -> Trainer:
    """The `Trainer` of `config["algo"]` that consumes `steps_per_update` env transitions per update:
    `num_updates` follows from `config["total_steps"]`; `parts` are the other `Trainer` fields
    (init, update, act, policy_params, env_axes, policy_env_params)."""
    return Trainer(num_updates=config["total_steps"] // steps_per_update,
                   env_steps_per_update=steps_per_update, name=config["algo"], **parts)


def mean_episode_metrics(metrics: Dict[str, jax.Array], done: jax.Array) -> Metrics:
    """Averages the env's episode metrics over the episodes that ended in a rollout.

    Args:
      metrics: `infos["metrics"]` stacked over a rollout, each `[T, num_envs]` (any shape equal
        to `done`'s); values are only meaningful where `done`.
      done: `dones["__all__"]`, bool `[T, num_envs]`.

    Returns:
      `{"episodes": int32[], name: f32[] for each metric}`: each metric the mean over the ended
      episodes where it is defined (a metric may be NaN for an episode, e.g. a precision with
      nothing to divide by), NaN when there are none (the engine logs null).
    """
    done = done.astype(bool)
    out: Metrics = {}
    for name, value in metrics.items():
        counted = done & jnp.isfinite(value)
        n = counted.sum()
        total = jnp.where(counted, value, 0).sum()
        out[name] = jnp.where(n > 0, total / jnp.maximum(n, 1), jnp.nan).astype(jnp.float32)
    out["episodes"] = done.sum().astype(jnp.int32)
    return out
