"""Alarm thresholds calibrated to a target false-alarm rate, without labels.

A SOC sets a detector's threshold from the scores it sees on recent traffic, which may hold
attacks nobody has found yet. `calibrate_threshold` takes such unlabelled calibration scores and
the share of them assumed attacked (`contamination`, an operating estimate; 0 by default):

    threshold = the (1 - contamination) * (1 - target_fpr) quantile of the calibration scores.

If attacked windows all score above clean ones, that is exactly the clean scores'
(1 - target_fpr) quantile, so clean windows alarm at the target rate. Assuming no contamination
when there is some errs on the quiet side: the threshold moves up into the attacks' scores and
clean windows alarm LESS often than the target (fewer false alarms, fewer detections). Windows are
alarmed when their score is strictly above the threshold.
"""
from __future__ import annotations

import math

import numpy as np


def check_target_fpr(target_fpr) -> float:
    """`target_fpr` as a float; ValueError unless it lies strictly inside (0, 1)."""
    try:
        value = float(target_fpr)
    except (TypeError, ValueError):
        raise ValueError(f"the false-alarm target must be a number in (0, 1), got {target_fpr!r}") from None
    if not (0.0 < value < 1.0) or math.isnan(value):
        raise ValueError(f"the false-alarm target is a rate and must lie strictly between 0 and 1 "
                         f"(e.g. 0.01 for 1 %), got {target_fpr!r}")
    return value


def calibrate_threshold(scores, target_fpr: float, contamination: float = 0.0) -> float:
    """The alarm threshold for `target_fpr` from unlabelled calibration scores `[M]` (any shape;
    non-finite scores, e.g. the `-inf` of incomplete windows, are ignored)."""
    target = check_target_fpr(target_fpr)
    if not (0.0 <= float(contamination) < 1.0):
        raise ValueError(f"contamination is the share of calibration windows assumed attacked and "
                         f"must lie in [0, 1), got {contamination!r}")
    s = np.asarray(scores, np.float64).reshape(-1)
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise ValueError("calibrate_threshold needs at least one finite calibration score")
    level = (1.0 - float(contamination)) * (1.0 - target)
    # "higher" picks an observed score, so at most a target share of calibration scores exceed it.
    return float(np.quantile(s, level, method="higher"))
