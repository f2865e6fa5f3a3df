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
        per-agent dict for a single env, env_state its state (scripted policies read it; learned
        ones must only use `obs` and the env's avail actions). `greedy` is a Python bool.
      policy_params: `train_state -> policy_params`, the part of the state `act` needs.
      name: the algorithm's registry name.
    """

    init: Callable[[jax.Array], Any]
    update: Callable[[Any], tuple[Any, Metrics]]
    num_updates: int
    env_steps_per_update: int
    act: Callable[..., Dict[str, jax.Array]]
    policy_params: Callable[[Any], Any]
    name: str = ""

    def train(self, key: jax.Array) -> tuple[Any, Metrics]:
        """The whole run in one pure function: `[num_updates]`-stacked metrics."""
        state = self.init(key)

        def body(s, _):
            return self.update(s)

        return jax.lax.scan(body, state, None, length=self.num_updates)
