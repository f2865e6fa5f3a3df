"""Each reward term and each metric formula on constructed inputs (reference §1.8, §1.9; v2 D8, D9)."""
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


def reward(params, **kw):
    base = dict(t=10, stage_at_detection=jnp.zeros((5, 40), jnp.int32), new_detected=Z, isolated_now=Z,
                blind_now=Z, isolated_after=Z, detect_time=jnp.zeros((5, 40), jnp.int32), first_detection=0,
                contained=False, exfiltrated=False, false_scans=jnp.int32(0), suppressed_tp=jnp.int32(0),
                escalated_fp=jnp.int32(0))
    base.update(kw)
    return team_reward(params=params, **{k: (jnp.asarray(v) if not isinstance(v, int) else v) for k, v in base.items()})


def test_detection_term():
    det = host_mask(V1, (0, 0), (3, 1))
    stage = np.where(det, [[2] * 40, [0] * 40, [0] * 40, [4] * 40, [0] * 40], 0)
    r = reward(V1, new_detected=det, stage_at_detection=stage)
    np.testing.assert_allclose([r.detect, r.total], [2 / 5 + 4 / 5, 1.0 * (6 / 5)], rtol=1e-6)
    r = reward(V1, exfiltrated=True)
    np.testing.assert_allclose([r.detect, r.total], [-10.0, -10.0])


def test_response_term_v1_uses_first_detection_v2_the_host_own():
    iso = host_mask(V1, (1, 0), (1, 1))
    dt = np.where(iso, [[0] * 40, [8] * 40, [0] * 40, [0] * 40, [0] * 40], 0)
    dt[1, 1] = 9
    r1 = reward(V1, isolated_now=iso, detect_time=dt, first_detection=4)  # t=10: 1/6 each
    np.testing.assert_allclose(r1.response, 2 / 6, rtol=1e-6)
    r2 = reward(V2, isolated_now=iso, detect_time=dt, first_detection=4)  # 1/2 + 1/1
    np.testing.assert_allclose(r2.response, 1 / 2 + 1.0, rtol=1e-6)
    np.testing.assert_allclose(reward(V1, contained=True).response, 5.0)
    np.testing.assert_allclose(reward(V1, contained=True).total, 7.5)  # containment = +7.5


def test_cost_term():
    iso = host_mask(V1, (3, 0))  # DataCenter value 1.0
    blind = host_mask(V1, (0, 0), (4, 0))  # 0.6 and 0.9
    r = reward(V1, isolated_now=iso, blind_now=blind)
    np.testing.assert_allclose(r.cost, 0.1 * 1.0 + 0.2 * (0.6 + 0.9), rtol=1e-6)
    np.testing.assert_allclose(r.total, 1.5 * (1 / 10) - 0.3 * r.cost, rtol=1e-5)  # + credit for the isolation
    # v2: availability cost per isolated host per step, scaled by segment value
    after = host_mask(V2, (3, 0), (3, 1))
    np.testing.assert_allclose(reward(V2, isolated_after=after).cost, 0.01 * 2 * 1.0, rtol=1e-6)
    np.testing.assert_allclose(reward(V1, isolated_after=after).cost, 0.0)


def test_false_positive_term():
    r = reward(V1, false_scans=jnp.int32(3), suppressed_tp=jnp.int32(2), escalated_fp=jnp.int32(1))
    np.testing.assert_allclose([r.false_positive, r.total], [0.5 * (3 + 1), -2.0 * 2.0], rtol=1e-6)
    r = reward(V2, false_scans=jnp.int32(3), suppressed_tp=jnp.int32(2), escalated_fp=jnp.int32(1))
    np.testing.assert_allclose(r.false_positive, 0.5 * (3 + 2 + 1), rtol=1e-6)


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
