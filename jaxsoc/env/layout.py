"""Reading states saved in the host layout before the host axis was padded (`network.HOST_LANES`).

Until the axis was padded to whole vectors, host arrays were `[S, max_hosts]`; a checkpoint of a
run on such a topology (e.g. `soc-strategic`'s 10 x 20, `soc-v2-10x100`) holds env states of that
width. Padding changes no number (docs/strategic.md, Speed), so such a state converts exactly:
host arrays gain zero (inert) padding hosts and alert host ids, `s * Hmax + j`, are renumbered.
`jaxsoc.engine` tries this when a checkpoint does not match the current layout.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxsoc.env.network import topology
from jaxsoc.env.params import EnvParams
from jaxsoc.env.state import HOST, EnvState


def _is_state(x) -> bool:
    return isinstance(x, EnvState)


def _widths(params) -> tuple[int, int] | None:
    """(unpadded, padded) host widths, or None when `params` is no SOC env's or nothing is padded."""
    if not isinstance(params, EnvParams):
        return None
    topo = topology(params)
    return None if topo.host_axis == topo.max_hosts else (topo.max_hosts, topo.host_axis)


def unpadded(tree: Any, params) -> Any | None:
    """`tree` (a pytree holding `EnvState`s, arrays or `ShapeDtypeStruct`s, any leading batch axes)
    with every env state's host arrays at the unpadded width; None when the layouts do not differ."""
    widths = _widths(params)
    if widths is None:
        return None
    old = widths[0]

    def narrow(leaf):
        if isinstance(leaf, jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct(leaf.shape[:-1] + (old,), leaf.dtype, sharding=leaf.sharding)
        return leaf[..., :old]

    def state(s):
        return s.replace(hosts=jax.tree.map(narrow, s.hosts)) if _is_state(s) else s

    return jax.tree.map(state, tree, is_leaf=_is_state)


def padded(tree: Any, params) -> Any:
    """The inverse of `unpadded` for arrays: host arrays zero-padded to the host axis (padding
    hosts are all-zero, as a fresh state's), alert host ids renumbered to the padded axis."""
    widths = _widths(params)
    if widths is None:
        return tree
    old, new = widths

    def widen(x):
        return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, new - old)])

    def state(s):
        if not _is_state(s):
            return s
        host = s.queue[..., HOST]
        renumbered = jnp.where(host >= 0, jnp.floor(host / old) * new + jnp.mod(host, old), host)
        return s.replace(hosts=jax.tree.map(widen, s.hosts), queue=s.queue.at[..., HOST].set(renumbered))

    return jax.tree.map(state, tree, is_leaf=_is_state)
