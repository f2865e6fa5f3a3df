"""Action and observation spaces with jittable `sample` and `contains`.

Shaped like gymnax/JaxMARL spaces (`Discrete(n)`, `Box(low, high, shape)`) so wrappers written for
those libraries can read them.
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Discrete:
    """Integers `0..n-1`; `shape == ()`, dtype int32."""

    n: int
    dtype: jnp.dtype = jnp.int32

    @property
    def shape(self) -> Tuple[int, ...]:
        return ()

    def sample(self, key: jax.Array) -> jax.Array:
        """Uniform action, `[]` int32."""
        return jax.random.randint(key, (), 0, self.n, dtype=self.dtype)

    def contains(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.logical_and(x >= 0, x < self.n) & (x == jnp.floor(x))


@dataclasses.dataclass(frozen=True)
class Box:
    """Real vectors in `[low, high]^shape`, float32."""

    low: float
    high: float
    shape: Tuple[int, ...]
    dtype: jnp.dtype = jnp.float32

    def sample(self, key: jax.Array) -> jax.Array:
        """Uniform in the box (unbounded boxes sample N(0,1)), `shape` float32."""
        if np.isfinite(self.low) and np.isfinite(self.high):
            return jax.random.uniform(key, self.shape, self.dtype, self.low, self.high)
        return jax.random.normal(key, self.shape, self.dtype)

    def contains(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        ok_shape = x.shape == tuple(self.shape)
        return jnp.logical_and(ok_shape, jnp.all((x >= self.low) & (x <= self.high)))


@dataclasses.dataclass(frozen=True)
class MultiDiscrete:
    """One choice per entry: integer vectors with `0 <= x[i] < nvec[i]`; `shape == (len(nvec),)`, int32."""

    nvec: Tuple[int, ...]
    dtype: jnp.dtype = jnp.int32

    @property
    def shape(self) -> Tuple[int, ...]:
        return (len(self.nvec),)

    def sample(self, key: jax.Array) -> jax.Array:
        """Uniform choices, `[len(nvec)]` int32."""
        return jax.random.randint(key, self.shape, 0, jnp.asarray(self.nvec), dtype=self.dtype)

    def contains(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if x.shape != self.shape:
            return jnp.asarray(False)
        return jnp.all((x >= 0) & (x < jnp.asarray(self.nvec)) & (x == jnp.floor(x)))
