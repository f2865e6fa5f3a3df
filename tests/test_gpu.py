"""The GPU path: these tests fail when JAX runs on the CPU instead of an accelerator.

A JAX whose CUDA plugin is missing or does not load (`pip install -e .` without `[gpu]`, a driver
too old for the wheel, `JAX_PLATFORMS=cpu` left in the environment) falls back to the CPU with one
warning, and everything still runs, only slower: so these tests ask where the arrays are.

    pip install -e ".[gpu,dev]"
    pytest -m gpu -n 0          # on the CUDA machine

They are deselected in the default run (`-m 'not slow and not gpu'`, pyproject.toml). On a
machine without a GPU every one of them fails, by design: run there, they show the fallback.
"""
from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc import config as config_lib
from jaxsoc import engine, xla

pytestmark = pytest.mark.gpu

NUM_ENVS = 256
STEPS = 8


def gpu_devices() -> list:
    """This process's GPU devices; fails (with what JAX found instead) when there is none."""
    devices = jax.devices()
    assert jax.default_backend() == "gpu" and all(d.platform == "gpu" for d in devices), (
        f"JAX runs on {jax.default_backend()} ({devices}): the CUDA plugin did not load; "
        'install with pip install -e ".[gpu]" and check that JAX_PLATFORMS is unset')
    return devices


def on_gpu(tree) -> bool:
    """Every array of `tree` lives on GPU devices only."""
    return all({d.platform for d in x.devices()} == {"gpu"} for x in jax.tree.leaves(tree))


def random_actions(env, key, n: int) -> dict:
    """`{agent: [n, ...]}` uniform actions of `env`'s action spaces."""
    keys = jax.random.split(key, env.num_agents)
    return {a: jax.vmap(env.action_space(a).sample)(jax.random.split(k, n)) for k, a in zip(keys, env.agents)}


def rollout(env, key):
    """`(state, {agent: rewards [STEPS, NUM_ENVS]}, {agent: observations [STEPS, NUM_ENVS, ...]})`
    of NUM_ENVS envs, reset then STEPS random auto-resetting steps, in one program."""
    k_reset, k_run = jax.random.split(key)
    _, state = jax.vmap(env.reset)(jax.random.split(k_reset, NUM_ENVS))

    def step(state, k):
        k_act, k_step = jax.random.split(k)
        obs, state, rewards, _, _ = jax.vmap(env.step)(jax.random.split(k_step, NUM_ENVS), state,
                                                      random_actions(env, k_act, NUM_ENVS))
        return state, (rewards, obs)

    state, (rewards, obs) = jax.lax.scan(step, state, jax.random.split(k_run, STEPS))
    return state, rewards, obs


def test_jax_runs_on_a_gpu():
    devices = gpu_devices()
    x = jnp.arange(8.0) * 2  # a computation placed by default, not an explicit device_put
    assert on_gpu(x) and float(x.sum()) == 56.0
    assert devices[0].memory_stats(), "a GPU device reports its memory (bytes_limit)"


@pytest.mark.parametrize("scenario", ["hmarl-soc-v1", "soc-v2"])
def test_the_env_steps_on_the_gpu_as_it_does_on_the_cpu(scenario):
    """Both presets compile and step on the GPU, and agree with the same program on the CPU.

    Threefry draws are the same bits on every backend, so the reset (draws, and the floats
    made from them) must match: integers exactly, floats to rounding. The steps then compare floats that the two compilers may round differently, and a
    last-bit difference can flip one threshold in one env, whose episode then runs its own way;
    so the rollout's rewards may differ in at most 1 % of the envs (2 of 256). Another key, i.e.
    a program that draws differently, makes every env differ (256 of 256 for both presets,
    measured on the CPU)."""
    gpu = gpu_devices()[0]
    cpu = jax.devices("cpu")[0]
    env, _ = soc.make(scenario)
    reset = xla.jit(lambda k: jax.vmap(env.reset)(jax.random.split(k, NUM_ENVS)))
    run = xla.jit(lambda k: rollout(env, k))
    key = jax.random.PRNGKey(3)
    for g, c in zip(jax.tree.leaves(reset(jax.device_put(key, gpu))), jax.tree.leaves(reset(jax.device_put(key, cpu)))):
        assert on_gpu(g) and {d.platform for d in c.devices()} == {"cpu"}
        g, c = np.asarray(g), np.asarray(c)
        if np.issubdtype(g.dtype, np.floating):
            np.testing.assert_allclose(g, c, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(g, c)
    (_, rew_g, obs_g), (_, rew_c, _) = run(jax.device_put(key, gpu)), run(jax.device_put(key, cpu))
    assert on_gpu((rew_g, obs_g)), "the jitted rollout's outputs left the GPU"
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves((rew_g, obs_g)))
    for agent in env.agents:
        assert envs_that_differ(rew_g[agent], rew_c[agent]) <= NUM_ENVS // 100, agent


def envs_that_differ(a, b) -> int:
    """How many envs' reward trajectories (`[STEPS, NUM_ENVS]`) differ beyond float rounding."""
    return int(np.any(~np.isclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4), axis=0).sum())


def test_xla_jit_compiles_on_the_gpu_with_the_same_values():
    """`xla.jit` asks every program for an XLA:CPU option: the GPU's compiler takes it or
    `xla.accepted` leaves it out; either way the program compiles and computes the same."""
    gpu_devices()
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    x, w = jax.random.normal(k1, (512, 256)), jax.random.normal(k2, (256, 256)) / 16

    def dense_relu(x, w):
        return jax.nn.relu(x @ w + 0.1)

    ours, plain = xla.jit(dense_relu)(x, w), jax.jit(dense_relu)(x, w)
    assert on_gpu(ours)
    np.testing.assert_allclose(ours, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("algo", ["mappo", "hmarl"])
def test_a_training_run_stays_on_the_gpu(algo, tmp_path):
    """`train/run.py`'s engine trains on the GPU: the final state lives there, every training
    loss it logs is finite, and the run folder is complete (a line per update and seed, the
    evaluations in eval.jsonl with finite returns)."""
    gpu_devices()
    cfg = config_lib.resolve(flags={"algo": algo, "scenario": "soc-v2", "num_envs": 64, "num_seeds": 2,
                                    "total_steps": 20_000, "run": {"name": algo, "dir": str(tmp_path)},
                                    "eval": {"every_chunks": 1, "episodes": 16}})
    result = engine.run(cfg)
    assert result.updates == result.trainer.num_updates > 0
    assert on_gpu(result.state), "the train state left the GPU"
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == result.updates * cfg["num_seeds"]
    for record in map(json.loads, lines[-cfg["num_seeds"]:]):
        # The figures sit under "metrics", and a NaN is written as null: a None loss is a NaN one.
        losses = {k: v for k, v in record["metrics"].items() if "loss" in k}
        assert losses and all(v is not None and math.isfinite(v) for v in losses.values()), record
    evals = [json.loads(line) for line in (result.run_dir / "eval.jsonl").read_text().splitlines()]
    assert evals and all(e["metrics"]["return"] is not None and math.isfinite(e["metrics"]["return"])
                         for e in evals), evals
