"""Every v2 switch changes exactly the behaviour it names: toggle it alone on hmarl-soc-v1.

Switches that only change what the env reports (D1, D8, D9, D11, D12) must leave the world's
trajectory bit-identical under the same keys and actions; D10 changes only the networks of later
episodes. The switches that change dynamics (D2-D7) are pinned down on hand-built states in
test_attacker.py, test_alerts.py and test_defenders.py; here each is also shown to change its own
observable behaviour in a rollout.
"""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc.env.params import SWITCHES

N_ENVS, N_STEPS, MAX_STEPS = 8, 90, 40


@functools.lru_cache(maxsize=None)
def rollout(**switches):
    env, p = soc.make("hmarl-soc-v1", max_steps=MAX_STEPS, **switches)
    policy = soc.POLICIES["constant"]

    def run(key):
        obs, st = jax.vmap(env.reset)(jax.random.split(key, N_ENVS))

        def body(st, k):
            acts = jax.vmap(policy, in_axes=(None, None, 0, None))(None, None, st, p)
            obs, st2, r, d, info = jax.vmap(env.step)(jax.random.split(k, N_ENVS), st, acts)
            return st2, (st2, obs, r["coordinator"], d["__all__"], info)

        _, out = jax.lax.scan(body, st, jax.random.split(jax.random.fold_in(key, 1), N_STEPS))
        return out

    return env, jax.jit(run)(jax.random.key(42))


def world(states, drop_return=False):
    leaves = {k: v for k, v in states.__dict__.items() if k not in ("obs_seed",)}
    if drop_return:
        leaves["counters"] = states.counters.replace(episode_return=jnp.zeros_like(states.counters.episode_return))
    return leaves


@pytest.fixture(scope="module")
def base():
    return rollout()


def test_every_switch_is_covered_here():
    tested = {"fix_d1_hidden_truth", "fix_d2_alert_origin", "fix_d3_foothold", "fix_d4_dead_ends",
              "fix_d5_containment", "fix_d6_directive", "fix_d7_response_actions", "fix_d8_reward_accounting",
              "fix_d9_metrics", "fix_d10_resample_network", "fix_d11_no_padding", "fix_d12_truncation"}
    assert tested == set(SWITCHES)


def test_d1_changes_only_observations(base):
    _, (s0, o0, r0, d0, i0) = base
    env1, (s1, o1, r1, d1, i1) = rollout(fix_d1_hidden_truth=True)
    chex.assert_trees_all_equal(world(s0), world(s1))
    chex.assert_trees_all_equal((r0, d0, i0["metrics"]), (r1, d1, i1["metrics"]))
    assert o1["alert_triage"].shape[-1] != o0["alert_triage"].shape[-1]
    # the SOC view does not move with hidden compromise: an undetected compromise leaves it unchanged
    _, p = soc.make("hmarl-soc-v1", fix_d1_hidden_truth=True)
    st = soc.initial_state(jax.random.key(0), p)
    hidden = st.replace(hosts=st.hosts.replace(compromised=st.hosts.compromised.at[2, 3].set(True),
                                               stage=st.hosts.stage.at[2, 3].set(3)))
    a, b = env1.get_obs(st), env1.get_obs(hidden)
    np.testing.assert_array_equal(a["alert_triage"], b["alert_triage"])
    # telemetry may move (that is the signal a hunter should learn), the explicit counts do not
    seg = 4 + p.telemetry_features
    ro_a, ro_b = np.asarray(a["response_orchestrator"]), np.asarray(b["response_orchestrator"])
    np.testing.assert_array_equal(ro_a.reshape(-1)[: 5 * seg].reshape(5, seg)[:, :4],
                                  ro_b.reshape(-1)[: 5 * seg].reshape(5, seg)[:, :4])


def test_d11_drops_only_padding(base):
    _, (s0, o0, r0, d0, i0) = base
    _, (s1, o1, r1, d1, i1) = rollout(fix_d11_no_padding=True)
    chex.assert_trees_all_equal(world(s0), world(s1))
    sizes = {a: o1[a].shape[-1] for a in o1}
    assert sizes == dict(coordinator=24, threat_hunter=78, alert_triage=61, response_orchestrator=36)
    np.testing.assert_array_equal(o0["coordinator"][..., :24], o1["coordinator"])
    np.testing.assert_array_equal(o0["alert_triage"][..., :61], o1["alert_triage"])
    np.testing.assert_array_equal(o0["response_orchestrator"][..., :21], o1["response_orchestrator"][..., :21])
    # v1 padding: AT dims 61..63 and RO dims 61..95 are always zero
    assert float(jnp.abs(o0["alert_triage"][..., 61:]).max()) == 0.0
    assert float(jnp.abs(o0["response_orchestrator"][..., 61:]).max()) == 0.0


def test_d8_changes_only_the_reward(base):
    _, (s0, o0, r0, d0, i0) = base
    _, (s1, o1, r1, d1, i1) = rollout(fix_d8_reward_accounting=True)
    chex.assert_trees_all_equal(world(s0, True), world(s1, True))
    chex.assert_trees_all_equal(o0, o1)
    assert not np.allclose(np.asarray(r0), np.asarray(r1))
    # where they differ, it is the response term or escalations of benign alerts
    rt0, rt1 = i0["reward_terms"], i1["reward_terms"]
    np.testing.assert_array_equal(rt0["detect"], rt1["detect"])
    np.testing.assert_array_equal(rt0["cost"], rt1["cost"])


def test_d9_changes_only_metric_definitions(base):
    _, (s0, o0, r0, d0, i0) = base
    _, (s1, o1, r1, d1, i1) = rollout(fix_d9_metrics=True)
    chex.assert_trees_all_equal(world(s0), world(s1))
    chex.assert_trees_all_equal((o0, r0, d0), (o1, r1, d1))
    m0, m1 = i0["metrics"], i1["metrics"]
    for k in ("return", "length", "csr", "exfiltrated", "compromised", "hosts_compromised"):
        np.testing.assert_array_equal(m0[k], m1[k])
    done = np.asarray(d0)
    assert not np.array_equal(np.asarray(m0["mttd"])[done], np.asarray(m1["mttd"])[done], equal_nan=True)


def test_d12_changes_only_the_discount_on_truncation(base):
    _, (s0, o0, r0, d0, i0) = base
    _, (s1, o1, r1, d1, i1) = rollout(fix_d12_truncation=True)
    chex.assert_trees_all_equal(world(s0), world(s1))
    trunc = np.asarray(i0["truncated"]) & ~np.asarray(i0["terminated"])
    assert trunc.any()
    disc0, disc1 = np.asarray(i0["discount"]), np.asarray(i1["discount"])
    np.testing.assert_array_equal(disc0[~trunc], disc1[~trunc])
    assert (disc0[trunc] == 0).all() and (disc1[trunc] == 1).all()


def test_d10_resamples_the_network_at_reset(base):
    _, (s0, *_ ) = base
    _, (s1, *_ ) = rollout(fix_d10_resample_network=True)
    ep0, ep1 = np.asarray(s0.episode), np.asarray(s1.episode)
    v0, v1 = np.asarray(s0.hosts.vuln), np.asarray(s1.hosts.vuln)
    first = (ep0 == 0) & (ep1 == 0)
    np.testing.assert_array_equal(v0[first], v1[first])  # same first network
    # v1: one network per env for ever; D10: a new one every episode
    assert (v0 == v0[:1]).all()
    later = ep1 >= 1
    changed = (v1 != v1[:1]).any(axis=(2, 3))  # [T, N]: differs from the env's first network
    assert later.any() and changed[later].all() and not changed[~later].any()


def test_dynamics_switches_change_their_behaviour():
    # D2: true alerts stamped with the segment of their host, not always the entry segment
    _, (s0, *_ ) = rollout()
    _, (s2, *_ ) = rollout(fix_d2_alert_origin=True)
    q0, q2 = np.asarray(s0.queue), np.asarray(s2.queue)
    tp0 = q0[(q0[..., 7] > 0) & (q0[..., 4] > 0)]
    tp2 = q2[(q2[..., 7] > 0) & (q2[..., 4] > 0)]
    assert (tp0[:, 2] == 0).all() and (tp0[:, 3] == -1).all()
    assert (tp2[:, 3] >= 0).all() and len(tp2) > 0
    # D6: the coordinator becomes a discrete (focus, posture) choice
    env6, _ = rollout(fix_d6_directive=True)
    assert env6.action_space("coordinator") == soc.Discrete(15)
    # D7: threat hunter 2S and response 3S dims
    env7, _ = rollout(fix_d7_response_actions=True)
    assert env7.action_space("threat_hunter").shape == (10,) and env7.action_space("response_orchestrator").shape == (15,)
    # D5 and D3/D4: more containment once remediation can contain, more progress without stalls
    _, (s5, o5, r5, d5, i5) = rollout(fix_d5_containment=True)
    csr = lambda info, d: float(np.asarray(info["metrics"]["csr"])[np.asarray(d)].mean())
    _, (_, _, _, dd0, ii0) = rollout()
    assert csr(i5, d5) >= csr(ii0, dd0)
