"""The learnable red agent (`red_control`, docs/redblue.md): phase-rule masks on hand-built
states, the controlled moves, what red observes, zero-sum rewards, and that the switch changes
nothing when red advances every step (the scripted campaign's move)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc.env import attacker, observe
from jaxsoc.env.attacker import RED_ADVANCE, RED_MOVE, RED_QUIET, red_exploit
from jaxsoc.env.rng import Draws

from .helpers import host_mask, with_hosts
from tests.fast import fast_jit

ENV, RB = soc.make("soc-v2-redblue")
S = RB.num_segments  # soc-v2: DMZ(0) -> Corporate(1), Development(2); 1 -> 0, 2, 3; ...
R = RB.recon_targets  # one "exploit:k" action per rank
NO_EXPLOIT = [False] * R


_fresh = jax.jit(soc.initial_state, static_argnums=1)


def fresh(params):
    """A freshly reset state (jitted: the eager reset costs more than its compilation)."""
    return _fresh(jax.random.key(0), params)


_mask = jax.jit(lambda st: attacker.red_avail_actions(st.hosts, st.attacker, RB))


def mask(state):
    return np.asarray(_mask(state))


def at_phase(state, phase, cooldown=0):
    return state.replace(attacker=state.attacker.replace(phase=jnp.int32(phase), cooldown=jnp.int32(cooldown)))


def test_preset_and_spaces():
    assert ENV.agents[-1] == "red" and ENV.action_space("red").n == RED_MOVE + S + R == red_exploit(RB, R)
    assert attacker.red_action_names(RB)[RED_MOVE + 1] == "move:Corporate"
    assert attacker.red_action_names(RB)[red_exploit(RB, 2)] == "exploit:2"
    assert ENV.observation_space("red").shape == (5 * S + 10 + R,)
    assert not any(soc.build_params(n).red_control for n in soc.preset_names() if n != "soc-v2-redblue")
    with pytest.raises(ValueError, match="red_control"):
        soc.build_params("hmarl-soc-v1", red_control=True)
    with pytest.raises(ValueError, match="red_control"):
        soc.build_params("soc-strategic", red_control=True)
    with pytest.raises(ValueError, match="red_quiet_noise"):
        soc.build_params("soc-v2-redblue", red_quiet_noise=1.5)
    from jaxsoc.algos.common import role_specs
    with pytest.raises(ValueError, match="red-ppo"):
        role_specs(ENV)


def test_masks_follow_the_phase_rules():
    st = fresh(RB)
    quiet_advance = [True, True]
    # Recon, initial access (no target left), execution, exfiltration: no lateral choice.
    for phase in (0, 1, 2, 4):
        foot = host_mask(RB, (0, 0))
        m = mask(at_phase(with_hosts(st, compromised=foot, ever_compromised=foot), phase))
        np.testing.assert_array_equal(m, quiet_advance + [False] * S + NO_EXPLOIT)
        # No foothold to hide in: red must advance (unless red_quiet_anywhere).
        np.testing.assert_array_equal(mask(at_phase(st, phase)), [False, True] + [False] * S + NO_EXPLOIT)
    anywhere = jax.jit(lambda s: attacker.red_avail_actions(s.hosts, s.attacker, RB.replace(red_quiet_anywhere=True)))
    np.testing.assert_array_equal(anywhere(st), [True, True] + [False] * S + NO_EXPLOIT)
    # Re-entry cool-down: only quiet.
    np.testing.assert_array_equal(mask(at_phase(st, 0, cooldown=3)), [True, False] + [False] * S + NO_EXPLOIT)
    # Lateral movement from a DMZ foothold: the DMZ's out-edges (Corporate, Development).
    foot = host_mask(RB, (0, 0))
    s3 = at_phase(with_hosts(st, compromised=foot, ever_compromised=foot), 3)
    np.testing.assert_array_equal(mask(s3), quiet_advance + [False, True, True, False, False] + NO_EXPLOIT)
    # ... and from Corporate too: the DMZ itself still has clean hosts, DataCenter joins.
    foot2 = host_mask(RB, (0, 0), (1, 0))
    m = mask(at_phase(with_hosts(st, compromised=foot2, ever_compromised=foot2), 3))
    np.testing.assert_array_equal(m, quiet_advance + [True, True, True, True, False] + NO_EXPLOIT)
    # A segment with no clean, connected host left is not a destination.
    iso = np.zeros_like(foot)
    iso[2, : RB.hosts_per_segment[2]] = True
    m = mask(at_phase(with_hosts(st, compromised=foot, ever_compromised=foot, isolated=iso), 3))
    np.testing.assert_array_equal(m, quiet_advance + [False, True, False, False, False] + NO_EXPLOIT)
    # An isolated foothold is no source, and no place to hide.
    m = mask(at_phase(with_hosts(st, compromised=foot, ever_compromised=foot, isolated=foot), 3))
    np.testing.assert_array_equal(m, [False, True] + [False] * S + NO_EXPLOIT)
    # Initial access: an exploit per open target (not taken, not isolated), in rank order.
    targets = host_mask(RB, (0, 1), (0, 2), (0, 4), (0, 5))
    s1 = at_phase(with_hosts(st, compromised=foot, ever_compromised=foot, target=targets | foot,
                             isolated=host_mask(RB, (0, 5))), 1)
    np.testing.assert_array_equal(mask(s1), quiet_advance + [False] * S + [True] * 3 + [False] * (R - 3))
    for phase in (0, 2, 3, 4):  # the same open targets offer no exploit outside initial access
        assert not mask(at_phase(s1, phase))[RED_MOVE + S:].any()
    np.testing.assert_array_equal(mask(s1.replace(attacker=s1.attacker.replace(cooldown=jnp.int32(2)))),
                                  [True, False] + [False] * S + NO_EXPLOIT)
    # The env's masks carry red's and leave the defenders' all True.
    env_masks = jax.jit(ENV.get_avail_actions)(s3)
    np.testing.assert_array_equal(env_masks["red"], mask(s3))
    assert bool(jnp.all(env_masks["alert_triage"]))


@functools.lru_cache(maxsize=None)
def red_stepper(params):
    """`(key, state, red action or None) -> (state, events)`: one attacker move."""
    def f(key, state, action):
        hosts, att, ev = attacker.step(Draws(key, params.rng_impl), state.hosts, state.attacker,
                                       params, state.t + 1, red=action)
        return state.replace(t=state.t + 1, hosts=hosts, attacker=att), ev
    return fast_jit(f)


def test_controlled_moves():
    p = RB.replace(p_lateral=1.0, p_initial_access=1.0)
    step = red_stepper(p)
    st = fresh(p)
    st = with_hosts(st, vuln=np.ones(st.hosts.vuln.shape, np.float32))
    foot = host_mask(p, (0, 0))
    s3 = at_phase(with_hosts(st, compromised=foot, ever_compromised=foot, stage=foot * 2), 3)
    # Move into Development only: every new host is there; advance spreads to both neighbours.
    moved, _ = step(jax.random.key(0), s3, jnp.int32(RED_MOVE + 2))
    new = np.asarray(moved.hosts.compromised & ~s3.hosts.compromised)
    assert new[2].sum() == 1 and new.sum() == 1
    adv, _ = step(jax.random.key(0), s3, jnp.int32(RED_ADVANCE))
    new = np.asarray(adv.hosts.compromised & ~s3.hosts.compromised)
    assert new[1].sum() == 1 and new[2].sum() == 1
    # Quiet in initial access: nothing is tried, the phase clock runs, the hosts are stealthier.
    targets = host_mask(p, (0, 1), (0, 2))
    s1 = at_phase(with_hosts(st, target=targets), 1)
    q, ev = step(jax.random.key(0), s1, jnp.int32(RED_QUIET))
    assert not bool(jnp.any(q.hosts.compromised)) and int(q.attacker.steps_in_phase) == 1
    quiet_stealth = 1.0 - (1.0 - RB.stealth) * RB.red_quiet_noise
    np.testing.assert_allclose(np.asarray(ev.host_stealth), quiet_stealth, rtol=1e-6)
    a, ev = step(jax.random.key(0), s1, jnp.int32(RED_ADVANCE))
    assert np.asarray(a.hosts.compromised).sum() == 2
    np.testing.assert_allclose(np.asarray(ev.host_stealth), RB.stealth, rtol=1e-6)
    # Exploit k tries only the k-th most vulnerable open target (ties: the lower host id); a
    # taken target drops out of the ranking. Vulnerabilities: DMZ host 3 1.0, hosts 1 and 2 0.99999
    # (a tie, and a sure hit at p_initial_access 1 for these keys).
    vuln = np.full(st.hosts.vuln.shape, 0.99999, np.float32)
    vuln[0, 3] = 1.0
    three = with_hosts(st, target=host_mask(p, (0, 1), (0, 2), (0, 3)), vuln=vuln)
    for k, host in ((0, 3), (1, 1), (2, 2)):
        got, _ = step(jax.random.key(1), at_phase(three, 1), jnp.int32(red_exploit(p, k)))
        np.testing.assert_array_equal(got.hosts.compromised, host_mask(p, (0, host)))
    taken = with_hosts(three, compromised=host_mask(p, (0, 3)), ever_compromised=host_mask(p, (0, 3)))
    got, _ = step(jax.random.key(1), at_phase(taken, 1), jnp.int32(red_exploit(p, 0)))
    np.testing.assert_array_equal(got.hosts.compromised, host_mask(p, (0, 3), (0, 1)))
    # The exploit's draw is the script's: with p_initial_access 0.5, exploit:0 hits exactly when
    # advance hits that host, key by key.
    half = p.replace(p_initial_access=0.5)
    step_half = red_stepper(half)
    for i in range(8):
        e, _ = step_half(jax.random.key(i), at_phase(three, 1), jnp.int32(red_exploit(half, 0)))
        a, _ = step_half(jax.random.key(i), at_phase(three, 1), jnp.int32(RED_ADVANCE))
        assert bool(e.hosts.compromised[0, 3]) == bool(a.hosts.compromised[0, 3])
        assert int(np.asarray(e.hosts.compromised).sum()) == int(e.hosts.compromised[0, 3])
    # A move or an exploit outside its phase does no attack work (masked; as quiet).
    got, _ = step(jax.random.key(0), at_phase(three, 1), jnp.int32(RED_MOVE + 2))
    assert not bool(jnp.any(got.hosts.compromised)) and int(got.attacker.steps_in_phase) == 1
    got, _ = step(jax.random.key(0), s3, jnp.int32(red_exploit(p, 0)))
    assert not bool(jnp.any(got.hosts.compromised & ~s3.hosts.compromised))
    # Quiet in execution with nothing left to execute still advances after the minimum duration
    # (the D4 rule), as the scripted attacker would.
    s2 = at_phase(with_hosts(st, compromised=foot, ever_compromised=foot, stage=foot * 2), 2)
    s2 = s2.replace(attacker=s2.attacker.replace(steps_in_phase=jnp.int32(RB.phase_min_steps - 1)))
    q, _ = step(jax.random.key(0), s2, jnp.int32(RED_QUIET))
    assert int(q.attacker.phase) == 3


def test_red_observes_only_what_an_intruder_knows():
    obs_fn = jax.jit(lambda s: ENV.get_obs(s, RB)["red"])
    st = fresh(RB)
    foot = host_mask(RB, (0, 0), (0, 3))
    st = at_phase(with_hosts(st, compromised=foot, ever_compromised=foot, stage=foot * 2), 3)
    base = np.asarray(obs_fn(st))
    # Blue-only facts: detections, the alert queue, the directive, counters, observation noise.
    blue = with_hosts(st, detected=foot, detect_time=foot * 3)
    blue = blue.replace(queue=jnp.ones_like(st.queue), focus=jnp.int32(2), posture=jnp.int32(1),
                        directive=jnp.ones_like(st.directive), obs_seed=st.obs_seed + 7,
                        counters=st.counters.replace(detection_time=jnp.int32(5)))
    np.testing.assert_array_equal(np.asarray(obs_fn(blue)), base)
    # A foothold cut off by isolation is seen (lost, not a foothold any more).
    iso = host_mask(RB, (0, 0))
    after = np.asarray(obs_fn(with_hosts(st, isolated=iso)))
    names = [f"{n}.{k}" for n in RB.segment_names for k in observe.RED_SEGMENT_FEATURES]
    i_foot, i_lost = names.index("DMZ.foothold"), names.index("DMZ.lost")
    assert after[i_foot] < base[i_foot] and after[i_lost] > base[i_lost] == 0.0
    # The last R entries: the open recon targets' vulnerabilities by rank (what exploit:k tries).
    vuln = np.asarray(st.hosts.vuln).copy()
    vuln[0, 1], vuln[0, 2] = 0.3, 0.8
    s1 = at_phase(with_hosts(st, target=host_mask(RB, (0, 1), (0, 2), (0, 3)), vuln=vuln), 1)
    np.testing.assert_allclose(np.asarray(obs_fn(s1))[-R:], [0.8, 0.3] + [0.0] * (R - 2))


def test_advance_is_the_scripted_move():
    """In every phase, red's advance moves the campaign exactly as the script does (same draws)."""
    v2 = RB.replace(red_control=False)
    scripted, controlled = red_stepper(v2), red_stepper(RB)
    st = fresh(RB)
    foot = host_mask(RB, (0, 0), (1, 2), (3, 1))
    stage = foot * np.asarray([[2], [1], [3], [3], [0]])
    states = [at_phase(st, 0)] + [
        at_phase(with_hosts(st, compromised=foot, ever_compromised=foot, stage=stage,
                            target=host_mask(RB, (0, 1), (0, 2))), ph) for ph in (1, 2, 3, 4)]
    for i, s0 in enumerate(states):
        for k in range(3):
            a, ev_a = scripted(jax.random.key(10 * i + k), s0, None)
            b, ev_b = controlled(jax.random.key(10 * i + k), s0, jnp.int32(RED_ADVANCE))
            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
                np.testing.assert_array_equal(x, y)
            assert ev_b.host_stealth is not None and ev_a.host_stealth is None


@pytest.mark.slow
def test_zero_sum_and_advance_is_the_scripted_campaign():
    """soc-v2-redblue with red advancing every step (or absent) replays soc-v2 exactly, and red's
    reward is minus the team's, step by step."""
    # A small network and unoptimised programs keep the two compilations cheap. Unoptimised
    # programs of different structure may round a probability 1 ulp apart (tests/fast.py), so the
    # rewards are compared within a tolerance; the hosts, phases and ends of episodes exactly (a
    # draw would have to fall within that ulp to differ: with these fixed keys, none does).
    env2, v2 = soc.make("soc-v2", hosts_per_segment=8)
    env_rb, rb = soc.make("soc-v2-redblue", hosts_per_segment=8)
    n, steps = 16, 60

    def run(env, p, red):
        def body(carry, k):
            obs, st = carry
            ka, ks = jax.random.split(k)
            acts = jax.vmap(soc.POLICIES["rule-soar"], in_axes=(0, 0, 0, None))(jax.random.split(ka, n), obs, st, p)
            if red is not None:
                acts["red"] = jnp.full((n,), red, jnp.int32)
            obs, st, r, d, i = jax.vmap(env.step, in_axes=(0, 0, 0, None))(jax.random.split(ks, n), st, acts, p)
            return (obs, st), (st.hosts.compromised, st.attacker.phase, r, d["__all__"])

        obs, st = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(3), n), p)
        return jax.lax.scan(body, (obs, st), jax.random.split(jax.random.key(4), steps))[1]

    run = fast_jit(run, static_argnums=(0, 2))
    ref = run(env2, v2, None)
    got = run(env_rb, rb, RED_ADVANCE)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[3], ref[3])
    np.testing.assert_allclose(got[2]["coordinator"], ref[2]["coordinator"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got[2]["red"], -got[2]["coordinator"])
    assert int(np.asarray(ref[1]).max()) >= 3  # the campaign got somewhere


def test_step_rewards_are_zero_sum_and_red_defaults_to_advance():
    """One env step on a small network: red's reward is minus the team's; leaving red out of the
    actions is the advance (so scripted SOC policies run on the preset unchanged)."""
    env, p = soc.make("soc-v2-redblue", hosts_per_segment=8)
    obs, st = env.reset(jax.random.key(5), p)
    foot = host_mask(p, (0, 0))
    # A detected foothold: rule-soar isolates it, so the step has a reward to negate.
    st = at_phase(with_hosts(st, compromised=foot, ever_compromised=foot, stage=foot * 2, detected=foot,
                             detect_time=foot), 3).replace(t=jnp.int32(2))
    acts = soc.POLICIES["rule-soar"](jax.random.key(6), obs, st, p)
    one = fast_jit(lambda a: env.step_env(jax.random.key(7), st, a, p))
    _, s_none, r, d, _ = one(acts)
    _, s_adv, _, _, _ = one({**acts, "red": jnp.int32(RED_ADVANCE)})
    for x, y in zip(jax.tree.leaves(s_none), jax.tree.leaves(s_adv)):
        np.testing.assert_array_equal(x, y)
    assert set(r) == set(env.agents) and "red" in d
    assert float(r["red"]) == -float(r["coordinator"]) and float(r["coordinator"]) != 0.0
