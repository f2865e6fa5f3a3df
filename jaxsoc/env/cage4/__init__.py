"""jaxsoc.env.cage4: a CAGE-4-like scenario (docs/cage4.md) on the jaxsoc engine's API.

    import jax
    from jaxsoc.env import cage4
    env, params = cage4.make("cage4-like", max_steps=100)
    obs, state = env.reset(jax.random.key(0), params)
    actions = {a: jax.numpy.int32(0) for a in env.agents}
    obs, state, rewards, dones, infos = env.step(jax.random.key(1), state, actions, params)

One purpose per file: `params` (tables, `Cage4Params`), `state`, `generator` (network per reset),
`red` (FSM), `green`, `blue` (action layout, masks, durations, effects), `reward`, `observe`,
`core` (`Cage4Env`), `baselines` (scripted blue).
"""
from __future__ import annotations

from typing import Tuple

from jaxsoc.env.cage4.core import METRIC_KEYS, Cage4Env, episode_metrics
from jaxsoc.env.cage4.params import Cage4Params, build


def make(name: str = "cage4-like", /, **overrides) -> Tuple[Cage4Env, Cage4Params]:
    """`(env, params)`; unknown names/keys or bad values raise a one-line `ValueError` before tracing."""
    params = build(name, **overrides)
    return Cage4Env(params), params


__all__ = ["METRIC_KEYS", "Cage4Env", "Cage4Params", "episode_metrics", "make"]
