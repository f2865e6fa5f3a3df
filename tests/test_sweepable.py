"""Every learner family's `SWEEPABLE` keys (jaxsoc/sweep.py) on soc-v2: each one can be a traced
scalar when the trainer is built inside a program (what a sweep does per grid point), and each
one changes what the program computes (a key listed but ignored would rank identical points).

One tiny program per family: two updates with every sweepable key given as an element of one
`[keys]` array; run once at the config's values, then once per key with that key moved far from
its value, and compared. A Python branch on a key (`if max_grad_norm > 0`) fails the build; a key
that never reaches the update fails the comparison. The pieces that take a traced value on
another path than a Python one are checked against that path here, and (slow) each family's
traced program against the one built from the config's Python numbers.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc import algos, config as config_lib, sweep
from jaxsoc.algos import offpolicy as op
from jaxsoc.algos.common import clipped_adam
from tests.fast import fast_jit

# One algorithm per family, at sizes that compile in seconds. The settings make every key live
# within two updates: learning from the first update, target networks moved every update
# (`target_period` 1), tau below 1 so a move of it shows, epsilon near its end value, target
# policy noise to clip, a trust region wide enough that the line search backtracks.
OFF = ["rollout=4", "utd=0.05", "batch_size=32", "buffer_size=512", "learning_starts=0", "hidden_sizes=[16]"]
CASES = {
    "mappo": ["ppo.hidden_sizes=[16]", "ppo.rollout=8"],
    "iac": ["a2c.hidden_sizes=[16]", "a2c.rollout=8"],
    "impala": ["impala.hidden_sizes=[16]", "impala.rollout=8"],
    "mappo-comm": ["comm.hidden_sizes=[16]", "comm.rollout=8"],
    "matrpo": ["trpo.hidden_sizes=[16]", "trpo.rollout=8", "trpo.max_kl=10"],
    "coma": ["coma.hidden_sizes=[16]", "coma.rollout=8"],
    "iql": [f"dqn.{s}" for s in OFF] + ["dqn.target_period=1", "dqn.tau=0.5", "dqn.epsilon_decay=10"],
    "qmix": [f"dqn.{s}" for s in OFF] + ["dqn.target_period=1", "dqn.tau=0.5", "dqn.epsilon_decay=10",
                                         "dqn.mixer_embed=8", "dqn.hypernet_hidden=8"],
    "sac": [f"sac.{s}" for s in OFF] + ["sac.tau=0.5"],
    "maddpg": [f"maddpg.{s}" for s in OFF] + ["maddpg.tau=0.5", "maddpg.target_noise=0.2"],
    "hmarl": [f"hmarl.{s}" for s in OFF if not s.startswith("rollout")] + ["hmarl.rollout=10"],
}


def test_every_family_with_sweepable_keys_is_checked_here():
    families = {algos.family_of(a) for a in CASES}
    for algo in algos.ALGORITHMS:
        module = algos.family_module(algo)  # jaxsoc's own (other tests register toys)
        if module.__name__.startswith("jaxsoc.") and getattr(module, "SWEEPABLE", ()):
            assert algos.family_of(algo) in families, f"{algo}'s family has SWEEPABLE keys and no case here"


@pytest.mark.parametrize("algo, scenario", [("hybrid", "soc-hybrid"), ("reptile", "soc-v2"),
                                             ("redblue", "soc-v2-redblue")])
def test_families_without_sweepable_keys_build_inside_a_trace(algo, scenario):
    """Their grids run as a queue of programs, each still building the trainer inside the traced
    sweep program (the dqn, sac and maddpg families could not until their fixed roles' actions
    were computed at trace time)."""
    assert not getattr(algos.family_module(algo), "SWEEPABLE", ())
    cfg = config_lib.resolve(flags={"algo": algo, "scenario": scenario, "num_envs": 8, "num_seeds": 1,
                                    "total_steps": 10**6, "run": {"name": "sweepable"}}, sets=[])
    env, env_params = soc.make(cfg["scenario"], **cfg["env"])

    def one_update(key):
        trainer = algos.make_train(cfg, env, env_params)
        return trainer.update(trainer.init(key))

    state, metrics = jax.eval_shape(one_update, jax.random.key(0))
    assert jax.tree.leaves(state) and isinstance(metrics, dict)


def moved(value: float) -> float:
    """Far from `value` and still valid for every key here (rates, coefficients, discounts)."""
    return value * 1e-3 if value > 0 else 0.5


# The default run checks the families whose trainers differ most (PPO, the value-based pair, SAC,
# MADDPG, HMARL-SOC: ~75 s of CPU with an empty compile cache); the on-policy variants built on
# PPO's pieces run with `-m slow` (~47 s more).
SLOW = {"iac", "impala", "mappo-comm", "matrpo", "coma"}


def two_update_programs(algo):
    """`(traced, static, base)`: the state after two updates (float leaves) as a function of the
    `[keys]` sweepable values, the same from the config's Python numbers (how train/run.py builds
    it), and the config's values."""
    flags = {"algo": algo, "scenario": "soc-v2", "num_envs": 8, "num_seeds": 1, "total_steps": 10**6,
             "run": {"name": "sweepable"}}
    cfg = config_lib.resolve(flags=flags, sets=CASES[algo])
    keys = sweep.sweepable_keys(algo)
    assert keys, f"{algo} has no SWEEPABLE keys"
    env, env_params = soc.make(cfg["scenario"], **cfg["env"])
    key = jax.random.key(0)

    def two_updates(config):
        trainer = algos.make_train(config, env, env_params)
        state, _ = trainer.update(trainer.init(key))
        state, _ = trainer.update(state)
        return [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]

    traced = fast_jit(lambda values: two_updates(sweep.with_values(cfg, keys, list(values))))
    static = fast_jit(lambda: two_updates(cfg))
    base = np.asarray([float(sweep.config_value(cfg, k)) for k in keys], np.float32)
    return (lambda values: [np.asarray(x) for x in traced(jnp.asarray(values))],
            lambda: [np.asarray(x) for x in static()], base)


@pytest.mark.parametrize("algo", [pytest.param(a, marks=pytest.mark.slow) if a in SLOW else a for a in CASES])
def test_each_sweepable_key_is_traced_and_used(algo):
    traced, _, base = two_update_programs(algo)
    reference = traced(base)
    assert all(np.all(np.isfinite(x)) for x in reference)
    assert all(np.array_equal(a, b) for a, b in zip(reference, traced(base)))  # deterministic
    keys = sweep.sweepable_keys(algo)
    unused = []
    for i, k in enumerate(keys):
        values = base.copy()
        values[i] = moved(float(base[i]))
        if all(np.array_equal(a, b) for a, b in zip(reference, traced(values))):
            unused.append(k)
    assert not unused, f"{algo}: moving {unused} changed nothing in two updates"


@pytest.mark.slow
@pytest.mark.parametrize("algo", list(CASES))
def test_the_traced_program_computes_what_the_static_config_does(algo):
    """Up to how XLA folds a constant against a traced scalar (~250 s of CPU for all families)."""
    traced, static, base = two_update_programs(algo)
    a_leaves, b_leaves = traced(base), static()
    assert len(a_leaves) == len(b_leaves)
    for a, b in zip(a_leaves, b_leaves):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# The three pieces that branch on a traced value differently from a Python one, against the
# Python path (to float rounding: XLA folds Python constants into the arithmetic differently).
def test_a_traced_tau_updates_targets_as_a_python_one():
    online, target = {"w": jnp.asarray([1.0, -2.0, 3.5])}, {"w": jnp.asarray([0.5, 0.25, -1.0])}
    for tau, period, step in [(1.0, 1, 1), (0.5, 1, 1), (0.5, 3, 3), (0.5, 3, 2), (1.0, 3, 2)]:
        want = op.update_target(online, target, jnp.int32(step), tau, period)
        got = jax.jit(lambda t: op.update_target(online, target, jnp.int32(step), t, period))(jnp.float32(tau))
        np.testing.assert_allclose(got["w"], want["w"], rtol=1e-6)


def test_a_traced_max_grad_norm_clips_as_a_python_one_and_zero_means_none():
    # Two Adam steps on parallel gradients of norms 5 then 0.5: the second step depends on their
    # ratio, which a limit of 1 changes (Adam's first step alone does not show a clip).
    params = {"w": jnp.zeros(3)}
    grads = [{"w": jnp.asarray([3.0, 4.0, 0.0])}, {"w": jnp.asarray([0.3, 0.4, 0.0])}]

    def two_steps(limit):
        opt = clipped_adam(0.1, limit)
        state, out = opt.init(params), []
        for g in grads:
            update, state = opt.update(g, state, params)
            out.append(update["w"])
        return out[-1]

    traced = jax.jit(two_steps)
    for limit in (0.0, 1.0, 10.0):
        np.testing.assert_allclose(traced(jnp.float32(limit)), two_steps(limit), rtol=1e-6)
    assert not np.allclose(traced(jnp.float32(1.0)), traced(jnp.float32(0.0)), rtol=1e-3)  # 1 clips
    np.testing.assert_allclose(traced(jnp.float32(10.0)), traced(jnp.float32(0.0)), rtol=1e-6)  # 10 does not


@pytest.mark.parametrize("kind", ["exponential", "linear"])
def test_a_traced_epsilon_schedule_equals_the_python_one(kind):
    n = jnp.asarray([0, 1, 7, 100, 5_000, 49_999, 50_000, 10**7], jnp.int32)
    for start, end, decay in [(1.0, 0.05, 50_000), (0.5, 0.1, 7)]:
        want = jax.jit(lambda n: op.epsilon_schedule(start, end, decay, kind)(n))(n)
        got = jax.jit(lambda s, e, d, n: op.epsilon_schedule(s, e, d, kind)(n))(
            jnp.float32(start), jnp.float32(end), jnp.float32(decay), n)
        np.testing.assert_allclose(got, want, rtol=1e-6)
