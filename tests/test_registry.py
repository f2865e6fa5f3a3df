"""Every registered algorithm (`jaxsoc.algos.ALGORITHMS`), through the public interface only.

For each name, on a tiny `hmarl-soc-v1` (4 envs, 6-step episodes, 4 hosts per segment, width-16
networks, a 24-slot buffer that wraps, 2 gradient rounds per update from the first update on):

* resume is bit-exact: 2 updates straight equal 1 update, a checkpoint, a restore and 1 more
  update (parameters, optimiser states, buffers, env states, keys, and every update's metrics),
  and the checkpoint restores exactly the state that was saved;
* `act` returns one action per agent inside the env's action space, the same actions for the
  same key, and, for learners, the same greedy actions for any key;
* `jaxsoc.evaluation` of the trained policy returns finite metrics for every episode;
* `jaxsoc.load_policy` of a run folder holding the trained state acts exactly as the trainer's own
  greedy `act` (what `eval/evaluate.py` runs), jitted or not, and needs the env state only when
  its `act` reads it.

Only `jaxsoc.algos.make_train`, `jaxsoc.engine`, `jaxsoc.checkpoints`, `jaxsoc.evaluation` and
`jaxsoc.load_policy` are used, so a learner that changes its internals keeps these tests; one that is added gets them.
"""
from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxsoc
import jaxsoc.env as soc
from jaxsoc import algos, config as config_lib, engine, evaluation
from jaxsoc.checkpoints import Checkpoints
from jaxsoc.demos import HEURISTICS
from tests.fast import FAST_COMPILE
from tests.test_engine import leaves_equal

# Registered learners and baselines of the package; names that tests register for their own toys
# (families outside `jaxsoc.algos`) are not SOC learners, and the demos' heuristics act on their
# demo scenarios only (tests/test_demos.py).
NAMES = sorted(name for name in algos.ALGORITHMS
               if algos.family_module(name).__name__.startswith("jaxsoc.algos.") and name not in HEURISTICS)
# Compiling one algorithm's programs costs 30-90 s of a CI core cold (measured: rule-soar 34, dqn
# 61, mappo 75, hmarl 89 CPU-s), too much for all of them in the default run (under 10 minutes on
# 2 cores). By default: HMARL's resume and act (nothing else tests them; its run holds a DQN, a SAC
# and a MADDPG learner on the shared prioritised replay, so it also carries the off-policy engine
# resume that DQN's entry checked); every name, and HMARL's load_policy and evaluation, with `-m slow`.
DEFAULT_RUN = ("hmarl",)
NUM_ENVS, ROLLOUT, UPDATES, RESUME_AT = 4, 4, 2, 1
# Compiling dominates these tests (init, update, act and evaluation programs per algorithm): XLA's
# backend optimisations off (tests/fast.py) about halves it; both runs of a resume check share one program.
ENV = {"max_steps": 6, "hosts_per_segment": 4, "directive_period": 2}
# The scripted SOC leads issue discrete directives and read the SOC view: soc-v2 has both.
SCENARIO = {name: "soc-v2" for name in soc.POLICIES if name.startswith("lead-")}
SCENARIO.update(algos.HOME_SCENARIO)  # the learnable red (soc-v2-redblue), seed 000's team (soc-hybrid)


def scenario_of(algo: str) -> str:
    return SCENARIO.get(algo, "hmarl-soc-v1")
# The smallest settings that still run every part of each update; a key is set only where the
# algorithm's family has it, so families keep their own names.
TINY = {
    "rollout": ROLLOUT,
    "hidden": [16],
    "hidden_sizes": [16],
    "epochs": 1,
    "minibatches": 1,
    "buffer_size": 24,  # 16 transitions per update: the replay ring wraps in the resumed update
    "batch_size": 8,
    "learning_starts": 0,
    "utd": 2 / (NUM_ENVS * ROLLOUT),  # 2 gradient rounds per update
    "coordinator": {"epochs": 1, "minibatches": 1, "num_heads": 2, "d_k": 8, "embed_dim": 8, "capacity": 1.0},
}


def tiny_section(defaults: dict, tiny: dict = TINY) -> dict:
    """The entries of `tiny` whose keys `defaults` has (recursively for nested sections)."""
    out = {}
    for key, value in tiny.items():
        if key not in defaults or isinstance(value, dict) != isinstance(defaults[key], dict):
            continue
        out[key] = tiny_section(defaults[key], value) if isinstance(value, dict) else value
    return out


def build(algo: str):
    """The tiny config, env and `Trainer` of `algo` (UPDATES updates, whatever its env steps per update)."""
    family = algos.family_of(algo)
    # total_steps is set below from the update's size; the placeholder only has to pass validation.
    flags = {"algo": algo, "scenario": scenario_of(algo), "num_envs": NUM_ENVS, "total_steps": 10**9,
             "env": ENV, family: tiny_section(algos.default_section(algo)), "run": {"name": algo}}
    cfg = config_lib.resolve(flags=flags)
    env, env_params = soc.make(cfg["scenario"], **cfg["env"])
    cfg["total_steps"] = UPDATES * algos.make_train(cfg, env, env_params).env_steps_per_update
    return cfg, env, env_params, algos.make_train(cfg, env, env_params)


def abstract(tree):
    """`tree`'s shapes, dtypes and shardings: what `Checkpoints.restore` lays a state out as."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


@pytest.fixture(scope="module", params=[
    pytest.param(name, marks=() if name in DEFAULT_RUN else pytest.mark.slow) for name in NAMES])
def trained(request, tmp_path_factory):
    """`algo`'s UPDATES updates straight, and the same run checkpointed after update RESUME_AT,
    restored from disk and continued; the initial state and the env, for the other tests."""
    algo = request.param
    cfg, env, env_params, trainer = build(algo)
    init = jax.jit(trainer.init, compiler_options=FAST_COMPILE)
    update = jax.jit(trainer.update, compiler_options=FAST_COMPILE)  # compiled once, used by both runs
    initial = init(engine.seed_keys(cfg["seed"], 1)[0])
    state, straight = initial, []
    ckpts = Checkpoints(tmp_path_factory.mktemp(algo) / "checkpoints")
    try:
        for u in range(1, UPDATES + 1):
            state, metrics = update(state)
            straight.append(metrics)
            if u == RESUME_AT:
                ckpts.save(u, state, {"update": u})
                saved = jax.device_get(state)
        ckpts.wait()
        restored = ckpts.restore(RESUME_AT, abstract(state))
        assert leaves_equal(restored, saved), f"{algo}: the checkpoint does not restore what was saved"
    finally:
        ckpts.close()
    resumed = list(straight[:RESUME_AT])
    for _ in range(RESUME_AT, UPDATES):
        restored, metrics = update(restored)
        resumed.append(metrics)
    return dict(algo=algo, cfg=cfg, env=env, env_params=env_params, trainer=trainer, initial=initial,
                state=state, metrics=straight, resumed_state=restored, resumed_metrics=resumed)


def test_resume_is_bit_exact(trained):
    algo = trained["algo"]
    assert leaves_equal(trained["resumed_state"], trained["state"]), algo
    assert leaves_equal(trained["resumed_metrics"], trained["metrics"]), algo
    # There was something to resume: a learner's policy moved in its updates.
    if algos.family_of(algo) != "scripted":
        policy = trained["trainer"].policy_params
        assert not leaves_equal(policy(trained["initial"]), policy(trained["state"])), f"{algo} did not update"




@pytest.fixture(scope="module")
def starts():
    """`scenario -> 8 envs just after reset` (one compilation per scenario, shared by algorithms)."""
    cache = {}

    def get(scenario):
        if scenario not in cache:
            env, env_params = soc.make(scenario, **ENV)
            reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)), static_argnums=1,
                            compiler_options=FAST_COMPILE)
            cache[scenario] = reset(jax.random.split(jax.random.key(1), 8), env_params)
        return cache[scenario]
    return get


@pytest.fixture(scope="module")
def batched_act():
    """`trainer -> jit(vmap(trainer.act))` over envs (`greedy` static), compiled once per algorithm
    for the tests that call it."""
    cache = {}

    def get(trainer):
        if trainer.name not in cache:
            cache[trainer.name] = jax.jit(jax.vmap(trainer.act, in_axes=(None, 0, 0, 0, None)), static_argnums=4,
                                          compiler_options=FAST_COMPILE)
        return cache[trainer.name]
    return get


def test_act_shapes_spaces_and_determinism(trained, starts, batched_act):
    algo, env, env_params, trainer = (trained[k] for k in ("algo", "env", "env_params", "trainer"))
    params = trainer.policy_params(trained["state"])
    obs, state = starts(scenario_of(algo))
    act = batched_act(trainer)
    keys = jax.random.split(jax.random.key(2), 8)
    other = jax.random.split(jax.random.key(3), 8)
    for greedy in (False, True):
        actions = act(params, keys, obs, state, greedy)
        assert set(actions) == set(env.agents), algo
        for agent in env.agents:
            space = env.action_space(agent)
            a = actions[agent]
            assert a.shape == (8, *space.shape) and a.dtype == space.dtype, (algo, agent, a.shape, a.dtype)
            assert bool(jax.vmap(space.contains)(a).all()), (algo, agent, greedy)
        assert leaves_equal(actions, act(params, keys, obs, state, greedy)), (algo, greedy)
    if algos.family_of(algo) != "scripted":  # a learner's greedy action is a function of obs alone
        assert leaves_equal(act(params, keys, obs, state, True), act(params, other, obs, state, True)), algo


@pytest.mark.slow  # CI budget (10 min on 2 cores): hmarl's default run keeps resume and act; loading and evaluating its policy cost ~36 CPU-s more
def test_evaluation_of_the_trained_policy_is_finite(trained):
    algo, env, env_params, trainer = (trained[k] for k in ("algo", "env", "env_params", "trainer"))
    rollout = evaluation.make_evaluator(env, env_params, trainer.act, num_episodes=4)
    out = jax.jit(rollout, compiler_options=FAST_COMPILE)(trainer.policy_params(trained["state"]), jax.random.key(4))
    out = jax.tree.map(np.asarray, out)
    assert bool(np.all(out.pop("completed"))), algo  # the env's episode limit ends every episode
    # MTTD/MTTR are undefined (NaN) in an episode without a detection where the metrics say so
    # (v2's D9 fix, soc-hybrid): there only the other metrics must be finite.
    undefined_times = getattr(env_params, "fix_d9_metrics", False) or scenario_of(algo) == "soc-hybrid"
    timed = () if undefined_times else ("mttd", "mttr")
    for name in ("return", "length", "csr", "fpr") + timed:
        values = np.asarray(out[name])
        assert values.shape == (4,) and np.isfinite(values).all(), (algo, name, values)
    assert np.all((out["length"] >= 1) & (out["length"] <= ENV["max_steps"])), (algo, out["length"])


def write_run(path, cfg, trainer, state, update):
    """The run folder `engine.run` leaves after `update` updates of one seed: `config.yaml` and
    checkpoint `update` of `state` (seed axis first) with the engine's metadata."""
    path.mkdir()
    config_lib.save(cfg, path / "config.yaml")
    ckpts = Checkpoints(path / "checkpoints")
    try:
        meta = engine.checkpoint_meta(cfg, update, trainer.env_steps_per_update, 0.0)
        ckpts.save(update, jax.tree.map(lambda x: x[None], state), meta)
        ckpts.wait()
    finally:
        ckpts.close()


def assert_same_actions(got, want, algo):
    """Discrete choices exactly; continuous actions to float rounding: a jitted `policy.act` compiles
    the parameters in as constants, which XLA may fold in another order than the trainer's program,
    where they are arguments (single-drl's shared torso differs in the 7th digit)."""
    for agent in want:
        g, w = np.asarray(got[agent]), np.asarray(want[agent])
        if np.issubdtype(w.dtype, np.integer):
            np.testing.assert_array_equal(g, w, err_msg=f"{algo} {agent}")
        else:
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=f"{algo} {agent}")


@pytest.mark.slow  # CI budget (10 min on 2 cores): hmarl's default run keeps resume and act; loading and evaluating its policy cost ~36 CPU-s more
def test_load_policy_acts_as_the_trained_policy(trained, starts, batched_act, tmp_path):
    algo, env, trainer, cfg = (trained[k] for k in ("algo", "env", "trainer", "cfg"))
    write_run(tmp_path / algo, cfg, trainer, trained["state"], UPDATES)
    policy = jaxsoc.load_policy(tmp_path / algo)
    scripted = algos.family_of(algo) == "scripted"
    assert (policy.algo, policy.seed, policy.update, policy.greedy) == (algo, cfg["seed"], None if scripted else UPDATES,
                                                                        True)
    obs, state = starts(scenario_of(algo))
    keys = jax.random.split(jax.random.key(5), 8)
    # What evaluation picks: the trainer's own act, greedy, with the parameters it trained.
    want = batched_act(trainer)(trainer.policy_params(trained["state"]), keys, obs, state, True)
    got = jax.jit(jax.vmap(policy.act), compiler_options=FAST_COMPILE)(keys, obs, state)
    assert_same_actions(got, want, algo)
    if policy.reads_state:
        with pytest.raises(ValueError, match=r"reads the env state.*act\(key, obs, state\)"):
            policy.act(keys[0], jax.tree.map(lambda x: x[0], obs))
    else:  # the state is optional and changes nothing
        stateless = jax.jit(jax.vmap(lambda k, o: policy.act(k, o)), compiler_options=FAST_COMPILE)
        assert_same_actions(stateless(keys, obs), want, algo)
    if algo in ("dqn", "hmarl"):  # the default run's two: observations only / the directive schedule
        assert policy.reads_state == (algo == "hmarl")
    # The explainer, on the 8 envs' observations as a leading decisions axis (jitted: op by op costs more).
    if algo == "hmarl":  # per decision and head, a distribution over segments
        weights = jax.jit(lambda o: policy.attention(o)[0], compiler_options=FAST_COMPILE)(obs)
        assert weights.shape == (8, TINY["coordinator"]["num_heads"], trained["env_params"].num_segments)
        np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, rtol=1e-5)
    else:
        assert policy.attention(obs) is None
