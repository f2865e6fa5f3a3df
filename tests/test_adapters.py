"""The adapters for non-JAX code (jaxsoc/adapters): each passes its library's own checker, and each
is the jaxsoc env underneath.

* PettingZoo: `parallel_api_test` and `parallel_seed_test` without a warning; the adapter's
  episode is the env's own under the same keys; a role left out idles; action masks for discrete
  roles only; stepping an ended episode is refused;
* the joint view by hand (sizes, order, the highest score picks a discrete role's choice; the
  observation box is the roles' own bounds, entry by entry);
* Gymnasium: `check_env` on the single-agent env (its only warnings: the unbounded observation
  box, as soc-v2's own observation spaces are); the vector env declares same-step autoreset and
  keeps to it (every ended episode's metrics come with the terminal observation in the same step,
  and its length is the steps since that env's previous end); the same seed and actions give the
  same batch;
* adapters of one world share its compiled programs (each env compares and hashes by its class
  and params; soc-hybrid's by the value of its detector's arrays too);
* bad actions (a choice that is no whole number or out of range, NaN or inf, another shape) are
  refused in one line naming the role, the value and the space, before the episode moves; what
  the env reads as meant passes (2.0, NumPy integers, Box values past their bounds, clipped).

All on one small soc-v2 (3 hosts per segment, 6-step episodes), so the env's programs compile once.
Then every scenario that is no SOC preset (retail, banking, cage4-like, soc-hybrid) and
soc-v2-redblue, 4-step episodes: PettingZoo's API and seed tests and Gymnasium's `check_env` pass
(without a warning on cage4-like and soc-hybrid, whose observations are bounded); the spaces are
the env's (int32 for every Discrete and MultiDiscrete); the masks are the env's (a tuple per host
for soc-hybrid's MultiDiscrete roles); the infos hold `reward_terms` only where the env splits its
reward; an episode ends at `max_steps` (truncated) unless the world ends first; the same seed gives
the same episode; the vector env resets at `max_steps`; the joint view decodes MultiDiscrete scores
by hand; and the demos' `step_env` is their `step` without the reset. Slow: over 300 or more random steps the
bounded worlds' observations stay inside the joint box.
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
from tests.test_engine import leaves_equal  # noqa: E402

SMALL = {"hosts_per_segment": 3, "max_steps": 6}
# A Discrete role's dtype: the env's int32 (Gymnasium's default is int64).
DISCRETE_DTYPE = np.int32


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
    assert env.action_space("alert_triage").sample().dtype == DISCRETE_DTYPE  # the env's int32, not Gymnasium's int64
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
    with pytest.raises(ValueError, match=r"^unknown role 'analyst' in actions \(roles: coordinator, "):
        some.step({"analyst": 0})
    with pytest.raises(ValueError, match=r"^unknown role 'alert_triag' in actions \(did you mean 'alert_triage'\?\)"):
        some.step({"alert_triag": 0})
    with pytest.raises(ValueError, match=r"^actions must be a dict \{role: action\}, got list$"):
        some.step([0, 1])


def test_red_left_out_attacks_as_the_scripted_campaign_does():
    """Under soc-v2-redblue the JAX env runs the scripted campaign when `red` has no action; the
    adapter idled red instead (RED_QUIET every step: no attacker at all). Left out, red now
    follows the same transition as the JAX env stepped without a red key."""
    from jaxsoc.adapters.parallel_env import SOCParallelEnv

    kw = {"hosts_per_segment": 3, "max_steps": 30}
    pz = SOCParallelEnv("soc-v2-redblue", **kw)
    with pytest.raises(RuntimeError, match=r"^call reset\(\) before step\(\)$"):
        pz.step({})
    env, params = soc.make("soc-v2-redblue", **kw)
    blue = {a: v for a, v in jax.device_get(env.idle_actions(params)).items() if a != "red"}
    pz.reset(seed=3)
    state, key, steps = pz._state, pz._key, 0
    while pz.agents:
        pz.step({})  # every role left out: blue idles, red is the script
        key, k = jax.random.split(key)
        _, state, *_ = env.step_env(k, state, blue, params)
        steps += 1
        assert leaves_equal(pz._state, state)
    assert steps > 1 and np.asarray(state.hosts.compromised).any()  # the script attacked an idle SOC


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


class ThreeRoles:
    """Just what JointView reads: roles with a bounded, an unbounded and a half-bounded observation."""

    agents = ["a", "b", "c"]
    obs = {"a": soc.Box(0.0, 2.0, (2,)), "b": soc.Box(-np.inf, np.inf, (3,)), "c": soc.Box(-1.0, np.inf, (1,))}

    def observation_space(self, agent):
        return self.obs[agent]

    def action_space(self, agent):
        return soc.Discrete(2)


def test_the_joint_observation_box_is_the_roles_bounds():
    box = JointView(ThreeRoles()).spaces()[0]
    inf = np.inf
    np.testing.assert_array_equal(box.low, [0, 0, -inf, -inf, -inf, -1])
    np.testing.assert_array_equal(box.high, [2, 2, inf, inf, inf, inf])
    assert box.dtype == np.float32 and box.contains(np.array([2, 0, -1e9, 0, 1e9, -1], np.float32))
    assert not box.contains(np.array([2.5, 0, 0, 0, 0, 0], np.float32))  # past a's high
    assert not box.contains(np.array([0, 0, 0, 0, 0, -2], np.float32))  # below c's low


def test_adapters_of_one_world_share_its_compiled_programs():
    """Each adapter makes its own env, but envs of one world compare and hash equal, so the env's
    jitted `step_env` and the vector env's programs compile once per world (soc-hybrid compiled
    again for every adapter while its env hashed by identity)."""
    from jaxsoc.adapters.parallel_env import SOCParallelEnv
    from jaxsoc.adapters.vector_env import SOCVectorEnv

    for scenario, over, other in [("retail", {"max_steps": 3, "num_warehouses": 2}, {"max_steps": 4}),
                                  ("soc-hybrid", {"max_steps": 3, "hosts_per_segment": 4}, {"max_steps": 4})]:
        first = SOCParallelEnv(scenario, **over)  # worlds no other test builds
        first.reset(seed=0)
        first.step({})
        compiled = type(first.env).step_env._cache_size()
        again = SOCParallelEnv(scenario, **over)
        again.reset(seed=0)
        again.step({})
        assert again.env is not first.env and again.env == first.env and hash(again.env) == hash(first.env)
        assert type(first.env).step_env._cache_size() == compiled, scenario  # no second compile
        joint = gymnasium.make(ENV_ID, scenario=scenario, **over).unwrapped
        assert joint.env == first.env and joint.params == first.params
        assert SOCVectorEnv(2, scenario, **over)._step is SOCVectorEnv(3, scenario, **over)._step
        assert SOCParallelEnv(scenario, **{**over, **other}).env != first.env  # another world
    # soc-hybrid's key is its params' value, leaves included: another alarm threshold is another world.
    env, params = soc.make("soc-hybrid", hosts_per_segment=4, max_steps=3)
    assert params == first.params and params != params.replace(threshold=params.threshold + 1)
    assert hash(params) == hash(first.params)


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


# ----------------------------------------------------------------------------- the other worlds
# Every scenario `jaxsoc.env.make` builds that is not a SOC preset, small: their own roles, spaces
# and infos (no reward_terms; MultiDiscrete actions in soc-hybrid; masks that bind in banking and
# cage4-like). The SOC presets above share SOCEnv; soc-v2-redblue adds a masked learnable red.
WORLDS = {"retail": {"max_steps": 4}, "banking": {"max_steps": 4}, "cage4-like": {"max_steps": 4},
          "soc-hybrid": {"hosts_per_segment": 4, "max_steps": 4},
          "soc-v2-redblue": {"hosts_per_segment": 3, "max_steps": 4}}
NEVER_TERMINATE = {"retail", "banking", "cage4-like"}  # time-limit truncation only
BOUNDED = {"cage4-like": (0.0, 2.0), "soc-hybrid": (0.0, 10.0)}  # every role's observation box (score_clip 10)
SPLIT_REWARD = {"soc-v2-redblue"}  # SOCEnv's infos split the reward ("reward_terms"); the others' do not


def test_every_scenario_that_is_no_soc_preset_is_tested_here():
    assert set(soc.ENV_MODULES) <= set(WORLDS)


def same_space(gym_space, space) -> bool:
    """The Gymnasium space is the env's: same kind, sizes, bounds and dtype (int32 choices, as the
    env's own Discrete and MultiDiscrete, not Gymnasium's default int64; DISCRETE_DTYPE)."""
    from gymnasium import spaces as g

    if isinstance(space, soc.Discrete):
        return type(gym_space) is g.Discrete and gym_space.n == space.n and gym_space.dtype == DISCRETE_DTYPE
    if isinstance(space, soc.MultiDiscrete):
        return (type(gym_space) is g.MultiDiscrete and tuple(gym_space.nvec) == tuple(space.nvec)
                and gym_space.dtype == np.int32)
    return (type(gym_space) is g.Box and gym_space.shape == tuple(space.shape) and gym_space.dtype == np.float32
            and np.all(gym_space.low == np.float32(space.low)) and np.all(gym_space.high == np.float32(space.high)))


def parallel_world(world):
    from jaxsoc.adapters.parallel_env import SOCParallelEnv

    return SOCParallelEnv(world, **WORLDS[world])


@pytest.mark.parametrize("world", sorted(WORLDS))
def test_pettingzoo_seeding_on_every_world(world):
    from pettingzoo.test import parallel_seed_test

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel_seed_test(lambda: parallel_world(world), num_cycles=10)
    assert [str(w.message) for w in caught if "pettingzoo" in w.filename] == []


@pytest.mark.parametrize("world", sorted(WORLDS))
def test_pettingzoo_on_every_world(world):
    from pettingzoo.test import parallel_api_test

    env = parallel_world(world)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel_api_test(env, num_cycles=10)
    assert [str(w.message) for w in caught if "pettingzoo" in w.filename] == []

    jenv, params = env.env, env.params
    assert env.possible_agents == list(jenv.agents)
    for a in env.possible_agents:
        assert same_space(env.action_space(a), jenv.action_space(a))
        assert same_space(env.observation_space(a), jenv.observation_space(a))
    assert env.state_space.shape == (jenv.world_state_size,)
    obs, infos = env.reset(seed=2)
    masks = jax.device_get(jenv.get_avail_actions(env._state, params))
    for a in env.possible_agents:
        assert env.observation_space(a).contains(obs[a])
        space = jenv.action_space(a)
        if isinstance(space, soc.Discrete):  # the env's own mask (banking: channels up; cage4: hosts present)
            np.testing.assert_array_equal(infos[a]["action_mask"], masks[a].astype(np.int8))
        elif isinstance(space, soc.MultiDiscrete):  # one mask per host, as MultiDiscrete.sample takes
            mask = infos[a]["action_mask"]
            assert len(mask) == len(space.nvec) and all(m.dtype == np.int8 and len(m) == 3 for m in mask)
            env.action_space(a).sample(mask=mask)
        else:
            assert "action_mask" not in infos[a]
    assert env.state().shape == (jenv.world_state_size,)
    # Idle roles (every one left out) until the episode ends: at max_steps, unless the world ends first.
    steps = 0
    while env.agents:
        obs, rewards, terms, truncs, infos = env.step({})
        steps += 1
        assert len(set(rewards.values())) == 1  # the team reward
        assert ("reward_terms" in infos[env.possible_agents[0]]) == (world in SPLIT_REWARD)
    a = env.possible_agents[0]
    assert infos[a]["metrics"]["length"] == steps and steps <= params.max_steps
    if world in NEVER_TERMINATE or not terms[a]:
        assert steps == params.max_steps and truncs[a] and not terms[a]


@pytest.mark.parametrize("world", sorted(WORLDS))
def test_gymnasium_check_env_on_every_world(world):
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make(ENV_ID, scenario=world, **WORLDS[world]).unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    left = [str(w.message) for w in caught if "gymnasium" in w.filename]
    if world in BOUNDED:  # the joint box is the roles' bounds: nothing to warn about
        assert left == []
        low, high = BOUNDED[world]
        assert np.all(env.observation_space.low == low) and np.all(env.observation_space.high == high)
    else:  # the env's own boxes are unbounded, and so is the joint one
        assert left and all("infinity" in m for m in left)

    jenv, params = env.env, env.params
    sizes = {a: jenv.action_space(a) for a in jenv.agents}
    want = sum(s.n if isinstance(s, soc.Discrete) else sum(s.nvec) if isinstance(s, soc.MultiDiscrete)
               else s.shape[0] for s in sizes.values())
    assert env.action_space.shape == (want,)
    assert env.observation_space.shape == (sum(jenv.observation_space(a).shape[0] for a in jenv.agents),)

    def episode(seed):
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(0)  # the same actions: only the env's seed differs
        trace, done = [obs], False
        while not done:
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            trace += [obs, reward]
            done = terminated or truncated
        return trace, terminated, truncated, info

    trace, terminated, truncated, info = episode(4)
    steps = len(trace) // 2
    assert info["metrics"]["length"] == steps and steps <= params.max_steps
    assert ("reward_terms" in info) == (world in SPLIT_REWARD)
    if world in NEVER_TERMINATE or not terminated:
        assert steps == params.max_steps and truncated
    assert info["metrics"]["return"] == pytest.approx(sum(trace[2::2]), abs=1e-4)
    again = episode(4)[0]
    assert len(again) == len(trace) and all(np.array_equal(x, y) for x, y in zip(trace, again))
    other = episode(5)[0]  # another seed, another episode
    assert len(other) != len(trace) or not all(np.array_equal(x, y) for x, y in zip(trace, other))


# ~6 s for both on 2 cores (a vector env of each world at its default size); check_env covers a
# few steps of the same in the default run.
@pytest.mark.slow
@pytest.mark.parametrize("world", sorted(BOUNDED))
def test_the_bounded_worlds_stay_inside_the_joint_box(world):
    from jaxsoc.adapters.vector_env import SOCVectorEnv

    envs = SOCVectorEnv(16, world)
    obs, _ = envs.reset(seed=0)
    envs.action_space.seed(0)
    low, high = obs.min(), obs.max()
    for _ in range(max(300, envs.params.max_steps + 50)):  # past an episode's end: terminal observations too
        obs, _, _, _, info = envs.step(envs.action_space.sample())
        finals = [o for o in info.get("final_obs", []) if o is not None]
        low, high = min(low, obs.min(), *[o.min() for o in finals]), max(high, obs.max(), *[o.max() for o in finals])
    box = envs.single_observation_space  # one low and one high for every entry (BOUNDED)
    assert box.low.min() <= low and high <= box.high.max(), (low, high)
    assert high > 0  # observations that move, not an all-zero world


def test_the_joint_view_of_multidiscrete_roles_by_hand():
    env, _ = soc.make("soc-hybrid", hosts_per_segment=4)  # 5 segments: 4 hosts x 3 choices each, network 5
    view = JointView(env)
    assert view.nvec == {f"segment_{i}": (3, 3, 3, 3) for i in range(5)} and not any(view.discrete.values())
    assert view.action_size == 5 * 12 + 5 and view.action_slices["network"] == slice(60, 65)
    flat = np.zeros((2, 65), np.float32)
    flat[0, 12:24] = [0, 1, 0,  0, 0, 1,  1, 0, 0,  0, 0, 0]  # segment_1, env 0: hosts pick 1, 2, 0, tie -> 0
    flat[1, 0:3] = [0.1, 0.2, 0.3]  # segment_0's host 0, env 1: lock down
    flat[:, 60:65] = -0.5
    acts = view.actions(flat)
    assert acts["segment_1"].tolist() == [[1, 2, 0, 0], [0, 0, 0, 0]]
    assert acts["segment_0"].tolist() == [[0, 0, 0, 0], [2, 0, 0, 0]]
    assert acts["segment_0"].dtype == np.int32 and acts["network"].shape == (2, 5)
    np.testing.assert_array_equal(acts["network"], -0.5)


@pytest.mark.parametrize("world", ["banking", "soc-hybrid"])
def test_the_vector_env_on_other_worlds(world):
    from jaxsoc.adapters.vector_env import SOCVectorEnv

    n, over = 3, WORLDS[world]
    envs, twin = SOCVectorEnv(n, world, **over), SOCVectorEnv(n, world, **over)
    obs, _ = envs.reset(seed=1)
    assert np.array_equal(obs, twin.reset(seed=1)[0]) and envs.observation_space.contains(obs)
    envs.action_space.seed(0)
    since = np.zeros(n, int)
    for _ in range(over["max_steps"] + 1):
        actions = envs.action_space.sample()
        obs, rewards, terminated, truncated, info = envs.step(actions)
        same = twin.step(actions)
        assert np.array_equal(obs, same[0]) and np.array_equal(rewards, same[1])
        assert ("reward_terms" in info) == (world in SPLIT_REWARD)
        since += 1
        done = terminated | truncated
        if world in NEVER_TERMINATE:
            np.testing.assert_array_equal(done, since == over["max_steps"])
        if done.any():
            for i in np.flatnonzero(done):
                assert info["final_info"]["metrics"]["length"][i] == since[i]
        since[done] = 0


def test_a_demo_steps_without_reset_as_it_steps_with_it():
    env, params = soc.make("retail", max_steps=2)
    idle = env.idle_actions()
    assert all(np.array_equal(v, [-1.0]) for v in jax.device_get(idle).values())  # order nothing
    assert {a: int(v) for a, v in soc.make("banking")[0].idle_actions().items()} == {f"router_{i}": 0 for i in range(3)}
    _, state = env.reset(jax.random.PRNGKey(0), params)
    key = jax.random.PRNGKey(1)
    obs, stepped, rewards, dones, infos = env.step_env(jax.random.split(key)[0], state, idle, params)
    want = env.step(key, state, idle, params)  # step's transition draws from its key's first half
    for a in env.agents:  # step_env is jitted, step here eager: the last bit may differ
        np.testing.assert_allclose(obs[a], want[4]["final_obs"][a], rtol=1e-6)
        assert float(rewards[a]) == pytest.approx(float(want[2][a]), rel=1e-6)
    obs, stepped, _, dones, infos = env.step_env(key, stepped, idle, params)  # t = 2 = max_steps: no reset
    assert bool(dones["__all__"]) and bool(infos["truncated"]) and int(stepped.t) == 2
    assert set(infos) == {"terminated", "truncated", "discount", "metrics"}


# ----------------------------------------------------------------------------- bad actions
# What the env would misread is refused with one line naming the role, the value and the space,
# before the key or the state moves; what it reads as meant (2.0 for choice 2, a NumPy integer, a
# Box value past its bounds, which every env clips) passes.
D3, MD32 = ("Discrete", 3), ("MultiDiscrete", (3, 2))


def gym_space(kind):
    from gymnasium import spaces as g

    if kind == D3:
        return g.Discrete(3, dtype=np.int32)
    if kind == MD32:
        return g.MultiDiscrete([3, 2], dtype=np.int32)
    return g.Box(-1.0, 1.0, (4,), np.float32)


@pytest.mark.parametrize("kind, value, match", [
    (D3, 2.7, r"hunter's action 2\.7 is not a choice of Discrete\(3, dtype=int32\) \(a whole number in \[0, 3\)\)"),
    (D3, 7, r"action 7 is not a choice of Discrete\(3"),
    (D3, -1, r"action -1 is not a choice"),
    (D3, np.nan, r"action nan is not a choice"),
    (D3, np.inf, r"action inf is not a choice"),
    (D3, True, r"action True is not a number \(bool\); its space is Discrete\(3"),
    (D3, "1", r"action '1' is not a number"),
    (D3, [1], r"action has shape \(1,\); its space Discrete\(3, dtype=int32\) takes shape \(\)"),
    (MD32, [0, 2], r"action 2 at entry 1 is not a choice of MultiDiscrete\(\[3 2\]\) \(a whole number in \[0, 2\)\)"),
    (MD32, [0.5, 0], r"action 0\.5 at entry 0 is not a choice"),
    (MD32, [0, 0, 0], r"has shape \(3,\); its space MultiDiscrete\(\[3 2\]\) takes shape \(2,\)"),
    ("box", [0, 0, np.nan, 0], r"action has nan at entry 2; its space Box\(-1\.0, 1\.0, \(4,\), float32\) takes fin"),
    ("box", [-np.inf, 0, 0, 0], r"action has -inf at entry 0"),
    ("box", [0, 0, 0, 1e39], r"action has 1e\+39 at entry 3"),  # no float32
    ("box", 0.5, r"has shape \(\); its space Box\(-1\.0, 1\.0, \(4,\), float32\) takes shape \(4,\)"),
])
def test_an_action_the_env_would_misread_is_refused_in_one_line(kind, value, match):
    from jaxsoc.adapters.parallel_env import role_action

    with pytest.raises(ValueError, match=match) as refused:
        role_action("threat_hunter", value, gym_space(kind))
    assert "\n" not in str(refused.value) and "threat_hunter" in str(refused.value)


@pytest.mark.parametrize("kind, value, want", [
    (D3, 2.0, 2), (D3, np.int64(2), 2), (D3, np.uint8(0), 0), (D3, np.array(1, np.int8), 1),
    (MD32, [2.0, 1], [2, 1]), (MD32, np.array([1, 0], np.int64), [1, 0]),
    ("box", [5, -7, 0.5, 1], [5, -7, 0.5, 1]),  # as given: the env clips (the next test)
])
def test_an_action_the_env_reads_as_meant_passes_in_its_dtype(kind, value, want):
    from jaxsoc.adapters.parallel_env import role_action

    got = role_action("threat_hunter", value, gym_space(kind))
    assert got.dtype == (np.float32 if kind == "box" else np.int32)
    np.testing.assert_array_equal(got, want)


def test_pettingzoo_refuses_a_bad_action_before_the_episode_moves():
    env, twin = parallel_world("banking"), parallel_world("banking")
    env.reset(seed=2)
    twin.reset(seed=2)
    for bad in (2.7, 7, -1, np.nan):
        with pytest.raises(ValueError, match=f"router_1's action {bad} is not a choice of Discrete"):
            env.step({"router_0": 1, "router_1": bad})
    # Refused steps drew no key and moved no state: the episode goes on as its twin's.
    got, want = env.step({"router_0": 1, "router_1": 2.0}), twin.step({"router_0": 1, "router_1": np.int64(2)})
    for a in env.possible_agents:
        np.testing.assert_array_equal(got[0][a], want[0][a])
        assert got[1][a] == want[1][a]
    shop, same = parallel_world("retail"), parallel_world("retail")
    shop.reset(seed=3)
    same.reset(seed=3)
    with pytest.raises(ValueError, match=r"warehouse_0's action has nan at entry 0; its space Box"):
        shop.step({"warehouse_0": np.array([np.nan], np.float32)})
    # Past the bounds is accepted: retail clips an order to [-1, 1], so 5 orders what 1 does.
    got, want = shop.step({"warehouse_0": [5.0]}), same.step({"warehouse_0": [1.0]})
    for a in shop.possible_agents:
        np.testing.assert_array_equal(got[0][a], want[0][a])
        assert got[1][a] == want[1][a] and np.isfinite(got[1][a])


def test_the_joint_views_refuse_nan_and_inf_before_the_episode_moves():
    from jaxsoc.adapters.vector_env import SOCVectorEnv

    env = gymnasium.make(ENV_ID, scenario="retail", **WORLDS["retail"]).unwrapped
    twin = gymnasium.make(ENV_ID, scenario="retail", **WORLDS["retail"]).unwrapped
    env.reset(seed=4)
    twin.reset(seed=4)
    for bad in (np.nan, np.inf, 1e39):
        action = np.zeros(5)  # float64: 1e39 is no float32
        action[3] = bad
        with pytest.raises(ValueError, match=r"joint action entry 3 \(warehouse_3's entry 0\) is (nan|inf); "
                                             r"the action space Box\(-1\.0, 1\.0, \(5,\), float32\) takes finite"):
            env.step(action)
    got, want = env.step(np.full(5, 5.0)), twin.step(np.ones(5))  # past [-1, 1]: clipped, as PettingZoo's
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1] == want[1] and np.isfinite(got[1])

    n, over = 3, WORLDS["banking"]  # the vector env test's programs
    envs, same = SOCVectorEnv(n, "banking", **over), SOCVectorEnv(n, "banking", **over)
    envs.reset(seed=5)
    same.reset(seed=5)
    scores = np.random.default_rng(0).uniform(-1, 1, envs.action_space.shape).astype(np.float32)
    broken = scores.copy()
    broken[1, 4] = np.nan  # a NaN score would win router_1's argmax
    with pytest.raises(ValueError, match=r"joint action entry 4 \(router_1's entry 1\) of env 1 is nan"):
        envs.step(broken)
    got, want = envs.step(scores), same.step(scores)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
