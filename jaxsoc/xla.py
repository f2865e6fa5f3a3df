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
backends should ignore it; that was not run here (no GPU was available, and no test runs on one).
"""
from __future__ import annotations

from typing import Callable

import jax

COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}
# XLA:CPU's own default for the same option (jaxlib 0.10), for comparisons and profiles: under
# `COMPILER_OPTIONS` the profiler does not see all the threads' time in XLA's own product kernels
# (docs/benchmarks.md "Which library computes the products").
XLA_DEFAULT_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type":
                       "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}


def jit(fun: Callable, options: dict | None = None, **kwargs) -> Callable:
    """`jax.jit(fun, **kwargs)` compiled with `COMPILER_OPTIONS` and then `options` (more XLA
    options, e.g. a replay's lower optimisation level)."""
    return jax.jit(fun, compiler_options={**COMPILER_OPTIONS, **(options or {})}, **kwargs)
