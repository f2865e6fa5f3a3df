"""The CAGE-4-like scenario (jaxsoc/env/cage4, docs/cage4.md): hand-worked red FSM transitions, blue
actions' effects and durations, the reward table per phase, messages, masks, the API contracts
(jit == no-jit, vmap == loop, determinism per key) and IPPO training on it."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsoc.env import cage4
from jaxsoc.env.cage4 import blue, green, observe, red, reward
from jaxsoc.env.cage4 import params as P
from jaxsoc.env.cage4.baselines import BASELINES

ENV, PARAMS = cage4.make()
# One compiled program per piece (op-by-op eager dispatch costs more than compiling these once).
RED_STEP = jax.jit(red.step, static_argnums=2)
GREEN_STEP = jax.jit(green.step, static_argnums=3)
SCHEDULE = jax.jit(blue.schedule, static_argnums=4)
APPLY = jax.jit(blue.apply)
RESET = jax.jit(ENV.reset)
CONTR0 = P.CONTRACTOR * P.SLOTS          # contractor server 0 (always present)
RZA0, OZA0, RZB0, PAZ0 = (s * P.SLOTS for s in (P.RZ_A, P.OZ_A, P.RZ_B, P.PAZ))


def fresh(seed=0):
    """A reset state with red's foothold moved to contractor server 0 and nothing else known."""
    _, s = RESET(jax.random.key(seed))
    return s.replace(red=jnp.zeros_like(s.red).at[CONTR0].set(P.USER))


def pending(s, host, action, left=1, agent=0):
    """Give red agent `agent` a pending `action` on `host` that executes after `left` ticks."""
    return s.replace(red_host=s.red_host.at[agent].set(host), red_action=s.red_action.at[agent].set(action),
                     red_left=s.red_left.at[agent].set(left))


def u_red(det=0.0, trap=0.9, pick=0.0, act=0.0):
    return jnp.tile(jnp.array([[pick, act, det, trap]], jnp.float32), (P.NUM_RED, 1))


# ----------------------------------------------------------------------------- params, spaces, network
def test_make_rejects_bad_names_and_values_before_tracing():
    with pytest.raises(ValueError, match="did you mean 'max_steps'"):
        cage4.make(max_step=10)
    with pytest.raises(ValueError, match="p_phishing"):
        cage4.make(p_phishing=1.5)
    with pytest.raises(ValueError, match="unknown CAGE-4 scenario"):
        cage4.make("cage4")
    assert PARAMS.phase_lengths() == (167, 167, 166)


def test_spaces_have_cage4_layouts():
    assert [ENV.observation_space(a).shape[0] for a in ENV.agents] == [92, 92, 92, 92, 210]
    assert [ENV.action_space(a).n for a in ENV.agents] == [82, 82, 82, 82, 242]
    labels = ENV.action_labels("blue_agent_0")
    assert labels[0] == "Analyse restricted_zone_a/server_0" and labels[63] == "Restore restricted_zone_a/user_9"
    assert labels[64].startswith("AllowTrafficZone restricted_zone_a <- admin") and labels[-2:] == ["Monitor", "Sleep"]
    padded, _ = cage4.make(pad_spaces=True)
    assert {padded.observation_space(a).shape[0] for a in padded.agents} == {210}
    assert {padded.action_space(a).n for a in padded.agents} == {242}


def test_network_drawn_per_reset_within_cage4_ranges():
    _, s = jax.vmap(ENV.reset)(jax.random.split(jax.random.key(0), 256))
    per = np.asarray(s.present).reshape(256, 9, 16)
    servers, users = per[:, :, :6].sum(-1), per[:, :, 6:].sum(-1)
    other = np.arange(9) != P.INTERNET
    assert servers[:, other].min() == 1 and servers[:, other].max() == 6
    assert users[:, other].min() == 3 and users[:, other].max() == 10
    assert per[:, P.INTERNET].sum() == 0
    # Slots are filled from the front: servers 0..S-1, users 6..6+U-1.
    assert np.all(np.diff(per[:, :, :6].astype(int), axis=-1) <= 0) and np.all(np.diff(per[:, :, 6:].astype(int), axis=-1) <= 0)
    assert len({int(x) for x in per.sum((1, 2))}) > 20          # a different network per reset
    foot = np.asarray(s.red) == P.USER
    assert np.all(foot.sum(1) == 1) and np.all(np.nonzero(foot)[1] // 16 == P.CONTRACTOR)
    assert np.all(np.asarray(s.present)[foot])


# ----------------------------------------------------------------------------- red FSM
def test_fsm_choice_follows_the_table_row_and_durations():
    s = fresh()
    # Only the foothold (state U, subnet not swept) is known: row U = DRS .5 / PrivEsc .5.
    s1, _ = RED_STEP(u_red(act=0.3), s, PARAMS)
    assert int(s1.red_action[0]) == P.DRS and int(s1.red_left[0]) == 0          # 1 tick: ran at once
    assert bool(s1.discovered[P.CONTRACTOR])
    s2, _ = RED_STEP(u_red(act=0.7), s, PARAMS)
    assert int(s2.red_action[0]) == P.PRIVESC and int(s2.red_left[0]) == 1 and int(s2.red[CONTR0]) == P.USER
    s3, _ = RED_STEP(u_red(act=0.0), s2, PARAMS)                                  # second tick: root
    assert int(s3.red[CONTR0]) == P.ROOT
    # Row UD (swept) is PrivEsc with certainty.
    s4, _ = RED_STEP(u_red(act=0.1), s.replace(discovered=s.discovered.at[P.CONTRACTOR].set(True)), PARAMS)
    assert int(s4.red_action[0]) == P.PRIVESC
    # Agents with no session and no hosts stay idle.
    assert np.all(np.asarray(s1.red_left[1:]) == 0) and np.all(np.asarray(s1.red_action[1:]) == 0)


def test_discover_remote_systems_makes_the_subnet_known():
    s = pending(fresh(), CONTR0, P.DRS)
    s1, ev = RED_STEP(u_red(), s, PARAMS)
    contractor = np.arange(P.NUM_HOSTS) // 16 == P.CONTRACTOR
    known = np.asarray(s1.red) >= P.KNOWN
    assert np.array_equal(known, contractor & np.asarray(s.present))
    assert bool(s1.discovered[P.CONTRACTOR]) and not np.any(np.asarray(ev.net) | np.asarray(ev.proc))


@pytest.mark.parametrize("action, u_det, raised", [(P.AGGRESSIVE, 0.74, True), (P.AGGRESSIVE, 0.76, False),
                                                   (P.STEALTH, 0.24, True), (P.STEALTH, 0.26, False)])
def test_service_discovery_scans_and_is_detected_at_its_rate(action, u_det, raised):
    s = fresh()
    s = pending(s.replace(red=s.red.at[RZA0].set(P.KNOWN)), RZA0, action)
    s1, ev = RED_STEP(u_red(det=u_det), s, PARAMS)
    assert int(s1.red[RZA0]) == P.SCANNED and bool(ev.net[RZA0]) == raised and not bool(ev.proc[RZA0])


def test_exploit_takes_four_ticks_and_is_stopped_by_blocks_and_decoys():
    s = fresh()
    s = pending(s.replace(red=s.red.at[RZA0].set(P.SCANNED)), RZA0, P.EXPLOIT, left=0)
    s = s.replace(red_action=s.red_action.at[0].set(P.EXPLOIT))
    # Chosen now (row S: Exploit is .5 after DRS .25, DiscoverDeception .25) -> 3 more ticks.
    only = s.replace(red=s.red.at[CONTR0].set(P.UNKNOWN))  # the scanned host is agent 0's only one
    x, _ = RED_STEP(u_red(act=0.6), only, PARAMS)
    assert int(x.red_action[0]) == P.EXPLOIT and int(x.red_left[0]) == 3
    for left in (2, 1):
        x, _ = RED_STEP(u_red(), x, PARAMS)
        assert int(x.red_left[0]) == left and int(x.red[RZA0]) == P.SCANNED
    x, ev = RED_STEP(u_red(det=0.5), x, PARAMS)
    assert int(x.red[RZA0]) == P.USER and bool(ev.proc[RZA0]) and float(ev.exploits) == 1
    ready = pending(s, RZA0, P.EXPLOIT)
    _, ev = RED_STEP(u_red(det=0.96), ready, PARAMS)                 # success unseen (p 0.95)
    assert not bool(ev.proc[RZA0])
    blocked = ready.replace(blocked=ready.blocked.at[P.RZ_A, P.CONTRACTOR].set(True))
    x, ev = RED_STEP(u_red(det=0.0), blocked, PARAMS)
    assert int(x.red[RZA0]) == P.SCANNED and not bool(ev.proc[RZA0])
    decoyed = ready.replace(decoy=ready.decoy.at[RZA0].set(True))
    x, ev = RED_STEP(u_red(det=0.99, trap=0.4), decoyed, PARAMS)     # picks the decoy: fails, always seen
    assert int(x.red[RZA0]) == P.SCANNED and bool(ev.proc[RZA0])
    x, _ = RED_STEP(u_red(det=0.99, trap=0.6), decoyed, PARAMS)
    assert int(x.red[RZA0]) == P.USER


def test_privilege_escalation_roots_and_reveals_links_from_server_0():
    s = fresh()
    s1, _ = RED_STEP(u_red(), pending(s, CONTR0, P.PRIVESC), PARAMS)
    assert int(s1.red[CONTR0]) == P.ROOT
    revealed = np.nonzero(np.asarray(s1.red) == P.KNOWN)[0]
    assert set(revealed.tolist()) == {RZA0, RZB0, PAZ0}
    assert np.all(np.asarray(s1.finder)[revealed] == 0)
    # A host red has no session on cannot be escalated.
    s2, _ = RED_STEP(u_red(), pending(s.replace(red=s.red.at[RZA0].set(P.SCANNED)), RZA0, P.PRIVESC), PARAMS)
    assert int(s2.red[RZA0]) == P.SCANNED


def test_impact_and_degrade_need_root_and_impact_needs_a_running_ot_service():
    s = fresh()
    s = s.replace(red=s.red.at[OZA0].set(P.ROOT))
    s1, ev = RED_STEP(u_red(), pending(s, OZA0, P.IMPACT), PARAMS)
    assert not bool(s1.ot_up[OZA0]) and bool(ev.impacts[OZA0]) and float(ev.impact_attempts) == 1
    s2, ev = RED_STEP(u_red(), pending(s1, OZA0, P.IMPACT), PARAMS)   # already stopped
    assert not bool(ev.impacts[OZA0]) and float(ev.impact_attempts) == 1
    s3, _ = RED_STEP(u_red(), pending(s, OZA0, P.DEGRADE), PARAMS)
    assert int(s3.reliability[OZA0]) == 80
    user = s.replace(red=s.red.at[OZA0].set(P.USER))
    s4, ev = RED_STEP(u_red(), pending(user, OZA0, P.IMPACT), PARAMS)
    assert bool(s4.ot_up[OZA0]) and not bool(ev.impacts[OZA0])


def test_a_zone_agent_takes_over_its_zone_once_red_holds_a_session_there():
    s = fresh()
    s = s.replace(red=s.red.at[RZA0].set(P.KNOWN).at[RZA0 + 1].set(P.KNOWN))
    work = np.asarray(red.working(s))
    assert work[0, RZA0] and not work[1].any()                         # found by agent 0, worked by it
    s = s.replace(red=s.red.at[RZA0].set(P.USER))
    work = np.asarray(red.working(s))
    assert work[1, RZA0] and work[1, RZA0 + 1] and not work[0, RZA0]   # RZ-A's agent is active now


# ----------------------------------------------------------------------------- green
def test_green_failures_false_alerts_and_phishing():
    s = fresh()
    h = P.RZ_A * 16 + 6                                                # RZ-A user 0 (always present)
    u = jnp.full((P.NUM_HOSTS, 4), 0.99, jnp.float32)
    local = u.at[h].set(jnp.array([0.1, 0.5, 0.005, 0.005]))           # LocalWork, FP, phished
    s1, ev = GREEN_STEP(local, s.replace(reliability=s.reliability.at[h].set(40)), 0, PARAMS)
    assert bool(ev.local_fail[h]) and bool(ev.proc_fp[h]) and bool(ev.phished[h]) and int(s1.red[h]) == P.USER
    s1, ev = GREEN_STEP(local, s, 0, PARAMS)                           # reliability 100: never fails
    assert not bool(ev.local_fail[h])
    access = u.at[h].set(jnp.array([0.5, 0.0, 0.005, 0.9]))
    _, ev = GREEN_STEP(access, s, 0, PARAMS)
    assert not bool(ev.access_fail[h]) and bool(ev.net_fp[h]) and not bool(ev.proc_fp[h])
    # Block every other subnet into... RZ-A blocking nothing, but everyone blocking RZ-A: all
    # servers outside RZ-A are behind blocks; RZ-A's own servers are not.
    walled = s.replace(blocked=s.blocked.at[:, P.RZ_A].set(True).at[P.RZ_A, P.RZ_A].set(False))
    pf = np.asarray(green.access_fail_prob(walled, 0))
    servers = np.asarray(s.present).reshape(9, 16)[:, :6].sum(1)
    assert pf[P.RZ_A] == pytest.approx(1 - servers[P.RZ_A] / servers.sum()) and pf[P.OZ_A] == 0
    # Mission A: RZ-A may only reach HQ and itself.
    allowed = [P.RZ_A, P.ADMIN, P.OFFICE, P.PAZ]
    pf1 = np.asarray(green.access_fail_prob(walled, 1))
    assert pf1[P.RZ_A] == pytest.approx(1 - servers[P.RZ_A] / servers[allowed].sum())


# ----------------------------------------------------------------------------- blue
def run_blue(s, acts, steps):
    """Feed the same actions `steps` times through schedule + apply; returns states and costs."""
    out = []
    for _ in range(steps):
        b = SCHEDULE(jnp.asarray(acts), s.blue_action, s.blue_left, s.present, PARAMS)
        s, analysed = APPLY(s.replace(blue_action=b.action, blue_left=b.left), b)
        out.append((s, b, analysed))
    return out


def idx(agent, label):
    return ENV.action_labels(ENV.agents[agent]).index(label)


MON = [int(x) for x in blue.MONITOR_ACTION]


@pytest.mark.parametrize("kind, ticks", [("Restore", 5), ("Remove", 3), ("DeployDecoy", 2), ("Analyse", 2)])
def test_each_host_action_takes_effect_after_its_duration(kind, ticks):
    s = fresh()
    s = s.replace(red=s.red.at[RZA0].set(P.USER).at[RZA0 + 1].set(P.ROOT),
                  reliability=s.reliability.at[RZA0].set(40).at[RZA0 + 1].set(40))
    for host, slot in ((RZA0, "server_0"), (RZA0 + 1, "server_1")):
        assert bool(s.present[host]), slot  # seed 0's network holds both RZ-A servers: each case runs
        acts = list(MON)
        acts[0] = idx(0, f"{kind} restricted_zone_a/{slot}")
        steps = run_blue(s, acts, ticks)
        before = steps[-2][0] if ticks > 1 else s
        after, b, analysed = steps[-1]
        assert int(b.kind[0]) == P.BLUE_KINDS.index(kind)
        cost = sum(float(x[1].cost) for x in steps)
        assert cost == (-1.0 if kind == "Restore" else 0.0)            # charged once, when started
        root = host == RZA0 + 1
        # Nothing happens before the last tick.
        assert int(before.red[host]) == int(s.red[host]) and bool(before.decoy[host]) == bool(s.decoy[host])
        if kind == "Restore":
            assert int(after.red[host]) == P.SCANNED and int(after.reliability[host]) == 100
        elif kind == "Remove":
            assert int(after.red[host]) == (P.ROOT if root else P.SCANNED)   # root survives Remove
        elif kind == "DeployDecoy":
            assert bool(after.decoy[host])
        else:
            assert bool(analysed[host]) and int(after.red[host]) == int(s.red[host])


def test_traffic_rules_busy_agents_and_invalid_actions():
    s = fresh()
    block = idx(0, "BlockTrafficZone restricted_zone_a <- contractor")
    allow = idx(0, "AllowTrafficZone restricted_zone_a <- contractor")
    hq = idx(4, "BlockTrafficZone office <- admin")
    (s1, b, _), = run_blue(s, [block] + MON[1:4] + [hq], 1)
    assert bool(s1.blocked[P.RZ_A, P.CONTRACTOR]) and bool(s1.blocked[P.OFFICE, P.ADMIN])
    assert int(np.asarray(s1.blocked).sum()) == 2
    (s2, _, _), = run_blue(s1, [allow] + MON[1:], 1)
    assert not bool(s2.blocked[P.RZ_A, P.CONTRACTOR]) and bool(s2.blocked[P.OFFICE, P.ADMIN])
    # A Restore in progress ignores new choices until it has run its 5 ticks.
    restore = idx(0, "Restore restricted_zone_a/server_0")
    (x, _, _), = run_blue(s, [restore] + MON[1:], 1)
    for _ in range(4):
        (x, b, _), = run_blue(x, [block] + MON[1:], 1)
    assert not bool(x.blocked[P.RZ_A, P.CONTRACTOR]) and int(b.kind[0]) == P.RESTORE
    (x, b, _), = run_blue(x, [block] + MON[1:], 1)
    assert bool(x.blocked[P.RZ_A, P.CONTRACTOR])
    # An empty host slot: masked, costs 0.1, does nothing.
    s = s.replace(present=s.present.at[RZA0 + 15].set(False))
    bad = idx(0, "Restore restricted_zone_a/user_9")
    assert not bool(ENV.get_avail_actions(s)["blue_agent_0"][bad])
    (_, b, _), = run_blue(s, [bad] + MON[1:], 1)
    assert float(b.cost) == pytest.approx(-0.1) and float(b.invalid) == 1 and int(b.kind[0]) == P.SLEEP


def test_masks_are_exactly_the_present_hosts_and_random_masked_blue_never_acts_illegally():
    _, s = ENV.reset(jax.random.key(3))
    m = ENV.get_avail_actions(s)
    pres = np.asarray(s.present).reshape(9, 16)
    assert np.array_equal(np.asarray(m["blue_agent_0"]), np.concatenate([np.tile(pres[P.RZ_A], 4), np.ones(18, bool)]))
    hq = pres[[P.ADMIN, P.OFFICE, P.PAZ]].reshape(-1)
    assert np.array_equal(np.asarray(m["blue_agent_4"]), np.concatenate([np.tile(hq, 4), np.ones(50, bool)]))
    for i, a in enumerate(ENV.agents):                      # every allowed host action names a present host
        host = blue.HOST[i, : ENV.action_space(a).n]
        ok = np.asarray(m[a])
        assert np.all(np.asarray(s.present)[host[ok & (host >= 0)]])


# ----------------------------------------------------------------------------- reward, messages
def test_reward_table_per_phase_and_phase_boundaries():
    h = np.zeros(P.NUM_HOSTS, bool)
    oza_user, ozb, hq, contr = P.OZ_A * 16 + 6, P.OZ_B * 16, P.OFFICE * 16 + 6, P.CONTRACTOR * 16 + 6
    one = lambda i: jnp.asarray(h.copy()).at[i].set(True)  # noqa: E731
    z = jnp.asarray(h)
    r = lambda ph, lw=z, af=z, imp=z, cost=0.0: float(reward.team_reward(ph, lw, af, imp, jnp.float32(cost)))  # noqa: E731
    assert [r(ph, lw=one(oza_user)) for ph in range(3)] == [-1, -10, -1]
    assert [r(ph, imp=one(ozb)) for ph in range(3)] == [-1, -1, -10]
    assert [r(ph, af=one(contr)) for ph in range(3)] == [-5, 0, 0]
    assert [r(ph, imp=one(hq)) for ph in range(3)] == [-3, -3, -3]
    assert r(1, lw=one(oza_user), af=one(hq), cost=-1.0) == -12.0
    t = jnp.arange(500)
    ph = np.asarray(jax.vmap(lambda x: reward.phase_of(x, PARAMS))(t))
    assert np.bincount(ph).tolist() == [167, 167, 166] and ph[166] == 0 and ph[167] == 1 and ph[334] == 2


def test_messages_reach_the_other_agents_unless_the_mission_cuts_a_zone_off():
    s = fresh()
    msg = np.zeros((5, 8), bool)
    msg[0, [0, 7]] = True                                   # agent 0 sends 10000001
    msg[1, 3] = True                                        # agent 1 (OZ-A) sends 00010000
    s = s.replace(messages=jnp.asarray(msg))
    tail = lambda o, a: np.asarray(o[a][-32:]).reshape(4, 8)  # noqa: E731
    obs = observe.get_obs(s, PARAMS)                         # phase 1: everyone hears everyone
    assert tail(obs, "blue_agent_1")[0].tolist() == msg[0].tolist()
    assert tail(obs, "blue_agent_0")[0].tolist() == msg[1].tolist()
    assert tail(obs, "blue_agent_4")[:2].tolist() == msg[:2].tolist()
    obs = observe.get_obs(s.replace(t=jnp.int32(200)), PARAMS)   # mission A: OZ-A cut off
    assert not tail(obs, "blue_agent_1").any() and not tail(obs, "blue_agent_0")[0].any()
    assert tail(obs, "blue_agent_2")[0].tolist() == msg[0].tolist()
    assert float(obs["blue_agent_0"][0]) == 1.0            # the phase entry
    # Through step: what agents send now is what the others read next.
    acts = ENV.idle_actions() | {"messages": jnp.asarray(msg)}
    o, *_ = ENV.step_env(jax.random.key(0), fresh(), acts)
    assert tail(o, "blue_agent_2")[:2].tolist() == msg[:2].tolist()


# ----------------------------------------------------------------------------- API contracts
def random_blue(step, key):
    """`(body, carry)`: a scan body stepping one env under random masked blue, and its start."""
    obs, s = ENV.reset(key)
    pol = BASELINES["random"]

    def body(c, k):
        obs, s = c
        ka, ks = jax.random.split(k)
        a = pol(ka, obs, ENV.get_avail_actions(s))
        obs, s, r, d, info = step(ks, s, a)
        return (obs, s), (r["blue_agent_0"], info["metrics"]["invalid"], s.red)

    return body, (obs, s)


def test_jit_equals_nojit_vmap_equals_loop_and_determinism_per_key():
    keys = jax.random.split(jax.random.key(7), 3)
    body, carry0 = random_blue(ENV.step, keys[0])
    scan = jax.jit(lambda c, ks: jax.lax.scan(body, c, ks))
    ks = jax.random.split(jax.random.key(1), 6)
    (_, s_jit), out_jit = scan(carry0, ks)
    with jax.disable_jit():
        c = carry0
        outs = []
        for k in ks:
            c, o = body(c, k)
            outs.append(o)
    np.testing.assert_array_equal(np.stack([o[2] for o in outs]), np.asarray(out_jit[2]))
    np.testing.assert_allclose(np.stack([o[0] for o in outs]), np.asarray(out_jit[0]))
    (_, s_again), out_again = scan(carry0, ks)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), s_jit, s_again))
    # vmap over 3 envs == each env alone.
    carries = [random_blue(ENV.step, k)[1] for k in keys]
    batched = jax.tree.map(lambda *x: jnp.stack(x), *carries)
    ks3 = jnp.stack([jax.random.split(jax.random.key(10 + i), 6) for i in range(3)])
    (_, s_v), out_v = jax.jit(jax.vmap(lambda c, k: jax.lax.scan(body, c, k)))(batched, ks3)
    for i in range(3):
        (_, s_i), out_i = scan(carries[i], ks3[i])
        np.testing.assert_array_equal(np.asarray(out_v[2][i]), np.asarray(out_i[2]))
        np.testing.assert_array_equal(np.asarray(s_v.red[i]), np.asarray(s_i.red))


def test_episode_ends_at_max_steps_with_auto_reset_and_metrics():
    env, p = cage4.make(max_steps=12)
    step = jax.jit(env.step)
    obs, s = env.reset(jax.random.key(0))
    for t in range(12):
        obs, s, r, d, info = step(jax.random.key(100 + t), s, env.idle_actions())
        assert bool(d["__all__"]) == (t == 11)
    assert int(s.t) == 0 and float(info["metrics"]["length"]) == 12
    assert not bool(info["terminated"]) and bool(info["truncated"])
    assert set(info["metrics"]) == set(cage4.METRIC_KEYS)
    assert info["world_state"].shape == (env.world_state_size,)
    words = env.random_words_per_step()
    # A transition draws 4 uniforms per red agent and 4 per host slot (core._transition), at 16 bits:
    # two per 32-bit word (Draws.uniform16). A reset draws one uniform (a full word) each for the
    # server and the user count of every subnet and one for the foothold (generator.initial_state).
    assert words == {"transition": (P.NUM_RED * 4 + P.NUM_HOSTS * 4) // 2, "reset": 2 * P.NUM_SUBNETS + 1}


@pytest.mark.slow  # ~25 CPU-s on an idle machine (compiles an IPPO update on the 5-agent env)
def test_ippo_trains_on_cage4_through_the_python_api():
    from jaxsoc import algos, config as config_lib

    env, params = cage4.make(max_steps=20)
    cfg = config_lib.resolve(flags={"algo": "ippo", "scenario": "cage4-like", "num_envs": 8, "total_steps": 8 * 8 * 3,
                                    "run": {"name": "x"}, "ppo": {"rollout": 8, "hidden_sizes": [16], "minibatches": 2,
                                                                  "epochs": 1}},
                             scenarios=["cage4-like"])
    trainer = algos.make_train(cfg, env, params)
    state = trainer.init(jax.random.PRNGKey(0))
    update = jax.jit(trainer.update)
    for _ in range(trainer.num_updates):
        state, metrics = update(state)
    assert int(state.env_steps) == 8 * 8 * 3
    assert np.isfinite(float(metrics["value_loss"])) and float(metrics["episodes"]) > 0
    assert float(metrics["invalid"]) == 0.0                  # masked policy: no illegal action taken
