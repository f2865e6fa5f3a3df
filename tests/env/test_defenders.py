"""What the defenders' actions do (docs/reference.md §1.6), on hand-built states, plus the action conventions."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc.env import defenders
from jaxsoc.env.network import topology

from .helpers import fresh, host_mask, no_alerts, queue_of, with_hosts
from tests.fast import fast_jit  # programs run briefly: unoptimised (tests/fast.py)

# A quiet world: the attacker and benign users do nothing, so only the defenders move things.
QUIET = dict(p_initial_access=0.0, p_execution=0.0, p_lateral=0.0, p_exfiltration=0.0,
             fp_alert_rate=0.0, tp_alert_scale=0.0, tp_host_alert_scale=0.0, phase_min_steps=10_000,
             blind_isolation_rate=0.0)
V1 = soc.make("hmarl-soc-v1", **QUIET)[1]
V1_D7 = V1.replace(fix_d7_response_actions=True)


@functools.lru_cache(maxsize=None)
def env_of(params):
    env = soc.SOCEnv(params)
    return env, fast_jit(env.step_env), fast_jit(jax.vmap(env.step_env, in_axes=(0, None, None)))


def acts(params, coord=None, th=-1.0, at=3, ro=-1.0):
    dims = defenders.action_dims(params)
    c = jnp.zeros((8,)) if coord is None else jnp.asarray(coord, jnp.float32)
    return {"coordinator": c,
            "threat_hunter": jnp.broadcast_to(jnp.asarray(th, jnp.float32), (dims["threat_hunter"],)),
            "alert_triage": jnp.int32(at),
            "response_orchestrator": jnp.broadcast_to(jnp.asarray(ro, jnp.float32), (dims["response_orchestrator"],))}


def test_hmarl_directive_mapping():
    d = np.stack([np.asarray(soc.hmarl_directive(a)) for a in range(8)])
    p = np.array([-1, -1 / 3, 1 / 3, 1] * 2)
    focus = np.array([0] * 4 + [1] * 4)
    np.testing.assert_allclose(d, np.stack([p, 0.8 * p, p, focus, p, 0.6 * p, 0.5 * p, 0.5 * focus], 1), atol=1e-6)


@pytest.mark.parametrize("directive, expected", [
    ([1, 0, 0, 0, 0, 0, 0, 0], (0.3, 0.1, 0.1)),  # Rule-SOAR's directive
    ([0] * 8, (0.15, 0.1, 0.1)),
    ([-1, -1, 1, 1, -1, 1, 1, 1], (0.0, 0.0, 0.0)),  # d2, d3, d5..7 have no effect (D6)
])
def test_v1_directive_boosts(directive, expected):
    state = fresh(V1).replace(directive=jnp.asarray(directive, jnp.float32))
    b = defenders.boosts(state, V1)
    np.testing.assert_allclose([float(b.hunt[0]), float(b.scope[0]), float(b.urgency[0])], expected, atol=1e-6)


def test_directive_read_only_every_k_steps():
    env, step, _ = env_of(V1)
    state = fresh(V1)
    seen = []
    for t in range(12):
        a = acts(V1, coord=jnp.full((8,), (t + 1) / 20.0))
        _, state, *_ = step(jax.random.key(t), state, a)
        seen.append(float(state.directive[0]))
    # read at t = 0, 5, 10 (the step counter before increment), held in between
    assert seen == pytest.approx([0.05] * 5 + [0.3] * 5 + [0.55] * 2)


def test_v2_directive_focus_and_posture():
    p = soc.make("soc-v2", **QUIET)[1]
    state = fresh(p)
    state = defenders.update_directive(state, jnp.int32(3 * 3 + 2), p)  # focus 3, posture 2
    assert int(state.focus) == 3 and int(state.posture) == 2
    b = defenders.boosts(state, p)
    np.testing.assert_allclose(b.urgency, [0.2, 0.2, 0.2, 0.4, 0.2], atol=1e-6)
    np.testing.assert_allclose(b.hunt, [0.1, 0.1, 0.1, 0.3, 0.1], atol=1e-6)
    same = defenders.update_directive(state, jnp.int32(99), p)  # out of range: keep the directive
    assert int(same.focus) == 3 and int(same.posture) == 2


def test_hunting_detection_and_false_scans():
    env, _, vstep = env_of(V1)
    comp = host_mask(V1, *[(2, j) for j in range(10)])
    state = with_hosts(fresh(V1), compromised=comp, stage=np.where(comp, 3, 0))
    # raw 0.4 intensity on segment 2 -> 0.7 + scan boost 0.15 = 0.85 (> 0.7: false scans); scope 0.5 + 0.1
    th = jnp.full((16,), -1.0).at[2].set(0.4).at[7].set(0.0)
    n = 3000
    _, out, rew, _, _ = vstep(jax.random.split(jax.random.key(1), n), state, acts(V1, th=th))
    det = np.asarray(out.hosts.detected[:, 2, :10]).mean()
    expected = 0.85 * 0.6 * (1 - 0.5 * 0.7) * 3 / 5
    assert abs(det - expected) < 4 * np.sqrt(expected * (1 - expected) / (10 * n))
    false = np.asarray(out.counters.false_scans).mean() / 30  # 30 clean hosts in the hunted segment
    assert abs(false - 0.05) < 0.005
    assert (np.asarray(out.counters.total_scans) == 40).all()  # only segment 2 hunted (others at 0.15)
    # The episode's first detection is this step (t = 1) in the envs that detected a host, and
    # still 0 (none yet) in the others; each detected host's detection time is this step too.
    detected = np.asarray(out.hosts.detected)  # [n, segments, hosts]
    hit = detected.any((1, 2))
    assert 0 < hit.mean() < 1  # both kinds of env occur, so both branches are checked
    np.testing.assert_array_equal(np.asarray(out.counters.detection_time), np.where(hit, 1, 0))
    detect_time = np.asarray(out.hosts.detect_time)
    assert (detect_time[detected] == 1).all() and (detect_time[~detected] == 0).all()


def test_isolation_remediation_and_costs():
    env, step, vstep = env_of(V1)
    det = host_mask(V1, (1, 0), (1, 1))
    state = with_hosts(fresh(V1), compromised=det, detected=det, stage=np.where(det, 2, 0))
    ro = jnp.full((12,), -1.0).at[1].set(1.0)  # isolate segment 1 at intensity 1 (no remediation)
    _, s1, rew, _, info = step(jax.random.key(0), state, acts(V1, ro=ro))
    assert np.asarray(s1.hosts.isolated)[1, :2].all() and int(s1.counters.isolations) == 2
    np.testing.assert_allclose(float(info["reward_terms"]["cost"]), 2 * 0.1 * 0.8, rtol=1e-6)
    assert bool(s1.counters.contained)  # every compromised host isolated, some remain compromised
    ro = ro.at[6].set(1.0)  # and remediate at intensity 1
    _, s2, *_ = step(jax.random.key(0), state, acts(V1, ro=ro))
    h = s2.hosts
    assert not bool(h.compromised.any() | h.isolated.any() | h.detected.any()) and int(h.stage.max()) == 0
    assert not bool(s2.counters.contained)  # v1 (D5): remediating everything makes containment impossible


@pytest.mark.slow  # CI budget (10 min on 2 cores): 2,000-env statistics over three programs (~40 CPU-s)
def test_blind_isolation_v1_repeats_d7_does_not():
    p = V1.replace(blind_isolation_rate=0.02)
    p7 = p.replace(fix_d7_response_actions=True)
    state = fresh(p)
    ro = jnp.full((12,), -1.0).at[0].set(1.0)  # intensity 1 > 0.9 on the DMZ: blind isolation 2%
    n = 2000
    _, _, vstep = env_of(p)
    _, out, *_ = vstep(jax.random.split(jax.random.key(2), n), state, acts(p, ro=ro))
    rate = np.asarray(out.hosts.isolated[:, 0]).mean()
    assert abs(rate - 0.02) < 4 * np.sqrt(0.02 * 0.98 / (40 * n))
    already = with_hosts(state, isolated=np.ones((5, 40), bool))
    _, out, *_ = vstep(jax.random.split(jax.random.key(3), n), already, acts(p, ro=ro))
    assert np.asarray(out.counters.blind_isolations).mean() > 0.5  # v1 charges again for isolated hosts
    _, _, vstep7 = env_of(p7)
    ro7 = jnp.full((15,), -1.0).at[0].set(1.0)
    _, out, *_ = vstep7(jax.random.split(jax.random.key(3), n), already, acts(p7, ro=ro7))
    assert int(np.asarray(out.counters.blind_isolations).sum()) == 0


def test_release_of_clean_isolated_hosts_d7():
    iso = host_mask(V1_D7, (2, 3), (2, 4))
    comp = host_mask(V1_D7, (2, 4))
    state = with_hosts(fresh(V1_D7), isolated=iso, compromised=comp, detected=comp, stage=np.where(comp, 2, 0))
    ro = jnp.full((15,), -1.0).at[12].set(1.0)  # release in segment 2 at intensity 1
    _, step, _ = env_of(V1_D7)
    _, s, *_ = step(jax.random.key(0), state, acts(V1_D7, ro=ro))
    assert not bool(s.hosts.isolated[2, 3]) and bool(s.hosts.isolated[2, 4])  # compromised stays isolated


def test_containment_rule_v1_and_v2():
    v2 = V1.replace(fix_d5_containment=True)
    yes, no = jnp.bool_(True), jnp.bool_(False)
    # nothing compromised any more (all remediated): v1 needs a compromised host left, v2 does not
    assert not bool(defenders.is_contained(jnp.float32(0), jnp.float32(0), yes, V1))
    assert bool(defenders.is_contained(jnp.float32(0), jnp.float32(0), yes, v2))
    assert not bool(defenders.is_contained(jnp.float32(0), jnp.float32(0), no, v2))  # attack not begun
    # compromised hosts all isolated: contained under both
    assert bool(defenders.is_contained(jnp.float32(0), jnp.float32(2), yes, V1))
    assert bool(defenders.is_contained(jnp.float32(0), jnp.float32(2), yes, v2))
    # one compromised host still connected: not contained
    assert not bool(defenders.is_contained(jnp.float32(1), jnp.float32(2), yes, v2))


@pytest.mark.parametrize("bad", [jnp.nan, 5.0, -7.0])
def test_continuous_actions_clipped_and_nan_is_idle(bad):
    a = defenders.clean_continuous(jnp.array([bad, 0.5, -0.2]), 3)
    assert np.isfinite(np.asarray(a)).all() and float(a[0]) == (-1.0 if np.isnan(bad) else np.clip(bad, -1, 1))
    env, step, _ = env_of(V1)
    comp = host_mask(V1, (1, 0))
    state = with_hosts(fresh(V1), compromised=comp, detected=comp, stage=np.where(comp, 2, 0))
    nan_acts = acts(V1, coord=jnp.full((8,), jnp.nan), th=jnp.nan, ro=jnp.nan)
    _, s, rew, _, _ = step(jax.random.key(0), state, nan_acts)
    assert np.isfinite(float(rew["coordinator"])) and np.isfinite(np.asarray(s.directive)).all()
    assert float(s.directive[0]) == -1.0 and not bool(s.hosts.isolated.any())


def test_discrete_nan_and_out_of_range_are_no_ops():
    assert int(defenders.clean_discrete(jnp.float32(jnp.nan), 4)) == defenders.NO_OP
    assert int(defenders.clean_discrete(jnp.int32(7), 4)) == defenders.NO_OP
    assert int(defenders.clean_discrete(jnp.array([6, 1]), 4)) == defenders.NO_OP  # first element read
    assert int(defenders.clean_discrete(jnp.float32(2.0), 4)) == 2


def test_triage_reads_actions_as_the_reference():
    # reference: `int(a) if np.isscalar(a) else int(a[0]) % 4`; an index matching no branch does nothing
    for action, index in [(2, 2), (5, defenders.NO_OP), (-1, defenders.NO_OP), (2.7, 2), (-0.5, 0),
                          (jnp.nan, defenders.NO_OP), ([5], 1), ([-1], 3), ([6, 0], 2), ([2.7], 2),
                          ([-1.5], 3), ([jnp.inf], defenders.NO_OP)]:
        assert int(defenders.triage_index(jnp.asarray(action))) == index, action


def test_an_array_triage_action_acts_as_its_first_element_mod_4():
    queue = queue_of(V1, [dict(is_tp=1, timestamp=0), dict(timestamp=0)])
    triage = fast_jit(lambda action: defenders.ingest_and_triage(queue, no_alerts(), action, V1))
    after, result = triage(jnp.array([5]))  # 5 % 4 = 1: suppress the (true) head alert
    assert int(np.asarray(after)[:, 7].sum()) == 1 and int(result["suppressed_tp"]) == 1
    after, result = triage(jnp.int32(5))  # a scalar 5 matches no branch
    np.testing.assert_array_equal(np.asarray(after), np.asarray(queue))
    assert int(result["suppressed_tp"]) == 0


def test_d2_escalating_a_true_alert_detects_its_host():
    p = V1.replace(fix_d2_alert_origin=True)
    comp = host_mask(p, (3, 6))
    state = with_hosts(fresh(p), compromised=comp, stage=np.where(comp, 3, 0))
    state = state.replace(queue=queue_of(p, [dict(is_tp=1, segment=3, host=3 * 40 + 6, timestamp=0)]))
    _, step, _ = env_of(p)
    _, s, rew, _, info = step(jax.random.key(0), state, acts(p, at=0))
    assert bool(s.hosts.detected[3, 6]) and int(s.counters.detection_time) == 1
    np.testing.assert_allclose(float(info["reward_terms"]["detect"]), 3 / 5, rtol=1e-6)
    _, step1, _ = env_of(V1)
    _, s, *_ = step1(jax.random.key(0), state, acts(V1, at=0))
    assert not bool(s.hosts.detected.any())  # v1: escalation only moves counters


def test_escalated_true_alert_confirms_exactly_its_own_host_d2():
    """D2: escalating an alert sends an analyst to the alert's host: that host, if compromised and
    not yet detected, becomes detected at t; no other host changes; a clean or already detected
    host, or host id -1 (a benign alert without origin), confirms nothing."""
    p = soc.make("soc-v2", **QUIET)[1]
    s = fresh(p)
    topo = topology(p)
    comp = host_mask(p, (1, 3), (1, 4), (2, 0))
    det = host_mask(p, (1, 4))
    hosts = with_hosts(s, compromised=comp, detected=det, detect_time=np.where(det, 2, 0)).hosts
    ids = np.asarray(topo.host_id)

    def confirm(seg, j):
        h, new = defenders.confirm_escalation(hosts, jnp.int32(ids[seg, j] if seg >= 0 else -1), 7, p)
        return np.asarray(h.detected), np.asarray(h.detect_time), np.asarray(new)

    detected, time, new = confirm(1, 3)
    np.testing.assert_array_equal(new, host_mask(p, (1, 3)))
    np.testing.assert_array_equal(detected, det | host_mask(p, (1, 3)))
    np.testing.assert_array_equal(time, np.where(host_mask(p, (1, 3)), 7, np.where(det, 2, 0)))
    for seg, j in ((1, 4), (0, 0), (-1, -1)):  # already detected, clean, no origin
        detected, time, new = confirm(seg, j)
        assert not new.any()
        np.testing.assert_array_equal(detected, det)
        np.testing.assert_array_equal(time, np.where(det, 2, 0))
