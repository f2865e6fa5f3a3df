"""Tests for jaxsoc.distributions against independent numpy references."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsoc.distributions import (
    DiagGaussian,
    FactoredCategorical,
    MaskedCategorical,
    TanhGaussian,
    tanh_log_det_jacobian,
)

_erf = np.vectorize(math.erf)


def np_normal_logpdf(x, mean, std):
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)


def np_tanh_gaussian_logpdf(a, mean, std):
    """Change of variables in float64, written independently of the module under test."""
    a = np.asarray(a, np.float64)
    u = np.arctanh(a)
    return np.sum(np_normal_logpdf(u, mean, std) - np.log1p(-(a**2)), axis=-1)


def np_normal_cdf(x, mean, std):
    return 0.5 * (1.0 + _erf((x - mean) / (std * np.sqrt(2.0))))


# ---------------------------------------------------------------------------------------------
# Shared jitted functions (compiled once per module)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tanh_fns():
    @jax.jit
    def log_prob(mean, log_std, a):
        return TanhGaussian(mean, log_std).log_prob(a)

    @jax.jit
    def log_prob_u(mean, log_std, u):
        return TanhGaussian(mean, log_std).log_prob_from_pre_tanh(u)

    @jax.jit
    def sample_lp(key, mean, log_std):
        return TanhGaussian(mean, log_std).sample_and_log_prob(key)

    return dict(log_prob=log_prob, log_prob_u=log_prob_u, sample_lp=sample_lp)


@pytest.fixture(scope="module")
def cat_fns():
    @jax.jit
    def sample(key, logits, mask):
        return MaskedCategorical(logits, mask).sample(key, (400,))

    @jax.jit
    def stats(logits, mask):
        d = MaskedCategorical(logits, mask)
        return d.probs, d.entropy(), d.mode(), d.log_probs

    return dict(sample=sample, stats=stats)


def random_masks(seed, batch, n):
    """`[batch, n]` bool with at least one True per row (all-False rows are tested apart)."""
    rng = np.random.default_rng(seed)
    mask = rng.random((batch, n)) < 0.5
    mask[np.arange(batch), rng.integers(0, n, batch)] = True
    return mask


def random_logits(seed, shape, scale=1.0):
    return (scale * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Tanh-Gaussian
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mean,std", [(0.0, 0.5), (0.5, 1.0), (-1.0, 0.7), (2.0, 0.3)])
def test_tanh_density_integrates_to_one(tanh_fns, mean, std):
    a = np.linspace(-1.0, 1.0, 400_001)[1:-1]
    lp = tanh_fns["log_prob"](jnp.array([mean]), jnp.array([np.log(std)]), jnp.asarray(a[:, None]))
    total = np.trapezoid(np.exp(np.asarray(lp, np.float64)), a)
    assert abs(total - 1.0) < 2e-3, total


def test_tanh_log_prob_matches_numpy_change_of_variables(tanh_fns):
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(16, 3))
    log_std = rng.uniform(-1.5, 0.5, size=(16, 3))
    a = rng.uniform(-0.97, 0.97, size=(16, 3))
    expected = np_tanh_gaussian_logpdf(a, mean, np.exp(log_std))
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    got = tanh_fns["log_prob"](f32(mean), f32(log_std), f32(a))
    chex.assert_shape(got, (16,))
    chex.assert_type(got, jnp.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    got_u = tanh_fns["log_prob_u"](f32(mean), f32(log_std), f32(np.arctanh(a)))
    np.testing.assert_allclose(got_u, expected, rtol=1e-4, atol=1e-3)


def test_tanh_samples_match_histogram_and_returned_log_prob(tanh_fns):
    mean, std, n = 0.4, 0.8, 200_000
    a, lp = tanh_fns["sample_lp"](jax.random.PRNGKey(0), jnp.full((n, 1), mean),
                                  jnp.full((n, 1), np.log(std)))
    chex.assert_shape([a, lp], [(n, 1), (n,)])
    a = np.asarray(a[:, 0], np.float64)
    assert np.all(np.abs(a) < 1.0)
    edges = np.linspace(-1.0, 1.0, 41)
    counts, _ = np.histogram(a, edges)
    cdf = np_normal_cdf(np.arctanh(np.clip(edges, -1 + 1e-12, 1 - 1e-12)), mean, std)
    p = np.diff(cdf)
    freq = counts / n
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-5)
    # The log-prob returned with each sample is the density at that sample.
    expected = np_tanh_gaussian_logpdf(a[:2000, None], mean, std)
    np.testing.assert_allclose(lp[:2000], expected, rtol=1e-4, atol=1e-3)


def test_log_prob_action_agrees_with_pre_tanh(tanh_fns):
    key = jax.random.PRNGKey(1)
    k1, k2, k3 = jax.random.split(key, 3)
    mean = jax.random.normal(k1, (64, 4))
    log_std = jax.random.uniform(k2, (64, 4), minval=-2.0, maxval=1.0)
    u = jax.random.uniform(k3, (64, 4), minval=-3.0, maxval=3.0)
    np.testing.assert_allclose(
        tanh_fns["log_prob"](mean, log_std, jnp.tanh(u)),
        tanh_fns["log_prob_u"](mean, log_std, u),
        rtol=1e-4, atol=2e-3,
    )


def test_tanh_log_det_stable_and_correct():
    u = jnp.linspace(-5.0, 5.0, 101)
    np.testing.assert_allclose(tanh_log_det_jacobian(u), np.log1p(-np.tanh(np.float64(u)) ** 2),
                               rtol=1e-5, atol=1e-5)
    big = jnp.array([-1e4, -100.0, -20.0, 20.0, 100.0, 1e4])
    ld = tanh_log_det_jacobian(big)
    assert np.all(np.isfinite(ld))
    # Asymptote: log(1 - tanh^2 u) -> 2 log 2 - 2|u|.
    np.testing.assert_allclose(ld, 2 * np.log(2) - 2 * np.abs(np.asarray(big)), rtol=1e-6)


def test_no_nan_or_inf_at_large_u(tanh_fns):
    u = jnp.array([[-1e4, -100.0, -20.0], [20.0, 100.0, 1e4]])
    mean = jnp.array([[0.0, 3.0, -3.0], [1.0, 0.0, 50.0]])
    log_std = jnp.full((2, 3), 0.5)
    assert np.all(np.isfinite(tanh_fns["log_prob_u"](mean, log_std, u)))
    g = jax.grad(lambda m, s, x: TanhGaussian(m, s).log_prob_from_pre_tanh(x).sum(),
                 argnums=(0, 1, 2))(mean, log_std, u)
    assert all(np.all(np.isfinite(x)) for x in g)
    # Actions at or beyond the boundary: clipped atanh keeps log_prob finite.
    a = jnp.array([[-1.0, 1.0, 0.0], [1.5, -1.0 + 1e-9, 1.0 - 1e-9]])
    lp = tanh_fns["log_prob"](mean, log_std, a)
    assert np.all(np.isfinite(lp))
    ga = jax.grad(lambda m, x: TanhGaussian(m, log_std).log_prob(x).sum(), argnums=(0, 1))(mean, a)
    assert all(np.all(np.isfinite(x)) for x in ga)
    # Saturated samples: the action rounds to exactly +-1 but the log-prob stays finite.
    act, lp = tanh_fns["sample_lp"](jax.random.PRNGKey(0), jnp.full((8, 2), 60.0),
                                    jnp.full((8, 2), -3.0))
    assert np.all(np.abs(act) <= 1.0) and np.all(np.isfinite(lp))


def test_tanh_mode_and_entropies():
    mean = jnp.array([[0.3, -2.0], [1.0, 0.0]])
    log_std = jnp.array([[-0.5, 0.2], [0.0, -1.0]])
    d = TanhGaussian(mean, log_std)
    np.testing.assert_allclose(d.mode(), np.tanh(mean), rtol=1e-6)
    base = np.sum(0.5 * np.log(2 * np.pi * np.e) + np.asarray(log_std), -1)
    np.testing.assert_allclose(d.base_entropy(), base, rtol=1e-6)
    np.testing.assert_allclose(DiagGaussian(mean, log_std).entropy(), base, rtol=1e-6)
    est = d.entropy_estimate(jax.random.PRNGKey(0), num_samples=1)
    chex.assert_shape(est, (2,))
    # tanh contracts volume: entropy is below the base entropy.
    assert np.all(np.asarray(d.entropy_estimate(jax.random.PRNGKey(1), 64)) < base)


def test_tanh_entropy_estimate_matches_numerical_entropy(tanh_fns):
    mean, std = 0.7, 0.9
    a = np.linspace(-1.0, 1.0, 400_001)[1:-1]
    lp = np.asarray(tanh_fns["log_prob"](jnp.array([mean]), jnp.array([np.log(std)]),
                                         jnp.asarray(a[:, None])), np.float64)
    h_numeric = -np.trapezoid(np.exp(lp) * lp, a)
    est = TanhGaussian(jnp.array([mean]), jnp.array([np.log(std)])).entropy_estimate(
        jax.random.PRNGKey(3), num_samples=100_000)
    assert abs(float(est) - h_numeric) < 0.01, (float(est), h_numeric)


def test_diag_gaussian_log_prob_matches_numpy():
    rng = np.random.default_rng(2)
    mean, log_std, x = rng.normal(size=(3, 5, 2))
    got = DiagGaussian(jnp.asarray(mean, jnp.float32), jnp.asarray(log_std, jnp.float32)).log_prob(
        jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, np_normal_logpdf(x, mean, np.exp(log_std)).sum(-1), rtol=1e-5)


def test_tanh_gaussian_jit_matches_eager_and_vmaps(tanh_fns):
    key = jax.random.PRNGKey(4)
    mean = jnp.linspace(-1, 1, 6).reshape(3, 2)
    log_std = jnp.full((3, 2), -0.3)
    eager = TanhGaussian(mean, log_std).sample_and_log_prob(key)
    jitted = tanh_fns["sample_lp"](key, mean, log_std)
    chex.assert_trees_all_close(eager, jitted, rtol=1e-5, atol=1e-5)
    # vmap over rows with one key each.
    keys = jax.random.split(key, 3)
    a, lp = jax.vmap(lambda k, m, s: TanhGaussian(m, s).sample_and_log_prob(k))(keys, mean, log_std)
    chex.assert_shape([a, lp], [(3, 2), (3,)])
    np.testing.assert_allclose(lp, tanh_fns["log_prob_u"](mean, log_std, jnp.arctanh(a)),
                               rtol=1e-4, atol=1e-3)
    # The distribution is a pytree: it can cross a jit boundary.
    d = jax.jit(lambda m, s: TanhGaussian(m, s))(mean, log_std)
    chex.assert_trees_all_close(d.mode(), jnp.tanh(mean))


def test_tanh_gaussian_agrees_with_distrax():
    pytest.importorskip("distrax")
    mean = jnp.array([[0.2, -0.4, 1.0]])
    log_std = jnp.array([[-0.3, 0.1, -1.0]])
    a = jnp.array([[0.5, -0.9, 0.7]])
    d = TanhGaussian(mean, log_std)
    np.testing.assert_allclose(d.log_prob(a), d.to_distrax().log_prob(a), rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# Masked categorical
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("regime", ["normal", "adversarial"])
def test_masked_action_never_sampled(cat_fns, regime):
    batch, n = 128, 7
    mask = random_masks(5, batch, n)
    if regime == "normal":
        logits = random_logits(5, (batch, n), 3.0)
    else:
        # Allowed logits tiny, masked logits huge: a finite mask value would lose here.
        logits = np.where(mask, -1e30, 1e30).astype(np.float32)
    samples = cat_fns["sample"](jax.random.PRNGKey(3), logits, mask)
    chex.assert_shape(samples, (400, batch))
    chex.assert_type(samples, jnp.int32)
    allowed = np.take_along_axis(np.asarray(mask)[None], np.asarray(samples)[..., None], -1)
    assert allowed.all()
    if regime == "adversarial":
        # Equal allowed logits -> uniform over allowed: every allowed action shows up.
        seen = np.zeros((batch, n), bool)
        np.put_along_axis(seen, np.asarray(samples).T, True, axis=-1)
        np.testing.assert_array_equal(seen, np.asarray(mask))


def test_masked_action_never_sampled_with_non_finite_logits(cat_fns):
    # Garbage in must still respect the mask (NaN/inf logits come from diverged training).
    logits = np.array([[np.inf, 0.0, np.inf], [np.nan, 1.0, 0.0], [-np.inf, -np.inf, 5.0],
                       [np.nan, np.nan, np.nan]], np.float32)
    mask = np.array([[False, True, False], [False, False, True], [True, False, False],
                     [False, True, False]])
    samples = np.asarray(cat_fns["sample"](jax.random.PRNGKey(12), logits, mask))
    modes = np.asarray(cat_fns["stats"](logits, mask)[2])
    assert mask[np.arange(4), samples].all()
    assert mask[np.arange(4), modes].all()


def test_categorical_sample_frequencies(cat_fns):
    logits = jnp.array([[0.5, -1.0, 2.0, 0.0, 1.0]])
    mask = jnp.array([[True, True, False, True, True]])
    keys = jax.random.split(jax.random.PRNGKey(6), 50)
    samples = np.concatenate([np.asarray(cat_fns["sample"](k, logits, mask))[:, 0] for k in keys])
    freq = np.bincount(samples, minlength=5) / samples.size
    allowed_logits = np.where(np.asarray(mask[0]), np.asarray(logits[0], np.float64), -np.inf)
    p = np.exp(allowed_logits - allowed_logits.max())
    p /= p.sum()
    np.testing.assert_allclose(freq, p, atol=5 * np.sqrt(0.25 / samples.size))


def test_categorical_entropy_probs_log_prob_match_numpy(cat_fns):
    batch, n = 32, 6
    mask = random_masks(7, batch, n)
    logits = random_logits(7, (batch, n), 2.0)
    probs, entropy, _, _ = cat_fns["stats"](logits, mask)
    chex.assert_shape([probs, entropy], [(batch, n), (batch,)])
    ref_ent, ref_probs = [], []
    for lg, m in zip(logits.astype(np.float64), mask):
        kept = lg[m]  # masked entries dropped entirely
        p = np.exp(kept - kept.max())
        p /= p.sum()
        ref_ent.append(-np.sum(p * np.log(p)))
        full = np.zeros(n)
        full[m] = p
        ref_probs.append(full)
    np.testing.assert_allclose(entropy, ref_ent, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs, np.array(ref_probs), rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(probs)[~mask] == 0.0)
    d = MaskedCategorical(logits, mask)
    actions = jnp.tile(jnp.arange(n), (batch, 1)).T  # [n, batch]: log_prob broadcasts
    lp = np.asarray(jax.jit(lambda d, a: d.log_prob(a))(d, actions)).T
    m = mask
    np.testing.assert_allclose(lp[m], np.log(np.array(ref_probs)[m]), rtol=1e-5, atol=1e-6)
    assert np.all(np.isneginf(lp[~m]))


def test_categorical_mode_respects_mask(cat_fns):
    batch, n = 64, 5
    mask = random_masks(8, batch, n)
    logits = np.where(mask, random_logits(8, (batch, n)) - 1e30, 1e30)  # masked look best
    _, _, mode, _ = cat_fns["stats"](logits.astype(np.float32), mask)
    chex.assert_shape(mode, (batch,))
    # -1e30 + N(0,1) rounds to equal float32 values, so check membership, then a tie-free case.
    assert mask[np.arange(batch), np.asarray(mode)].all()
    logits2 = np.where(mask, random_logits(9, (batch, n)), 50.0).astype(np.float32)
    _, _, mode2, _ = cat_fns["stats"](logits2, mask)
    expected = np.argmax(np.where(mask, logits2, -np.inf), -1)
    np.testing.assert_array_equal(mode2, expected)


def test_categorical_all_false_row_is_uniform_and_finite(cat_fns):
    n = 4
    logits = jnp.array([[5.0, -3.0, 0.0, 1.0], [5.0, -3.0, 0.0, 1.0]])
    mask = jnp.array([[False] * n, [True, False, True, False]])
    probs, entropy, mode, log_probs = cat_fns["stats"](logits, mask)
    np.testing.assert_allclose(probs[0], np.full(n, 0.25), rtol=1e-6)
    np.testing.assert_allclose(entropy[0], np.log(n), rtol=1e-6)
    assert np.all(np.isfinite(log_probs[0])) and 0 <= int(mode[0]) < n
    samples = cat_fns["sample"](jax.random.PRNGKey(9), logits, mask)
    assert np.all((np.asarray(samples[:, 0]) >= 0) & (np.asarray(samples[:, 0]) < n))
    assert len(np.unique(np.asarray(samples[:, 0]))) == n
    # No gradient reaches the logits of an invalid row.
    g = jax.grad(lambda l: MaskedCategorical(l, mask).entropy().sum())(logits)
    np.testing.assert_array_equal(g[0], 0.0)


def test_categorical_gradients_finite_and_zero_on_masked():
    mask = random_masks(10, 16, 5)
    logits = random_logits(10, (16, 5))
    actions = np.random.default_rng(10).integers(0, 5, 16)
    actions = np.where(mask[np.arange(16), actions], actions, np.argmax(mask, -1))

    @jax.jit
    @jax.grad
    def grad(l):
        d = MaskedCategorical(l, mask)
        return d.log_prob(actions).sum() + d.entropy().sum() + (d.probs**2).sum()

    g = np.asarray(grad(logits))
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(g[~mask], 0.0)
    # A row with a single allowed action is deterministic: nothing to learn there.
    multi = mask.sum(-1) > 1
    assert np.all(np.abs(g[multi]).sum(-1) > 0) and np.all(g[~multi] == 0.0)


def test_categorical_without_mask_is_plain_softmax():
    logits = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, -1.0]])
    d = MaskedCategorical(logits)
    np.testing.assert_allclose(d.probs, jax.nn.softmax(logits), rtol=1e-6)
    np.testing.assert_array_equal(d.mode(), [2, 0])


@pytest.mark.slow  # CI budget (10 min on 2 cores): ~22 CPU-s of compiling; the hand-worked log-prob tests stay
def test_categorical_jit_matches_eager_vmaps_and_distrax():
    key = jax.random.PRNGKey(11)
    mask = random_masks(11, 8, 5)
    logits = random_logits(11, (8, 5))

    def f(k, l, m):
        d = MaskedCategorical(l, m)
        a, lp = d.sample_and_log_prob(k)
        return a, lp, d.entropy(), d.mode()

    eager = f(key, logits, mask)
    chex.assert_trees_all_close(eager, jax.jit(f)(key, logits, mask), rtol=1e-6)
    keys = jax.random.split(key, 8)
    a, lp, ent, mode = jax.vmap(f)(keys, logits, mask)
    chex.assert_shape([a, lp, ent, mode], [(8,), (8,), (8,), (8,)])
    assert mask[np.arange(8), np.asarray(a)].all()
    np.testing.assert_allclose(ent, eager[2], rtol=1e-6)
    pytest.importorskip("distrax")
    dx = MaskedCategorical(logits, mask).to_distrax()
    np.testing.assert_allclose(dx.entropy(), eager[2], rtol=1e-5)
    np.testing.assert_allclose(dx.log_prob(eager[0]), eager[1], rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Factored categorical (one choice per entry: a MultiDiscrete action)
# ---------------------------------------------------------------------------------------------


def test_factored_categorical_by_hand():
    """Two entries of three choices, the second's last masked: worked in float64 by hand."""
    logits = np.array([[0.0, np.log(2.0), np.log(5.0)], [1.0, 1.0, 7.0]])
    mask = np.array([[True, True, True], [True, True, False]])
    d = FactoredCategorical(jnp.asarray(logits, jnp.float32), jnp.asarray(mask))
    p0, p1 = np.array([1, 2, 5]) / 8.0, np.array([0.5, 0.5, 0.0])
    assert d.batch_shape == ()
    np.testing.assert_allclose(float(d.log_prob(jnp.array([2, 1]))), np.log(5 / 8) + np.log(0.5), rtol=1e-6)
    assert float(d.log_prob(jnp.array([0, 2]))) == -np.inf  # the masked choice
    h = -np.sum(p0 * np.log(p0)) + np.log(2.0)
    np.testing.assert_allclose(float(d.entropy()), h, rtol=1e-6)
    assert d.mode().tolist() == [2, 0]  # ties go to the lowest index
    # KL(d || q) with q uniform over the allowed choices: sum_e sum_c p log(p / q).
    q = FactoredCategorical(jnp.zeros((2, 3)), jnp.asarray(mask))
    kl = np.sum(p0 * np.log(p0 * 3)) + 0.0
    np.testing.assert_allclose(float(d.kl_divergence(q)), kl, rtol=1e-5)
    assert float(q.kl_divergence(q)) == 0.0


def test_factored_categorical_batches_samples_and_agrees_with_distrax():
    key = jax.random.key(0)
    logits = jax.random.normal(key, (4, 3, 5))  # batch 4, 3 entries, 5 choices
    mask = jnp.ones((4, 3, 5), bool).at[:, 1, 3:].set(False)
    d = FactoredCategorical(logits, mask)
    assert d.batch_shape == (4,)
    a = d.sample(jax.random.key(1), (20000,))
    assert a.shape == (20000, 4, 3) and a.dtype == jnp.int32
    assert not np.any(np.asarray(a[..., 1]) >= 3)  # never a masked choice
    freq = np.mean(np.asarray(a[:, 0, 2])[:, None] == np.arange(5), axis=0)
    np.testing.assert_allclose(freq, np.asarray(d.probs[0, 2]), atol=0.015)
    lp = d.log_prob(a[:3])
    np.testing.assert_allclose(lp, np.asarray(d.to_distrax().log_prob(a[:3])), rtol=1e-5)
    np.testing.assert_allclose(lp, MaskedCategorical(logits, mask).log_prob(a[:3]).sum(-1), rtol=1e-6)
    np.testing.assert_allclose(d.entropy(), d.to_distrax().entropy(), rtol=1e-5)
