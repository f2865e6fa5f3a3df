"""How many bytes a pytree of arrays takes and how many this machine has: one count for every
size check (the engine's refusal of a program that cannot fit, the disk note before the first
checkpoint, the env's bound on its largest matrix, the benchmarks' refusals) and the bytes per env
the benchmarks report."""
from __future__ import annotations

import os

import jax
import numpy as np


def tree_bytes(tree) -> int:
    """Bytes of the arrays (or `jax.ShapeDtypeStruct`s) of `tree`, as a Python int: shapes are
    multiplied as Python ints (`dtype=object`), so a size past 2**63 is refused, not wrapped."""
    # `dtype.itemsize`, not np.dtype's: typed PRNG keys have one too.
    return sum(int(np.prod(a.shape, dtype=object)) * a.dtype.itemsize for a in jax.tree.leaves(tree))


def machine_bytes() -> int | None:
    """This machine's physical memory in bytes; None where the OS cannot say (no POSIX sysconf)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
