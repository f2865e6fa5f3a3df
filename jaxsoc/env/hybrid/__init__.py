"""jaxsoc.env.hybrid: seed 000's hybrid SOC (docs/hybrid.md) on the SOC engine's network and attacker.

    import jax
    from jaxsoc.env import hybrid
    env, params = hybrid.make()                      # or jaxsoc.env.make("soc-hybrid", ...)
    obs, state = env.reset(jax.random.key(0), params)
    obs, state, rewards, dones, infos = env.step(jax.random.key(1), state, env.idle_actions(), params)

Per-segment agents (`segment_i`) choose per host between no action, investigate and lock down,
reading the anomaly scores of a detector; one network-wide agent (`network`) sets each segment's
automatic lock-down threshold (continuous). One purpose per file: `params` (`HybridParams`, the
default detector and its calibration), `core` (`HybridEnv`, reward, metrics, scripted policies),
`detector` (fitting a detector on this scenario's own telemetry).
"""
from __future__ import annotations

from typing import Tuple

from jaxsoc.env.hybrid.core import METRIC_KEYS, HybridEnv, HybridState, episode_metrics
from jaxsoc.env.hybrid.params import ACTIONS, NAME, HybridParams, build


def make(name: str = NAME, /, **overrides) -> Tuple[HybridEnv, HybridParams]:
    """`(env, params)`; unknown names/keys or bad values raise a one-line `ValueError` before tracing."""
    params = build(name, **overrides)
    return HybridEnv(params), params


__all__ = ["ACTIONS", "METRIC_KEYS", "NAME", "HybridEnv", "HybridParams", "HybridState", "episode_metrics", "make"]
