"""Tests for seed 000's hybrid SOC (`jaxsoc.env.hybrid`) and its learner (`jaxsoc.algos.hybrid`):
the action effects and the reward of one step worked by hand, observation shapes and the score
feature, bad input, the segment agents' values and TD target by hand; determinism and learning
against a baseline are slow (each trains a compiled program).

One small world (5 segments x 2 hosts) serves the env tests; the attacker is idled (a re-entry
cooldown) where a step is worked by hand, so nothing random touches the counted terms.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc import detectors as det
from jaxsoc.algos import hybrid as hy
from jaxsoc.algos.maddpg import MADDPG_KWARGS
from jaxsoc.config import ConfigError
from jaxsoc.env.hybrid import core
from jaxsoc.env.hybrid.params import INVESTIGATE, LOCKDOWN, NONE
from tests.fast import fast_jit


@pytest.fixture(scope="module")
def small():
    return soc.make("soc-hybrid", hosts_per_segment=2)


@pytest.fixture(scope="module")
def step_env(small):
    """One env's step without reset, compiled once (XLA optimisations off) for every test here."""
    env, params = small
    return fast_jit(lambda k, s, a: env.step_env(k, s, a, params))


_RESETS = {}


def _reset(env, params):
    """One env's first state, compiled once per env (XLA optimisations off)."""
    if env not in _RESETS:
        _RESETS[env] = fast_jit(lambda k: env.reset(k, params))(jax.random.key(0))
    return _RESETS[env]


def _hand_state(env, params):
    """A fresh env whose hosts 0 (segment 0) and 2 (segment 1) are compromised at stage 2, the
    attacker idle (cooldown), and host 4 (segment 2) scoring 100 x the threshold."""
    _, state = _reset(env, params)
    h = state.soc.hosts
    comp = jnp.zeros((params.num_hosts,), bool).at[jnp.array([0, 2])].set(True)
    hosts = h.replace(compromised=core.to_hosts(comp, params), stage=core.to_hosts(comp.astype(jnp.int32) * 2, params),
                      ever_compromised=core.to_hosts(comp, params))
    att = state.soc.attacker.replace(cooldown=jnp.int32(50), begun=jnp.bool_(True), first_compromise=jnp.int32(0))
    scores = jnp.zeros((params.num_hosts,)).at[4].set(100.0 * params.threshold)
    return state.replace(soc=state.soc.replace(hosts=hosts, attacker=att), scores=scores)


def _actions(params, per_segment, network):
    out = {f"segment_{i}": jnp.asarray(a, jnp.int32) for i, a in enumerate(per_segment)}
    out["network"] = jnp.full((params.num_segments,), network, jnp.float32)
    return out


def test_one_step_by_hand(small, step_env):
    """Lock down a compromised and a clean host, investigate a compromised and a clean one, and
    let the network agent's lowest threshold lock down the host scoring 100 x the threshold."""
    env, params = small
    state = _hand_state(env, params)
    acts = _actions(params, [[LOCKDOWN, LOCKDOWN], [INVESTIGATE, INVESTIGATE], [NONE, NONE], [NONE, NONE],
                             [NONE, NONE]], -1.0)
    obs, new, rewards, dones, infos = step_env(jax.random.key(1), state, acts)
    locked = np.asarray(det.telemetry.flatten_hosts(new.soc.hosts.isolated, params.soc))
    np.testing.assert_array_equal(np.flatnonzero(locked), [0, 1, 4])
    c = new.counters
    assert (int(c.catches), int(c.false_alarms), int(c.investigations), int(c.auto_locks)) == (1, 2, 2, 1)
    assert int(c.detect_time) == 1  # the catch at t = 1
    # catch 1 - false alarms 2 - investigations 2 x 0.05 - damage 0.1 x (host 2 still connected)
    # - downtime 0.01 x (clean hosts 1 and 4 isolated)
    expected = 1.0 - 2.0 - 0.1 - 0.1 - 0.02
    assert float(rewards["network"]) == pytest.approx(expected, abs=1e-6)
    assert all(float(r) == pytest.approx(expected, abs=1e-6) for r in rewards.values())
    assert not bool(dones["__all__"])  # host 2 is compromised and connected: not contained
    # segment 1 sees host 2 found compromised and host 3 cleared; segment 0 both hosts locked
    seg1 = np.asarray(obs["segment_1"][:8]).reshape(2, 4)
    np.testing.assert_array_equal(seg1[:, 1:], [[1, 0, 0], [0, 1, 0]])
    seg0 = np.asarray(obs["segment_0"][:8]).reshape(2, 4)
    np.testing.assert_array_equal(seg0[:, [0, 3]], [[0, 1], [0, 1]])  # locked: score feature 0
    m = infos["metrics"]
    assert float(m["recall"]) == pytest.approx(0.5)             # 1 of 2 compromised hosts caught
    assert float(m["fpr"]) == pytest.approx(2 / 8)              # 2 of 8 clean hosts locked
    assert float(m["mttd"]) == pytest.approx(1.0)

    # The next step locks host 2 (found): contained, the episode ends won.
    acts = _actions(params, [[NONE, NONE], [LOCKDOWN, NONE], [NONE, NONE], [NONE, NONE], [NONE, NONE]], 2.0)
    _, last, rewards, dones, _ = step_env(jax.random.key(2), new, acts)
    assert bool(dones["__all__"]) and bool(last.counters.contained)
    assert float(rewards["network"]) == pytest.approx(1.0 - 0.02, abs=1e-6)  # a catch, 2 clean hosts down


def test_observations_and_score_feature(small):
    env, params = small
    state = _hand_state(env, params)
    obs = fast_jit(lambda s: env.get_obs(s, params))(state)
    for a in env.agents:
        assert obs[a].shape == env.observation_space(a).shape
    assert env.segment_obs_dim == 4 * 2 + 5 + 1 and env.network_obs_dim == 4 * 5 + 1
    assert env.get_world_state(state, params).shape == (env.world_state_size,)
    # score feature = min(score / threshold, clip): host 4 scores 100 x the threshold -> clip 10
    feat = np.asarray(env.score_features(state, params))
    assert feat[4] == pytest.approx(params.score_clip)
    np.testing.assert_allclose(np.asarray(obs["segment_2"])[0], params.score_clip)
    np.testing.assert_allclose(np.asarray(obs["segment_2"])[8:13], [0, 0, 1, 0, 0])  # one-hot id
    # the network agent sees segment 2's max score feature
    assert float(obs["network"][2 * 4 + 1]) == pytest.approx(params.score_clip)
    # without scores, the feature is 0 everywhere and nothing is locked automatically
    blind_env, blind = soc.make("soc-hybrid", hosts_per_segment=2, use_scores=False)
    assert float(jnp.abs(blind_env.score_features(state, blind)).max()) == 0.0
    acts = _actions(blind, [[NONE, NONE]] * 5, -1.0)
    _, new, _, _, _ = fast_jit(lambda k, s, a: blind_env.step_env(k, s, a, blind))(jax.random.key(1), state, acts)
    assert int(new.counters.auto_locks) == 0


@pytest.mark.slow
def test_rollout_and_detector_alone(small):
    """A short vmapped rollout under the detector-alone policy: it locks hosts, auto-resets."""
    env, params = small
    n = 16
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(0), n), params)
    pol = jax.vmap(core.detector_alone, in_axes=(0, 0, 0, None))

    def body(carry, k):
        obs, state = carry
        a = pol(jax.random.split(k, n), obs, state, params)
        obs, state, r, d, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(jax.random.split(k, n), state, a, params)
        return (obs, state), (d["__all__"], info["metrics"]["auto_locks"])

    _, (done, autos) = fast_jit(lambda k: jax.lax.scan(body, (obs, state), jax.random.split(k, 60)))(jax.random.key(3))
    assert bool(done.any()) and float(autos.max()) > 0


def test_bad_input(small, tmp_path):
    env, params = small
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        soc.make("soc-hybrid", target_fpr=1.5)
    with pytest.raises(ValueError, match="unknown soc-hybrid parameter 'use_score'"):
        soc.make("soc-hybrid", use_score=False)
    with pytest.raises(ValueError, match="segments must be equal"):
        soc.make("soc-hybrid", hosts_per_segment=(2, 2, 2, 2, 3))
    # telemetry of the wrong width
    window = jnp.zeros((params.window, params.num_hosts, params.features + 1))
    with pytest.raises(ValueError, match="features per step"):
        core.window_scores(params.detector, window)
    # a detector checkpoint from another scenario
    v2_env, v2 = soc.make("soc-v2", hosts_per_segment=2)
    zs = det.ZScoreDetector(center=jnp.zeros(8), scale=jnp.ones(8), window=4)
    det.save_detector(tmp_path / "v2", zs, v2, 20.0, 0.01)
    with pytest.raises(ValueError, match="trained on scenario 'soc-v2', not 'soc-hybrid'"):
        soc.make("soc-hybrid", hosts_per_segment=2, detector_path=str(tmp_path / "v2"))
    # ... and one of this scenario, which loads with its threshold
    det.save_detector(tmp_path / "mine", zs, params.soc, 20.0, 0.01)
    _, loaded = soc.make("soc-hybrid", hosts_per_segment=2, detector_path=str(tmp_path / "mine"))
    assert float(loaded.threshold) == 20.0
    # the learner's false-alarm target
    with pytest.raises(ConfigError, match="hybrid.target_fpr"):
        hy.validate(_config(target_fpr=0.0))
    # the network agent's MADDPG keys are checked as the maddpg family's are, TD3's included
    for bad, match in (({"policy_delay": 0}, "hybrid.maddpg.policy_delay"), ({"tau": 1.5}, "hybrid.maddpg: need")):
        with pytest.raises(ConfigError, match=match):
            hy.validate(_config(maddpg={**hy.DEFAULTS["maddpg"], **bad}))


def test_settings_nothing_would_read_are_refused(small, tmp_path):
    """Each of these was accepted and then ignored (or failed later with a contradictory message)."""
    _, params = small
    zs = det.ZScoreDetector(center=jnp.zeros(8), scale=jnp.ones(8), window=4)
    det.save_detector(tmp_path / "mine", zs, params.soc, 20.0, 0.01)
    mine = str(tmp_path / "mine")
    with pytest.raises(ValueError, match="the saved detector of detector_path keeps the threshold"):
        soc.make("soc-hybrid", hosts_per_segment=2, detector_path=mine, target_fpr=0.2)
    with pytest.raises(ValueError, match="detector_scores is soc-v2's"):
        soc.make("soc-hybrid", detector_scores=mine)
    with pytest.raises(ValueError, match="telemetry_noise must be > 0, got 0.0"):  # every score infinite
        soc.make("soc-hybrid", telemetry_noise=0.0)
    # a saved threshold that is not a finite number (an edited file) is refused on load
    meta = tmp_path / "mine" / "0" / "meta" / "metadata"
    meta.write_text(meta.read_text().replace('"threshold": 20.0', '"threshold": NaN'))
    with pytest.raises(ValueError, match="holds threshold nan, not a finite number"):
        soc.make("soc-hybrid", hosts_per_segment=2, detector_path=mine)
    # the online detector's keys under the frozen detector; a saved detector under the online one
    with pytest.raises(ConfigError, match="hybrid.online_lr sets the online detector, but hybrid.detector is frozen"):
        hy.validate(_config(online_lr=1e-2))
    hy.validate(_config(online_lr=1e-2, detector="online"))
    # another scenario is named as such, before the sizes (4 envs: too few rounds) it makes wrong
    with pytest.raises(ConfigError, match="trains the soc-hybrid team; scenario 'cage4-like'"):
        hy.validate(dict(_config(num_envs=4, utd=0.005), scenario="cage4-like"))
    # the network agent's keys where it does not learn, and the fixed action where it does
    with pytest.raises(ConfigError, match="hybrid.maddpg.actor_lr trains the network agent, but hybrid.network_agent"):
        hy.validate(_config(network_agent="fixed", maddpg={**hy.DEFAULTS["maddpg"], "actor_lr": 0.1}))
    with pytest.raises(ConfigError, match="hybrid.network_action is the fixed network agent's action"):
        hy.validate(_config(network_action=0.5))
    hy.validate(_config(network_agent="fixed", network_action=0.5))
    online = _config(detector="online")
    online["env"] = {"detector_path": mine}
    with pytest.raises(ConfigError, match="trains its own detector from the start"):
        hy.validate(online)


def test_network_agent_takes_maddpgs_options(small):
    # One description of a MADDPG agent: the hybrid's section has maddpg's keys and builds with them.
    assert set(hy.DEFAULTS["maddpg"]) == set(MADDPG_KWARGS)
    env, _ = small
    c = _config(maddpg={**hy.DEFAULTS["maddpg"], "twin_critics": True, "policy_delay": 2})["hybrid"]
    net = hy.HybridTeam(env, c).net
    assert (net.twin_critics, net.policy_delay, net.hidden, net.gamma) == (True, 2, (32,), c["gamma"])


def test_network_agents_target_smoothing_draws_from_the_round_key(small):
    """`maddpg.target_noise` > 0: the network agent's update draws its target noise from the
    round's key (two keys, two TD errors); without it the round is the same whatever the key."""
    env, _ = small

    def td_for(maddpg, key):
        team = hy.HybridTeam(env, _config(maddpg={**hy.DEFAULTS["maddpg"], **maddpg})["hybrid"])
        agents = team.init(jax.random.key(0))
        leaves, tree = jax.tree.flatten(team.example_transition(env))
        keys = jax.random.split(jax.random.key(1), len(leaves))
        batch = jax.tree.unflatten(tree, [
            jax.random.randint(k, (16,) + x.shape, 0, 3) if x.dtype == jnp.int32 else
            jax.random.uniform(k, (16,) + x.shape, minval=-1.0, maxval=1.0) for k, x in zip(keys, leaves)])
        _, td, _ = fast_jit(team.update)(agents, batch, jnp.ones((16,)), key)
        return np.asarray(td)

    smoothed = {"target_noise": 0.5}
    assert not np.array_equal(td_for(smoothed, jax.random.key(2)), td_for(smoothed, jax.random.key(3)))
    np.testing.assert_array_equal(td_for({}, jax.random.key(2)), td_for({}, jax.random.key(3)))


def test_mixer_state_norm_reaches_the_qmix_mixer(small):
    """`hybrid.mixer_state_norm` (the default) gives the team a QMIX mixer that reads the world
    state's direction only: the same Q_tot for the state scaled by 10; without it Q_tot changes."""
    env, _ = small
    qs = jax.random.normal(jax.random.key(4), (6, env.default_params.num_segments))
    for norm in (True, False):
        q = hy.HybridTeam(env, _config(mixer_state_norm=norm)["hybrid"]).q
        assert (q.mixer, q.mixer_state_norm) == ("qmix", norm)
        params = q.init(jax.random.key(0)).params
        ws = jax.random.uniform(jax.random.key(5), (6, q.state_dim), maxval=2.0)
        same = np.allclose(q.mix(params, qs, 10.0 * ws), q.mix(params, qs, ws), rtol=1e-4, atol=1e-4)
        assert same == norm
    assert hy.DEFAULTS["mixer_state_norm"] is True
    # the gain eval/mixer_gain.py reports: dQ_tot/dQ_i, by central differences; VDN's is 1
    h, e0 = 1e-2, jnp.zeros_like(qs).at[:, 0].set(1.0)
    by_diff = (q.mix(params, qs + h * e0, ws) - q.mix(params, qs - h * e0, ws)) / (2 * h)
    np.testing.assert_allclose(q.mixer_gain(params, qs, ws)[:, 0], by_diff, rtol=2e-2, atol=1e-3)
    vdn = hy.HybridTeam(env, _config(mixer="vdn")["hybrid"]).q
    np.testing.assert_array_equal(vdn.mixer_gain({}, qs, ws), np.ones(qs.shape, np.float32))
    with pytest.raises(ValueError, match="no mixer gain"):
        hy.HybridTeam(env, _config(mixer="none")["hybrid"]).q.mixer_gain({}, qs, ws)


def _config(num_envs=8, total_steps=8 * 4 * 6, **section):
    import copy
    c = copy.deepcopy(hy.DEFAULTS)
    c.update(dict(rollout=4, utd=0.25, batch_size=32, learning_starts=32, buffer_size=2048, hidden_sizes=[32],
                  epsilon_decay=500, target_period=20), **section)
    return {"algo": "hybrid", "scenario": "soc-hybrid", "num_envs": num_envs, "total_steps": total_steps, "hybrid": c}


def test_segment_values_and_target_by_hand():
    """Q_i = sum_h Q[h, a_ih]; the VDN target r + gamma d sum_i Q_i,target(o'_i, argmax) and the
    loss mean((sum_i Q_i - y)^2), recomputed from the Q-network's raw outputs."""
    q = hy.SegmentQMix(obs_dim=11, hosts=2, segments=2, state_dim=4, mixer="vdn", hidden=(8,), gamma=0.5,
                       target_period=1000)
    state = q.init(jax.random.key(0))
    obs = jax.random.normal(jax.random.key(1), (5, 2, 11))  # 2 hosts x 4 features + id 2 + t
    nxt = jax.random.normal(jax.random.key(2), (5, 2, 11))
    act = jax.random.randint(jax.random.key(3), (5, 2, 2), 0, 3)
    apply = lambda params, o: q.network.apply(params, q.host_inputs(o))  # noqa: E731 - tiny, eager
    raw = np.asarray(apply(state.params["q"], obs)).reshape(5, 2, 2, 3)
    a = np.asarray(act)
    # each host's input: its 4 features, the segment's means of them, then the id and t (shared)
    x = np.asarray(q.host_inputs(obs))
    o = np.asarray(obs)
    np.testing.assert_allclose(x[0, 1, 1, :4], o[0, 1, 4:8])
    np.testing.assert_allclose(x[0, 1, 1, 4:8], o[0, 1, :8].reshape(2, 4).mean(0), rtol=1e-6)
    np.testing.assert_allclose(x[0, 1, 0, 8:], o[0, 1, 8:])
    by_hand = np.take_along_axis(raw, a[..., None], -1)[..., 0].sum(-1)  # [B, S]
    np.testing.assert_allclose(q.agent_values(state.params, obs, act), by_hand, rtol=1e-5)
    raw_next = np.asarray(apply(state.params["q"], nxt)).reshape(5, 2, 2, 3)
    r, d = np.arange(5, dtype=np.float32), np.array([1, 0, 1, 1, 0], np.float32)
    y = r + 0.5 * d * raw_next.max(-1).sum((-1, -2))  # target == online at init, double: same argmax
    batch = {"obs": obs, "next_obs": nxt, "action": act, "reward": jnp.asarray(r), "discount": jnp.asarray(d),
             "world_state": jnp.zeros((5, 4)), "next_world_state": jnp.zeros((5, 4))}
    _, td, m = fast_jit(q.update)(state, batch, jnp.ones(5))
    np.testing.assert_allclose(td, np.abs(by_hand.sum(-1) - y), rtol=1e-5)
    assert float(m["q_loss"]) == pytest.approx(
        float(np.mean((by_hand.sum(-1) - y) ** 2)), rel=1e-5)
    # independent learners: a TD error per agent, the item's priority their mean
    qi = hy.SegmentQMix(obs_dim=11, hosts=2, segments=2, state_dim=4, mixer="none", hidden=(8,), gamma=0.5)
    si = qi.init(jax.random.key(0))
    raw_i = np.asarray(apply(si.params["q"], obs)).reshape(5, 2, 2, 3)
    raw_in = np.asarray(apply(si.params["q"], nxt)).reshape(5, 2, 2, 3)
    yi = r[:, None] + 0.5 * d[:, None] * raw_in.max(-1).sum(-1)
    qs_i = np.take_along_axis(raw_i, a[..., None], -1)[..., 0].sum(-1)
    _, td_i, _ = fast_jit(qi.update)(si, batch, jnp.ones(5))
    np.testing.assert_allclose(td_i, np.abs(qs_i - yi).mean(-1), rtol=1e-5)


def _train(config, seed=0):
    from jaxsoc.algos import make_train
    env, params = soc.make("soc-hybrid", hosts_per_segment=2)
    trainer = make_train(config, env, params)
    return jax.jit(trainer.train)(jax.random.key(seed))


@pytest.mark.slow
def test_determinism_and_online_detector():
    """Same seed, same metrics bit for bit (frozen and online z-score); the online threshold moves."""
    cfg = _config()
    (_, a), (_, b) = _train(cfg), _train(cfg)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
    (_, c), (_, d) = _train(_config(detector="online")), _train(_config(detector="online"))
    np.testing.assert_array_equal(np.asarray(c["detector/threshold"]), np.asarray(d["detector/threshold"]))
    assert np.all(np.isfinite(np.asarray(c["detector/threshold"])))
    assert np.unique(np.asarray(c["detector/threshold"])).size > 1
    (_, e) = _train(_config(detector="online", online_kind="autoencoder"))
    assert np.all(np.isfinite(np.asarray(e["detector/threshold"])))


@pytest.mark.slow
def test_learns_beyond_random_start():
    """32 envs x 40k steps: the team's greedy return beats the untrained team's by > 10."""
    from jaxsoc.algos import make_train
    from jaxsoc.evaluation import make_evaluator
    env, params = soc.make("soc-hybrid", hosts_per_segment=2)
    cfg = _config(num_envs=32, total_steps=40_000, utd=0.05, epsilon_decay=5_000)
    trainer = make_train(cfg, env, params)
    state, _ = jax.jit(trainer.train)(jax.random.key(0))
    ev = jax.jit(make_evaluator(env, params, trainer.act, 256))
    trained = float(np.nanmean(ev(trainer.policy_params(state), jax.random.key(7))["return"]))
    untrained = float(np.nanmean(ev(trainer.policy_params(trainer.init(jax.random.key(0))), jax.random.key(7))["return"]))
    assert trained > untrained + 10.0, (trained, untrained)


def test_an_online_policy_acts_in_its_own_detectors_world():
    """An online run's policy carries its learned detector: `policy_env_params` puts that
    detector's statistics and threshold into the env params; a frozen run's world is the scenario's."""
    from jaxsoc.algos import make_train
    env, params = soc.make("soc-hybrid", hosts_per_segment=2)
    online = make_train(_config(detector="online"), env, params)
    f = params.features
    learned = hy.OnlineDetector(mean=jnp.full((f,), 0.5), var=jnp.full((f,), 4.0), count=jnp.int32(3),
                                params=None, opt=None, threshold=jnp.float32(7.25))
    world = online.policy_env_params(hy.HybridPolicy(agents=None, detector=learned), params)
    assert float(world.threshold) == 7.25 and float(params.threshold) != 7.25
    np.testing.assert_allclose(world.detector.center, 0.5)
    np.testing.assert_allclose(world.detector.scale, 2.0)  # sqrt of the running variance
    frozen = make_train(_config(), env, params)
    assert frozen.policy_env_params(hy.HybridPolicy(agents=None, detector=None), params) is params


@pytest.mark.slow
def test_evaluation_scores_with_the_runs_own_detector():
    """(compiles an init and an 8-episode evaluation of soc-hybrid, ~30 s) `evaluate_episodes`
    gives each seed the world its policy learned with: a threshold no score reaches makes no
    automatic lock-down, a tiny one locks hosts down automatically."""
    from jaxsoc.algos import make_train
    from jaxsoc.analysis.protocols import evaluate_episodes
    env, params = soc.make("soc-hybrid", hosts_per_segment=2)
    trainer = make_train(_config(detector="online"), env, params)
    policy = trainer.policy_params(jax.jit(trainer.init)(jax.random.key(0)))
    det_ = policy.detector._replace(threshold=jnp.float32(1e9))
    two = jax.tree.map(lambda *x: jnp.stack(x), policy._replace(detector=det_),
                       policy._replace(detector=det_._replace(threshold=jnp.float32(1e-6))))
    out = evaluate_episodes(env, params, trainer, (0, 0), 8, two)
    assert float(np.sum(out["auto_locks"][0])) == 0.0 and float(np.sum(out["auto_locks"][1])) > 0.0


def test_mixer_gain_script_refuses_bad_input(tmp_path, capsys):
    import importlib.util
    import pathlib

    script = pathlib.Path(__file__).resolve().parents[1] / "eval" / "mixer_gain.py"
    spec = importlib.util.spec_from_file_location("mixer_gain", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for argv, message in (([str(tmp_path)], "is not a run folder"), ([str(tmp_path), "--envs", "0"], "--envs: expected a positive integer, got '0'")):
        with pytest.raises(SystemExit) as e:
            module.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and err.count("\n") == 1, err
