"""The step's work as XLA counts it, relative to hmarl-soc-v1: a guard on fusion regressions.

On XLA:CPU a per-host value that a later kernel reads can be recomputed inside that kernel instead
of read back (fusion), so a small rewrite can multiply the step's arithmetic without changing a
single result: `defenders.confirm_escalation`'s elementwise mask made every later reader of
`detected` redo the hunt's per-host chain, random draws included (soc-v2 358K flops per env step,
1.59x v1; 292K, 1.30x, after it became a scalar spread over a one-hot, ~+20 % env-steps/s).
Speed itself is measured by `eval/bench_env.py`, never by a timed test; this counts flops with
`compiled.cost_analysis()`, which is deterministic for a given jax, and compares presets compiled
side by side so that a jax upgrade that moves every count moves them together.
"""
from __future__ import annotations

import jax
import pytest

import jaxsoc.env as soc
from eval.bench_env import random_actions

ENVS = 64  # the count per env is the same at 4,096 (measured), and compiles in seconds

# The ratio to v1 measured on 2026-12-03 (jax 0.10.2), the ratio before the confirm_escalation fix,
# and the bound: between the two, with room for small changes to the rules.
BOUNDS = {"soc-v2": 1.40,          # 1.295 then (1.264 since alerts.first_hosts), 1.587 before
          "soc-strategic": 2.25}   # 2.124 then, 2.327 before


def flops_per_env(preset: str) -> float:
    env, _ = soc.make(preset)
    _, state = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), ENVS))
    actions = random_actions(env, jax.random.key(1), ENVS)
    step = jax.jit(lambda k, s, a: jax.vmap(env.step)(jax.random.split(k, ENVS), s, a))
    cost = step.lower(jax.random.key(2), state, actions).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return cost["flops"] / ENVS


@pytest.fixture(scope="module")
def v1_flops():
    return flops_per_env("hmarl-soc-v1")


@pytest.mark.parametrize("preset", sorted(BOUNDS))
def test_step_work_relative_to_v1_stays_within_its_bound(preset, v1_flops):
    ratio = flops_per_env(preset) / v1_flops
    assert ratio <= BOUNDS[preset], (
        f"{preset}'s step now counts {ratio:.3f}x hmarl-soc-v1's flops (bound {BOUNDS[preset]}): "
        "look for a per-host value recomputed inside later kernels (eval/profile_env.py), and "
        "measure with eval/bench_env.py before moving the bound")
