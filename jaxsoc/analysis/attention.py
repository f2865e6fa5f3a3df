"""The HMARL explainer's attention over a few coordinator decisions of a trained run.

An algorithm family may expose `attention_weights(policy_params, obs, config, env_params) ->
(weights [decisions, heads, tokens], token_names)` (one seed's policy parameters; `obs` the env's
per-agent observation dict with a leading decisions axis; the run's config and scenario).
`draw_attention` rolls one greedy held-out episode of seed 0 (from `protocols.heldout_batch_key`),
keeps the observations at its first coordinator decisions (those of that episode only) and draws
the family's weights for them (`figures.attention_maps`). K is the env's (`hmarl.k` included: `engine.make_env_checked`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from jaxsoc import xla
from jaxsoc.analysis import figures as figs
from jaxsoc.analysis import protocols
from jaxsoc.analysis import runs as runs_lib


def collect_decision_obs(env, env_params, trainer, policy_params, key, decisions: int = 4, period: int = 5):
    """Observations at the first `decisions` coordinator decisions (every `period` steps) of one
    greedy episode from `key`, and the steps they were taken at: `(obs, steps)`, `obs` the env's
    per-agent dict with a leading decisions axis. Only that episode's decisions are kept (fewer
    when it ends first: the env auto-resets, and later observations are the next episode's)."""
    import jax
    import numpy as np

    length = decisions * period
    k_reset, k_run = jax.random.split(key)
    obs, state = env.reset(k_reset, env_params)

    def body(carry, k):
        obs, state = carry
        k_act, k_env = jax.random.split(k)
        actions = trainer.act(policy_params, k_act, obs, state, True)
        nobs, nstate, _, dones, _ = env.step(k_env, state, actions, env_params)
        return (nobs, nstate), (obs, dones["__all__"])

    _, (trace, done) = xla.jit(lambda k: jax.lax.scan(body, (obs, state), jax.random.split(k, length)))(k_run)
    ended = np.flatnonzero(np.asarray(done))
    last = int(ended[0]) if ended.size else length - 1  # the episode's last step within the scan
    steps = list(range(0, last + 1, period))[:decisions]
    return jax.tree.map(lambda x: x[np.asarray(steps)], trace), steps


def draw_attention(run_path: Path, stem: Path, decisions: int = 4, make_env: Callable | None = None) -> list:
    """Attention maps of a few decisions of seed 0 of an HMARL run (module docstring); the files written."""
    import jax

    from jaxsoc import algos, engine

    loaded = engine.load(run_path, make_env=make_env, policy_only=True)  # params only: no buffers
    module = algos.family_module(loaded.config["algo"])
    env, env_params = engine.make_env_checked(loaded.config, make_env)  # a scenario file's stored contents
    params = jax.tree.map(lambda x: x[0], jax.vmap(loaded.trainer.policy_params)(loaded.state))
    period = int(getattr(env_params, "directive_period", 5))
    obs, steps = collect_decision_obs(env, env_params, loaded.trainer, params,
                                      protocols.heldout_batch_key(loaded.config["seed"]), decisions, period)
    weights, names = module.attention_weights(params, obs, loaded.config, env_params)
    labels = [f"decision {i + 1} (step {t})" for i, t in enumerate(steps)]
    fig, _ = figs.attention_maps(weights, names, labels, title=f"{runs_lib.display_name(loaded.config['algo'])} "
                                 "explainer attention, seed " + str(loaded.config["seed"]))
    return figs.save(fig, stem)
