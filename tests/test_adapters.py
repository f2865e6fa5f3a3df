"""The adapters for non-JAX code (jaxsoc/adapters): each passes its library's own checker, and each
is the jaxsoc env underneath.

* PettingZoo: `parallel_api_test` and `parallel_seed_test` without a warning; the adapter's
  episode is the env's own under the same keys; a role left out idles; action masks for discrete
  roles only; stepping an ended episode is refused;
* the joint view by hand (sizes, order, the highest score picks a discrete role's choice);
* Gymnasium: `check_env` on the single-agent env (its only warnings: the unbounded observation
  box); the vector env declares same-step autoreset and keeps to it (every ended episode's metrics
  come with the terminal observation in the same step, and its length is the steps since that
  env's previous end); the same seed and actions give the same batch.

All on one small soc-v2 (3 hosts per segment, 6-step episodes), so the env's programs compile once.
"""
from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

pytest.importorskip("gymnasium")
pettingzoo = pytest.importorskip("pettingzoo")

import gymnasium  # noqa: E402

import jaxsoc.env as soc  # noqa: E402
from jaxsoc.adapters.joint import JointView  # noqa: E402
from jaxsoc.adapters.single_agent import ENV_ID  # noqa: E402  (importing it registers the id)
from tests.fast import fast_compile  # noqa: E402

SMALL = {"hosts_per_segment": 3, "max_steps": 6}


@pytest.fixture(scope="module", autouse=True)
def _unoptimised():
    """Tens of steps per test, one call each: compiling is the cost here, and XLA's optimisations
    are most of it (tests/fast.py). Applies to the adapters' own programs."""
    with fast_compile():
        yield


def parallel(**kw):
    from jaxsoc.adapters.parallel_env import SOCParallelEnv

    return SOCParallelEnv("soc-v2", **SMALL, **kw)


def test_pettingzoo_checks_pass_without_a_warning():
    from pettingzoo.test import parallel_api_test, parallel_seed_test

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel_api_test(parallel(), num_cycles=50)
        parallel_seed_test(parallel, num_cycles=50)
    assert [str(w.message) for w in caught if "pettingzoo" in w.filename] == []


def test_the_parallel_env_is_the_jax_env_underneath():
    env = parallel()
    obs, infos = env.reset(seed=3)
    # The same episode straight from jaxsoc: PRNGKey(seed), one split per reset and per step.
    jenv, params = soc.make("soc-v2", **SMALL)
    key, k = jax.random.split(jax.random.PRNGKey(3))
    want_obs, state = jenv.reset(k, params)
    for a in env.possible_agents:
        assert obs[a].dtype == np.float32 and env.observation_space(a).contains(obs[a])
        np.testing.assert_array_equal(obs[a], want_obs[a])
    assert set(infos["alert_triage"]) == {"action_mask"} and infos["alert_triage"]["action_mask"].tolist() == [1] * 4
    assert infos["coordinator"]["action_mask"].shape == (env.action_space("coordinator").n,)  # v2: discrete
    assert "action_mask" not in infos["threat_hunter"]  # continuous roles have none
    for a in env.possible_agents:
        env.action_space(a).seed(0)
    steps = 0
    while env.agents:
        actions = {a: env.action_space(a).sample() for a in env.agents}
        obs, rewards, terms, truncs, infos = env.step(actions)
        key, k = jax.random.split(key)
        want_obs, state, want_r, _, want_info = jenv.step_env(k, state, actions, params)
        steps += 1
        for a in env.possible_agents:
            np.testing.assert_array_equal(obs[a], want_obs[a])
            assert rewards[a] == pytest.approx(float(want_r[a]))
        assert len(set(rewards.values())) == 1  # the team reward
        assert infos["coordinator"]["reward_terms"]["detect"] == pytest.approx(float(want_info["reward_terms"]["detect"]))
    assert steps <= SMALL["max_steps"] and any(terms.values()) != any(truncs.values())
    assert set(infos["alert_triage"]["metrics"]) >= {"return", "csr", "length"}
    assert infos["alert_triage"]["metrics"]["length"] == steps
    with pytest.raises(RuntimeError, match="episode has ended"):
        env.step({})


def test_a_role_left_out_idles():
    idle = jax.device_get(soc.make("soc-v2", **SMALL)[0].idle_actions())
    some = parallel()
    full = parallel()
    some.reset(seed=5)
    full.reset(seed=5)
    act = {"threat_hunter": np.ones(10, np.float32), "alert_triage": 0}
    got = some.step(act)[0]
    want = full.step({**idle, **act})[0]
    for a in got:
        np.testing.assert_array_equal(got[a], want[a])
    with pytest.raises(KeyError, match="no role"):
        some.step({"analyst": 0})


def test_the_joint_view_by_hand():
    env, _ = soc.make("soc-v2", **SMALL)  # 5 segments: coordinator 15 choices, hunter 10, triage 4, response 15
    view = JointView(env)
    assert view.action_size == 15 + 10 + 4 + 15
    assert [view.action_slices[a] for a in view.agents] == [slice(0, 15), slice(15, 25), slice(25, 29), slice(29, 44)]
    flat = np.zeros((2, 44), np.float32)
    flat[0, 25:29] = [0.1, 0.2, 0.9, -1.0]  # env 0's triage scores: choice 2 wins
    flat[1, 0:15] = np.linspace(-1, 1, 15)  # env 1's coordinator: the last choice wins
    flat[:, 15:25] = 0.5
    acts = view.actions(flat)
    assert acts["alert_triage"].tolist() == [2, 0] and acts["coordinator"].tolist() == [0, 14]  # ties: lowest
    assert acts["alert_triage"].dtype == np.int32 and acts["threat_hunter"].shape == (2, 10)
    np.testing.assert_array_equal(acts["threat_hunter"], 0.5)
    with pytest.raises(ValueError, match="44 entries"):
        view.actions(np.zeros(43))
    obs = {a: np.full(env.observation_space(a).shape, i, np.float32) for i, a in enumerate(env.agents)}
    joint = view.observation(obs)
    assert joint.shape == (view.observation_size,)
    for i, a in enumerate(view.agents):
        assert np.all(joint[view.obs_slices[a]] == i)
    v1 = JointView(soc.make("hmarl-soc-v1")[0])  # v1's coordinator is continuous: its 8 floats pass through
    assert not v1.discrete["coordinator"] and v1.action_slices["coordinator"] == slice(0, 8)


def test_gymnasium_check_env_passes():
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make(ENV_ID, scenario="soc-v2", **SMALL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    left = [str(w.message) for w in caught if "gymnasium" in w.filename and "infinity" not in str(w.message)]
    assert left == []
    obs, _ = env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        total += reward
        done = terminated or truncated
        assert not (terminated and truncated)
    assert info["metrics"]["return"] == pytest.approx(total, abs=1e-4)  # the env's own episode return


@pytest.mark.slow  # CI budget (10 min on 2 cores): ~35 CPU-s of compiling; the PettingZoo/Gymnasium API checks stay
def test_the_vector_env_resets_in_the_same_step():
    from gymnasium.vector import AutoresetMode

    n = 4
    envs = gymnasium.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point",
                              scenario="soc-v2", **SMALL)
    twin = gymnasium.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point",
                              scenario="soc-v2", **SMALL)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs, _ = envs.reset(seed=7)
    assert np.array_equal(obs, twin.reset(seed=7)[0]) and envs.observation_space.contains(obs)
    envs.action_space.seed(1)
    since_reset = np.zeros(n, int)
    episodes = 0
    for _ in range(2 * SMALL["max_steps"]):
        actions = envs.action_space.sample()
        obs, rewards, terminated, truncated, info = envs.step(actions)
        same = twin.step(actions)
        assert np.array_equal(obs, same[0]) and np.array_equal(rewards, same[1])  # same seed, same actions
        assert obs.shape == (n, envs.single_observation_space.shape[0]) and rewards.dtype == np.float32
        since_reset += 1
        done = terminated | truncated
        assert not np.any(terminated & truncated)
        if done.any():
            np.testing.assert_array_equal(info["_final_obs"], done)
            np.testing.assert_array_equal(info["_final_info"], done)
            for i in np.flatnonzero(done):
                final = info["final_obs"][i]
                assert final.shape == obs[i].shape and not np.array_equal(final, obs[i])
                assert info["final_info"]["metrics"]["length"][i] == since_reset[i]
            assert all(info["final_obs"][i] is None for i in np.flatnonzero(~done))
        else:
            assert "final_obs" not in info
        since_reset[done] = 0
        episodes += int(done.sum())
    assert episodes >= 2 * n  # 6-step episodes: every env ended at least twice in 12 steps
