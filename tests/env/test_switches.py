"""Every v2 switch changes exactly the behaviour it names: toggle it alone on hmarl-soc-v1.

`test_switch_alone_changes_its_behaviour` runs once per name in `jaxsoc.env.params.SWITCHES`, so a
new switch fails here until a check is registered for it with `@behaviour_of(name)`. Switches that
only change what the env reports (D1, D8, D9, D11, D12) must leave the world's trajectory
bit-identical under the same keys and actions; D10 changes only the networks of later episodes;
D26 (the detection reward's stage read) is shown on a hand-worked step, since the constant policy
never remediates. The switches that change dynamics are shown on hand-worked states (D3, D4 and D5
stepped through the whole env; D6 and D7 on the defenders' functions) or in a rollout (D2); test_attacker.py,
test_alerts.py and test_defenders.py pin their mechanics down further.
"""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc.env import defenders
from jaxsoc.env.params import SWITCHES
from jaxsoc.env.rng import Draws

from .helpers import fresh, host_mask, with_hosts
from tests.fast import fast_jit  # the hand-worked steps' programs run briefly: unoptimised (tests/fast.py)

N_ENVS, N_STEPS, MAX_STEPS = 8, 90, 40

# switch -> a check that toggles that switch alone and fails unless its behaviour changes.
BEHAVIOUR = {}


def behaviour_of(switch):
    """Register the decorated function as the behavioural check of `switch`."""
    assert switch in SWITCHES, switch

    def register(check):
        BEHAVIOUR[switch] = check
        return check
    return register


# CI budget (10 min on 2 cores): each switch compiles its own rollout (~16 CPU-s); these five,
# whose behaviour is accounting, truncation, padding or resampling rather than what the attacker
# and defenders can see and do, run with `-m slow`.
SLOW_SWITCHES = ("fix_d8_reward_accounting", "fix_d9_metrics", "fix_d10_resample_network",
                 "fix_d11_no_padding", "fix_d12_truncation")


@pytest.mark.parametrize("switch", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW_SWITCHES else s
                                    for s in SWITCHES])
def test_switch_alone_changes_its_behaviour(switch):
    assert switch in BEHAVIOUR, f"{switch} has no behavioural test: register one with @behaviour_of"
    BEHAVIOUR[switch]()


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

    # Optimised, unlike this module's other programs: the switches that only change reports are
    # checked bit for bit across two programs, and unoptimised programs of different structure may
    # round 1 ulp apart (tests/fast.py). LLVM's level 1 of 3 keeps them identical (measured) at
    # two thirds of the default's compile time.
    return env, jax.jit(run, compiler_options={"xla_backend_optimization_level": 1})(jax.random.key(42))


def world(states, drop_return=False):
    leaves = {k: v for k, v in states.__dict__.items() if k not in ("obs_seed",)}
    if drop_return:
        leaves["counters"] = states.counters.replace(episode_return=jnp.zeros_like(states.counters.episode_return))
    return leaves


# Hand-worked states (D3-D7). Benign users and the attacker's alerts are switched off (numeric
# parameters: no recompilation) and every defender idles, so only the attacker or the one action
# under test moves the world.
QUIET = dict(fp_alert_rate=0.0, tp_alert_scale=0.0)


def alone(switch, **numeric):
    """(hmarl-soc-v1, hmarl-soc-v1 with only `switch` on), both with the same numeric overrides."""
    return (soc.make("hmarl-soc-v1", **QUIET, **numeric)[1],
            soc.make("hmarl-soc-v1", **QUIET, **numeric, **{switch: True})[1])


@functools.lru_cache(maxsize=None)
def stepper(switches):
    """The jitted `step_env` for one setting of the switches; numeric parameters are arguments."""
    env, _ = soc.make("hmarl-soc-v1", **dict(switches))
    return env, fast_jit(env.step_env)


def play(params, state, n, response=None):
    """`n` env steps from `state`, every defender idle unless `response` is the orchestrator's
    action; returns the states after each step and the last step's infos."""
    env, step = stepper(tuple((name, getattr(params, name)) for name in SWITCHES))
    acts = env.idle_actions(params)
    if response is not None:
        acts = {**acts, "response_orchestrator": response}
    states = []
    for i in range(n):
        _, state, _, _, infos = step(jax.random.key(i), state, acts, params)
        states.append(state)
    return states, infos


def in_phase(state, phase):
    return state.replace(attacker=state.attacker.replace(phase=jnp.int32(phase), steps_in_phase=jnp.int32(0)))


@behaviour_of("fix_d1_hidden_truth")
def d1_changes_only_observations():
    _, (s0, o0, r0, d0, i0) = rollout()
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


@behaviour_of("fix_d11_no_padding")
def d11_drops_only_padding():
    _, (s0, o0, r0, d0, i0) = rollout()
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


@behaviour_of("fix_d8_reward_accounting")
def d8_changes_only_the_reward():
    _, (s0, o0, r0, d0, i0) = rollout()
    _, (s1, o1, r1, d1, i1) = rollout(fix_d8_reward_accounting=True)
    chex.assert_trees_all_equal(world(s0, True), world(s1, True))
    chex.assert_trees_all_equal(o0, o1)
    assert not np.allclose(np.asarray(r0), np.asarray(r1))
    # where they differ, it is the response term or escalations of benign alerts
    rt0, rt1 = i0["reward_terms"], i1["reward_terms"]
    np.testing.assert_array_equal(rt0["detect"], rt1["detect"])
    np.testing.assert_array_equal(rt0["cost"], rt1["cost"])


@behaviour_of("fix_d9_metrics")
def d9_changes_only_metric_definitions():
    _, (s0, o0, r0, d0, i0) = rollout()
    _, (s1, o1, r1, d1, i1) = rollout(fix_d9_metrics=True)
    chex.assert_trees_all_equal(world(s0), world(s1))
    chex.assert_trees_all_equal((o0, r0, d0), (o1, r1, d1))
    m0, m1 = i0["metrics"], i1["metrics"]
    for k in ("return", "length", "csr", "exfiltrated", "compromised", "hosts_compromised"):
        np.testing.assert_array_equal(m0[k], m1[k])
    done = np.asarray(d0)
    assert not np.array_equal(np.asarray(m0["mttd"])[done], np.asarray(m1["mttd"])[done], equal_nan=True)


@behaviour_of("fix_d12_truncation")
def d12_changes_only_the_discount_on_truncation():
    _, (s0, o0, r0, d0, i0) = rollout()
    _, (s1, o1, r1, d1, i1) = rollout(fix_d12_truncation=True)
    chex.assert_trees_all_equal(world(s0), world(s1))
    trunc = np.asarray(i0["truncated"]) & ~np.asarray(i0["terminated"])
    assert trunc.any()
    disc0, disc1 = np.asarray(i0["discount"]), np.asarray(i1["discount"])
    np.testing.assert_array_equal(disc0[~trunc], disc1[~trunc])
    assert (disc0[trunc] == 0).all() and (disc1[trunc] == 1).all()


@behaviour_of("fix_d10_resample_network")
def d10_resamples_the_network_at_reset():
    _, (s0, *_ ) = rollout()
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


@behaviour_of("fix_d2_alert_origin")
def d2_alerts_come_from_their_host():
    _, (s0, *_ ) = rollout()
    _, (s2, *_ ) = rollout(fix_d2_alert_origin=True)
    q0, q2 = np.asarray(s0.queue), np.asarray(s2.queue)
    tp0 = q0[(q0[..., 7] > 0) & (q0[..., 4] > 0)]
    tp2 = q2[(q2[..., 7] > 0) & (q2[..., 4] > 0)]
    # v1: every true alert is stamped with the entry segment and no host
    assert (tp0[:, 2] == 0).all() and (tp0[:, 3] == -1).all()
    assert (tp2[:, 3] >= 0).all() and len(tp2) > 0


@behaviour_of("fix_d6_directive")
def d6_every_part_of_the_directive_acts():
    v1, fixed = alone("fix_d6_directive")
    boosts = lambda state, p: np.stack(defenders.boosts(state, p))  # [3, S]: hunt, scope, urgency
    state = fresh(v1)
    for a in range(4):  # v1: the focus bit (actions a and a + 4) changes nothing
        np.testing.assert_array_equal(boosts(state.replace(directive=soc.hmarl_directive(a)), v1),
                                      boosts(state.replace(directive=soc.hmarl_directive(a + 4)), v1))
    env = soc.SOCEnv(fixed)
    assert env.action_space("coordinator") == soc.Discrete(15)  # 5 focus segments x 3 postures
    # directive 3 * 3 + 1: focus segment 3, posture "hunt" (0.2 everywhere, + focus_hunt 0.2 on 3)
    state = defenders.update_directive(fresh(fixed), jnp.int32(3 * 3 + 1), fixed)
    np.testing.assert_allclose(boosts(state, fixed)[0], [0.2, 0.2, 0.2, 0.4, 0.2], rtol=1e-6)
    # and every role sees it: one-hot focus (5) + one-hot posture (3) appended
    size = lambda p, agent: soc.SOCEnv(p).observation_space(agent).shape[0]
    assert {a: size(fixed, a) - size(v1, a) for a in env.agents} == dict.fromkeys(env.agents, 8)


@behaviour_of("fix_d7_response_actions")
def d7_every_action_dimension_is_used():
    v1, fixed = alone("fix_d7_response_actions", blind_isolation_rate=1.0)
    dims = lambda p: (defenders.action_dims(p)["threat_hunter"], defenders.action_dims(p)["response_orchestrator"])
    assert dims(v1) == (16, 12) and dims(fixed) == (10, 15)
    # A clean DMZ host isolated by mistake; isolation at intensity 1 (> 0.9) on the DMZ isolates
    # every clean host there (rate 1 here).
    wrong = host_mask(v1, (0, 5))
    hosts = with_hosts(fresh(v1), isolated=wrong).hosts
    none = defenders.Boosts(*(jnp.zeros((5,)),) * 3)
    respond = lambda ro, p: defenders.respond(Draws(jax.random.key(0), p.rng_impl), hosts, ro, none, p)
    ro = jnp.full((12,), -1.0).at[0].set(1.0)
    after, res = respond(ro, v1)
    assert int(res.blind[0].sum()) == 40  # v1 isolates (and charges for) the isolated host again
    inert, _ = respond(ro.at[10:].set(1.0), v1)  # v1's dims 10, 11 do nothing
    chex.assert_trees_all_equal(after, inert)
    ro7 = jnp.full((15,), -1.0).at[0].set(1.0)
    after, res = respond(ro7, fixed)
    assert int(res.blind[0].sum()) == 39 and bool(after.isolated[0].all())  # never twice
    after, res = respond(jnp.full((15,), -1.0).at[10].set(1.0), fixed)  # release on the DMZ
    assert bool(res.released[0, 5]) and not bool(after.isolated.any())


@behaviour_of("fix_d3_foothold")
def d3_foothold_is_the_compromised_hosts():
    v1, fixed = alone("fix_d3_foothold", p_lateral=1.0, p_initial_access=1.0)
    ones = np.ones((5, 40), np.float32)  # vulnerability 1: every attempt succeeds
    # A DMZ host the defenders remediated: clean, but still on v1's append-only list.
    stale = host_mask(v1, (0, 0))
    state = in_phase(with_hosts(fresh(v1), vuln=ones, listed=stale.astype(np.int32)), 3)
    (after,), _ = play(v1, state, 1)
    # v1: it is a lateral-movement source; DMZ -> Corporate and DMZ -> Development each take a host
    assert np.asarray(after.hosts.compromised).sum(axis=1).tolist() == [0, 1, 1, 0, 0]
    assert int(after.hosts.listed[0, 0]) == 1
    (after,), _ = play(fixed, state, 1)
    assert not bool(after.hosts.compromised.any())  # no compromised host, no foothold
    # Initial access on a target that is already compromised at stage 2.
    owned = host_mask(v1, (0, 1))
    state = in_phase(with_hosts(fresh(v1), vuln=ones, target=owned, compromised=owned,
                                stage=np.where(owned, 2, 0), listed=owned.astype(np.int32)), 1)
    (after,), _ = play(v1, state, 1)
    assert int(after.hosts.stage[0, 1]) == 1 and int(after.hosts.listed[0, 1]) == 2  # re-compromised, listed twice
    (after,), _ = play(fixed, state, 1)
    assert int(after.hosts.stage[0, 1]) == 2 and int(after.hosts.listed[0, 1]) == 1


@behaviour_of("fix_d4_dead_ends")
def d4_attacker_leaves_dead_ends():
    v1, fixed = alone("fix_d4_dead_ends", p_lateral=0.0, reentry_cooldown=4)
    # Execution with nothing left to execute: the only compromised host is already at stage 2.
    owned = host_mask(v1, (0, 0))
    state = in_phase(with_hosts(fresh(v1), compromised=owned, stage=np.where(owned, 2, 0),
                                listed=owned.astype(np.int32)), 2)
    phases = lambda states: [int(s.attacker.phase) for s in states]
    assert phases(play(v1, state, 5)[0]) == [2, 2, 2, 2, 2]  # v1: no success, no transition, ever
    assert phases(play(fixed, state, 5)[0]) == [2, 2, 3, 3, 3]  # work done: advances after 3 steps
    # Initial access with every target isolated and no foothold: v1 waits in phase 1 for ever; the
    # fixed attacker is evicted, waits `reentry_cooldown` steps, then runs recon's 3 steps again.
    targets = host_mask(v1, (0, 1), (0, 2))
    state = in_phase(with_hosts(fresh(v1), target=targets, isolated=targets), 1)
    assert phases(play(v1, state, 8)[0]) == [1] * 8
    states, _ = play(fixed, state, 8)
    assert phases(states) == [0, 0, 0, 0, 0, 0, 0, 1]
    assert [int(s.attacker.cooldown) for s in states] == [4, 3, 2, 1, 0, 0, 0, 0]
    assert not bool((np.asarray(states[-1].hosts.target) & targets).any())  # new, reachable targets


@behaviour_of("fix_d5_containment")
def d5_remediating_the_last_host_contains():
    v1, fixed = alone("fix_d5_containment", blind_isolation_rate=0.0)
    # The attack's only compromised host, detected; the responder isolates and remediates it at
    # intensity 1 (certain) in this step.
    owned = host_mask(v1, (1, 0))
    state = with_hosts(fresh(v1), compromised=owned, detected=owned, stage=np.where(owned, 2, 0))
    state = state.replace(attacker=state.attacker.replace(begun=jnp.bool_(True)))
    ro = jnp.full((12,), -1.0).at[1].set(1.0).at[6].set(1.0)
    (after,), infos = play(v1, state, 1, response=ro)
    assert not bool(after.hosts.compromised.any())  # remediated
    # v1: nothing left compromised, so no containment; the isolation's credit 1/max(1, 1 - 0) only
    assert not bool(after.counters.contained) and not bool(infos["terminated"])
    np.testing.assert_allclose(float(infos["reward_terms"]["response"]), 1.0, rtol=1e-6)
    (after,), infos = play(fixed, state, 1, response=ro)
    assert not bool(after.hosts.compromised.any())
    assert bool(after.counters.contained) and int(after.counters.containment_time) == 1
    assert bool(infos["terminated"])
    np.testing.assert_allclose(float(infos["reward_terms"]["response"]), 1.0 + 5.0, rtol=1e-6)  # + bonus


@behaviour_of("fix_d26_detection_stage")
def d26_detection_pays_the_stage_at_detection():
    v1, fixed = alone("fix_d26_detection_stage", blind_isolation_rate=0.0)
    # One compromised, undetected Corporate host at stage 3. The hunter hunts Corporate at
    # intensity and scope 1, so a step detects it w.p. 1 x 1 x (1 - 0.5 x 0.7) x 3/5 = 0.39,
    # worth 3/5 = 0.6 of R_det. The responder isolates it for sure (intensity 1) and, with `cure`,
    # remediates it for sure (stage back to 0) in the same step.
    owned = host_mask(v1, (1, 0))
    state = with_hosts(fresh(v1), compromised=owned, stage=np.where(owned, 3, 0))
    hunt = jnp.full((16,), -1.0).at[1].set(1.0).at[6].set(1.0)
    isolate = jnp.full((12,), -1.0).at[1].set(1.0)
    cure = isolate.at[6].set(1.0)
    # v1 reads the stage after the response: a host cured in its detection step earns 0.
    for params, response, paid in ((v1, cure, 0.0), (fixed, cure, 0.6), (v1, isolate, 0.6), (fixed, isolate, 0.6)):
        env, step = stepper(tuple((name, getattr(params, name)) for name in SWITCHES))
        acts = {**env.idle_actions(params), "threat_hunter": hunt, "response_orchestrator": response}
        steps = [step(jax.random.key(k), state, acts, params) for k in range(12)]  # detected by some keys
        detected = np.array([int(s.counters.true_positives) == 1 for _, s, *_ in steps])
        assert 0 < detected.sum() < 12
        still = np.array([bool(s.hosts.compromised[1, 0]) for _, s, *_ in steps])
        np.testing.assert_array_equal(still, (response is isolate) | ~detected)
        detect = np.array([float(infos["reward_terms"]["detect"]) for *_, infos in steps])
        np.testing.assert_allclose(detect, np.where(detected, paid, 0.0), rtol=1e-6, atol=0)
