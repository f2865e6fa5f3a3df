"""Cheap compilation for tests whose programs run briefly.

On a 2-core CI machine the default test run is compile-bound: a 100-step scan of hmarl-soc-v1's
step over 64 envs compiles in 7.3 s with XLA's backend (LLVM) optimisations and in 2.5 s without
them (measured), and a test that runs a few thousand env steps never wins that back at run time
(that program runs in 0.75 s unoptimised against 0.08 s).

Unoptimised code may round differently in the last bit, from optimised code and from another
unoptimised program of a different structure (measured: hmarl-soc-v1 with and without
`fix_d12_truncation` draws vulnerabilities 1 ulp apart unoptimised, identically optimised). So
tests that compare two different programs bit for bit keep XLA's default (tests/env/test_switches.py's
rollouts); comparisons within tolerances, hand-worked values and one program run twice are safe.

Learning tests that run many updates keep the optimised default (their run time would grow more
than their compile time shrinks).
"""
from __future__ import annotations

import contextlib

import jax

# XLA's backend optimisations and LLVM's expensive passes off, per program (what JAX's
# `jax_disable_most_optimizations` does globally).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def fast_jit(fun, **kwargs):
    """`jax.jit` with XLA's backend optimisations off."""
    return jax.jit(fun, compiler_options=FAST_COMPILE, **kwargs)


@contextlib.contextmanager
def fast_compile():
    """Everything compiled inside the block skips most XLA optimisations (JAX's
    `jax_disable_most_optimizations`): for programs the library jits itself (engine runs)."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)
