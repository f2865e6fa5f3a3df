"""`HybridParams`: seed 000's hybrid SOC (docs/hybrid.md) on the SOC engine's network and attacker.

The world underneath is a `soc-v2` `EnvParams` (topology, vulnerabilities, the ATT&CK campaign, the
telemetry model), renamed `soc-hybrid` so that detectors fit on this scenario's telemetry are told
apart from `soc-v2`'s. On top of it: the anomaly detector whose scores the defenders read (a
pytree field, so a learner may pass a detector it trains online), its calibrated alarm threshold,
and the reward weights.

The default detector is the z-score of the CLEAN telemetry model (centre 0, scale
`telemetry_noise` per feature), with its threshold calibrated to `target_fpr` on simulated clean
windows: `make()` needs no training. `detector_path` loads a detector saved by
`jaxsoc.detectors.save_detector` for `soc-hybrid` instead (`eval/train_detector.py` fits one on this
scenario's own contaminated telemetry).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxsoc.detectors.threshold import calibrate_threshold, check_target_fpr
from jaxsoc.detectors.zscore import ZScoreDetector, zscore_scores
from jaxsoc.env.params import EnvParams, build_params, check_fields
from jaxsoc.names import suggest

NAME = "soc-hybrid"
ACTIONS = ("none", "investigate", "lockdown")
NONE, INVESTIGATE, LOCKDOWN = range(3)
HOST_FEATURES = ("score", "found_compromised", "cleared", "locked")   # per host, segment agents
SEGMENT_FEATURES = ("mean_score", "max_score", "locked_share", "found_share")  # per segment, network agent


def _static(default):
    return struct.field(pytree_node=False, default=default)


@struct.dataclass
class HybridParams:
    """The hybrid scenario. `soc` and `detector`/`threshold` are pytrees; the rest is static.

    soc: the SOC world's parameters (topology, attacker, telemetry).
    detector: a `ZScoreDetector` or `AutoencoderDetector`; threshold: f32 `[]` its alarm threshold.
    window: telemetry steps per detector window (W).
    use_scores: False removes the detector: score features are 0 and there is no automatic response.
    stealth_damping: a compromised host's telemetry drift is scaled by `1 - damping * stealth`.
    score_clip: score features are `min(score / threshold, score_clip)`.
    threshold_low/high: the network agent's action a in [-1, 1] per segment sets the automatic
      lock-down threshold `threshold * low * (high / low) ** ((a + 1) / 2)`.
    clear_memory: steps a host found clean stays marked `cleared`.
    catch_reward, false_alarm_cost, investigate_cost, damage_cost, exfil_cost, downtime_cost: the
      reward weights (`reward` in core.py).
    """

    soc: EnvParams
    detector: Any
    threshold: Any
    name: str = _static(NAME)
    window: int = _static(4)
    target_fpr: float = _static(0.01)
    use_scores: bool = _static(True)
    stealth_damping: float = _static(0.0)
    score_clip: float = _static(10.0)
    threshold_low: float = _static(1.0)
    threshold_high: float = _static(16.0)
    clear_memory: int = _static(10)
    catch_reward: float = _static(1.0)
    false_alarm_cost: float = _static(1.0)
    investigate_cost: float = _static(0.05)
    damage_cost: float = _static(0.1)
    exfil_cost: float = _static(10.0)
    downtime_cost: float = _static(0.01)
    with_world_state: bool = _static(False)
    detector_path: Optional[str] = _static(None)

    # The dataclass's own eq and hash cannot read the detector's arrays (an array's `==` is
    # elementwise), so params compare and hash by value: two `make("soc-hybrid")` of one world are
    # one static argument of `jax.jit`, and share its compiled programs (by identity each compiled
    # its own: 2.7 s for `step_env`, 8-10 s for a vector env's step, on 2 cores).
    def value_key(self) -> tuple:
        """A hashable value two params share exactly when they are equal: the tree's structure
        (static fields included) and every leaf's dtype, shape and bytes. Concrete params only
        (tracers have no bytes)."""
        leaves, treedef = jax.tree_util.tree_flatten(self)
        arrays = [np.asarray(leaf) for leaf in jax.device_get(leaves)]
        return treedef, tuple((a.dtype.str, a.shape, a.tobytes()) for a in arrays)

    def __hash__(self):
        return hash(self.value_key())

    def __eq__(self, other):
        return type(other) is type(self) and other.value_key() == self.value_key()

    @property
    def max_steps(self) -> int:
        return self.soc.max_steps

    @property
    def num_segments(self) -> int:
        return len(self.soc.hosts_per_segment)

    @property
    def hosts_per_segment(self) -> int:
        return int(self.soc.hosts_per_segment[0])

    @property
    def num_hosts(self) -> int:
        return self.num_segments * self.hosts_per_segment

    @property
    def features(self) -> int:
        return int(self.soc.telemetry_features)


# Keys of `make` that are this scenario's own; every other key is passed to the SOC world.
HYBRID_KEYS = tuple(f.name for f in dataclasses.fields(HybridParams)
                    if f.name not in ("soc", "detector", "threshold", "name"))
# The SOC world under the defaults: soc-v2's attacker and telemetry, 5 segments of 8 hosts.
SOC_DEFAULTS = {"hosts_per_segment": 8, "max_steps": 100}


def clean_zscore(soc: EnvParams, window: int) -> ZScoreDetector:
    """The z-score of the clean telemetry model: centre 0, scale `telemetry_noise` `[F]`."""
    f = int(soc.telemetry_features)
    return ZScoreDetector(center=jnp.zeros((f,), jnp.float32),
                          scale=jnp.full((f,), float(soc.telemetry_noise), jnp.float32), window=window)


def clean_threshold(detector, soc: EnvParams, target_fpr: float, score_fn=zscore_scores,
                    samples: int = 200_000, seed: int = 0) -> float:
    """`target_fpr`'s threshold for `detector` on simulated clean windows (NumPy, deterministic)."""
    rng = np.random.default_rng(seed)
    x = float(soc.telemetry_noise) * rng.standard_normal((samples, detector.window, int(soc.telemetry_features)))
    return calibrate_threshold(np.asarray(score_fn(detector, jnp.asarray(x, jnp.float32))), target_fpr)


def build(name: str = NAME, **overrides) -> HybridParams:
    """`HybridParams` with `overrides` (hybrid keys, or SOC world keys such as `hosts_per_segment`);
    bad names or values raise a one-line `ValueError` before anything is traced."""
    if name != NAME:
        raise ValueError(f"unknown hybrid scenario {name!r}; the only one is {NAME!r}")
    from jaxsoc.env.params import FIELD_NAMES

    own = {k: v for k, v in overrides.items() if k in HYBRID_KEYS}
    world = {k: v for k, v in overrides.items() if k not in HYBRID_KEYS}
    for k in world:
        if k not in FIELD_NAMES and k != "num_segments":
            raise ValueError(f"unknown {NAME} parameter {k!r}{suggest(k, HYBRID_KEYS + FIELD_NAMES)}")
    if "detector_scores" in world:  # soc-v2's switch; this world reads its own detector's scores
        raise ValueError(f"detector_scores is soc-v2's (a detector's scores in the roles' observations); "
                         f"{NAME} reads its detector from detector_path")
    check_fields(HybridParams, own)  # before the float() conversions below, which take "0.5"
    soc = build_params("soc-v2", **{**SOC_DEFAULTS, **world}).replace(name=NAME)
    if len(set(soc.hosts_per_segment)) != 1:
        raise ValueError(f"{NAME} gives each segment agent one action per host, so segments must be equal; "
                         f"got hosts_per_segment={soc.hosts_per_segment}")
    if soc.multi_campaign:
        raise ValueError(f"{NAME} runs one campaign (num_campaigns=1)")
    target = check_target_fpr(own.get("target_fpr", 0.01))
    window = own.get("window", 4)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive number of steps, got {window!r}")
    if not 0.0 <= float(own.get("stealth_damping", 0.0)) <= 1.0:
        raise ValueError(f"stealth_damping must lie in [0, 1], got {own['stealth_damping']}")
    low, high = float(own.get("threshold_low", 1.0)), float(own.get("threshold_high", 16.0))
    if not 0.0 < low <= high:
        raise ValueError(f"need 0 < threshold_low <= threshold_high, got {low}, {high}")
    for k in ("catch_reward", "false_alarm_cost", "investigate_cost", "damage_cost", "exfil_cost",
              "downtime_cost"):
        if float(own.get(k, 0.0)) < 0:
            raise ValueError(f"{k} is a weight of the reward and must be >= 0, got {own[k]}")
    if int(own.get("clear_memory", 1)) < 1 or float(own.get("score_clip", 1.0)) <= 0:
        raise ValueError("clear_memory must be >= 1 and score_clip > 0")
    path = own.get("detector_path")
    if path and "target_fpr" in own:  # it would be ignored: the threshold is the saved one
        raise ValueError(f"target_fpr calibrates {NAME}'s default detector; the saved detector of detector_path "
                         "keeps the threshold it was calibrated with (eval/train_detector.py --target-fpr)")
    own["target_fpr"] = target
    if path:
        detector, threshold = load(path, soc, int(window))
    elif not float(soc.telemetry_noise) > 0:  # the clean model's scale: every score would be infinite
        raise ValueError(f"{NAME}'s default detector scores telemetry against its noise, so telemetry_noise "
                         f"must be > 0, got {soc.telemetry_noise} (or give a saved detector: detector_path)")
    else:
        detector = clean_zscore(soc, int(window))
        threshold = clean_threshold(detector, soc, target)
    return HybridParams(soc=soc, detector=detector, threshold=jnp.float32(threshold), **own)


def load(path: str, soc: EnvParams, window: int) -> Tuple[Any, float]:
    """A detector saved for `soc-hybrid` (CheckpointError, a ValueError, for another scenario or
    telemetry width) and its calibrated threshold."""
    from jaxsoc.detectors.store import load_detector

    detector, meta = load_detector(path, soc)
    if detector.window != window:
        raise ValueError(f"the detector at {path} reads windows of W={detector.window} steps but "
                         f"{NAME} has window={window}")
    if meta.get("threshold") is None:
        raise ValueError(f"the detector at {path} was saved without a calibrated threshold")
    return detector, float(meta["threshold"])
