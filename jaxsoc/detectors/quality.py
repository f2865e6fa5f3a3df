"""Detector quality metrics, in NumPy (written here; no scikit-learn in the package).

Scores: higher = more anomalous; labels: True = attacked (positive). Ties are handled as in the
usual definitions:

* `roc_auc`: P(score of a random positive > score of a random negative) + 1/2 P(equal)
  (Mann-Whitney U / (n_pos * n_neg)), counted against the sorted negatives.
* `average_precision` (PR-AUC): sum over distinct score thresholds, highest first, of
  (recall gained) x (precision at that threshold); tied scores enter as one threshold.
* `detection_rate_at_fpr`: the share of positives alarmed at the threshold an operator would set
  from labelled negatives to allow at most `fpr` false alarms: with m = floor(fpr * n_neg), the
  threshold is the (m+1)-th highest negative score and alarms are scores strictly above it (ties
  with it do not alarm, so the realised false-alarm rate is at most `fpr`).
* `first_alarm_delays`: per compromised host, the steps from its compromise to its first alarm.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np


def _scores_labels(scores, labels) -> Tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels must have the same size, got {s.size} and {y.size}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite (mask incomplete windows out first)")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError(f"quality metrics need at least one positive and one negative label "
                         f"(got {int(y.sum())} positives of {y.size})")
    return s, y


def negative_share_below(scores, labels) -> np.ndarray:
    """For each positive, in order: the share of negatives scoring below it, ties counting one
    half, `[n_pos]`. Its mean is the ROC-AUC; the mean over a subset of positives is that subset's
    ROC-AUC against every negative (one sort of the negatives serves every subset)."""
    s, y = _scores_labels(scores, labels)
    neg = np.sort(s[~y])
    below = np.searchsorted(neg, s[y], side="left")
    at_or_below = np.searchsorted(neg, s[y], side="right")
    return (below + at_or_below) / (2.0 * neg.size)


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve, `scores [n]`, `labels [n]` (bool): P(positive > negative) +
    1/2 P(tie), i.e. the Mann-Whitney U statistic / (n_pos * n_neg)."""
    return float(np.mean(negative_share_below(scores, labels)))


def roc_auc_subsets(scores, labels, subsets: dict) -> dict:
    """`{name: ROC-AUC of the positives in mask [n] against every negative}` (None for a mask
    holding no positive): quality per attack stage or stealth level from one sort."""
    y = np.asarray(labels).reshape(-1).astype(bool)
    share = negative_share_below(scores, y)
    out = {}
    for name, mask in subsets.items():
        pick = np.asarray(mask).reshape(-1)[y]
        out[name] = float(np.mean(share[pick])) if pick.any() else None
    return out


def _by_threshold(s: np.ndarray, y: np.ndarray):
    """Cumulative (true positives, false positives) at each distinct score, highest first."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last element of each run of tied scores
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    return tp.astype(np.float64), fp.astype(np.float64)


def average_precision(scores, labels) -> float:
    """PR-AUC as average precision, `scores [n]`, `labels [n]`: sum_k (R_k - R_{k-1}) P_k over
    distinct thresholds, highest first."""
    s, y = _scores_labels(scores, labels)
    tp, fp = _by_threshold(s, y)
    recall = tp / tp[-1]
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_curve(scores, labels) -> Tuple[np.ndarray, np.ndarray]:
    """`(fpr [k+1], tpr [k+1])` at every distinct threshold, from (0, 0) to (1, 1)."""
    s, y = _scores_labels(scores, labels)
    tp, fp = _by_threshold(s, y)
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]


def threshold_at_fpr(negative_scores, fpr: float) -> float:
    """The threshold allowing at most `fpr` of `negative_scores [n]` strictly above it."""
    if not (0.0 <= fpr < 1.0):
        raise ValueError(f"fpr must lie in [0, 1), got {fpr}")
    neg = np.sort(np.asarray(negative_scores, np.float64).reshape(-1))[::-1]
    if neg.size == 0:
        raise ValueError("threshold_at_fpr needs at least one negative score")
    m = int(np.floor(fpr * neg.size + 1e-9))  # allowed false alarms (1e-9: 0.01 * 100 is 1)
    return float(neg[min(m, neg.size - 1)])


def detection_rate_at_fpr(scores, labels, fpr: float = 0.01) -> float:
    """Share of positives scoring strictly above `threshold_at_fpr(negatives, fpr)`, from
    `scores [n]` and `labels [n]` (bool)."""
    s, y = _scores_labels(scores, labels)
    tau = threshold_at_fpr(s[~y], fpr)
    return float(np.mean(s[y] > tau))


def detection_rate_subsets(scores, labels, subsets: dict, fpr: float = 0.01) -> dict:
    """`{name: share of the positives in mask [n] alarmed at the threshold allowing `fpr` of ALL
    negatives}` (None for a mask holding no positive)."""
    s, y = _scores_labels(scores, labels)
    tau = threshold_at_fpr(s[~y], fpr)
    out = {}
    for name, mask in subsets.items():
        pick = np.asarray(mask).reshape(-1) & y
        out[name] = float(np.mean(s[pick] > tau)) if pick.any() else None
    return out


def first_alarm_delays(alarms, compromised, episode) -> np.ndarray:
    """Steps from each host's compromise to its first alarm.

    Args:
      alarms: bool `[T, num_envs, num_hosts]`, the detector alarming on the window ending at t.
      compromised: bool `[T, num_envs, num_hosts]`, ground truth.
      episode: int `[T, num_envs]`, the env slot's episode count (a change = a new episode).
    Returns:
      f64 `[K]`, one entry per incident (a host turning compromised within an episode): the steps
      from the first compromised step to the first alarm at or after it (0 = alarmed at once), or
      NaN when the incident ended unalarmed (episode over, or the host cleaned). Incidents of each
      env's last episode are left out: the stream cuts that episode off, so their outcome is
      unknown (and leaving out only the unalarmed ones would favour detectors that alarm early).
    """
    alarms = np.asarray(alarms, bool)
    comp = np.asarray(compromised, bool)
    ep = np.asarray(episode)
    if alarms.shape != comp.shape or alarms.shape[:2] != ep.shape:
        raise ValueError(f"alarms {alarms.shape}, compromised {comp.shape} and episode {ep.shape} "
                         "must be [T, num_envs, num_hosts] and [T, num_envs]")
    open_since = np.full(alarms.shape[1:], -1)  # step the open incident began, -1 = none open
    open_episode = np.zeros(alarms.shape[1:], ep.dtype)  # the episode it began in
    caught = np.zeros(alarms.shape[1:], bool)  # alarmed already; still compromised, same episode
    delays, envs, episodes = [], [], []

    def record(mask, values):
        delays.append(values)
        envs.append(np.nonzero(mask)[0])  # row-major, the order of boolean indexing
        episodes.append(open_episode[mask])

    # A loop over time on the host (NumPy, after the jitted gather), vectorised over envs x hosts.
    for t in range(alarms.shape[0]):
        new_episode = (ep[t] != ep[t - 1]) if t > 0 else np.zeros(ep.shape[1], bool)
        over = new_episode[:, None] | ~comp[t]
        ended = (open_since >= 0) & over
        record(ended, np.full(int(ended.sum()), np.nan))  # ended unalarmed
        open_since = np.where(over, -1, open_since)
        caught = caught & ~over
        start = (open_since < 0) & ~caught & comp[t]
        open_since = np.where(start, t, open_since)
        open_episode = np.where(start, ep[t][:, None], open_episode)
        hit = (open_since >= 0) & alarms[t]
        record(hit, (t - open_since[hit]).astype(np.float64))
        open_since = np.where(hit, -1, open_since)
        caught = caught | hit
    delays, envs, episodes = np.concatenate(delays), np.concatenate(envs), np.concatenate(episodes)
    # Every env's last episode is cut off by the stream: its incidents are left out whether or not
    # they were alarmed, so every detector is measured on the same incidents.
    return delays[episodes != ep[-1][envs]]
