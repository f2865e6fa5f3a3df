"""The XLA options of every program jaxsoc compiles, and the `jit` that applies them.

XLA:CPU (jaxlib 0.10) hands matrix products and reductions to YNNPACK library fusions by default
(`xla_cpu_experimental_ynn_fusion_type`: individual dots and reductions). jaxsoc keeps only the
reductions there (with any product that feeds one, e.g. a target network's max over actions):
other products run in XLA's own (Eigen) kernels, which made MAPPO's update ~8 % faster at the
sweep's shape on this project's 2-core CPU (no learner slower), against the default in the same
process (docs/benchmarks.md "Which library computes the products"); taking the reductions from
YNNPACK too cost the env with its observations ~4 %, so they stay.

A product's summation order differs between the two libraries, so results differ from the
default's in the last bits: every program of a run (training, evaluation, a loaded policy, the
sweep, the analyses, a replay) is compiled through `jit` here, and tests/test_xla.py checks the
engine's. The option is a field of XLA's shared debug options that only XLA:CPU reads, so other
backends should ignore it; tests/test_gpu.py checks that on a GPU (not yet run on one).

An XLA that does not know an option refuses the whole program ("No such compile option": jaxlib
0.7 and 0.8, which `jax>=0.7` allows, predate this one; an experimental option can be renamed or
dropped in a later one). So `jit` passes only the options the default backend's compiler accepts,
each tried once per process on a one-number program (`accepted`); one it refuses is left out and
the program compiles as that XLA's default would.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import numpy as np

COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}
# XLA:CPU's own default for the same option (jaxlib 0.10), for comparisons and profiles: under
# `COMPILER_OPTIONS` the profiler does not see all the threads' time in XLA's own product kernels
# (docs/benchmarks.md "Which library computes the products").
XLA_DEFAULT_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type":
                       "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}


@functools.cache
def _accepts(name: str, value) -> bool:
    """Whether the default backend's XLA compiles a program with option `name` set to `value`."""
    try:
        jax.jit(lambda x: x + 1, compiler_options={name: value}).lower(np.float32(0)).compile()
    except jax.errors.JaxRuntimeError:  # "No such compile option", or a value it does not know
        return False
    return True


def accepted(options: dict) -> dict:
    """The entries of `options` that the default backend's XLA accepts (each tried once per
    process; see the module docstring)."""
    return {name: value for name, value in options.items() if _accepts(name, value)}


def jit(fun: Callable, options: dict | None = None, **kwargs) -> Callable:
    """`jax.jit(fun, **kwargs)` compiled with `COMPILER_OPTIONS` and then `options` (more XLA
    options, e.g. a replay's lower optimisation level), less those this XLA does not accept."""
    return jax.jit(fun, compiler_options=accepted({**COMPILER_OPTIONS, **(options or {})}), **kwargs)
