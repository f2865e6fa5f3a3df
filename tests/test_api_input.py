"""Bad input to the public Python API is refused up front with a one-line message naming the argument
(jaxsoc.load_policy/load_policies, policy.check_run, Policy.act, engine.load/run, jaxsoc.evaluation
and the Gymnasium/PettingZoo adapters), and valid input still works as before.

The learner runs are the toy learner on the toy env (tests/engine_toys.py): one module fixture
trains it (2 seeds, 6 updates) in a few seconds; the adapters use one small soc-v2.
"""
from __future__ import annotations

import copy
import shutil

import jax
import numpy as np
import pytest
import yaml

import jaxsoc
from jaxsoc import config as config_lib, engine
from jaxsoc.analysis.runs import AnalysisError
from jaxsoc.config import ConfigError
from jaxsoc.evaluation import evaluate, make_evaluator
from tests import engine_toys as toys
from tests.fast import fast_compile

SMALL = {"hosts_per_segment": 3, "max_steps": 6}


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return toys.trained_toy_run(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def policy(toy_run):
    return jaxsoc.load_policy(toy_run, make_env=toys.make_toy_env)


# ----------------------------------------------------------------------------- loaders
@pytest.mark.parametrize("update", [6.0, "6", True])
def test_a_non_integer_update_is_named_as_such(toy_run, update):
    for load in (jaxsoc.load_policy, jaxsoc.load_policies):
        with pytest.raises(AnalysisError, match=rf"^update must be an integer, got {update!r}$"):
            load(toy_run, update=update, make_env=toys.make_toy_env)
    with pytest.raises(ConfigError, match=rf"^cannot load: update must be an integer, got {update!r}$"):
        engine.load(toy_run, update, make_env=toys.make_toy_env)


@pytest.mark.parametrize("kwargs, message", [
    ({"seed": 0.7}, "seed must be an integer, got 0.7"),
    ({"seed": True}, "seed must be an integer, got True"),
    ({"greedy": "no"}, "greedy must be True or False, got 'no'"),
])
def test_load_policy_refuses_loose_arguments(toy_run, kwargs, message):
    with pytest.raises(AnalysisError, match=f"^{message}$"):
        jaxsoc.load_policy(toy_run, make_env=toys.make_toy_env, **kwargs)


@pytest.mark.parametrize("seeds, message", [
    ([], "seeds must name at least one seed, got []"),
    ("01", "seeds must be a list of integers, got '01'"),
    (1, "seeds must be a list of integers, got 1"),
    ([0, 1.0], "seeds must be a list of integers, got [0, 1.0]"),
    ([0, 0], "seeds names a seed twice: [0, 0]"),
])
def test_load_policies_refuses_loose_seeds(toy_run, seeds, message):
    with pytest.raises(AnalysisError) as e:
        jaxsoc.load_policies(toy_run, seeds=seeds, make_env=toys.make_toy_env)
    assert str(e.value) == message


def test_a_missing_run_dir_and_a_loose_policy_only_are_refused(toy_run):
    with pytest.raises(AnalysisError, match="^run_dir must be a run folder's path, got None$"):
        jaxsoc.load_policy(None)
    with pytest.raises(ConfigError, match="^cannot load: run_dir must be a run folder's path, got None$"):
        engine.load(None)
    with pytest.raises(ConfigError, match="^cannot load: policy_only must be True or False, got 'no'$"):
        engine.load(toy_run, policy_only="no", make_env=toys.make_toy_env)


def test_valid_arguments_still_load(toy_run, policy):
    assert (policy.seed, policy.update, policy.greedy) == (0, 6, True)
    with fast_compile():
        both = jaxsoc.load_policies(toy_run, seeds=np.array([1, 0]), update=np.int64(6), greedy=np.bool_(False),
                                    make_env=toys.make_toy_env)
        assert [p.seed for p in both] == [1, 0] and not both[0].greedy
        assert engine.load(toy_run, 6, make_env=toys.make_toy_env, policy_only=True).updates == 6


def test_an_edited_num_envs_is_named_as_an_edited_config(toy_run, tmp_path):
    """More num_envs means fewer updates: the checkpoint lies past the run's end, which was named
    instead of the edit."""
    edited = tmp_path / "edited"
    shutil.copytree(toy_run, edited)
    saved = yaml.safe_load((edited / "config.yaml").read_text())
    saved["num_envs"] *= 2
    (edited / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(ConfigError, match=r"was trained with a different config \(its config.yaml was edited\?\)"):
        engine.load(edited, make_env=toys.make_toy_env)
    with pytest.raises(AnalysisError, match=r"its config.yaml was edited\?"):
        jaxsoc.load_policy(edited, make_env=toys.make_toy_env)


# ----------------------------------------------------------------------------- Policy.act
def test_act_checks_the_observations_roles_and_shapes(policy):
    obs, state = policy.env.reset(jax.random.key(0), policy.env_params)
    with pytest.raises(ValueError, match=r"^obs\['a'\] has shape \(2,\); this policy expects \(3,\)$"):
        policy.act(jax.random.key(1), {**obs, "a": obs["a"][:2]})
    with pytest.raises(ValueError, match=r"^obs\['b'\] has shape \(1, 3\); this policy expects \(3,\)"):
        jax.jit(policy.act)(jax.random.key(1), {**obs, "b": obs["b"][None]})  # checked while tracing
    with pytest.raises(ValueError, match=r"^obs lacks 'b': this policy expects 'a', 'b'$"):
        policy.act(jax.random.key(1), {"a": obs["a"]})
    # Valid observations act as the trainer's own act does, one env or vmapped.
    want = policy.trainer_act(policy.params, jax.random.key(1), obs, state, True)
    got = policy.act(jax.random.key(1), obs, state)
    assert all(np.array_equal(got[a], want[a]) for a in toys.AGENTS)
    keys = jax.random.split(jax.random.key(2), 4)
    many = jax.vmap(lambda k: policy.env.reset(k, policy.env_params)[0])(keys)
    assert jax.vmap(policy.act)(keys, many)["a"].shape == (4,)


# ----------------------------------------------------------------------------- evaluation
@pytest.mark.parametrize("kwargs, name, got", [
    ({"num_episodes": 0}, "num_episodes", "0"), ({"num_episodes": -1}, "num_episodes", "-1"),
    ({"num_episodes": 2.5}, "num_episodes", "2.5"), ({"num_episodes": "4"}, "num_episodes", "'4'"),
    ({"num_episodes": True}, "num_episodes", "True"),
    ({"num_episodes": 4, "max_steps": 0}, "max_steps", "0"), ({"num_episodes": 4, "max_steps": -5}, "max_steps", "-5"),
    ({"num_episodes": 4, "max_steps": 2.0}, "max_steps", "2.0"),
])
def test_evaluation_refuses_numbers_that_are_not_positive_integers(kwargs, name, got):
    env, params = toys.make_toy_env("toy")
    act = lambda p, k, o, s, g: {a: 0 for a in toys.AGENTS}  # noqa: E731
    message = f"^{name} must be a positive integer, got {got}$"
    with pytest.raises(ValueError, match=message):
        evaluate(env, params, act, (), jax.random.PRNGKey(0), **kwargs)
    with pytest.raises(ValueError, match=message):
        make_evaluator(env, params, act, kwargs["num_episodes"], max_steps=kwargs.get("max_steps"))


def test_evaluation_accepts_numpy_integers():
    env, params = toys.make_toy_env("toy")
    act = lambda p, k, o, s, g: {a: 0 for a in toys.AGENTS}  # noqa: E731
    with fast_compile():
        out = evaluate(env, params, act, (), jax.random.PRNGKey(0), num_episodes=np.int64(3), max_steps=np.int32(6))
    assert out["completed"].shape == (3,)


# ----------------------------------------------------------------------------- engine.run
@pytest.mark.parametrize("path", ["num_envs", "run", "run.name", "env", "algo"])
def test_run_names_a_missing_config_key(tmp_path, path):
    cfg = toys.toy_config(run={"name": "x", "dir": str(tmp_path)})
    node = cfg
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    del node[last]
    with pytest.raises(ConfigError, match=rf"^config is missing {path} \(build it with jaxsoc.config.resolve\)$"):
        engine.run(cfg, make_env=toys.make_toy_env)
    assert not (tmp_path / "x").exists()


def test_run_refuses_an_on_chunk_that_is_not_callable_before_any_work(tmp_path):
    cfg = toys.toy_config(run={"name": "x", "dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="^on_chunk must be a function .*, got 5$"):
        engine.run(cfg, make_env=toys.make_toy_env, on_chunk=5)
    assert not (tmp_path / "x").exists()


def test_a_resolved_config_still_validates():
    cfg = toys.toy_config()
    assert config_lib.validate(copy.deepcopy(cfg), scenarios=["toy"]) == cfg


# ----------------------------------------------------------------------------- adapters
@pytest.fixture(scope="module")
def adapters():
    pytest.importorskip("gymnasium")
    pytest.importorskip("pettingzoo")
    from jaxsoc.adapters import parallel_env, single_agent, vector_env

    return parallel_env, single_agent, vector_env


@pytest.mark.parametrize("num_envs", [2.7, None, True, "2"])
def test_vector_env_refuses_a_non_integer_num_envs(adapters, num_envs):
    with pytest.raises(ValueError, match=rf"^num_envs must be an integer, got {num_envs!r}$"):
        adapters[2].SOCVectorEnv(num_envs, **SMALL)


def test_vector_env_refuses_a_render_mode(adapters):
    import gymnasium

    with pytest.raises(ValueError, match="^SOCVectorEnv draws nothing"):
        adapters[2].SOCVectorEnv(2, render_mode="human", **SMALL)
    with pytest.raises(ValueError, match="^SOCVectorEnv draws nothing"):
        gymnasium.make_vec(adapters[1].ENV_ID, num_envs=2, vectorization_mode="vector_entry_point",
                           render_mode="human", **SMALL)
    assert adapters[2].SOCVectorEnv(2, render_mode=None, **SMALL).render_mode is None


def test_wrong_shaped_actions_are_refused_with_the_shape_wanted(adapters):
    with fast_compile():
        envs = adapters[2].SOCVectorEnv(4, **SMALL)
        envs.reset(seed=0)
        n = envs.single_action_space.shape[0]
        for bad in (envs.single_action_space.sample(), np.zeros((8, n)), np.zeros((4, n - 1))):
            with pytest.raises(ValueError, match=rf"^actions must have shape \(4, {n}\), got {re_shape(bad)}$"):
                envs.step(bad)
        assert envs.step(np.zeros((4, n)))[1].shape == (4,)
        env = adapters[1].SOCJointEnv(**SMALL)
        env.reset(seed=0)
        for bad in (np.zeros((2, n)), 3):
            with pytest.raises(ValueError, match=rf"^actions must have shape \({n},\), got {re_shape(bad)}$"):
                env.step(bad)


def re_shape(array) -> str:
    return str(np.shape(array)).replace("(", r"\(").replace(")", r"\)")


def test_the_joint_env_refuses_to_step_an_ended_episode(adapters):
    import gymnasium

    with fast_compile():
        env = gymnasium.make(adapters[1].ENV_ID, **SMALL)
        env.reset(seed=0)
        action = np.zeros(env.action_space.shape, np.float32)
        for _ in range(SMALL["max_steps"]):
            *_, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
        assert terminated or truncated
        with pytest.raises(RuntimeError, match=r"the episode has ended .*call reset\(\)"):
            env.step(action)
        env.reset()
        env.step(action)  # a new episode steps again


@pytest.mark.parametrize("seed, message", [
    (1.5, "seed must be an integer, got 1.5"), (True, "seed must be an integer, got True"),
    (-1, r"seed must be in \[0, 4294967295\], got -1"), (2**32, r"seed must be in \[0, 4294967295\], got 4294967296"),
])
def test_parallel_env_refuses_seeds_a_key_cannot_hold(adapters, seed, message):
    env = adapters[0].SOCParallelEnv(**SMALL)
    with pytest.raises(ValueError, match=f"^{message}$"):
        env.reset(seed=seed)


@pytest.mark.parametrize("seed, message", [
    (1.5, "seed must be an integer, got 1.5"), (True, "seed must be an integer, got True"),
    (-1, "seed must be >= 0, got -1"),
])
def test_gymnasium_envs_refuse_non_integer_seeds(adapters, seed, message):
    for env in (adapters[1].SOCJointEnv(**SMALL), adapters[2].SOCVectorEnv(2, **SMALL)):
        with pytest.raises(ValueError, match=f"^{message}$"):
            env.reset(seed=seed)


def test_valid_seeds_still_reset(adapters):
    with fast_compile():
        env = adapters[0].SOCParallelEnv(**SMALL)
        a = env.reset(seed=2**32 - 1)[0]
        b = env.reset(seed=np.int64(2**32 - 1))[0]
        assert all(np.array_equal(a[k], b[k]) for k in a)
        joint = adapters[1].SOCJointEnv(**SMALL)
        assert np.array_equal(joint.reset(seed=2**40)[0], joint.reset(seed=2**40)[0])
        # Gymnasium seeds from every bit: 2**40 cut to 32 bits would be seed 0.
        assert not np.array_equal(joint.reset(seed=2**40)[0], joint.reset(seed=0)[0])


@pytest.mark.parametrize("action, obs, message", [
    ((2, 2), (3,), r"the joint view needs Discrete, MultiDiscrete or 1-D Box actions; 'grid' has Box\(.*shape=\(2, 2\).*\)"),
    ((2,), (3, 3), r"the joint view needs vector observations; 'grid' has shape \(3, 3\)"),
])
def test_the_joint_envs_refuse_a_world_no_flat_vector_holds(adapters, monkeypatch, action, obs, message):
    # Every scenario jaxsoc.env.make knows fits the joint view; one registered later may not, and
    # is refused when the adapter is built, not when a step fails deep in NumPy.
    from jaxsoc.env.spaces import Box

    world = type("World", (), {"agents": ["grid"], "action_space": lambda self, a: Box(-1.0, 1.0, action),
                               "observation_space": lambda self, a: Box(0.0, 1.0, obs)})()
    monkeypatch.setattr(jaxsoc.env, "make", lambda scenario, **overrides: (world, None))
    for build in (lambda: adapters[1].SOCJointEnv("grid"), lambda: adapters[2].SOCVectorEnv(2, "grid")):
        with pytest.raises(ValueError, match=f"^{message}$"):
            build()
