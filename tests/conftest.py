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

# The default run is two xdist workers taking whole files (`--dist loadfile`); xdist would hand
# them out largest test count first, which says little about cost (tests/test_distributed.py has
# 12 tests and ~45 s, tests/test_config.py 52 tests and < 1 s). Handing out the costliest files
# first (longest-processing-time first) lets the cheap ones fill the gaps at the end, so the two
# workers finish together. CPU-seconds per file of the default run, empty compile cache, this
# 2-core machine (each test's process CPU time, setup to teardown, 2026-12-02; the CPU time of
# test_distributed.py's child processes estimated); a file not listed is taken as cheap.
# `--no-loadscope-reorder` (pyproject.toml) makes xdist keep this order.
FILE_COST_S = {
    "tests/test_hmarl.py": 108, "tests/env/test_switches.py": 96, "tests/test_engine.py": 78,
    "tests/test_registry.py": 75, "tests/test_offpolicy.py": 65, "tests/env/test_api.py": 59,
    "tests/test_ppo.py": 49, "tests/test_distributions.py": 44, "tests/test_networks.py": 38,
    "tests/env/test_strategic.py": 38, "tests/test_eval.py": 35, "tests/test_buffers.py": 32,
    "tests/test_vmap_safety.py": 31, "tests/test_game.py": 28, "tests/test_detectors.py": 28,
    "tests/test_demos.py": 27, "tests/test_replay.py": 27, "tests/env/test_cage4.py": 43,
    "tests/env/test_attacker.py": 25, "tests/env/test_defenders.py": 25, "tests/env/test_alerts.py": 23,
    "tests/test_trpo.py": 22, "tests/test_sweep.py": 22, "tests/test_distributed.py": 45,
    "tests/env/test_policies.py": 13, "tests/test_coma.py": 13, "tests/env/test_rng.py": 8,
    "tests/env/test_network.py": 7, "tests/test_adapters.py": 7, "tests/test_hierarchy.py": 6,
    "tests/test_meta.py": 6, "tests/env/test_red.py": 12, "tests/test_redblue.py": 2,
    "tests/test_hybrid.py": 15, "tests/test_psro_soc.py": 12, "tests/env/test_scores.py": 3,
    "tests/test_paired.py": 1, "tests/test_intervals.py": 1, "tests/test_eval_psro.py": 5, "tests/test_detector_quality.py": 6,
    "tests/env/test_step_cost.py": 25, "tests/test_sweepable.py": 80, "tests/test_algo_scenarios.py": 20,
    "tests/test_per_host_heads.py": 35,
}
UNLISTED_FILE_COST_S = 5


def pytest_collection_modifyitems(config, items):
    """Order files costliest first (see FILE_COST_S); tests keep their order within a file."""
    def cost(item):
        return FILE_COST_S.get(item.nodeid.split("::")[0], UNLISTED_FILE_COST_S)

    items.sort(key=lambda item: -cost(item))  # stable: a file's tests stay together and in order
