"""Tests for jaxsoc.buffers: ring semantics, sampling distributions, PER maths, jit/vmap/scan."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import chi2

from jaxsoc import buffers as B

P_CRIT = 1e-3  # chi-square tests pass when the p-value is above this (fixed keys: not flaky)


def _item(n, start=0):
    """n transitions whose fields all encode their global id start..start+n-1."""
    ids = jnp.arange(start, start + n)
    return {"obs": {"a": ids[:, None] * jnp.ones((n, 3)), "b": -ids[:, None] * jnp.ones((n, 2))},
            "reward": ids.astype(jnp.float32), "id": ids.astype(jnp.int32)}


EXAMPLE = jax.tree.map(lambda x: x[0], _item(1))


def _chi2_pvalue(counts, expected):
    stat = float(np.sum((counts - expected) ** 2 / expected))
    return float(chi2.sf(stat, len(counts) - 1))


def _check_tree(tree):
    """Every internal node equals the sum of its children (root included)."""
    t = np.asarray(tree, np.float64)
    half = t.shape[0] // 2
    np.testing.assert_allclose(t[1:half], t[2:2 * half:2] + t[3:2 * half:2], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------- ring buffer


@pytest.mark.parametrize("prioritized", [False, True])
def test_wraparound_keeps_newest(prioritized):
    cap = 5
    s = B.init_prioritized(EXAMPLE, cap) if prioritized else B.init(EXAMPLE, cap)
    s = _add(s, _item(3, 0))
    assert int(s.size) == 3 and int(s.ptr) == 3
    for start in (3, 6, 9):
        s = _add(s, _item(3, start))
    # 12 items into 5 slots: ids 7..11 remain; 12 % 5 = 2 is the next slot.
    assert int(s.size) == cap and int(s.ptr) == 2
    ids = np.asarray(s.replay.storage["id"] if prioritized else s.storage["id"])
    np.testing.assert_array_equal(ids, [10, 11, 7, 8, 9])
    storage = s.replay.storage if prioritized else s.storage
    np.testing.assert_array_equal(np.asarray(storage["obs"]["a"])[:, 0], ids)
    np.testing.assert_array_equal(np.asarray(storage["reward"]), ids)
    if prioritized:
        np.testing.assert_allclose(np.asarray(B.slot_priorities(s)), np.ones(cap))
        assert float(s.tree[1]) == pytest.approx(cap)


def test_add_rejects_bad_batches():
    s = B.init(EXAMPLE, 4)
    with pytest.raises(ValueError, match="capacity"):
        B.add(s, _item(5))
    bad = _item(2)
    bad["obs"]["a"] = jnp.zeros((2, 4))
    with pytest.raises(ValueError, match="does not fit"):
        B.add(s, bad)
    with pytest.raises(TypeError, match=r"^priorities given to add\(\) on a uniform ReplayState$"):
        B.add(s, _item(2), priorities=jnp.ones(2))


def test_uniform_sample_filled_only_and_uniform():
    s = B.add(B.init(EXAMPLE, 32), _item(20))
    assert bool(B.can_sample(s, 20)) and not bool(B.can_sample(s, 21))
    items, idx = jax.jit(B.sample, static_argnums=2)(s, jax.random.key(0), 100_000)
    chex.assert_shape(idx, (100_000,))
    chex.assert_shape(items["obs"]["a"], (100_000, 3))
    idx = np.asarray(idx)
    assert idx.min() >= 0 and idx.max() < 20
    np.testing.assert_array_equal(np.asarray(items["id"]), idx)  # slots hold ids 0..19 in order
    counts = np.bincount(idx, minlength=20)
    assert _chi2_pvalue(counts, np.full(20, idx.size / 20)) > P_CRIT


def test_obs_dtype_storage_and_bytes():
    s = B.add(B.init(EXAMPLE, 8, obs_dtype=jnp.float16), _item(4))
    assert s.storage["obs"]["a"].dtype == jnp.float16 and s.storage["reward"].dtype == jnp.float32
    items, _ = B.sample(s, jax.random.key(1), 6)
    assert items["obs"]["a"].dtype == jnp.float32 and items["id"].dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(items["obs"]["a"])[:, 0], np.asarray(items["id"]))

    # The paper's transition: 2 x 352 observation floats, 37 action floats, reward, done.
    sizes = {"sc": 64, "th": 128, "at": 64, "ro": 96}
    acts = {"sc": 8, "th": 16, "at": 1, "ro": 12}
    paper = {"obs": {k: jnp.zeros(v) for k, v in sizes.items()},
             "next_obs": {k: jnp.zeros(v) for k, v in sizes.items()},
             "actions": {k: jnp.zeros(v) for k, v in acts.items()},
             "reward": jnp.zeros(()), "done": jnp.zeros(())}
    assert B.bytes_per_transition(paper) == 2972
    assert B.bytes_per_transition(paper, obs_dtype=jnp.float16) == 1564
    assert B.bytes_per_transition(paper, obs_dtype=jnp.bfloat16) == 1564
    for prioritized in (False, True):
        s = (B.init_prioritized if prioritized else B.init)(paper, 37, obs_dtype=jnp.float16)
        actual = sum(x.nbytes for x in jax.tree.leaves(s))
        assert B.buffer_bytes(paper, 37, prioritized=prioritized, obs_dtype=jnp.float16) == actual


# ------------------------------------------------------------------------------------------- PER


@pytest.fixture(scope="module")
def per20():
    """20 filled slots (capacity 24, not a power of two) with distinct priorities."""
    s = B.init_prioritized(EXAMPLE, 24, alpha=0.6, eps=1e-6, beta_steps=10)
    s = B.add(s, _item(20), priorities=jnp.arange(1.0, 21.0))
    return s


_sample_per = jax.jit(B.sample_prioritized, static_argnums=2)
_add = jax.jit(B.add)
_update = jax.jit(B.update_priorities)


def test_per_frequencies_match_priorities(per20):
    p = (np.arange(1.0, 21.0) + 1e-6) ** 0.6
    np.testing.assert_allclose(np.asarray(B.slot_priorities(per20))[:20], p, rtol=1e-6)
    _, out = _sample_per(per20, jax.random.key(2), 200_000)
    idx = np.asarray(out.indices)
    assert idx.min() >= 0 and idx.max() < 20  # never the empty or padding slots
    counts = np.bincount(idx, minlength=20)
    assert _chi2_pvalue(counts, idx.size * p / p.sum()) > P_CRIT
    # The same draws would fail against uniform frequencies: the test has power.
    assert _chi2_pvalue(counts, np.full(20, idx.size / 20)) < P_CRIT
    np.testing.assert_allclose(np.asarray(out.probs), p[idx] / p.sum(), rtol=1e-5)


def test_is_weights_match_numpy_reference(per20):
    rng = np.random.default_rng(0)
    s = B.update_priorities(per20, jnp.arange(20), jnp.asarray(rng.exponential(2.0, 20)))
    s = s.replace(sample_count=jnp.int32(3))  # beta = 0.4 + 0.6 * 3 / 10
    s_next, out = _sample_per(s, jax.random.key(3), 64)
    p = np.asarray(B.slot_priorities(s), np.float64)[:20]
    idx = np.asarray(out.indices)
    beta = 0.4 + 0.6 * 3 / 10
    w = (20 * p[idx] / p.sum()) ** -beta  # PER paper, N = filled slots
    w /= w.max()  # max over the batch
    assert float(out.beta) == pytest.approx(beta)
    np.testing.assert_allclose(np.asarray(out.weights), w, rtol=1e-5)
    assert float(np.max(out.weights)) == 1.0 and len(set(idx.tolist())) > 5
    assert int(s_next.sample_count) == 4


def test_update_priorities_changes_sampling_and_duplicates(per20):
    s = _update(per20, jnp.arange(20), jnp.ones(20))
    s = _update(s, jnp.array([7]), jnp.array([1e4]))
    _, out = _sample_per(s, jax.random.key(4), 4000)
    frac7 = float(np.mean(np.asarray(out.indices) == 7))
    p7 = (1e4 + 1e-6) ** 0.6
    assert frac7 == pytest.approx(p7 / (p7 + 19 * (1 + 1e-6) ** 0.6), abs=0.03)
    # Duplicates keep the max, in any order; out-of-range indices are ignored.
    s = _update(s, jnp.array([3, 3, 3, 22, -1, 3]), jnp.array([1.0, 5.0, 2.0, 9, 9, 0.5]))
    pr = np.asarray(B.slot_priorities(s))
    assert pr[3] == pytest.approx((5.0 + 1e-6) ** 0.6) and pr[22] == 0.0
    _check_tree(s.tree)
    # max_priority tracks the largest stored priority; new items get it.
    assert float(s.max_priority) == pytest.approx(p7)
    s = _add(s, _item(2, 20))
    assert np.asarray(B.slot_priorities(s))[20:22] == pytest.approx([p7, p7])
    # A NaN TD error must not poison the tree.
    s = _update(s, jnp.array([0]), jnp.array([jnp.nan]))
    assert np.isfinite(float(s.tree[1])) and float(B.slot_priorities(s)[0]) == pytest.approx(p7)


def test_beta_anneals_and_caps(per20):
    def body(s, key):
        s, out = B.sample_prioritized(s, key, 4)
        return s, out.beta

    keys = jax.random.split(jax.random.key(5), 15)
    s, betas = jax.jit(lambda s: jax.lax.scan(body, s, keys))(per20)
    expected = np.minimum(0.4 + 0.6 * np.arange(15) / 10, 1.0)
    np.testing.assert_allclose(np.asarray(betas), expected, rtol=1e-6)
    assert int(s.sample_count) == 10  # saturates at beta_steps


def test_sum_tree_invariants_after_adds_and_updates():
    cap = 13
    rng = np.random.default_rng(1)
    s = B.init_prioritized(EXAMPLE, cap)
    ref = np.zeros(cap)
    ptr = 0
    for step in range(6):  # 6 x 4 adds wrap the 13 slots
        pri = rng.uniform(0, 3, 4)
        s = _add(s, _item(4, 4 * step), priorities=jnp.asarray(pri))
        ref[(ptr + np.arange(4)) % cap] = (pri + 1e-6) ** 0.6
        ptr = (ptr + 4) % cap
        idx = rng.integers(0, min(4 * (step + 1), cap), 5)
        td = rng.normal(0, 2, 5)
        s = _update(s, jnp.asarray(idx), jnp.asarray(td))
        for i in np.unique(idx):  # reference: max among duplicates
            ref[i] = ((np.abs(td[idx == i]) + 1e-6) ** 0.6).max()
        _check_tree(s.tree)
        np.testing.assert_allclose(np.asarray(B.slot_priorities(s)), ref, rtol=1e-5)
        assert float(s.tree[1]) == pytest.approx(ref.sum(), rel=1e-5)
        assert np.all(np.asarray(s.tree)[s.num_leaves + cap:] == 0)  # padding leaves stay empty


def test_combine_td_errors():
    a, b = jnp.array([1.0, -2.0, 3.0]), jnp.array([-3.0, 2.0, 0.0])
    np.testing.assert_allclose(B.combine_td_errors([a, b]), [2.0, 2.0, 1.5])
    np.testing.assert_allclose(B.combine_td_errors([a, b], rule="max"), [3.0, 2.0, 3.0])
    per_agent = jnp.array([[1.0, -3.0], [0.0, 2.0], [1.0, 1.0]])  # [batch, agents]
    np.testing.assert_allclose(B.combine_td_errors([a, per_agent]), [1.5, 1.5, 2.0])
    with pytest.raises(ValueError, match="^rule must be 'mean' or 'max', got 'sum'$"):
        B.combine_td_errors([a], rule="sum")


# ------------------------------------------------------------------------------ jit / vmap / scan


def _seed_run(key):
    """init -> add -> sample -> update -> add -> sample, for both buffer kinds, one seed."""
    k_data, k1, k2, k3 = jax.random.split(key, 4)
    noise = jax.random.normal(k_data, (6,))
    items = jax.tree.map(lambda x: x + noise.reshape((6,) + (1,) * (x.ndim - 1)).astype(x.dtype),
                         _item(6))
    u = B.add(B.init(EXAMPLE, 8, obs_dtype=jnp.bfloat16), items)
    u_items, u_idx = B.sample(u, k1, 5)
    s = B.init_prioritized(EXAMPLE, 8, beta_steps=4)
    s = B.add(s, items, priorities=jnp.abs(noise))
    s, out = B.sample_prioritized(s, k2, 5)
    s = B.update_priorities(s, out.indices, B.combine_td_errors([noise[:5], 2 * noise[:5]]))
    s = B.add(s, _item(4, 100))
    s, out2 = B.sample_prioritized(s, k3, 5)
    return u, u_items, u_idx, s, out, out2


@pytest.mark.slow  # CI budget (10 min on 2 cores): ~14 CPU-s of compiling
def test_jit_and_vmap_match_per_seed():
    keys = jax.random.split(jax.random.key(6), 3)
    batched = jax.jit(jax.vmap(_seed_run))(keys)
    single_run = jax.jit(_seed_run)
    for i in range(3):
        single = single_run(keys[i])
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], batched), single, rtol=1e-6)
    # Seeds differ: the vmapped axis is real, not broadcast.
    trees = np.asarray(batched[3].tree)
    assert not np.array_equal(trees[0], trees[1]) and not np.array_equal(trees[1], trees[2])
    # Vmapped state in, vmapped state out (the engine's layout): add to 3 stacked buffers.
    stacked = jax.vmap(lambda _: B.init_prioritized(EXAMPLE, 8))(jnp.arange(3))
    items = jax.tree.map(lambda *xs: jnp.stack(xs), *[_item(3, 10 * i) for i in range(3)])
    stacked = jax.jit(jax.vmap(B.add))(stacked, items)
    np.testing.assert_array_equal(np.asarray(stacked.replay.storage["id"])[:, :3],
                                  [[0, 1, 2], [10, 11, 12], [20, 21, 22]])
    assert np.asarray(stacked.tree[:, 1]) == pytest.approx([3.0, 3.0, 3.0])


def test_learner_loop_in_scan():
    """Fit y = 2x by SGD from a PER buffer inside lax.scan, vmapped over 2 seeds."""
    ex = {"x": jnp.zeros(()), "y": jnp.zeros(())}

    def train(key):
        def step(carry, key):
            w, buf = carry
            k_env, k_sample = jax.random.split(key)
            x = jax.random.normal(k_env, (4,))
            buf = B.add(buf, {"x": x, "y": 2.0 * x}, priorities=jnp.abs(x))

            def learn(w, buf):
                buf, b = B.sample_prioritized(buf, k_sample, 8)
                td = w * b.items["x"] - b.items["y"]
                w = w - 0.1 * jnp.mean(b.weights * td * b.items["x"])
                return w, B.update_priorities(buf, b.indices, td)

            w, buf = jax.lax.cond(B.can_sample(buf, 8), learn, lambda w, buf: (w, buf), w, buf)
            return (w, buf), w

        buf = B.init_prioritized(ex, 32, beta_steps=50)
        return jax.lax.scan(step, (jnp.float32(0.0), buf), jax.random.split(key, 200))

    (w, buf), ws = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(7), 2))
    chex.assert_shape(ws, (2, 200))
    np.testing.assert_allclose(np.asarray(w), 2.0, atol=0.05)
    np.testing.assert_array_equal(np.asarray(buf.sample_count), [50, 50])  # 199 calls, saturated
    np.testing.assert_array_equal(np.asarray(buf.size), [32, 32])
    for t in np.asarray(buf.tree):
        _check_tree(t)


def test_mark_added_gives_a_second_tree_the_new_slots():
    """A second priority tree over the same storage (a learner with its own priorities) gets the
    slots an `add` wrote at its own max priority, wrapping around like the ring."""
    s = B.init_prioritized(EXAMPLE, 8)
    s = B.add(s, _item(6))
    s = B.update_priorities(s, jnp.arange(6), jnp.arange(6.0))  # the first learner's priorities
    other = s.replace(tree=jnp.zeros_like(s.tree), max_priority=jnp.float32(2.0))  # a tree that saw nothing
    other = B.mark_added(other, jnp.int32(0), 6)
    np.testing.assert_allclose(B.slot_priorities(other), [2, 2, 2, 2, 2, 2, 0, 0])
    ptr = s.replay.ptr  # 6: the next add writes slots 6, 7, 0, 1
    s = B.add(s, _item(4, start=6))
    other = B.mark_added(other.replace(max_priority=jnp.float32(3.0)), ptr, 4)
    np.testing.assert_allclose(B.slot_priorities(other), [3, 3, 2, 2, 2, 2, 3, 3])
    _check_tree(other.tree)
