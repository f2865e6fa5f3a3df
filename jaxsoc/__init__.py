"""jaxsoc: a vectorised SOC world and its multi-agent learners, in JAX."""

__version__ = "0.1.0"
