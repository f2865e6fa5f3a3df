"""Action and observation spaces with jittable `sample` and `contains`.

Shaped like gymnax/JaxMARL spaces (`Discrete(n)`, `Box(low, high, shape)`) so wrappers written for
those libraries can read them.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.names import suggest


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


def check_action_dict(actions, agents: Iterable[str], action_spaces: Mapping, optional: Iterable[str] = (),
                      any_shape: Iterable[str] = ()) -> None:
    """A one-line `ValueError` unless `actions` is a dict with an action for every name in `agents`,
    no names but those and `optional` ones (which may be left out), and each action shaped as its
    space in `action_spaces` says: a `Discrete` action is a scalar, a `MultiDiscrete` one `(n,)`, a
    `Box` one its shape. Names in `any_shape` may have any shape of the space's size (for envs that
    reshape those actions); names without a space are not shape-checked.

    Keys and shapes are static, so an env calls this at the top of its step: it runs once when the
    step is traced (jit and vmap see only valid dicts) and adds nothing to the compiled program.
    Without it a misspelt agent is ignored (its agent left idle), a missing one fails with a bare
    KeyError and a wrongly shaped action broadcasts silently or fails deep inside JAX.
    """
    if not isinstance(actions, Mapping):
        raise ValueError(f"actions must be a dict {{agent: action}}, got {type(actions).__name__}")
    agents = list(agents)
    known = agents + [a for a in optional if a not in agents]
    for a in actions:
        if a not in known:
            raise ValueError(f"unknown agent {a!r} in actions{suggest(a, known)} (agents: {', '.join(known)})")
    for a in agents:
        if a not in actions:
            raise ValueError(f"actions is missing {a!r} (agents: {', '.join(known)})")
    any_shape = set(any_shape)
    for a in known:  # in the env's order, so the first wrong action named is the same every time
        if a in actions and actions[a] is None:
            raise ValueError(f"actions[{a!r}] is None: give every agent an action (env.idle_actions() "
                             "holds each one's idle action)")
        if a not in actions or a not in action_spaces:
            continue
        want = tuple(action_spaces[a].shape)
        # jnp.asarray: a list of numbers (of tracers, under jit) is an array of them, as the env reads it
        action = jnp.asarray(actions[a])
        shape = tuple(jnp.shape(action))
        fits = math.prod(shape) == math.prod(want) if a in any_shape else shape == want
        if not fits:
            raise ValueError(f"actions[{a!r}] has shape {shape}, expected {want}")
        dtype = jnp.result_type(action)
        if isinstance(action_spaces[a], (Discrete, MultiDiscrete)) and not jnp.issubdtype(dtype, jnp.integer):
            # A float choice would be cast to an integer (every value in (-1, 1) to choice 0).
            raise ValueError(f"actions[{a!r}] has dtype {dtype}, expected integers (choice indices)")
