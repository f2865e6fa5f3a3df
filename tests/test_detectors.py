"""Tests for jaxsoc.detectors: metrics against hand-worked values, threshold calibration, the
z-score detector by hand, the per-host telemetry model, the autoencoder learning on a small
problem, determinism, checkpoints and bad input.

Compile-bound on 2 cores, so one small scenario (5 segments x 8 hosts), one gathered training
stream and one held-out stream, and one trained autoencoder are shared by every test through
module-level fixtures; the gather and the training compile with XLA's optimisations off.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc import detectors as det
from jaxsoc.checkpoints import CheckpointError
from jaxsoc.env.observe import telemetry_summary
from tests.fast import fast_compile

W = 4
# Strong stage drifts: the learning test is about the autoencoder, not about a hard problem.
DRIFT = (0.0, 1.5, 2.0, 2.5, 3.0)
CONFIG = det.AutoencoderConfig(window=W, hidden=(16,), latent=2, epochs=10, batch_size=128)


@pytest.fixture(scope="module")
def scenario():
    return soc.make("soc-v2", hosts_per_segment=8, telemetry_stage_drift=DRIFT)


@pytest.fixture(scope="module")
def streams(scenario):
    env, params = scenario
    with fast_compile():
        train = det.gather_telemetry(jax.random.key(0), env, params, num_envs=32, num_steps=40)
        held = det.gather_telemetry(jax.random.key(1), env, params, num_envs=32, num_steps=40)
        again = det.gather_telemetry(jax.random.key(0), env, params, num_envs=32, num_steps=40)
    return train, held, again


@pytest.fixture(scope="module")
def windows(streams):
    return det.sample_windows(jax.random.key(2), streams[0], W, 2048)


@pytest.fixture(scope="module")
def trained(windows):
    with fast_compile():
        a = det.train_autoencoder(jax.random.key(3), windows[0], CONFIG)
        b = det.train_autoencoder(jax.random.key(3), windows[0], CONFIG)
        c = det.train_autoencoder(jax.random.key(4), windows[0], CONFIG)
    return a, b, c


# ---------------------------------------------------------------------------------------------
# Metrics, by hand
# ---------------------------------------------------------------------------------------------


def test_roc_auc_hand_worked_with_ties():
    # positives 0.35, 0.8, 0.4; negatives 0.1, 0.4. Pairs won: 0.35>0.1, 0.8>both, 0.4>0.1, and
    # 0.4 = 0.4 is a tie (1/2): (1 + 0 + 1 + 1 + 1 + 0.5) / 6 = 0.75.
    scores = [0.1, 0.4, 0.35, 0.8, 0.4]
    labels = [0, 0, 1, 1, 1]
    assert det.roc_auc(scores, labels) == pytest.approx(0.75)
    assert det.roc_auc([0.3] * 4, [0, 1, 0, 1]) == pytest.approx(0.5)  # all tied
    assert det.roc_auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert det.roc_auc([1, 2, 3, 4], [1, 1, 0, 0]) == 0.0
    # a subset of positives against every negative: 0.8 alone wins both pairs; 0.35 and 0.4 give
    # (1 + 0 + 1 + 0.5) / 4
    subsets = det.roc_auc_subsets(scores, labels, {"high": np.array([0, 0, 0, 1, 0], bool),
                                                   "low": np.array([0, 0, 1, 0, 1], bool),
                                                   "none": np.zeros(5, bool)})
    assert subsets == {"high": 1.0, "low": pytest.approx(0.625), "none": None}


def test_average_precision_hand_worked_with_ties():
    # Thresholds, highest first: 0.9 -> TP 1 FP 0 (P 1, R 1/3); 0.8, a tie of one positive and one
    # negative -> TP 2 FP 1 (P 2/3, R 2/3); 0.3 -> no recall gained; 0.1 -> TP 3 FP 2 (P 3/5, R 1).
    # AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/5.
    scores = [0.9, 0.8, 0.8, 0.3, 0.1]
    labels = [1, 0, 1, 0, 1]
    assert det.average_precision(scores, labels) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert det.average_precision([4, 3, 2, 1], [1, 1, 0, 0]) == pytest.approx(1.0)
    fpr, tpr = det.roc_curve(scores, labels)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1])


def test_detection_rate_at_fpr_hand_worked_with_ties():
    neg = np.arange(10) / 10.0  # 0.0 .. 0.9
    pos = np.array([0.85, 0.95, 0.9, 0.5])
    scores, labels = np.r_[neg, pos], np.r_[np.zeros(10, bool), np.ones(4, bool)]
    # 10 % of 10 negatives: one false alarm allowed, so the threshold is the 2nd-highest negative
    # (0.8) and 0.85, 0.95, 0.9 alarm.
    assert det.threshold_at_fpr(neg, 0.1) == pytest.approx(0.8)
    assert det.detection_rate_at_fpr(scores, labels, 0.1) == pytest.approx(3 / 4)
    # 5 %: no false alarm allowed, threshold 0.9; the positive tied with it does not alarm.
    assert det.detection_rate_at_fpr(scores, labels, 0.05) == pytest.approx(1 / 4)
    by = det.detection_rate_subsets(scores, labels, {"top": scores >= 0.9, "all": np.ones(14, bool)}, 0.05)
    assert by == {"top": pytest.approx(0.5), "all": pytest.approx(0.25)}


def test_first_alarm_delays_hand_worked():
    # One env, three hosts, seven steps; new episodes start at steps 4 and 6.
    episode = np.array([[0], [0], [0], [0], [1], [1], [2]])
    comp = np.zeros((7, 1, 3), bool)
    alarm = np.zeros((7, 1, 3), bool)
    comp[1:4, 0, 0] = True  # host 0 compromised at 1, alarmed at 3: delay 2
    alarm[3, 0, 0] = True
    comp[2:4, 0, 1] = True  # host 1 compromised at 2, episode ends unalarmed: NaN
    alarm[1, 0, 1] = True  # (an alarm before its compromise is a false alarm, not a detection)
    comp[4:6, 0, 0] = True  # host 0 again in episode 1, alarmed at once: delay 0
    alarm[4:6, 0, 0] = True
    comp[5, 0, 2] = True  # host 2 compromised at 5, episode 1 ends unalarmed: NaN
    comp[6, 0, 1] = alarm[6, 0, 1] = True  # in the last, unfinished episode: left out
    delays = det.first_alarm_delays(alarm, comp, episode)
    assert sorted(delays[np.isfinite(delays)].tolist()) == [0.0, 2.0]
    assert np.isnan(delays).sum() == 2 and delays.size == 4


def test_metrics_refuse_one_class_and_mismatched_sizes():
    with pytest.raises(ValueError, match="at least one positive and one negative"):
        det.roc_auc([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="at least one positive and one negative"):
        det.average_precision([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="same size"):
        det.detection_rate_at_fpr([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="finite"):
        det.roc_auc([0.1, -np.inf], [0, 1])


# ---------------------------------------------------------------------------------------------
# Threshold calibration
# ---------------------------------------------------------------------------------------------


def test_threshold_hits_the_target_fpr_on_a_known_distribution():
    rng = np.random.default_rng(0)
    target = 0.02
    tau = det.calibrate_threshold(rng.uniform(size=200_000), target)
    assert tau == pytest.approx(1 - target, abs=2e-3)
    assert np.mean(rng.uniform(size=200_000) > tau) == pytest.approx(target, abs=2e-3)
    # Contaminated calibration: 10 % attacks far above the clean N(0, 1) scores. Declaring the
    # contamination recovers the target on clean data; ignoring it errs on the quiet side.
    calib = np.r_[rng.normal(size=90_000), rng.normal(8.0, 1.0, size=10_000)]
    fresh_clean = rng.normal(size=200_000)
    fpr = np.mean(fresh_clean > det.calibrate_threshold(calib, 0.05, contamination=0.1))
    assert fpr == pytest.approx(0.05, abs=5e-3)
    assert np.mean(fresh_clean > det.calibrate_threshold(calib, 0.05)) < 0.01


@pytest.mark.parametrize("target", [0.0, 1.0, -0.1, 1.5, float("nan"), "often"])
def test_threshold_refuses_a_target_outside_0_1(target):
    with pytest.raises(ValueError, match="false-alarm target"):
        det.calibrate_threshold([0.1, 0.2, 0.3], target)


def test_threshold_refuses_bad_contamination_and_empty_scores():
    with pytest.raises(ValueError, match="contamination"):
        det.calibrate_threshold([0.1, 0.2], 0.01, contamination=1.0)
    with pytest.raises(ValueError, match="finite calibration score"):
        det.calibrate_threshold([-np.inf, np.nan], 0.01)


# ---------------------------------------------------------------------------------------------
# z-score detector, by hand
# ---------------------------------------------------------------------------------------------


def test_zscore_detector_hand_worked():
    # frames: feature 0 in {1, 3} (mean 2, std 1), feature 1 in {0, 4} (mean 2, std 2)
    train = jnp.asarray([[[1.0, 0.0], [3.0, 4.0]], [[3.0, 4.0], [1.0, 0.0]]])
    z = det.fit_zscore(train)
    np.testing.assert_allclose(z.center, [2.0, 2.0])
    np.testing.assert_allclose(z.scale, [1.0, 2.0])
    # window [[4, 2], [2, 6]]: z = [[2, 0], [0, 2]], window mean [1, 1], score W * (1 + 1) = 4
    x = jnp.asarray([[4.0, 2.0], [2.0, 6.0]])
    assert float(det.zscore_scores(z, x)) == pytest.approx(4.0)
    assert float(det.zscore_scores(z, jnp.full((2, 2), 2.0))) == 0.0  # the centre scores 0
    # median/MAD: medians 2 and 2, MADs 1 and 2, scaled to a normal's standard deviation
    r = det.fit_zscore(train, robust=True)
    np.testing.assert_allclose(r.scale, [1.4826, 2 * 1.4826], rtol=1e-6)
    assert float(det.zscore_scores(r, x)) == pytest.approx(4.0 / 1.4826 ** 2, rel=1e-5)
    # leading axes pass through: [2, 3, W, F] -> [2, 3]
    assert det.zscore_scores(z, jnp.zeros((2, 3, 2, 2))).shape == (2, 3)


# ---------------------------------------------------------------------------------------------
# Per-host telemetry
# ---------------------------------------------------------------------------------------------

many_draws = jax.jit(jax.vmap(det.host_telemetry, in_axes=(0, None, None, None)))


def hand_state(env, params):
    """A reset state with host 0 at stage 1, host 1 at stage 3, host 9 (segment 1) at stage 4,
    host 2 isolated and everything else clean."""
    _, state = env.reset(jax.random.key(5), params)
    h = state.hosts
    comp = h.compromised.at[0, 0].set(True).at[0, 1].set(True).at[1, 1].set(True)
    stage = h.stage.at[0, 0].set(1).at[0, 1].set(3).at[1, 1].set(4)
    return state.replace(hosts=h.replace(compromised=comp, stage=stage,
                                         isolated=h.isolated.at[0, 2].set(True)))


def test_host_telemetry_mean_and_std_invariants(scenario):
    env, params = scenario
    params = params.replace(telemetry_noise=0.5, stealth=0.5)  # the noise parameter is read
    state = hand_state(env, params)
    x, connected = many_draws(jax.random.split(jax.random.key(6), 4000), state, params, 0.0)
    x, connected = np.asarray(x), np.asarray(connected)
    assert x.shape == (4000, params.num_hosts, params.telemetry_features)
    direction = np.asarray(params.telemetry_direction)
    clean = [h for h in range(params.num_hosts) if h not in (0, 1, 2, 9)]
    tol = 5 * 0.5 / math.sqrt(4000)
    assert np.abs(x[:, clean].mean(0)).max() < tol
    np.testing.assert_allclose(x[:, clean].std(0), 0.5, rtol=0.05)
    for host, stage in ((0, 1), (1, 3), (9, 4)):  # compromised: shifted by drift x direction
        np.testing.assert_allclose(x[:, host].mean(0), DRIFT[stage] * direction, atol=tol)
        np.testing.assert_allclose(x[:, host].std(0), 0.5, rtol=0.05)
    assert not connected[0, 2] and np.all(x[:, 2] == 0)  # isolated: off the network
    assert connected[0].sum() == params.num_hosts - 1
    # stealth damping 1 at stealth 0.5 halves the drift
    xd, _ = many_draws(jax.random.split(jax.random.key(6), 4000), state, params, 1.0)
    np.testing.assert_allclose(np.asarray(xd)[:, 1].mean(0), 0.5 * DRIFT[3] * direction, atol=tol)


def test_host_telemetry_averages_to_the_env_segment_summary(scenario):
    # Without noise, each segment's mean over connected hosts is exactly the env's summary drift.
    env, params = scenario
    quiet = params.replace(telemetry_noise=0.0)
    state = hand_state(env, quiet)
    x, connected = many_draws(jax.random.split(jax.random.key(7), 1), state, quiet, 0.0)
    x = np.asarray(x[0]).reshape(params.num_segments, 8, -1)
    c = np.asarray(connected[0]).reshape(params.num_segments, 8)
    means = (x * c[..., None]).sum(1) / c.sum(1)[:, None]
    summary = telemetry_summary(state, quiet, jnp.zeros((params.num_segments, params.telemetry_features)))
    np.testing.assert_allclose(means, summary, atol=1e-6)
    labels = det.host_labels(state, quiet)
    assert np.flatnonzero(labels["compromised"]).tolist() == [0, 1, 9]
    assert np.asarray(labels["stage"])[[0, 1, 9]].tolist() == [1, 3, 4]


def test_gathered_stream_shapes_labels_and_windows(scenario, streams):
    env, params = scenario
    train, held, again = streams
    T, N, H, F = train.shape
    assert (T, N, H, F) == (40, 32, params.num_hosts, params.telemetry_features)
    comp, stage = np.asarray(train.compromised), np.asarray(train.stage)
    assert comp.any() and np.all(stage[comp] >= 1) and np.all(stage[~comp] == 0)
    assert np.all(np.asarray(train.telemetry)[~np.asarray(train.connected)] == 0)
    assert np.asarray(train.episode)[-1].min() >= 1  # episodes ended and auto-reset
    valid = np.asarray(det.window_valid(train, W))
    assert not valid[: W - 1].any() and valid.any()
    ep = np.asarray(train.episode)
    crossing = ep[W - 1:] != ep[: T - W + 1]  # a window spanning an auto-reset is never valid
    assert crossing.any() and not (valid[W - 1:] & crossing[:, :, None]).any()
    t, e, h = 10, 3, 5
    np.testing.assert_array_equal(det.windows_at(np.asarray(train.telemetry), [t], [e], [h], W)[0],
                                  np.asarray(train.telemetry)[t - W + 1: t + 1, e, h])


def test_gathering_is_deterministic_per_key(streams):
    train, held, again = streams
    for a, b in zip(jax.tree.leaves(train), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(train.telemetry, held.telemetry)
    a, _ = det.sample_windows(jax.random.key(9), train, W, 300)
    b, _ = det.sample_windows(jax.random.key(9), train, W, 300)
    c, _ = det.sample_windows(jax.random.key(10), train, W, 300)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sample_windows_composes_the_attacked_share(streams):
    for share in (0.0, 0.25):
        w, labels = det.sample_windows(jax.random.key(11), streams[0], W, 400, attacked_share=share)
        assert w.shape == (400, W, 8) and labels["compromised"].mean() == share
        assert np.all(labels["stage"][labels["compromised"]] >= 1)
    with pytest.raises(ValueError, match="attacked_share"):
        det.sample_windows(jax.random.key(11), streams[0], W, 400, attacked_share=1.5)


# ---------------------------------------------------------------------------------------------
# The autoencoder
# ---------------------------------------------------------------------------------------------


def heldout_auc(detector, score_fn, held):
    valid = np.asarray(det.window_valid(held, W))
    s = np.asarray(det.sliding_scores(score_fn, detector, held.telemetry, W))[valid]
    return det.roc_auc(s, np.asarray(held.compromised)[valid])


def test_autoencoder_learns_on_a_small_contaminated_problem(streams, windows, trained):
    # Trained on unlabelled windows with the stream's own contamination (about 10 % attacked here).
    (ae, losses), _, _ = trained
    assert 0.03 < windows[1]["compromised"].mean() < 0.3
    losses = np.asarray(losses)
    assert losses.shape == (CONFIG.epochs,) and np.all(np.isfinite(losses))
    # The loss must fall: a high held-out AUC alone would not show learning, since an untrained
    # autoencoder's error is close to the window's energy, itself a detector (measured 0.97).
    assert losses[-1] < 0.95 * losses[0]  # measured: 0.815 -> 0.740
    # And it must beat the classical baseline fitted to the same windows, on held-out episodes
    # (measured 0.979 against the z-score's 0.939; an untrained autoencoder scores 0.967).
    auc = heldout_auc(ae, det.autoencoder_scores, streams[1])
    baseline = heldout_auc(det.fit_zscore(windows[0]), det.zscore_scores, streams[1])
    assert auc > baseline + 0.02, (auc, baseline)


def test_training_is_deterministic_per_key(trained):
    (a, la), (b, lb), (c, _) = trained
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a.params["encoder"]["out"]["kernel"], c.params["encoder"]["out"]["kernel"])


def test_save_load_round_trip_gives_identical_scores(tmp_path, scenario, windows, trained):
    _, params = scenario
    (ae, _), _, _ = trained
    zs = det.fit_zscore(windows[0], robust=True)
    probe = windows[0][:64]
    for name, d, fn in (("ae", ae, det.autoencoder_scores), ("z", zs, det.zscore_scores)):
        det.save_detector(tmp_path / name, d, params, threshold=1.25, target_fpr=0.01)
        loaded, meta = det.load_detector(tmp_path / name, params)
        assert type(loaded) is type(d) and meta["scenario"] == params.name
        assert meta["threshold"] == 1.25 and meta["target_fpr"] == 0.01
        np.testing.assert_array_equal(fn(loaded, probe), fn(d, probe))
    assert det.read_detector_meta(tmp_path / "ae")["config"]["latent"] == CONFIG.latent
    # another scenario, another telemetry width: refused before any array is read
    _, other = soc.make("soc-v2")
    with pytest.raises(CheckpointError, match="trained on scenario 'soc-v2', not 'soc-strategic'"):
        det.load_detector(tmp_path / "ae", other.replace(name="soc-strategic"))
    narrow = params.replace(telemetry_features=4, telemetry_direction=(1.0, 0.5, -0.5, 1.0))
    with pytest.raises(ValueError, match="reads F=8 telemetry features"):
        det.load_detector(tmp_path / "z", narrow)
    with pytest.raises(ValueError, match="no detector"):
        det.load_detector(tmp_path / "missing", params)
    # saving again replaces the detector; a folder holding anything else is never written into
    det.save_detector(tmp_path / "z", det.fit_zscore(windows[0]), params)
    loaded, meta = det.load_detector(tmp_path / "z", params)
    assert meta["threshold"] is None and not loaded.robust
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty and holds no detector"):
        det.save_detector(tmp_path / "notes", zs, params)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_bad_input_raises_clear_errors(scenario, windows, trained):
    env, params = scenario
    (ae, _), _, _ = trained
    zs = det.fit_zscore(windows[0])
    with pytest.raises(ValueError, match="6 features per step but this detector was fit on F=8"):
        det.autoencoder_scores(ae, jnp.zeros((3, W, 6)))
    with pytest.raises(ValueError, match="6 features per step"):
        det.zscore_scores(zs, jnp.zeros((3, W, 6)))
    with pytest.raises(ValueError, match="3 steps long but this detector reads windows of W=4"):
        det.zscore_scores(zs, jnp.zeros((3, 3, 8)))
    with pytest.raises(ValueError, match=r"\[\.\.\., W=4, F=8\]"):
        det.autoencoder_scores(ae, jnp.zeros((8,)))
    with pytest.raises(ValueError, match="training windows have 6 features"):
        det.train_autoencoder(jax.random.key(0), jnp.zeros((256, W, 6)), CONFIG)
    with pytest.raises(ValueError, match="trim"):
        det.AutoencoderConfig(trim=1.0)
    with pytest.raises(ValueError, match="unknown activation"):
        det.AutoencoderConfig(activation="nope")
    # Sizes: a whole number, numpy's too (as the env's params take them); a switch is not one.
    assert type(det.AutoencoderConfig(window=np.int64(4), features=np.int32(8)).window) is int
    with pytest.raises(ValueError, match="AutoencoderConfig.window must be a positive integer, got True"):
        det.AutoencoderConfig(window=True)
    with pytest.raises(ValueError, match="stealth_damping"):
        det.host_telemetry(jax.random.key(0), hand_state(env, params), params, 1.5)
    with pytest.raises(ValueError, match=r"stealth must be \[num_envs=4\]"):
        det.gather_telemetry(jax.random.key(0), env, params, 4, 8, stealth=[0.1, 0.2])
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        det.gather_telemetry(jax.random.key(0), env, params, 4, 0)
    _, strategic = soc.make("soc-strategic")
    with pytest.raises(ValueError, match="draws each campaign's stealth"):
        det.gather_telemetry(jax.random.key(0), env, strategic, 2, 8, stealth=[0.1, 0.2])
    with pytest.raises(ValueError, match="reads F=8 telemetry features but scenario"):
        det.save_detector("unused", zs, params.replace(telemetry_features=4,
                                                       telemetry_direction=(1.0, 0.5, -0.5, 1.0)))
