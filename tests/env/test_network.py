"""The topology helpers that replace gathers and scatters in the step (jaxsoc.env.network)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsoc.env.network import put_rows, table_lookup, take_rows


def test_table_lookup_equals_indexing_also_under_vmap_and_with_a_traced_table():
    table = jnp.asarray([0.1, 0.3, 0.5, 0.4, 0.6])
    index = jnp.asarray(np.random.default_rng(0).integers(0, 5, (4, 7)), jnp.int32)
    np.testing.assert_array_equal(table_lookup(table, index), table[index])
    batched = jax.vmap(table_lookup)(jnp.stack([table, 2 * table]), jnp.stack([index, index]))
    np.testing.assert_array_equal(batched[1], (2 * table)[index])
    traced = jax.jit(lambda t, i: table_lookup((t[0], t[1]), i))(jnp.asarray([7.0, 9.0]), index % 2)
    np.testing.assert_array_equal(traced, jnp.where(index % 2 == 1, 9.0, 7.0))


def test_take_rows_and_put_rows_equal_gather_and_scatter():
    x = jnp.arange(5 * 3).reshape(5, 3)
    rows = np.asarray([3, 0, 4])
    np.testing.assert_array_equal(take_rows(x, rows), x[rows])
    vals = jnp.asarray([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    np.testing.assert_array_equal(put_rows(vals, rows, 5), jnp.zeros((5, 3), vals.dtype).at[rows].set(vals))
    np.testing.assert_array_equal(take_rows(jnp.asarray([True, False, True]), [2, 1]), [True, False])


def test_the_host_axis_is_padded_to_whole_vectors():
    from jaxsoc.env.network import HOST_LANES, host_axis

    assert HOST_LANES == 8
    assert [host_axis(h) for h in (1, 6, 8, 9, 20, 24, 40, 100)] == [1, 6, 8, 16, 24, 24, 40, 104]


@pytest.mark.slow  # CI budget (10 min on 2 cores): compiles every preset twice (~45 CPU-s)
def test_padding_the_host_axis_changes_nothing_but_the_layout(monkeypatch):
    """The same episodes with the host axis padded (12 -> 16) and unpadded (HOST_LANES = 1):
    identical states on the real hosts, alerts (host ids s * Hmax + j mapped), observations and
    rewards. Mixed segment sizes, so padding and short segments both occur."""
    import jaxsoc.env as soc
    from jaxsoc.env import network
    from jaxsoc.env.policies import random_policy
    from jaxsoc.env.state import HOST

    def roll():
        network._topology.cache_clear()
        jax.clear_caches()  # the env's jitted step is cached by its (equal) params
        env, params = soc.make("soc-v2", hosts_per_segment=(12, 9, 12, 7, 10))

        def body(state, key):
            ka, ks = jax.random.split(key)
            acts = jax.vmap(lambda k, s: random_policy(k, None, s, params))(jax.random.split(ka, 8), state)
            obs, state, r, d, _ = jax.vmap(env.step)(jax.random.split(ks, 8), state, acts)
            return state, (obs, r)

        _, state = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), 8))
        # The suite's compile settings (tests/conftest.py, level 1), as in every run: at XLA's
        # optimisation level 0, 25 of 22,400 observation values differ in the last bit between the
        # layouts (arithmetic the compiler contracts differently per shape).
        return jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(jax.random.key(1), 40)))(state)

    padded = roll()
    monkeypatch.setattr(network, "HOST_LANES", 1)
    plain = roll()
    monkeypatch.undo()  # now, not at teardown: later tests in this worker must see the padded layout
    network._topology.cache_clear()
    jax.clear_caches()
    (st_p, ys_p), (st_u, ys_u) = padded, plain
    assert st_p.hosts.vuln.shape[-1] == 16 and st_u.hosts.vuln.shape[-1] == 12
    for a, b in zip(jax.tree.leaves(st_p.hosts), jax.tree.leaves(st_u.hosts)):
        np.testing.assert_array_equal(np.asarray(a)[..., :12], b)
    q_p, q_u = np.array(st_p.queue), np.asarray(st_u.queue)
    hid = q_p[..., HOST]
    q_p[..., HOST] = np.where(hid >= 0, hid // 16 * 12 + hid % 16, hid)
    np.testing.assert_array_equal(q_p, q_u)
    for a, b in zip(jax.tree.leaves(ys_p), jax.tree.leaves(ys_u)):
        np.testing.assert_array_equal(a, b)
    assert np.asarray(st_p.hosts.compromised).any()  # the episodes did something


def test_a_state_saved_before_the_padding_converts_exactly():
    """A checkpoint written when host arrays were [S, max_hosts] (jaxsoc.env.layout): padding
    adds inert all-zero hosts and renumbers alert host ids s * Hmax + j."""
    import jaxsoc.env as soc
    from jaxsoc.env import layout
    from jaxsoc.env.state import HOST

    env, params = soc.make("soc-v2", hosts_per_segment=(12, 9, 12, 7, 10))
    _, state = env.reset(jax.random.key(0), params)
    state = state.replace(hosts=state.hosts.replace(compromised=state.hosts.compromised.at[2, 5].set(True)),
                          queue=state.queue.at[0, HOST].set(2 * 16 + 5).at[1, HOST].set(-1))
    old = layout.unpadded(state, params)
    assert old.hosts.vuln.shape == (5, 12) and bool(old.hosts.compromised[2, 5])
    old = old.replace(queue=old.queue.at[0, HOST].set(2 * 12 + 5))  # the old numbering
    back = layout.padded(old, params)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)
    abstract = layout.unpadded(jax.eval_shape(lambda: state), params)
    assert abstract.hosts.stage.shape == (5, 12) and abstract.queue.shape == state.queue.shape
    assert layout.unpadded(state, soc.make("soc-v2")[1]) is None  # 40 hosts: nothing padded
