"""Each reward term and each metric formula on constructed inputs (docs/reference.md §1.8, §1.9; v2 D8, D9)."""
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc.env.metrics import episode_metrics
from jaxsoc.env.reward import team_reward

from .helpers import fresh, host_mask

V1 = soc.make("hmarl-soc-v1")[1]
V2 = soc.make("soc-v2")[1]
Z = np.zeros((5, 40), bool)


def reward(params, t=10, new_detected=Z, stage_at_detection=None, isolated_now=Z, blind_now=Z,
           isolated_after=Z, detect_time=None, first_detection=0, contained=False, exfiltrated=False,
           false_scans=0, suppressed_tp=0, escalated_fp=0):
    """The step's reward from per-host arrays, the way the step builds it."""
    from jaxsoc.env.network import segment_sums
    from jaxsoc.env.reward import response_credit
    stage = jnp.zeros((5, 40), jnp.int32) if stage_at_detection is None else jnp.asarray(stage_at_detection)
    dt = jnp.zeros((5, 40), jnp.int32) if detect_time is None else jnp.asarray(detect_time)
    credit = response_credit(t, jnp.asarray(isolated_now), dt, first_detection, params)
    det_stage, cred, correct, blind, iso = segment_sums(jnp.where(jnp.asarray(new_detected), stage, 0), credit,
                                                         isolated_now, blind_now, isolated_after)
    return team_reward(params=params, detected_stage=det_stage, credit=cred, correct=correct, blind=blind,
                       isolated_after=iso, contained=jnp.bool_(contained), exfiltrated=jnp.bool_(exfiltrated),
                       false_scans=jnp.int32(false_scans), suppressed_tp=jnp.int32(suppressed_tp),
                       escalated_fp=jnp.int32(escalated_fp))


def _final(params, t, **counters):
    state = fresh(params)
    c = state.counters.replace(**{k: jnp.asarray(v, getattr(state.counters, k).dtype) for k, v in counters.items()})
    return state.replace(t=jnp.int32(t), counters=c)


def test_v1_metric_formulas():
    m = episode_metrics(_final(V1, 57, detection_time=12, containment_time=57, contained=True,
                               false_positives=30, true_positives=10, total_scans=2010), V1)
    assert float(m["mttd"]) == 12 and float(m["mttr"]) == 57 and float(m["csr"]) == 1.0
    np.testing.assert_allclose(float(m["fpr"]), 30 / 2000, rtol=1e-6)
    m = episode_metrics(_final(V1, 200), V1)  # nothing detected or contained: max_steps
    assert float(m["mttd"]) == 200 and float(m["mttr"]) == 200 and float(m["csr"]) == 0.0
    assert float(m["fpr"]) == 0.0 and float(m["length"]) == 200
    m = episode_metrics(_final(V1, 10, false_positives=50, total_scans=20, true_positives=0), V1)
    assert float(m["fpr"]) == 1.0  # capped


def test_v2_metric_formulas():
    state = _final(V2, 80, detection_time=30, containment_time=70, contained=True, false_scans=4,
                   fp_escalated=2, clean_scans=1000, fp_triaged=6, tp_escalated=3)
    state = state.replace(attacker=state.attacker.replace(begun=jnp.bool_(True), first_compromise=jnp.int32(10)))
    m = episode_metrics(state, V2)
    assert float(m["mttd"]) == 20 and float(m["mttr"]) == 40 and not float(m["mttd_censored"])
    np.testing.assert_allclose(float(m["fpr"]), 6 / 1006, rtol=1e-6)
    np.testing.assert_allclose(float(m["alert_precision"]), 3 / 5, rtol=1e-6)
    censored = _final(V2, 200).replace(attacker=state.attacker)
    m = episode_metrics(censored, V2)
    assert float(m["mttd"]) == 190 and float(m["mttd_censored"]) == 1.0 and np.isnan(float(m["mttr"]))
    m = episode_metrics(_final(V2, 200), V2)  # attack never began: MTTD undefined
    assert np.isnan(float(m["mttd"]))
