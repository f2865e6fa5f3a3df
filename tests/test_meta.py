"""Meta-learning across scenarios (jaxsoc/algos/meta.py): Reptile over the PPO team.

  * the batched Reptile outer step against hand-worked numbers on quadratic tasks (and k = 1
    Reptile is a gradient step on the mean loss);
  * task sampling: deterministic per key, inside its ranges, other fields untouched, a leading task
    axis the env vmaps over; bad ranges refused with one clear line;
  * on a family of shifted toy SOC tasks (tests/onpolicy_toys.py with a hidden, task-dependent
    offset on the continuous roles' targets) the Reptile meta-init adapts in k PPO updates far
    better than PPO from scratch, meta-training is deterministic per seed, and the non-meta team
    (plain PPO on the task mixture) trains on the same tasks.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxsoc import config as config_lib
from jaxsoc.algos import meta
from jaxsoc.config import ConfigError
from jaxsoc.env.params import build_params
from tests.fast import fast_jit
from tests.onpolicy_toys import ToyParams, ToySOC


# ----------------------------------------------------------------------------- the outer step
def quadratic_adapt(lr: float, k: int):
    """k steps of SGD with rate `lr` on the task loss 0.5 * |x - c|^2 (c = the task)."""
    def adapt(theta, c, key):
        def step(x, _):
            return jax.tree.map(lambda xi, g: xi - lr * g, x, jax.grad(lambda y: 0.5 * jnp.sum((y["x"] - c) ** 2))(x)), None
        return jax.lax.scan(step, theta, None, length=k)[0], jnp.zeros(())
    return adapt


def test_reptile_outer_step_by_hand_on_quadratic_tasks():
    keys = jax.random.split(jax.random.key(0), 2)
    tasks = jnp.array([1.0, 3.0])
    theta = {"x": jnp.array(0.0)}
    # k = 2 steps of rate 1/2 halve the distance twice: x_2 = c + (x0 - c) / 4, i.e. 0.75 and 2.25;
    # their mean is 1.5, and eps = 1/2 moves theta half-way there: 0.75.
    theta, _ = meta.outer_step(theta, tasks, keys, quadratic_adapt(0.5, 2), 0.5)
    assert float(theta["x"]) == pytest.approx(0.75)
    # Again from 0.75: x_2 = c + (0.75 - c) / 4 -> 0.9375, 2.4375; mean 1.6875; theta 0.75 + 0.46875.
    theta, _ = meta.outer_step(theta, tasks, keys, quadratic_adapt(0.5, 2), 0.5)
    assert float(theta["x"]) == pytest.approx(1.21875)
    # reptile_step alone on a vector: theta + eps * (mean_i adapted_i - theta); the means are
    # (4, 1), so theta moves by a quarter of (3, 3).
    out = meta.reptile_step({"w": jnp.array([1.0, -2.0])}, {"w": jnp.array([[3.0, 0.0], [5.0, 2.0]])}, 0.25)
    np.testing.assert_allclose(out["w"], [1.75, -1.25])
    # k = 1: Reptile is one gradient step of rate eps * lr on the mean task loss (joint training):
    # 0 - 0.5 * 0.2 * (0 - 2) = 0.2.
    theta, _ = meta.outer_step({"x": jnp.array(0.0)}, tasks, keys, quadratic_adapt(0.2, 1), 0.5)
    assert float(theta["x"]) == pytest.approx(0.2)


# ----------------------------------------------------------------------------- tasks
RANGES = (("stealth", 0.3, 0.9), ("segment_values", 0.5, 1.0), ("fp_alert_rate", 0.1, 0.6))


def test_task_sampling_is_deterministic_within_bounds_and_vmaps_over_the_env():
    import jaxsoc.env as soc

    params = build_params("soc-v2")
    a = meta.sample_tasks(jax.random.key(3), params, RANGES, 256)
    b = meta.sample_tasks(jax.random.key(3), params, RANGES, 256)
    c = meta.sample_tasks(jax.random.key(4), params, RANGES, 256)
    assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b))
    assert not np.array_equal(a.stealth, c.stealth)
    for name, low, high in RANGES:
        for x in (getattr(a, name) if name == "segment_values" else (getattr(a, name),)):
            assert x.shape == (256,) and float(x.min()) >= low and float(x.max()) <= high
            assert float(x.max()) - float(x.min()) > 0.8 * (high - low)  # spread over the range
    # Entries of a tuple field are drawn on their own; fields not ranged keep the scenario's values.
    assert not np.array_equal(a.segment_values[0], a.segment_values[1])
    np.testing.assert_allclose(a.p_lateral, np.full(256, params.p_lateral), rtol=1e-6)
    assert a.hosts_per_segment == params.hosts_per_segment and a.name == params.name
    # One task without an axis; the env resets under a vmap over tasks (traced, not compiled).
    one = meta.sample_tasks(jax.random.key(3), params, RANGES)
    low, high = next((lo, hi) for name, lo, hi in RANGES if name == "stealth")
    assert one.stealth.shape == () and low <= float(one.stealth) <= high
    assert float(one.stealth) == float(meta.sample_tasks(jax.random.key(3), params, RANGES).stealth)
    env = soc.SOCEnv(params)
    obs, _ = jax.eval_shape(jax.vmap(env.reset), jax.random.split(jax.random.key(0), 4),
                            meta.sample_tasks(jax.random.key(1), params, RANGES, 4))
    assert obs["coordinator"].shape[0] == 4


def test_bad_task_ranges_are_refused_before_tracing():
    params = build_params("soc-v2")
    with pytest.raises(ValueError, match="static"):
        meta.check_ranges(params, meta.parse_ranges([["max_steps", 100, 200]]))
    with pytest.raises(ValueError, match="not a float field"):
        meta.check_ranges(params, meta.parse_ranges([["reentry_cooldown", 5, 20]]))
    with pytest.raises(ValueError, match="did you mean 'stealth'"):
        meta.check_ranges(params, meta.parse_ranges([["stelth", 0.1, 0.2]]))
    with pytest.raises(ValueError, match="stealth = 1.5 is not a valid scenario"):
        meta.check_ranges(params, meta.parse_ranges([["stealth", 0.5, 1.5]]))
    for bad, message in (([["stealth", 0.9, 0.1]], "low > high"), ([["stealth", 0.1]], r"\[field, low, high\]"),
                         ([["stealth", 0.1, 0.2], ["stealth", 0.3, 0.4]], "twice")):
        with pytest.raises(ConfigError, match=message):
            config_lib.resolve(flags={"algo": "reptile", "meta": {"tasks": bad}})
    with pytest.raises(ConfigError, match="meta.inner_updates must be positive"):
        config_lib.resolve(flags={"algo": "reptile"}, sets=["meta.inner_updates=0"])
    tasks = config_lib.resolve(flags={"algo": "reptile"})["meta"]["tasks"]  # the default ranges stealth
    with pytest.raises(ConfigError, match="meta.tasks ranges stealth, which this scenario does not read"):
        meta.check_ranges(build_params("soc-strategic"), meta.parse_ranges(tasks))  # each campaign draws its own
    with pytest.raises(ConfigError, match="meta.anneal_lr is not read"):  # inner_config turns it off
        config_lib.resolve(flags={"algo": "reptile"}, sets=["meta.anneal_lr=true"])


# ----------------------------------------------------------------------------- learning on toy tasks
@struct.dataclass
class ShiftParams(ToyParams):
    offset: float = 0.0  # numeric leaf: the task


class ShiftedToySOC(ToySOC):
    """The toy SOC whose continuous roles see their targets shifted by -offset (threat hunter) and
    +offset (response orchestrator): the reward still wants the true targets, so each task wants
    a different bias that only experience in it reveals."""

    def get_obs(self, s, params=None):
        p = self.default_params if params is None else params
        obs = super().get_obs(s, p)
        return {**obs, "threat_hunter": obs["threat_hunter"].at[:-1].add(-p.offset),
                "response_orchestrator": obs["response_orchestrator"].at[:-1].add(p.offset)}


K, TASKS, ENVS, ROLLOUT, OUTER = 3, 4, 16, 8, 20
TOY_PARAMS = ShiftParams()
TOY_ENV = ShiftedToySOC(TOY_PARAMS)
TOY_CONFIG = {"algo": "reptile", "num_envs": ENVS, "total_steps": OUTER * TASKS * K * ENVS * ROLLOUT,
              "meta": {**meta.DEFAULTS, "rollout": ROLLOUT, "minibatches": 2, "hidden_sizes": [32], "lr": 3e-3,
                       "inner_updates": K, "tasks_per_step": TASKS, "tasks": [["offset", -0.6, 0.6]]}}


def run_updates(update, state, n):
    metrics = []
    for _ in range(n):
        state, m = update(state)
        metrics.append(m)
    return state, jax.tree.map(lambda *xs: np.stack(xs), *metrics)


@pytest.fixture(scope="module")
def meta_trained():
    """OUTER Reptile steps on the shifted toy tasks, twice, and the compiled `update` (measuring
    adaptation reuses it: compiling dominates on 2 cores, the run is ~30k toy env steps)."""
    trainer = meta.make_train(TOY_CONFIG, TOY_ENV, TOY_PARAMS)
    update = fast_jit(trainer.update)  # XLA's optimisations off: compile time is the cost here
    start = fast_jit(trainer.init)(jax.random.key(0))
    state, metrics = run_updates(update, start, OUTER)
    again, _ = run_updates(update, start, OUTER)
    return trainer, update, start, state, metrics, again


@pytest.mark.slow  # CI budget (10 min on 2 cores): meta-training fixture (~30 CPU-s); Reptile's hand-worked step stays
def test_meta_training_counts_steps_and_is_deterministic(meta_trained):
    trainer, _, _, state, metrics, again = meta_trained
    assert trainer.num_updates == OUTER and trainer.env_steps_per_update == TASKS * K * ENVS * ROLLOUT
    assert int(state.env_steps) == TOY_CONFIG["total_steps"] == int(metrics["env_steps"][-1])
    assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), state, again))
    eps = np.asarray(metrics["outer_lr"])  # annealed linearly from 1 to 0
    np.testing.assert_allclose(eps[[0, OUTER // 2]], [1.0, 0.5], rtol=1e-6)


@pytest.mark.slow  # CI budget (10 min on 2 cores): meta-training fixture (~30 CPU-s); Reptile's hand-worked step stays
def test_meta_init_adapts_in_k_updates_far_better_than_scratch(meta_trained):
    """One outer step from a given theta draws TASKS fresh tasks and runs K PPO updates on each:
    its `return_last` is the mean episode return during the K-th update of each adaptation. From
    the meta-init and from PPO's own initialisation (what meta-training started from), on 16 tasks
    that meta-training never drew (other keys)."""
    _, update, start, state, _, _ = meta_trained

    def adapted_return(theta):
        out = [update(start._replace(params=theta, key=jax.random.key(1000 + i)))[1] for i in range(4)]
        return np.mean([m["return_first"] for m in out]), np.mean([m["return_last"] for m in out])

    meta_first, meta_last = adapted_return(state.params)
    scratch_first, scratch_last = adapted_return(start.params)
    # Measured: meta +1.48 in the first update, +1.62 in the K-th; scratch -1.55, -1.42. The
    # meta-init already avoids masked choices (-10 each) and names the discrete targets; scratch
    # spends its K updates learning that.
    assert meta_last > scratch_last + 2.5
    assert meta_first > scratch_first + 2.5


@pytest.mark.slow
def test_greedy_adaptation_curve_of_the_meta_init_beats_scratch(meta_trained):
    """`adaptation_curve` (what eval/meta_adapt.py runs): greedy returns after 0 and K updates on 8
    held-out tasks, meta-init against scratch (measured: +9.15 / +9.15 against -0.3 / +5.0)."""
    _, _, start, state, _, _ = meta_trained
    tasks = meta.sample_tasks(jax.random.key(99), TOY_PARAMS, meta.parse_ranges(TOY_CONFIG["meta"]["tasks"]), 8)
    keys = jax.random.split(jax.random.key(5), 8)

    @fast_jit
    def returns(theta):  # [2]: mean greedy return after 0 and K updates, over the 8 tasks
        def one(task, key):
            return meta.adaptation_curve(TOY_CONFIG, TOY_ENV, theta, task, key, (0, K), 32)["return"].mean(-1)
        return jax.vmap(one)(tasks, keys).mean(0)

    meta_ret, scratch_ret = np.asarray(returns(state.params)), np.asarray(returns(start.params))
    assert meta_ret[1] > scratch_ret[1] + 3.0
    assert meta_ret[0] > scratch_ret[0] + 3.0
