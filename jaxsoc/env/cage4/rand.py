"""16-bit uniforms: two per 32-bit word, half the hashing of `Draws.uniform` (resolution 2^-16,
ample for the 1 % and 25 % rates of this scenario)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.env.rng import Draws

_INV_2_16 = np.float32(1.0 / (1 << 16))


def uniform16(draws: Draws, rows: int, cols: int) -> jax.Array:
    """`[rows, cols]` float32 in [0, 1); `cols` even; draws `rows * cols / 2` words."""
    w = draws.words((rows, cols // 2))
    lo = (w & np.uint32(0xFFFF)).astype(jnp.float32)
    hi = (w >> 16).astype(jnp.float32)
    return jnp.concatenate([lo, hi], axis=1) * _INV_2_16
