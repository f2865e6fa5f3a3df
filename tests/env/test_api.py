"""The MultiAgentEnv surface: spaces, determinism, jit/vmap equivalence, auto-reset, jaxmarl wrappers."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc.env.spaces import Box, Discrete
from tests.fast import fast_compile, fast_jit

# Every program here runs a handful of steps: compiled without XLA's backend optimisations
# (tests/fast.py), which are ~3x their compile time and nothing of their run time.

PRESETS = ["hmarl-soc-v1", "soc-v2"]


# jit == eager and vmap == loop are properties of the step code both presets share; their
# hmarl-soc-v1 variants cost ~55 CPU-s (an eager v1 step compiles each of its primitives on its
# own), so they run with -m slow and soc-v2 checks both in the default run.
SHARED_CODE = [pytest.param("hmarl-soc-v1", marks=pytest.mark.slow), "soc-v2"]


@functools.lru_cache(maxsize=None)
def _programs(preset):
    """`((env, params), (reset, step))` of a preset, compiled once per module."""
    env, p = soc.make(preset)
    return (env, p), (fast_jit(env.reset), fast_jit(env.step))


@pytest.fixture(scope="module", params=PRESETS)
def env_params(request):
    return _programs(request.param)[0]


@pytest.fixture(scope="module")
def jitted(env_params):
    return _programs(env_params[1].name)[1]


def _random_actions(env, key):
    keys = jax.random.split(key, env.num_agents)
    return {a: env.action_space(a).sample(k) for a, k in zip(env.agents, keys)}


def test_spaces_shapes_dtypes_and_bounds(env_params, jitted):
    env, p = env_params
    reset, step = jitted
    assert env.agents == ["coordinator", "threat_hunter", "alert_triage", "response_orchestrator"]
    obs, state = reset(jax.random.key(0))
    for a in env.agents:
        assert obs[a].shape == env.observation_space(a).shape and obs[a].dtype == jnp.float32
    if p.name == "hmarl-soc-v1":
        assert {a: env.observation_space(a).shape[0] for a in env.agents} == dict(
            coordinator=64, threat_hunter=128, alert_triage=64, response_orchestrator=96)
        assert env.action_space("coordinator") == Box(-1.0, 1.0, (8,))
        assert env.action_space("threat_hunter").shape == (16,)
        assert env.action_space("response_orchestrator").shape == (12,)
    else:
        assert env.action_space("coordinator") == Discrete(15)
        assert env.action_space("threat_hunter").shape == (10,)
        assert env.action_space("response_orchestrator").shape == (15,)
    assert env.action_space("alert_triage") == Discrete(4)
    key = jax.random.key(1)
    for i in range(5):
        key, ka, ks = jax.random.split(key, 3)
        acts = _random_actions(env, ka)
        for a in env.agents:
            assert bool(env.action_space(a).contains(acts[a]))
        obs, state, rew, dones, infos = step(ks, state, acts)
        chex.assert_tree_all_finite(obs)
        assert set(dones) == set(env.agents) | {"__all__"}
        assert rew["coordinator"].dtype == jnp.float32 and rew["coordinator"].shape == ()
        assert all(float(rew[a]) == float(rew["coordinator"]) for a in env.agents)  # team reward
    avail = env.get_avail_actions(state)
    assert avail["alert_triage"].shape == (4,) and avail["alert_triage"].dtype == jnp.bool_
    ws = env.get_world_state(state)
    assert ws.shape == (env.world_state_size,)


def _rollout(env, step, state, key, n):
    traj = []
    for i in range(n):
        key, ka, ks = jax.random.split(key, 3)
        acts = _random_actions(env, ka)
        obs, state, rew, dones, infos = step(ks, state, acts)
        traj.append((obs, rew, dones["__all__"]))
    return state, traj


def test_same_key_same_trajectory(env_params, jitted):
    env, p = env_params
    reset, step = jitted
    s1, t1 = _rollout(env, step, reset(jax.random.key(3))[1], jax.random.key(4), 12)
    s2, t2 = _rollout(env, step, reset(jax.random.key(3))[1], jax.random.key(4), 12)
    chex.assert_trees_all_equal(s1, s2)
    chex.assert_trees_all_equal(t1, t2)
    s3, _ = _rollout(env, step, reset(jax.random.key(3))[1], jax.random.key(5), 12)
    assert not np.array_equal(np.asarray(s1.queue), np.asarray(s3.queue)) or \
        not np.array_equal(np.asarray(s1.hosts.compromised), np.asarray(s3.hosts.compromised))


@pytest.mark.slow  # CI budget (10 min on 2 cores): an eager soc-v2 step compiles each primitive on its own (~24 CPU-s)
@pytest.mark.parametrize("preset", SHARED_CODE)
def test_jit_equals_no_jit(preset):
    (env, p), (reset, step) = _programs(preset)
    obs, state = reset(jax.random.key(7))
    state, _ = _rollout(env, step, state, jax.random.key(8), 6)  # mid-episode state
    acts = _random_actions(env, jax.random.key(9))
    fast = step(jax.random.key(10), state, acts)
    # Op by op, every primitive compiles on its own: unoptimised, as the jitted step.
    with jax.disable_jit(), fast_compile():
        slow = env.step(jax.random.key(10), state, acts)
    chex.assert_trees_all_close(fast, slow, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("preset", SHARED_CODE)
def test_vmap_equals_loop(preset):
    (env, p), (reset, step) = _programs(preset)
    n = 4
    keys = jax.random.split(jax.random.key(11), n)
    obs_b, st_b = fast_jit(jax.vmap(env.reset))(keys)
    akeys = jax.random.split(jax.random.key(12), n)
    acts_b = jax.vmap(lambda k: _random_actions(env, k))(akeys)
    skeys = jax.random.split(jax.random.key(13), n)
    out_b = fast_jit(jax.vmap(env.step))(skeys, st_b, acts_b)
    for i in range(n):
        obs_i, st_i = reset(keys[i])
        out_i = step(skeys[i], st_i, jax.tree.map(lambda x: x[i], acts_b))
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], out_b), out_i, rtol=1e-6, atol=1e-6)


def test_no_retracing_across_steps(env_params):
    env, p = env_params

    @fast_jit
    @chex.assert_max_traces(n=1)
    def step(key, state, actions):
        return env.step(key, state, actions)

    _, state = env.reset(jax.random.key(0))
    key = jax.random.key(1)
    for _ in range(4):
        key, ka, ks = jax.random.split(key, 3)
        _, state, *_ = step(ks, state, _random_actions(env, ka))
    chex.clear_trace_counter()


def test_auto_reset_keeps_terminal_observation_and_metrics():
    """Run to truncation (no defender, v1: nothing terminates early), check the reset step."""
    env, p = soc.make("hmarl-soc-v1", max_steps=6)
    _, state = env.reset(jax.random.key(0))
    idle = env.idle_actions()
    step = fast_jit(env.step)
    key = jax.random.key(1)
    for t in range(1, 7):
        key, k = jax.random.split(key)
        obs, new_state, rew, dones, infos = step(k, state, idle)
        if t < 6:
            assert not bool(dones["__all__"]) and int(new_state.t) == t
            chex.assert_trees_all_close(obs, infos["final_obs"], rtol=1e-6, atol=1e-6)
        state = new_state
    assert bool(dones["__all__"]) and bool(infos["truncated"]) and not bool(infos["terminated"])
    assert int(state.t) == 0 and int(state.episode) == 1  # auto-reset happened
    assert float(infos["metrics"]["length"]) == 6.0
    assert float(infos["discount"]) == 0.0  # v1 (D12): truncation treated as terminal
    # terminal obs differs from the new episode's first obs in the time feature
    assert float(infos["final_obs"]["coordinator"][20]) == pytest.approx(1.0)
    assert float(obs["coordinator"][20]) == 0.0
    # v1 keeps the network across episodes (D10)
    np.testing.assert_array_equal(np.asarray(state.hosts.vuln), np.asarray(new_state.hosts.vuln))


def test_world_state_in_infos():
    env, p = soc.make("soc-v2", with_world_state=True)
    obs, state = fast_jit(env.reset)(jax.random.key(0))
    _, st, _, _, infos = fast_jit(env.step)(jax.random.key(1), state, env.idle_actions())
    assert infos["world_state"].shape == (env.world_state_size,)
    np.testing.assert_allclose(infos["world_state"], env.get_world_state(st), rtol=1e-6)


@pytest.mark.slow  # CI budget (10 min on 2 cores): ~20 CPU-s, mostly importing jaxmarl and compiling its wrapped step
def test_jaxmarl_log_wrapper_unchanged():
    wrappers = pytest.importorskip("jaxmarl.wrappers.baselines")
    env, p = soc.make("soc-v2", max_steps=5)
    wrapped = wrappers.LogWrapper(env)
    reset, step = fast_jit(wrapped.reset), fast_jit(wrapped.step)  # jitted, as jaxmarl's trainers do
    obs, state = reset(jax.random.key(0))
    key = jax.random.key(1)
    total = 0.0
    for t in range(5):
        key, k = jax.random.split(key)
        obs, state, rew, dones, info = step(k, state, env.idle_actions())
        total += float(rew["coordinator"])
    assert bool(info["returned_episode"].all())
    np.testing.assert_allclose(np.asarray(info["returned_episode_returns"]), total, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(info["returned_episode_lengths"]), 5)


@pytest.mark.slow  # CI budget (10 min on 2 cores): ~20 CPU-s of compiling; vmap over envs is checked by test_vmap_equals_loop
def test_vmap_over_scenario_parameters():
    """Numeric params are leaves: a batch of stealth values in one program equals separate envs."""
    env, p = soc.make("soc-v2", hosts_per_segment=8)
    stealths = jnp.array([0.2, 0.95])
    batch = jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), (2,)), p).replace(stealth=stealths)
    axes = jax.tree.map(lambda _: 0, p)
    keys = jax.random.split(jax.random.key(0), 2)
    obs, state = fast_jit(jax.vmap(env.reset, in_axes=(0, axes)))(keys, batch)
    acts = jax.vmap(lambda k: _random_actions(env, k))(keys)
    out = fast_jit(jax.vmap(env.step, in_axes=(0, 0, 0, axes)))(keys, state, acts, batch)
    # The same env with the params passed in: one compiled reset and step for both stealths.
    reset, step = fast_jit(env.reset), fast_jit(env.step)
    for i, s in enumerate([0.2, 0.95]):
        p_i = soc.make("soc-v2", hosts_per_segment=8, stealth=s)[1]
        assert p_i == p.replace(stealth=s)
        _, st_i = reset(keys[i], p_i)
        one = step(keys[i], st_i, jax.tree.map(lambda x: x[i], acts), p_i)
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], out), one, rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # CI budget (10 min on 2 cores): one more compile per preset (~13 CPU-s)
@pytest.mark.parametrize("preset", ["soc-v2-10x100", "soc-v2-20x250"])
def test_larger_presets_run_unchanged(preset):
    env, p = soc.make(preset)
    step = fast_jit(jax.vmap(env.step))
    obs, state = fast_jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), 4))
    for i in range(25):
        acts = jax.vmap(lambda k, s: soc.POLICIES["rule-soar"](k, None, s, p))(jax.random.split(jax.random.key(i), 4), state)
        obs, state, rew, dones, infos = step(jax.random.split(jax.random.key(100 + i), 4), state, acts)
        chex.assert_tree_all_finite(obs)
    assert obs["threat_hunter"].shape[-1] == env.observation_space("threat_hunter").shape[0]
    assert int(jnp.max(state.attacker.phase)) >= 1  # the campaign moves on big networks too
