"""jaxsoc: a vectorised SOC world and its multi-agent learners, in JAX.

    import jaxsoc
    policy = jaxsoc.load_policy("runs/<name>")    # a trained policy, see jaxsoc/policy.py

Light on purpose: importing `jaxsoc` does not import JAX (the command lines' `--help` stays
instant); `load_policy`, `load_policies` and `scripted_policy` import it when first used.
"""

__version__ = "0.1.0"

_LAZY = ("load_policy", "load_policies", "scripted_policy", "Policy")


def __getattr__(name):
    if name in _LAZY:
        from jaxsoc import policy

        return getattr(policy, name)
    raise AttributeError(f"module 'jaxsoc' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
