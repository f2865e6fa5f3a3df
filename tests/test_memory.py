"""`jaxsoc.memory`: the one byte count of a pytree and the machine's memory (hand-worked)."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.memory import machine_bytes, tree_bytes


def test_tree_bytes_counts_every_leaf_by_its_dtype():
    tree = {"a": jnp.zeros((3, 4), jnp.float32), "b": [np.zeros(5, np.int8), np.zeros((2,), np.float64)]}
    assert tree_bytes(tree) == 12 * 4 + 5 * 1 + 2 * 8


def test_tree_bytes_of_shapes_does_not_overflow():
    """Abstract shapes past 2**63 bytes are counted exactly (int64 products would wrap)."""
    huge = jax.ShapeDtypeStruct((2**40, 2**40), jnp.float32)
    assert tree_bytes({"x": huge, "key": jax.eval_shape(lambda: jax.random.key(0))}) == 4 * 2**80 + \
        jax.eval_shape(lambda: jax.random.key(0)).dtype.itemsize


def test_machine_bytes_is_this_machines_memory():
    with open("/proc/meminfo") as f:
        total_kib = int(f.readline().split()[1])  # MemTotal: the kernel's count, less its own reserve
    got = machine_bytes()
    assert isinstance(got, int) and total_kib * 1024 <= got <= total_kib * 1024 * 1.2
