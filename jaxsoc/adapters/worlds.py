"""One `(env, params)` per world, shared by every adapter of it, so its jitted programs compile once.

The env's jitted methods (`step_env`, and the SOC worlds' `reset`) take the env as a static
argument, and so does the vector env's program cache: a program is reused for an env that hashes
and compares equal. The SOC worlds, cage4-like and the demos (retail, banking) hash by their
params, but soc-hybrid by identity (its params hold the detector's arrays), so an adapter built on
a fresh `jaxsoc.env.make` of it compiled its own step (1.3-2.4 s, 8.6-10 s for a vector env's, on
2 cores; the demos' 0.6-3 s before they hashed by params). Here every adapter gets the first env
made of the same world instead.

"The same world" is decided by value after `jaxsoc.env.make` has built (and checked) the new
one: the same env class and params equal leaf by leaf, static fields included (soc-hybrid's
detector arrays too). So a changed scenario file, a re-registered preset or another detector
gives a new env, never a stale one.
"""
from __future__ import annotations

import collections
from typing import Any, Tuple

import jax
import numpy as np

import jaxsoc.env as soc

MAX_WORLDS = 8  # worlds kept; each holds its compiled programs, and one process rarely uses more

_worlds: "collections.OrderedDict[tuple, Tuple[Any, Any]]" = collections.OrderedDict()


def make(scenario: str, **overrides) -> Tuple[Any, Any]:
    """`jaxsoc.env.make(scenario, **overrides)`, or the `(env, params)` an earlier call returned
    for an equal world (module docstring). Bad input raises as `jaxsoc.env.make` does."""
    env, params = soc.make(scenario, **overrides)
    try:
        key = world_key(env, params)
    except TypeError:  # params that cannot be keyed by value (an unhashable static field): not shared
        return env, params
    if key in _worlds:
        _worlds.move_to_end(key)
        return _worlds[key]
    _worlds[key] = (env, params)
    if len(_worlds) > MAX_WORLDS:
        _worlds.popitem(last=False)
    return env, params


def world_key(env, params) -> tuple:
    """A hashable value that two `(env, params)` share exactly when their class and params are
    equal: the class, the params' tree structure (with its static fields) and every leaf's dtype,
    shape and bytes. TypeError where the structure is unhashable."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    arrays = [np.asarray(leaf) for leaf in jax.device_get(leaves)]
    key = (type(env), treedef, tuple((a.dtype.str, a.shape, a.tobytes()) for a in arrays))
    hash(key)
    return key
