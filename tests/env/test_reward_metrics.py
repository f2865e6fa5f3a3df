"""Each reward term and each metric formula on constructed inputs (docs/reference.md §1.8, §1.9; v2 D8, D9)."""
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc.env.metrics import episode_metrics
from jaxsoc.env.network import segment_sums
from jaxsoc.env.reward import response_credit, team_reward

from .helpers import fresh, host_mask

V1 = soc.make("hmarl-soc-v1")[1]
V2 = soc.make("soc-v2")[1]
Z = np.zeros((5, 40), bool)


def reward(params, t=10, new_detected=Z, stage_at_detection=None, isolated_now=Z, blind_now=Z,
           isolated_after=Z, detect_time=None, first_detection=0, contained=False, exfiltrated=False,
           false_scans=0, suppressed_tp=0, escalated_fp=0):
    """The step's `RewardTerms` from per-host `[5, 40]` arrays, built the way the env's step builds it."""
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


@pytest.mark.parametrize("params", [V1, V2], ids=["v1", "v2"])
def test_each_roles_counts_are_reported_beside_the_mixed_fpr(params):
    """v2's FPR pools the hunter's false scans and the triage's escalated benign alerts over both
    roles' benign items; the per-role counts let a reader see which role a high FPR comes from
    (e.g. 2 benign alerts escalated of 2 and no scan at all: FPR 1.0, all of it the triage's)."""
    counts = dict(clean_scans=7, false_scans=3, fp_triaged=5, fp_escalated=2, tp_suppressed=1, isolations=4,
                  blind_isolations=6)
    m = episode_metrics(_final(params, 50, **counts), params)
    assert {k: float(m[k]) for k in counts} == {k: float(v) for k, v in counts.items()}
    assert set(m) == set(soc.METRIC_KEYS)
    if params.fix_d9_metrics:
        np.testing.assert_allclose(float(m["fpr"]), (3 + 2) / (7 + 5), rtol=1e-6)
        only_triage = episode_metrics(_final(params, 50, fp_triaged=2, fp_escalated=2), params)
        assert float(only_triage["fpr"]) == 1.0 and float(only_triage["clean_scans"]) == 0.0


# Hand-worked rewards. Segment values: DMZ 0.6, Corporate 0.8, Development 0.7, DataCenter 1.0,
# Cloud 0.9; R = 1.0 R_det + 1.5 R_resp - 0.3 R_cost - 2.0 R_fp (docs/reference.md §1.8).
V1_D8 = V1.replace(fix_d8_reward_accounting=True)


def terms(r):
    return {k: round(float(v), 6) for k, v in r._asdict().items()}


def test_detection_term_is_the_stage_over_five_and_exfiltration_costs_ten():
    found = host_mask(V1, (0, 1), (3, 2))
    stage = np.zeros((5, 40), np.int32)
    stage[0, 1], stage[3, 2] = 2, 3
    stage[1, 0] = 4  # a host at stage 4 that was not detected this step earns nothing
    r = reward(V1, new_detected=found, stage_at_detection=stage)
    assert terms(r) == dict(detect=1.0, response=0.0, cost=0.0, false_positive=0.0, total=1.0)  # (2 + 3) / 5
    r = reward(V1, new_detected=found, stage_at_detection=stage, exfiltrated=True)
    assert terms(r)["detect"] == -9.0 and terms(r)["total"] == -9.0


def test_response_credit_v1_from_the_first_detection_d8_from_the_hosts_own():
    # two correct isolations in Corporate (value 0.8) at t = 10; the episode's first detection was
    # at t = 4, the hosts' own at t = 8 and t = 9
    iso = host_mask(V1, (1, 0), (1, 1))
    dt = np.zeros((5, 40), np.int32)
    dt[1, 0], dt[1, 1] = 8, 9
    kw = dict(t=10, isolated_now=iso, isolated_after=iso, detect_time=dt, first_detection=4)
    cost = 2 * 0.1 * 0.8
    r = reward(V1, **kw)  # v1: 1/6 each
    np.testing.assert_allclose([r.response, r.cost, r.total], [2 / 6, cost, 1.5 * 2 / 6 - 0.3 * cost], rtol=1e-6)
    r = reward(V1_D8, **kw)  # D8: 1/2 + 1/1
    np.testing.assert_allclose([r.response, r.total], [1.5, 1.5 * 1.5 - 0.3 * cost], rtol=1e-6)
    r = reward(V1, contained=True, **kw)  # containment: +5 in R_resp, +7.5 in R
    np.testing.assert_allclose([r.response, r.total], [2 / 6 + 5, 1.5 * (2 / 6 + 5) - 0.3 * cost], rtol=1e-6)


def test_isolation_costs_and_v2_availability():
    blind = host_mask(V1, (0, 7))  # a clean DMZ host isolated: 0.2 x 0.6
    r = reward(V1, blind_now=blind, isolated_after=blind)
    np.testing.assert_allclose([r.cost, r.total], [0.12, -0.3 * 0.12], rtol=1e-6)
    # soc-v2 also charges 0.01 x value for every host that stays isolated (DataCenter, value 1.0)
    held = host_mask(V2, (3, 0), (3, 1))
    np.testing.assert_allclose(float(reward(V2, isolated_after=held).cost), 2 * 0.01, rtol=1e-6)
    assert float(reward(V1, isolated_after=held).cost) == 0.0


def test_false_positive_term_v1_counts_one_suppression_per_step_d8_counts_every_event():
    kw = dict(false_scans=3, suppressed_tp=2, escalated_fp=4)
    r = reward(V1, **kw)  # v1: 3 false scans + [any true alert suppressed]; benign escalations free
    assert terms(r)["false_positive"] == 0.5 * 4 and terms(r)["total"] == -2.0 * 0.5 * 4
    r = reward(V1_D8, **kw)  # D8: 3 + 2 + 4 events
    assert terms(r)["false_positive"] == 0.5 * 9 and terms(r)["total"] == -2.0 * 0.5 * 9
