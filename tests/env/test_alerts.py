"""Alert generation and the queue operations of alert triage (docs/reference.md §1.4, §1.6; the D2 fix)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc.env import alerts, attacker
from jaxsoc.env.rng import Draws
from jaxsoc.env.state import (CONFIDENCE, HOST, IS_TP, NOISE, SEGMENT, SEVERITY, TIMESTAMP, VALID)

from .helpers import fresh, host_mask, no_alerts, queue_of, with_hosts

V1 = soc.make("hmarl-soc-v1")[1]


@functools.lru_cache(maxsize=None)
def generator(params):
    def f(key, state):
        d = Draws(key, params.rng_impl)
        hosts, att, ev = attacker.step(d, state.hosts, state.attacker, params, state.t + 1)
        return alerts.generate(d, hosts, ev, state.t + 1, state.posture, params)
    return jax.jit(jax.vmap(f, in_axes=(0, None)))


@pytest.mark.parametrize("phase, rate", [(0, 0.0), (1, 0.18), (2, 0.30), (3, 0.24), (4, 0.36)])
def test_v1_true_alert_rate_per_phase(phase, rate):
    p = V1.replace(phase_min_steps=10_000)  # freeze the phase so the rate is the phase's own
    state = fresh(p).replace(attacker=fresh(p).attacker.replace(phase=jnp.int32(phase)))
    n = 20_000
    new = np.asarray(generator(p)(jax.random.split(jax.random.key(phase), n), state))
    tp, fp = new[:, 0], new[:, 1]
    assert abs(tp[:, VALID].mean() - rate) < 4 * np.sqrt(0.25 / n)
    assert abs(fp[:, VALID].mean() - 0.3) < 4 * np.sqrt(0.25 / n)
    if rate:
        noise = rate / 2
        row = tp[tp[:, VALID] > 0][0]
        np.testing.assert_allclose(row[[SEVERITY, CONFIDENCE, SEGMENT, IS_TP, TIMESTAMP, NOISE]],
                                   [min(1, phase / 4), 0.5 + 0.5 * noise, 0, 1, 1, noise], rtol=1e-6)
    f = fp[fp[:, VALID] > 0]
    assert f[:, SEVERITY].max() < 0.5 and f[:, CONFIDENCE].max() < 0.4 and f[:, NOISE].max() < 0.3
    assert set(np.unique(f[:, SEGMENT]).astype(int)) == {0, 1, 2, 3, 4} and (f[:, IS_TP] == 0).all()


def test_v2_true_alerts_come_from_compromised_hosts():
    p = V1.replace(fix_d2_alert_origin=True, fix_d3_foothold=True, phase_min_steps=10_000, p_lateral=0.0,
                   max_new_alerts=3)
    comp = host_mask(p, (2, 5), (4, 7))
    iso = host_mask(p, (4, 7))  # isolated hosts are off the network: no alerts
    state = with_hosts(fresh(p), compromised=comp, stage=np.where(comp, 3, 0), isolated=iso)
    state = state.replace(attacker=state.attacker.replace(phase=jnp.int32(3)))
    n = 20_000
    new = np.asarray(generator(p)(jax.random.split(jax.random.key(9), n), state))
    tp = new[:, :3]
    valid = tp[..., VALID] > 0
    assert abs(valid[:, 0].mean() - 0.4 * 0.3) < 4 * np.sqrt(0.25 / n)  # phase_noise[3]*(1-stealth)
    assert not valid[:, 1:].any()  # one emitting host at most
    rows = tp[valid]
    assert (rows[:, SEGMENT] == 2).all() and (rows[:, HOST] == 2 * 40 + 5).all() and (rows[:, IS_TP] == 1).all()
    assert rows[:, SEVERITY].min() >= 0.45 - 1e-6  # stage 3 * 0.15 + U(0, 0.4)


def test_v2_triage_filter_drops_low_severity():
    p = V1.replace(fix_d6_directive=True)
    state = fresh(p).replace(posture=jnp.int32(0))  # watch: filter 0.3
    new = np.asarray(generator(p)(jax.random.split(jax.random.key(2), 5000), state))
    fp = new[:, 1]
    kept = fp[fp[:, VALID] > 0]
    assert kept[:, SEVERITY].min() >= 0.3 and abs(len(kept) / 5000 - 0.3 * 0.4) < 0.03


@functools.lru_cache(maxsize=None)
def triage_fn(params):
    return jax.jit(lambda q, new, a: alerts.ingest_and_triage(q, new, a, params))


def rows(q):
    q = np.asarray(q)
    return q[q[:, VALID] > 0]


def test_escalate_and_suppress_pop_the_oldest():
    q = queue_of(V1, [dict(severity=0.1, is_tp=1, timestamp=1), dict(severity=0.2, timestamp=2),
                      dict(severity=0.3, timestamp=3)])
    out, res = triage_fn(V1)(q, no_alerts(), jnp.int32(alerts.ESCALATE))
    assert [r[TIMESTAMP] for r in rows(out)] == [2, 3] and int(res["escalated_tp"]) == 1
    out, res = triage_fn(V1)(out, no_alerts(), jnp.int32(alerts.SUPPRESS))
    assert [r[TIMESTAMP] for r in rows(out)] == [3] and int(res["suppressed_tp"]) == 0
    assert int(res["triaged_fp"]) == 1
    out, res = triage_fn(V1)(out, no_alerts(), jnp.int32(alerts.ESCALATE))
    assert len(rows(out)) == 0 and int(res["escalated_fp"]) == 1
    out2, res = triage_fn(V1)(out, no_alerts(), jnp.int32(alerts.ESCALATE))  # empty: no-op
    assert int(res["escalated_fp"]) == 0 and len(rows(out2)) == 0


def test_correlate_keeps_first_max_severity_of_the_head_segment():
    q = queue_of(V1, [dict(segment=2, severity=0.3, timestamp=1), dict(segment=1, severity=0.9, timestamp=2),
                      dict(segment=2, severity=0.7, timestamp=3), dict(segment=2, severity=0.7, timestamp=4),
                      dict(segment=0, severity=0.1, timestamp=5)])
    out, _ = triage_fn(V1)(q, no_alerts(), jnp.int32(alerts.CORRELATE))
    assert [int(r[TIMESTAMP]) for r in rows(out)] == [2, 3, 5]  # the head itself was removed
    single = queue_of(V1, [dict(segment=4, timestamp=1), dict(segment=3, timestamp=2)])
    out, _ = triage_fn(V1)(single, no_alerts(), jnp.int32(alerts.CORRELATE))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(single))  # nothing to correlate


def test_enrich_raises_head_confidence_capped_at_one():
    q = queue_of(V1, [dict(confidence=0.5, timestamp=1), dict(confidence=0.1, timestamp=2)])
    out, _ = triage_fn(V1)(q, no_alerts(), jnp.int32(alerts.ENRICH))
    np.testing.assert_allclose(rows(out)[:, CONFIDENCE], [0.7, 0.1], rtol=1e-6)
    q = queue_of(V1, [dict(confidence=0.95, timestamp=1)])
    out, _ = triage_fn(V1)(q, no_alerts(), jnp.int32(alerts.ENRICH))
    assert rows(out)[0, CONFIDENCE] == 1.0


@pytest.mark.parametrize("action", [-1, 4, 99])
def test_out_of_range_triage_is_a_no_op(action):
    q = queue_of(V1, [dict(timestamp=1), dict(timestamp=2)])
    out, res = triage_fn(V1)(q, no_alerts(), jnp.int32(action))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(q))
    assert all(int(v) in (0, -1) for v in res.values())


def test_push_overflow_drops_oldest_then_triage_acts_on_new_head():
    full = queue_of(V1, [dict(timestamp=i) for i in range(50)])
    new = alerts.make_alert(jnp.array([0.5, 0.6]), 0.1, 0, -1, 0.0, jnp.array([100.0, 101.0]), 0.0,
                            jnp.array([True, True]))
    out, _ = triage_fn(V1)(full, new, jnp.int32(-1))
    ts = [int(r[TIMESTAMP]) for r in rows(out)]
    assert len(ts) == 50 and ts[:2] == [2, 3] and ts[-2:] == [100, 101]
    out, res = triage_fn(V1)(full, new, jnp.int32(alerts.ESCALATE))
    ts = [int(r[TIMESTAMP]) for r in rows(out)]
    assert len(ts) == 49 and ts[0] == 3  # pushed out 0 and 1, then escalated 2
    # only the second new alert valid: it lands right after the existing ones
    short = queue_of(V1, [dict(timestamp=7)])
    new = new.at[0, VALID].set(0.0)
    out, _ = triage_fn(V1)(short, new, jnp.int32(-1))
    assert [int(r[TIMESTAMP]) for r in rows(out)] == [7, 101]
    # empty queue: the head is the first new alert
    out, res = triage_fn(V1)(queue_of(V1, []), new.at[0, VALID].set(1.0).at[0, IS_TP].set(1.0),
                             jnp.int32(alerts.ESCALATE))
    assert [int(r[TIMESTAMP]) for r in rows(out)] == [101] and int(res["escalated_tp"]) == 1


def test_v2_true_alerts_are_the_first_emitting_hosts_in_host_order():
    # Every compromised host emits (scale x phase_noise[stage] >= 1 at stealth 0); five of them,
    # listed out of order across segments: the three alerts are the three lowest host ids, with
    # their own segment and stage, and nothing else is found.
    p = V1.replace(fix_d2_alert_origin=True, fix_d3_foothold=True, phase_min_steps=10_000, p_lateral=0.0,
                   max_new_alerts=3, stealth=0.0, tp_host_alert_scale=10.0, tp_severity_noise=0.0)
    cells = [(3, 1), (0, 39), (1, 0), (0, 7), (4, 2)]
    comp = host_mask(p, *cells)
    stage = np.zeros(comp.shape, np.int32)
    for (s, h), st in zip(cells, (3, 1, 2, 3, 4)):
        stage[s, h] = st
    state = with_hosts(fresh(p), compromised=comp, stage=stage)
    state = state.replace(attacker=state.attacker.replace(phase=jnp.int32(3)))
    tp = np.asarray(generator(p)(jax.random.split(jax.random.key(3), 4), state))[:, :3]
    assert (tp[..., VALID] == 1).all()
    for rows in tp:  # every key: the same three hosts
        np.testing.assert_array_equal(rows[:, HOST], [7, 39, 40])  # (0,7), (0,39), (1,0)
        np.testing.assert_array_equal(rows[:, SEGMENT], [0, 0, 1])
        np.testing.assert_allclose(rows[:, SEVERITY], [0.45, 0.15, 0.30], rtol=1e-6)  # stage x 0.15
    one = with_hosts(fresh(p), compromised=host_mask(p, (2, 3)), stage=np.where(host_mask(p, (2, 3)), 2, 0))
    one = one.replace(attacker=one.attacker.replace(phase=jnp.int32(3)))
    tp = np.asarray(generator(p)(jax.random.split(jax.random.key(4), 2), one))[:, :3]
    np.testing.assert_array_equal(tp[..., VALID], [[1, 0, 0]] * 2)
    assert (tp[:, 0, HOST] == 2 * 40 + 3).all()


def test_first_hosts_hand_worked():
    # [2 segments, 30 hosts]: two 24-bit words per segment (hosts 0-23, 24-29); flat ids seg*30+h.
    mask = np.zeros((2, 30), bool)
    mask[0, 23] = mask[0, 24] = mask[1, 0] = True  # the last bit of word 0, the first of word 1
    found, ids = alerts.first_hosts(jnp.asarray(mask), 4)
    assert found.tolist() == [True, True, True, False]
    assert ids.tolist() == [23, 24, 30, 0]


@pytest.mark.parametrize("shape, k", [((5, 40), 3), ((4, 7), 5), ((2, 50), 6), ((3, 24), 2)])
def test_first_hosts_matches_the_flat_order(shape, k):
    # Random masks of every density (empty and full included), vmapped: the first k set hosts in
    # flat order, as numpy finds them.
    rng = np.random.default_rng(k)
    masks = np.stack([rng.random(shape) < d for d in np.linspace(0.0, 1.0, 41)])
    found, ids = jax.jit(jax.vmap(lambda m: alerts.first_hosts(m, k)))(jnp.asarray(masks))
    for m, f, i in zip(masks, np.asarray(found), np.asarray(ids)):
        want = np.flatnonzero(m.reshape(-1))[:k]
        assert f.tolist() == [True] * len(want) + [False] * (k - len(want))
        assert i.tolist() == want.tolist() + [0] * (k - len(want))
