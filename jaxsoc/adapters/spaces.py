"""jaxsoc's spaces (`jaxsoc.env.spaces`) as Gymnasium's, for the adapters."""
from __future__ import annotations

import numpy as np
from gymnasium import spaces as gym_spaces

from jaxsoc.env.spaces import Box, Discrete, MultiDiscrete


def to_gymnasium(space) -> gym_spaces.Space:
    """`Discrete(n)` -> `gymnasium.spaces.Discrete(n)` and `MultiDiscrete(nvec)` ->
    `gymnasium.spaces.MultiDiscrete(nvec)`, both of the env's dtype, int32 (Gymnasium's default is
    int64; its Discrete takes a dtype from 1.2.2, the `adapters` extra's floor);
    `Box(low, high, shape)` -> a float32 `gymnasium.spaces.Box` with the same bounds and shape.
    TypeError for anything else."""
    if isinstance(space, Discrete):
        return gym_spaces.Discrete(int(space.n), dtype=np.dtype(space.dtype).type)
    if isinstance(space, MultiDiscrete):
        return gym_spaces.MultiDiscrete(np.asarray(space.nvec, np.int64), dtype=np.dtype(space.dtype).type)
    if isinstance(space, Box):
        return gym_spaces.Box(np.float32(space.low), np.float32(space.high), tuple(space.shape), np.float32)
    raise TypeError(f"no Gymnasium space for {space!r}")
