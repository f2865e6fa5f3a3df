"""The counter-hash generator: uniform, independent enough for simulation, disjoint draws."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsoc.env.rng import Draws, hash_words, words_to_normal, words_to_uniform


def test_uniform_chi_square_and_moments():
    u = np.asarray(words_to_uniform(hash_words(jnp.array([123, 456], jnp.uint32), 0, (200_000,))))
    assert u.min() >= 0 and u.max() < 1
    counts, _ = np.histogram(u, bins=100, range=(0, 1))
    chi2 = ((counts - 2000) ** 2 / 2000).sum()
    assert chi2 < 148.2  # 99 dof, p = 0.001
    np.testing.assert_allclose([u.mean(), u.var()], [0.5, 1 / 12], atol=3e-3)


def test_neighbouring_counters_and_seeds_are_uncorrelated():
    w = hash_words(jnp.array([1, 2], jnp.uint32), 0, (100_000,))
    u = np.asarray(words_to_uniform(w))
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.015
    v = np.asarray(words_to_uniform(hash_words(jnp.array([1, 3], jnp.uint32), 0, (100_000,))))
    assert abs(np.corrcoef(u, v)[0, 1]) < 0.015
    # the low bits too (used as 16-bit-free keys in the attacker)
    bits = (np.asarray(w) & 1).astype(float)
    assert abs(bits.mean() - 0.5) < 0.01


def test_normal_moments():
    z = np.asarray(words_to_normal(hash_words(jnp.array([9, 9], jnp.uint32), 0, (200_000,))))
    np.testing.assert_allclose([z.mean(), z.std()], [0.0, 1.0], atol=0.01)
    assert np.isfinite(z).all() and 4.0 < np.abs(z).max() < 6.0


def test_normal_is_finite_at_the_extreme_words():
    # The largest word's midpoint rounded up to u = 1 in float32 (an infinite observation once
    # every 2^24 draws, which turned PPO's parameters into NaN after ~20M draws).
    w = jnp.array([0, 255, 0xFFFFFEFF, 0xFFFFFF00, 0xFFFFFFFF], jnp.uint32)
    z = np.asarray(words_to_normal(w))
    assert np.isfinite(z).all() and np.abs(z).max() < 6.0


def test_draws_hand_out_disjoint_blocks_and_are_deterministic():
    d1, d2 = Draws(jax.random.key(0)), Draws(jax.random.key(0))
    a, b = d1.words((5,)), d1.words((3,))
    assert d1.offset == 8
    np.testing.assert_array_equal(np.asarray(d2.words((8,))), np.concatenate([a, b]))
    t1, t2 = Draws(jax.random.key(0), "threefry"), Draws(jax.random.key(0), "threefry")
    first = np.asarray(t1.uniform((4,)))
    np.testing.assert_array_equal(first, np.asarray(t2.uniform((4,))))
    assert not np.array_equal(first, np.asarray(t1.uniform((4,))))  # the next block is a new one


def test_a_padded_width_draws_the_same_numbers_and_advances_by_the_real_width():
    # A host axis padded from 5 to 8 (network.HOST_LANES) must leave every real number as drawn
    # unpadded, and the next draw where it was: padding a layout is not a change of random stream.
    for impl in ("hash", "threefry"):
        plain, padded = Draws(jax.random.key(3), impl), Draws(jax.random.key(3), impl)
        want, after = np.asarray(plain.words((4, 5))), np.asarray(plain.words((2,)))
        got = np.asarray(padded.words((4, 8), width=5))
        assert got.shape == (4, 8) and padded.offset == 20
        np.testing.assert_array_equal(got[:, :5], want)
        np.testing.assert_array_equal(np.asarray(padded.words((2,))), after)
    with np.testing.assert_raises(ValueError):
        Draws(jax.random.key(0)).words((2, 4), width=6)


def test_uniform16_splits_each_word_into_its_low_and_high_halves():
    words = np.asarray(Draws(jax.random.key(7)).words((3, 2)))
    got = np.asarray(Draws(jax.random.key(7)).uniform16(3, 4))
    want = np.concatenate([words & 0xFFFF, words >> 16], axis=1) / 65536.0
    np.testing.assert_array_equal(got, want.astype(np.float32))
    assert got.min() >= 0.0 and got.max() < 1.0
    with pytest.raises(ValueError, match="even number of columns"):
        Draws(jax.random.key(7)).uniform16(3, 3)
