"""Shared test configuration.

Compile time dominates small tests on 2 cores: JAX's persistent compilation cache makes repeated
runs (and identical programs across test modules) cheap.
"""
import os

import jax

_CACHE = os.environ.get("JAXSOC_TEST_CACHE", os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))
jax.config.update("jax_compilation_cache_dir", os.path.abspath(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
