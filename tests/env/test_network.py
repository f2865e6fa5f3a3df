"""The topology helpers that replace gathers and scatters in the step (jaxsoc.env.network)."""
import jax
import jax.numpy as jnp
import numpy as np

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
