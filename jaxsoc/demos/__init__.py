"""Two small industrial demo worlds with the SOC env's API (docs/demos.md): every learner of
`jaxsoc.algos` trains on them unchanged, by scenario name.

    python train/run.py --algo maddpg --scenario retail     # warehouses order stock (continuous)
    python train/run.py --algo mappo --scenario banking     # routers pick a channel (discrete)
    python train/run.py --algo base-stock --scenario retail # the textbook heuristics, scripted

`jaxsoc.env.make("retail")` imports `jaxsoc.demos.retail` (see `jaxsoc.env.ENV_MODULES`); each
demo module exposes `make(**overrides) -> (env, params)`.
"""
from __future__ import annotations

# The scripted heuristics of each demo (registered in `jaxsoc.algos` as "scripted" algorithms;
# they act on their scenario only).
HEURISTICS = {"base-stock": "retail", "least-cost": "banking", "round-robin": "banking"}
