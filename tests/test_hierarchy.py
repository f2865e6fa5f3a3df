"""Macro-transitions of a coordinator that decides every K steps: hand-worked cases."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsoc.algos import hierarchy as hz


def rollout(rewards, decide, completes, terminated, truncated, values, next_values, final_values,
            gamma, discounting="smdp", bootstrap_truncation=True):
    """Drive start/accumulate over a [T] sequence of one env; returns the stacked records [T, 1]."""
    pending = hz.empty_pending(jnp.zeros((1, 1)), 1)
    recs = []
    for t in range(len(rewards)):
        d = jnp.array([decide[t]])
        pending = hz.start(pending, d, jnp.full((1, 1), float(t)), jnp.array([t]), jnp.array([-0.1 * t]),
                           jnp.array([values[t]], jnp.float32))
        pending, rec = hz.accumulate(pending, jnp.array([rewards[t]], jnp.float32), gamma, jnp.array([completes[t]]),
                                     jnp.array([terminated[t]]), jnp.array([truncated[t]]),
                                     jnp.array([next_values[t]], jnp.float32), jnp.array([final_values[t]], jnp.float32),
                                     discounting=discounting, bootstrap_truncation=bootstrap_truncation)
        recs.append(rec)
    return jax.tree.map(lambda *x: jnp.stack(x), *recs)


def test_two_macro_steps_hand_worked():
    g, lam = 0.5, 0.9
    # K = 2, decisions at t = 0, 2; V at decisions 10, 20; V(obs_4) = 30
    rec = rollout(rewards=[1, 2, 3, 4], decide=[1, 0, 1, 0], completes=[0, 1, 0, 1], terminated=[0] * 4,
                  truncated=[0] * 4, values=[10, 0, 20, 0], next_values=[0, 20, 0, 30], final_values=[0] * 4, gamma=g)
    assert np.asarray(rec.emit[:, 0]).tolist() == [False, True, False, True]
    np.testing.assert_allclose(rec.reward[[1, 3], 0], [1 + 0.5 * 2, 3 + 0.5 * 4])
    np.testing.assert_allclose(rec.discount[[1, 3], 0], [0.25, 0.25])
    assert np.asarray(rec.action[[1, 3], 0]).tolist() == [0, 2]  # the directive actually executed
    np.testing.assert_allclose(rec.log_prob[[1, 3], 0], [0.0, -0.2])
    adv, ret = hz.macro_gae(rec, lam)
    d3 = 5 + 0.25 * 30 - 20
    d1 = 2 + 0.25 * 20 - 10
    np.testing.assert_allclose(adv[[1, 3], 0], [d1 + 0.25 * lam * d3, d3], rtol=1e-6)
    np.testing.assert_allclose(ret[[1, 3], 0], [d1 + 0.25 * lam * d3 + 10, d3 + 20], rtol=1e-6)
    assert float(jnp.abs(adv[[0, 2], 0]).max()) == 0.0


def test_episode_end_cuts_the_chain_and_bootstraps_truncation_only():
    g, lam = 0.9, 0.95
    # K = 3; the episode is terminated at t = 1 (mid macro-step), a new one starts at t = 2
    rec = rollout(rewards=[1, 1, 2, 2], decide=[1, 0, 1, 0], completes=[0, 1, 0, 1], terminated=[0, 1, 0, 0],
                  truncated=[0] * 4, values=[5, 0, 7, 0], next_values=[0, 99, 0, 8], final_values=[0, 50, 0, 0], gamma=g)
    adv, _ = hz.macro_gae(rec, lam)
    d1 = (1 + 0.9 * 1) + 0.81 * 0.0 - 5  # terminated: no bootstrap
    d3 = (2 + 0.9 * 2) + 0.81 * 8 - 7
    np.testing.assert_allclose(adv[[1, 3], 0], [d1, d3], rtol=1e-6)  # chain cut at the episode end
    # truncated instead: bootstrap from the terminal observation's value, chain still cut
    rec = rollout(rewards=[1, 1, 2, 2], decide=[1, 0, 1, 0], completes=[0, 1, 0, 1], terminated=[0] * 4,
                  truncated=[0, 1, 0, 0], values=[5, 0, 7, 0], next_values=[0, 99, 0, 8], final_values=[0, 50, 0, 0], gamma=g)
    adv, _ = hz.macro_gae(rec, lam)
    np.testing.assert_allclose(adv[1, 0], (1 + 0.9) + 0.81 * 50 - 5, rtol=1e-6)
    rec = rollout(rewards=[1, 1, 2, 2], decide=[1, 0, 1, 0], completes=[0, 1, 0, 1], terminated=[0] * 4,
                  truncated=[0, 1, 0, 0], values=[5, 0, 7, 0], next_values=[0, 99, 0, 8], final_values=[0, 50, 0, 0],
                  gamma=g, bootstrap_truncation=False)
    np.testing.assert_allclose(hz.macro_gae(rec, lam)[0][1, 0], (1 + 0.9) - 5, rtol=1e-6)


def test_reference_discounting_sums_rewards_and_uses_gamma_per_macro_step():
    rec = rollout(rewards=[1, 2, 3], decide=[1, 0, 0], completes=[0, 0, 1], terminated=[0] * 3, truncated=[0] * 3,
                  values=[4, 0, 0], next_values=[0, 0, 6], final_values=[0] * 3, gamma=0.9, discounting="reference")
    np.testing.assert_allclose([rec.reward[2, 0], rec.discount[2, 0]], [6.0, 0.9])
    with pytest.raises(ValueError, match="discounting"):
        rollout(rewards=[1], decide=[1], completes=[1], terminated=[0], truncated=[0], values=[0], next_values=[0],
                final_values=[0], gamma=0.9, discounting="other")


def test_valid_first_gathers_every_emitted_record():
    mask = jnp.array([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 0, 0]], bool)  # [T=4, N=3]: 4 valid
    x = jnp.arange(12.0).reshape(4, 3)
    w, (g,) = hz.valid_first(jax.random.key(0), mask, 6, x)
    assert np.asarray(w).tolist() == [1, 1, 1, 1, 0, 0]
    assert sorted(np.asarray(g[:4]).tolist()) == [0.0, 4.0, 5.0, 9.0]
    w, (g,) = hz.valid_first(jax.random.key(1), mask, 2, x)  # capacity below the count: a random 2
    assert np.asarray(w).tolist() == [1, 1] and set(np.asarray(g).tolist()) <= {0.0, 4.0, 5.0, 9.0}
