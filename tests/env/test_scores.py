"""The detector's per-host scores as an observation feature of the SOC roles (`detector_scores`,
jaxsoc/env/scores.py): toggling it changes exactly the named roles' observations (N features
appended) and nothing else of the step; the features are the detector applied to the hosts'
telemetry windows; bad detectors are refused when the scenario is built."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc import detectors as det
from jaxsoc.env import scores
from jaxsoc.env.observe import feature_names
from jaxsoc.env.state import EnvState, without_window

SMALL = dict(hosts_per_segment=4, max_steps=6)  # 20 hosts; episodes end inside the rollout
W, THRESHOLD = 3, 12.0
DIRECTION = np.asarray(soc.build_params("soc-v2").telemetry_direction, np.float32)  # |d|^2 = 4.26


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory):
    """A z-score detector (centre 0, scale 1, windows of 3) saved for soc-v2 with threshold 12."""
    d = det.ZScoreDetector(center=jnp.zeros(8), scale=jnp.ones(8), window=W)
    path = tmp_path_factory.mktemp("det") / "zs"
    det.save_detector(path, d, soc.build_params("soc-v2"), THRESHOLD, 0.01)
    return str(path)


def rollout(env, params, steps=9):
    """Reset and `steps` auto-resetting steps under uniform random actions (drawn from keys that
    never see the observations, so both worlds act alike): every output, stacked over steps."""
    policy = soc.POLICIES["random"]

    def body(carry, k):
        obs, state = carry
        k_act, k_env = jax.random.split(k)
        actions = policy(k_act, obs, state, params)
        obs, state, rewards, dones, infos = env.step(k_env, state, actions, params)
        return (obs, state), (obs, state, rewards, dones, infos)

    @jax.jit
    def run(key):
        obs, state = env.reset(key, params)
        return obs, state, jax.lax.scan(body, (obs, state), jax.random.split(key, steps))[1]

    return run(jax.random.key(3))


@pytest.fixture(scope="module")
def worlds(detector_dir):
    """The same rollout with the switch off and on: `{False: (env, params, outputs), True: ...}`."""
    out = {}
    for on in (False, True):
        env, params = soc.make("soc-v2", **SMALL, with_world_state=True,
                               **({"detector_scores": detector_dir} if on else {}))
        out[on] = (env, params, rollout(env, params))
    return out


def test_toggle_widens_only_the_named_roles(detector_dir):
    """Default-run check (shapes are traced, nothing compiles): the named roles get N features."""
    env0, p0 = soc.make("soc-v2", **SMALL)
    env1, p1 = soc.make("soc-v2", **SMALL, detector_scores=detector_dir)
    n = p1.num_hosts
    named = set(p1.detector_score_roles)
    assert named == {"threat_hunter", "response_orchestrator"}
    for a in env0.agents:
        w0, w1 = env0.observation_spaces[a].shape[0], env1.observation_spaces[a].shape[0]
        assert w1 == w0 + (n if a in named else 0)
        assert len(feature_names(p1)[a]) == w1
        assert feature_names(p1)[a][:w0] == feature_names(p0)[a]
    assert env1.world_state_size == env0.world_state_size + 2 * n


@pytest.mark.slow  # two soc-v2 step programs compile (~30 CPU-s with an empty cache)
def test_toggle_changes_nothing_else_of_the_step(worlds):
    (env0, p0, (obs0, st0, (o0, s0, r0, d0, i0))), (env1, p1, (obs1, st1, (o1, s1, r1, d1, i1))) = worlds[False], worlds[True]
    n = p1.num_hosts
    named = set(p1.detector_score_roles)
    assert bool(jnp.any(d0["__all__"]))  # an auto-reset happened inside the rollout
    same = lambda a, b: jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)  # noqa: E731
    # Everything but the window and the named roles' observations is bit-identical.
    assert type(st0) is EnvState and st1.host_window.shape == (W, n, 8)
    same(st0, without_window(st1))
    same(s0, without_window(s1))
    same((r0, d0), (r1, d1))
    skip = ("final_obs", "world_state", "final_world_state")
    same({k: v for k, v in i0.items() if k not in skip}, {k: v for k, v in i1.items() if k not in skip})
    for before, after in ((obs0, obs1), (o0, o1), (i0["final_obs"], i1["final_obs"])):
        for a in env0.agents:
            w = before[a].shape[-1]
            same(before[a], after[a][..., :w])
            assert after[a].shape[-1] == w + (n if a in named else 0)
        # the appended features are the same for every named role
        same(after["threat_hunter"][..., -n:], after["response_orchestrator"][..., -n:])
    assert float(jnp.max(o1["threat_hunter"][..., -n:])) > 0.0


def test_features_are_the_detector_on_the_window(detector_dir):
    env, p = soc.make("soc-v2", **SMALL, detector_scores=detector_dir)
    n = p.num_hosts
    _, state = env.reset(jax.random.key(1), p)
    # Hand-worked: host 1's three frames are 2 x direction, host 2's 10 x, host 3's as host 2's
    # but isolated; z-score centre 0, scale 1: score = W * sum_f mean_t(x)^2.
    window = np.zeros((W, n, 8), np.float32)
    window[:, 1], window[:, 2], window[:, 3] = 2 * DIRECTION, 10 * DIRECTION, 10 * DIRECTION
    iso = np.asarray(state.hosts.isolated).copy()
    iso[0, 3] = True  # host 3 = segment 0, slot 3
    state = state.replace(host_window=jnp.asarray(window), hosts=state.hosts.replace(isolated=jnp.asarray(iso)))
    feat = np.asarray(jax.jit(env.get_obs)(state, p)["threat_hunter"][-n:])  # one compile beats op by op
    expected = np.zeros(n, np.float32)
    expected[1] = 3 * 4 * 4.26 / THRESHOLD  # 4.26
    expected[2] = scores.SCORE_CLIP         # 3 * 100 * 4.26 / 12 = 106.5, clipped
    np.testing.assert_allclose(feat, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # shares the two compiled rollouts of test_toggle_changes_nothing_else_of_the_step
def test_each_step_pushes_the_hosts_telemetry(worlds):
    env, p, (obs0, state0, (obs, states, *_)) = worlds[True]
    n = p.num_hosts
    # The rollout's first step: the oldest frame leaves, the hosts' telemetry after the step
    # (from the step's own key stream) enters, and the features are the detector on that window.
    k_env = jax.random.split(jax.random.split(jax.random.key(3), 9)[0])[1]
    key_step = jax.random.split(k_env)[0]  # SOCEnv.step: (key_step, key_reset)
    new = jax.tree.map(lambda x: x[0], states)
    frame, connected = jax.jit(det.host_telemetry)(jax.random.fold_in(key_step, scores.TELEMETRY_STREAM), new, p)
    np.testing.assert_array_equal(np.asarray(new.host_window[:-1]), np.asarray(state0.host_window[1:]))
    np.testing.assert_array_equal(np.asarray(new.host_window[-1]), np.asarray(frame))
    z = np.asarray(new.host_window)  # centre 0, scale 1
    by_hand = np.minimum(W * np.sum(z.mean(axis=0) ** 2, axis=-1) / THRESHOLD, scores.SCORE_CLIP)
    by_hand[~np.asarray(connected)] = 0.0
    np.testing.assert_allclose(np.asarray(obs["response_orchestrator"][0, -n:]), by_hand, rtol=1e-5)


def test_bad_detectors_are_refused_before_any_work(detector_dir, tmp_path):
    hybrid = soc.build_params("soc-v2").replace(name="soc-hybrid")  # the world under soc-hybrid
    d8 = det.ZScoreDetector(center=jnp.zeros(8), scale=jnp.ones(8), window=W)
    det.save_detector(tmp_path / "hyb", d8, hybrid, THRESHOLD, 0.01)
    with pytest.raises(ValueError, match="trained on scenario 'soc-hybrid', not 'soc-v2'"):
        soc.make("soc-v2", detector_scores=str(tmp_path / "hyb"))
    narrow = soc.build_params("soc-v2", telemetry_features=4, telemetry_direction=(1.0, 0.5, -0.5, 1.0))
    d4 = det.ZScoreDetector(center=jnp.zeros(4), scale=jnp.ones(4), window=W)
    det.save_detector(tmp_path / "f4", d4, narrow, THRESHOLD, 0.01)
    with pytest.raises(ValueError, match="F=4 telemetry features but 'soc-v2' emits 8"):
        soc.make("soc-v2", detector_scores=str(tmp_path / "f4"))
    det.save_detector(tmp_path / "raw", d8, soc.build_params("soc-v2"))
    with pytest.raises(ValueError, match="without a calibrated threshold"):
        soc.make("soc-v2", detector_scores=str(tmp_path / "raw"))
    with pytest.raises(ValueError, match="no detector folder"):
        soc.make("soc-v2", detector_scores=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="needs fix_d1_hidden_truth"):
        soc.make("hmarl-soc-v1", detector_scores=detector_dir)
    with pytest.raises(ValueError, match="detector_score_roles"):
        soc.make("soc-v2", detector_scores=detector_dir, detector_score_roles=["hunter"])
