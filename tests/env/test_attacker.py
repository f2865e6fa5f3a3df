"""The ATT&CK attacker (docs/reference.md §1.3) and its D3/D4 fixes, on hand-built states."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc.env import attacker
from jaxsoc.env.rng import Draws

from .helpers import fresh, host_mask, with_hosts
from tests.fast import fast_jit  # programs run briefly: unoptimised (tests/fast.py)


@functools.lru_cache(maxsize=None)
def stepper(params):
    def f(key, state):
        hosts, att, ev = attacker.step(Draws(key, params.rng_impl), state.hosts, state.attacker,
                                       params, state.t + 1)
        return state.replace(t=state.t + 1, hosts=hosts, attacker=att), ev
    return fast_jit(f)


def run(params, state, n, key=0):
    step = stepper(params)
    evs = []
    for i in range(n):
        state, ev = step(jax.random.key(1000 * key + i), state)
        evs.append(ev)
    return state, evs


def with_phase(state, phase, steps=0):
    return state.replace(attacker=state.attacker.replace(phase=jnp.int32(phase), steps_in_phase=jnp.int32(steps)))


V1 = soc.make("hmarl-soc-v1")[1]


def test_noise_levels_per_phase():
    got = [float(attacker.noise_level(jnp.int32(ph), V1)) for ph in range(5)]
    np.testing.assert_allclose(got, [0.03, 0.09, 0.15, 0.12, 0.18], rtol=1e-6)


def test_recon_lasts_three_steps_and_targets_top5_dmz():
    state = fresh(V1)
    vuln = np.full((5, 40), 0.1, np.float32)
    vuln[0, [3, 7, 11, 19, 30, 31]] = [0.9, 0.8, 0.7, 0.6, 0.5, 0.55]
    iso = host_mask(V1, (0, 3))  # an isolated host is no candidate
    state = with_hosts(state, vuln=vuln, isolated=iso)
    state, _ = run(V1, state, 2)
    assert int(state.attacker.phase) == 0 and int(state.attacker.steps_in_phase) == 2
    state, _ = run(V1, state, 1)
    assert int(state.attacker.phase) == 1 and int(state.attacker.steps_in_phase) == 0
    targets = set(zip(*np.nonzero(np.asarray(state.hosts.target))))
    assert targets == {(0, 7), (0, 11), (0, 19), (0, 30), (0, 31)}


def test_recon_fails_without_candidates():
    state = with_hosts(fresh(V1), isolated=np.ones((5, 40), bool))
    state, _ = run(V1, state, 6)
    assert int(state.attacker.phase) == 0


def test_initial_access_needs_success_on_the_third_step():
    p = V1.replace(p_initial_access=1.0)
    targets = host_mask(p, (0, 1), (0, 2))
    state = with_phase(with_hosts(fresh(p), vuln=np.ones((5, 40)), target=targets), 1)
    state, _ = run(p, state, 2)
    assert int(state.attacker.phase) == 1  # minimum duration 3
    assert set(zip(*np.nonzero(np.asarray(state.hosts.compromised)))) == {(0, 1), (0, 2)}
    assert int(state.hosts.listed[0, 1]) == 2  # v1 re-compromises and re-lists (D3)
    state, _ = run(p, state, 1)
    assert int(state.attacker.phase) == 2
    # never succeeding: stuck in P1 forever (v1)
    q = V1.replace(p_initial_access=0.0)
    state = with_phase(with_hosts(fresh(q), target=targets), 1)
    state, _ = run(q, state, 8)
    assert int(state.attacker.phase) == 1 and not bool(state.hosts.compromised.any())


def test_initial_access_probability_is_half_the_vulnerability():
    targets = host_mask(V1, *[(0, j) for j in range(5)])
    vuln = np.zeros((5, 40), np.float32)
    vuln[0, :5] = [0.2, 0.4, 0.6, 0.8, 1.0]
    state = with_phase(with_hosts(fresh(V1), vuln=vuln, target=targets), 1)
    step = stepper(V1)
    n = 4000
    states = jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + x.shape), state)
    out, _ = jax.vmap(step)(jax.random.split(jax.random.key(3), n), states)
    rate = np.asarray(out.hosts.compromised[:, 0, :5]).mean(0)
    np.testing.assert_allclose(rate, 0.5 * vuln[0, :5], atol=4 * np.sqrt(0.25 / n))


def test_execution_v1_stalls_v2_advances():
    listed = host_mask(V1, (0, 1))
    comp = listed.copy()
    stage = np.where(listed, 2, 0)  # already executed
    base = with_hosts(fresh(V1), compromised=comp, listed=listed.astype(np.int32), stage=stage)
    state, _ = run(V1, with_phase(base, 2), 10)
    assert int(state.attacker.phase) == 2  # D4: no eligible host, no success, no transition
    p = V1.replace(fix_d4_dead_ends=True)
    state, _ = run(p, with_phase(base, 2), 3)
    assert int(state.attacker.phase) == 3  # work done: advances after the minimum duration


def test_execution_v1_acts_on_remediated_list_entries():
    listed = host_mask(V1, (0, 4))  # on the list but clean (remediated)
    p = V1.replace(p_execution=1.0)
    base = with_phase(with_hosts(fresh(p), listed=listed.astype(np.int32)), 2)
    state, _ = run(p, base, 1)
    assert int(state.hosts.stage[0, 4]) == 2 and not bool(state.hosts.compromised[0, 4])
    q = p.replace(fix_d3_foothold=True)
    state, _ = run(q, base, 1)
    assert int(state.hosts.stage[0, 4]) == 0


def test_execution_multiplicity_v1():
    """A host listed c times gets c chances: P(stage 2) = 1 - 0.4^c."""
    listed = np.zeros((5, 40), np.int32)
    listed[0, 0], listed[0, 1] = 1, 3
    comp = listed > 0
    state = with_phase(with_hosts(fresh(V1), listed=listed, compromised=comp, stage=np.where(comp, 1, 0)), 2)
    n = 4000
    states = jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + x.shape), state)
    out, _ = jax.vmap(stepper(V1))(jax.random.split(jax.random.key(4), n), states)
    rate = (np.asarray(out.hosts.stage[:, 0, :2]) == 2).mean(0)
    np.testing.assert_allclose(rate, [0.6, 1 - 0.4 ** 3], atol=4 * np.sqrt(0.25 / n))


def test_lateral_movement_follows_adjacency():
    p = V1.replace(p_lateral=1.0)
    comp = host_mask(p, (0, 0))
    base = with_phase(with_hosts(fresh(p), vuln=np.ones((5, 40)), compromised=comp,
                                 listed=comp.astype(np.int32), stage=np.where(comp, 2, 0)), 3)
    state, _ = run(p, base, 1)
    new = np.asarray(state.hosts.compromised) & ~comp
    assert new.sum(axis=1).tolist() == [0, 1, 1, 0, 0]  # DMZ -> Corporate, Development
    assert set(np.asarray(state.hosts.stage)[new].tolist()) == {3}
    state, _ = run(p, state, 1)  # now 0, 1, 2 are sources: every edge fires once
    per_seg = np.asarray(state.hosts.compromised).sum(axis=1)
    # seg0 from 1; seg1 from 0,2; seg2 from 0,1; seg3 from 1,2; seg4 from 2
    assert per_seg.tolist() == [2, 3, 3, 2, 1]


def test_lateral_pick_is_uniform_over_candidates():
    p = V1.replace(p_lateral=1.0)
    comp = host_mask(p, (0, 0))
    iso = np.zeros((5, 40), bool)
    iso[1, 10:] = True  # only hosts 0..9 of seg 1 are candidates
    base = with_phase(with_hosts(fresh(p), vuln=np.ones((5, 40)), compromised=comp, isolated=iso,
                                 listed=comp.astype(np.int32), stage=np.where(comp, 2, 0)), 3)
    n = 5000
    states = jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + x.shape), base)
    out, _ = jax.vmap(stepper(p))(jax.random.split(jax.random.key(5), n), states)
    picks = np.asarray(out.hosts.compromised[:, 1, :])
    assert picks[:, 10:].sum() == 0 and (picks.sum(1) == 1).all()
    counts = picks.sum(0)[:10]
    chi2 = ((counts - n / 10) ** 2 / (n / 10)).sum()
    assert chi2 < 27.9  # chi-square, 9 dof, p = 0.001


def test_exfiltration_and_v1_stall_v2_fallback():
    p = V1.replace(p_exfiltration=1.0)
    comp = host_mask(p, (3, 0))
    base = with_phase(with_hosts(fresh(p), compromised=comp, listed=comp.astype(np.int32),
                                 stage=np.where(comp, 3, 0)), 4)
    state, _ = run(p, base, 1)
    assert bool(state.attacker.exfiltrated) and int(state.hosts.stage[3, 0]) == 4
    # no high-value foothold: v1 stalls in P4, v2 goes back to lateral movement
    low = host_mask(p, (1, 0))
    base = with_phase(with_hosts(fresh(p), compromised=low, listed=low.astype(np.int32),
                                 stage=np.where(low, 3, 0)), 4)
    state, _ = run(p, base, 5)
    assert int(state.attacker.phase) == 4 and not bool(state.attacker.exfiltrated)
    q = p.replace(fix_d4_dead_ends=True, fix_d3_foothold=True)
    state, _ = run(q, base, 1)
    assert int(state.attacker.phase) == 3


def test_v2_lateral_needs_high_value_foothold_to_advance():
    p = V1.replace(fix_d4_dead_ends=True, fix_d3_foothold=True, p_lateral=0.0)
    comp = host_mask(p, (0, 0))
    base = with_phase(with_hosts(fresh(p), compromised=comp, stage=np.where(comp, 2, 0)), 3)
    state, _ = run(p, base, 6)
    assert int(state.attacker.phase) == 3
    hv = host_mask(p, (0, 0), (4, 1))
    base = with_phase(with_hosts(fresh(p), compromised=hv, stage=np.where(hv, 3, 0)), 3)
    state, _ = run(p, base, 3)
    assert int(state.attacker.phase) == 4


def test_v2_eviction_and_reentry_after_cooldown():
    p = V1.replace(fix_d4_dead_ends=True, fix_d3_foothold=True, reentry_cooldown=4)
    # in P1, every target isolated and nothing compromised: evicted, waits, then recons again
    targets = host_mask(p, (0, 1), (0, 2))
    base = with_phase(with_hosts(fresh(p), target=targets, isolated=targets), 1)
    state, _ = run(p, base, 1)
    assert int(state.attacker.phase) == 0 and int(state.attacker.cooldown) == 4
    state, _ = run(p, state, 4)
    assert int(state.attacker.cooldown) == 0 and int(state.attacker.steps_in_phase) == 0
    state, _ = run(p, state, 3)
    assert int(state.attacker.phase) == 1  # recon ran its three steps
    assert bool(state.hosts.target[0].any()) and not bool((np.asarray(state.hosts.target) & targets).any())


@pytest.mark.parametrize("phase", [2, 3, 4])
def test_v2_a_campaign_past_initial_access_with_no_host_is_evicted_though_targets_are_open(phase):
    """Open recon targets are something to try in initial access only: a campaign that lost every
    host in execution, lateral movement or exfiltration waited in lateral movement for good (on
    soc-strategic up to 115 steps), never evicted, because its untaken targets counted."""
    p = V1.replace(fix_d4_dead_ends=True, fix_d3_foothold=True, reentry_cooldown=4)
    targets = host_mask(p, (0, 1), (0, 2))  # open: not taken, not isolated
    state, _ = run(p, with_phase(with_hosts(fresh(p), target=targets), phase), 1)
    assert int(state.attacker.phase) == 0 and int(state.attacker.cooldown) == 4
    # in initial access the same open targets are what it tries: no eviction
    state, _ = run(p, with_phase(with_hosts(fresh(p), target=targets), 1), 1)
    assert int(state.attacker.phase) == 1 and int(state.attacker.cooldown) == 0
