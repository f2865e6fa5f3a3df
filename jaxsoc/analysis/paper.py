"""The paper's published Table II, as data (docs/reference.md §3.1).

Protocol of these numbers: per seed, the mean over the last 2,000 of 10,000 TRAINING episodes
(exploration on), then mean and population std (ddof 0) over the seeds 42, 123, 456, 789, 1024,
on the original environment (`hmarl-soc-v1`) with its metric definitions (docs/reference.md §1.9, D9).
Values are in metric units (FPR and CSR as fractions, not percent), keyed by our registry names.
"""
from __future__ import annotations

from types import MappingProxyType

SCENARIO = "hmarl-soc-v1"
SEEDS = (42, 123, 456, 789, 1024)
WINDOW_EPISODES = 2000
TRAINING_EPISODES = 10_000

# algo -> metric -> (mean, std over 5 seeds).
TABLE_II = MappingProxyType({
    "rule-soar": {"return": (-1238.2, 26.6), "mttd": (8.0, 0.1), "mttr": (136.9, 3.1),
                  "fpr": (0.0514, 0.0001), "csr": (0.352, 0.018)},
    "single-drl": {"return": (-336.5, 34.0), "mttd": (10.9, 1.4), "mttr": (95.1, 12.3),
                   "fpr": (0.0297, 0.0028), "csr": (0.650, 0.073)},
    "iql": {"return": (1.8, 4.7), "mttd": (22.8, 18.3), "mttr": (91.9, 56.7),
            "fpr": (0.0022, 0.0023), "csr": (0.678, 0.298)},
    "mappo": {"return": (-292.2, 12.6), "mttd": (8.8, 0.1), "mttr": (78.6, 0.9),
              "fpr": (0.0252, 0.0004), "csr": (0.697, 0.006)},
    "qmix": {"return": (-99.3, 66.3), "mttd": (8.2, 0.2), "mttr": (63.4, 32.4),
             "fpr": (0.0103, 0.0002), "csr": (0.775, 0.186)},
    "hmarl": {"return": (6.9, 1.0), "mttd": (16.8, 5.3), "mttr": (93.2, 21.3),
              "fpr": (0.0017, 0.0008), "csr": (0.710, 0.104)},
})

# algo -> metric -> per-seed values in SEEDS order, where the reference gives them.
PER_SEED = MappingProxyType({
    "hmarl": {"return": (5.12, 8.15, 7.19, 7.36, 6.60),
              "csr": (0.544, 0.856, 0.729, 0.757, 0.664),
              "fpr": (0.0032, 0.0015, 0.0013, 0.0008, 0.0016)},
    "qmix": {"csr": (0.920, 0.932, 0.795, 0.807, 0.421)},
})

# Registry names that stand for the paper's method (the hierarchical learner may be registered
# under either name).
ALIASES = MappingProxyType({"hmarl-soc": "hmarl"})


def paper_key(algo: str) -> str | None:
    """The TABLE_II key of `algo`, or None when the paper has no row for it."""
    algo = ALIASES.get(algo, algo)
    return algo if algo in TABLE_II else None


def published(algo: str) -> dict | None:
    """`{metric: (mean, std)}` of the paper's row for `algo`, or None."""
    key = paper_key(algo)
    return dict(TABLE_II[key]) if key else None


def published_per_seed(algo: str) -> dict:
    """`{metric: {seed: value}}` the paper gives per seed for `algo` (often empty)."""
    key = paper_key(algo)
    if key is None or key not in PER_SEED:
        return {}
    return {m: dict(zip(SEEDS, values)) for m, values in PER_SEED[key].items()}
