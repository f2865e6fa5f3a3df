"""jaxsoc: a vectorised SOC world and its multi-agent learners, in JAX."""
import os as _os

__version__ = "0.1.0"


def _xla_cpu_workaround() -> None:
    """Turn off XLA's concurrency-optimised CPU scheduler unless the user chose otherwise.

    With jaxlib 0.10.2 on CPU, some programs that vmap parameter initialisation over seeds (e.g.
    two seeds of SAC's or the HMARL coordinator's `init`) never finish: the executable waits
    forever with every thread idle. Disabling that scheduler (a scheduling heuristic, not the
    maths) makes the same programs complete; tests/test_hmarl.py runs such a program. It must be
    set before JAX creates its CPU client, hence here; an explicit setting in XLA_FLAGS wins.
    """
    flag = "--xla_cpu_enable_concurrency_optimized_scheduler"
    flags = _os.environ.get("XLA_FLAGS", "")
    if flag not in flags:
        _os.environ["XLA_FLAGS"] = (flags + " " + flag + "=false").strip()


_xla_cpu_workaround()
