"""Shared test configuration.

Compile time dominates small tests on 2 cores: JAX's persistent compilation cache makes repeated
runs (and identical programs across test modules) cheap.
"""
import os

# XLA:CPU's newer fusion emitters cost ~30 % more compile time on our env programs (soc-strategic's
# step: ~17 s against ~24 s on 2 loaded cores); the suite is compile-bound, so tests use the older
# emitters. Set before JAX creates its CPU client; a user's own XLA_FLAGS are kept.
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_fusion_emitters=false").strip()

# LLVM's optimisation level 1 of 3 for every program the suite compiles (tests/fast.py's programs
# ask for 0 themselves): compiling is most of the suite's time, and level 1 compiles faster while
# running nearly as fast; programs compared bit for bit across configurations stay identical at
# level 1 (measured in tests/env/test_switches.py). Full default run, empty cache, this 2-core
# machine: 638 -> 572 s (also off LLVM's expensive passes: 572 s, no gain; not kept). A user's
# own setting is kept.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=1").strip()

import jax  # noqa: E402

_CACHE = os.environ.get("JAXSOC_TEST_CACHE", os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))
jax.config.update("jax_compilation_cache_dir", os.path.abspath(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
