"""Off-policy learners: DQN, IQL, VDN, QMIX, SAC, MADDPG (jaxsoc/algos/{offpolicy,dqn,sac,maddpg}.py).

The agents are tested on tiny problems defined here, each one jitted `lax.scan` (networks of
width 32-64, so each compiles in seconds): DQN solves a 5-state chain, SAC a continuous target
matching task (and its temperature moves toward the target entropy), MADDPG's actor learns
through its centralised critic. Learner-level QMIX monotonicity and VDN sums, the QMIX
baseline's action bins, PER importance weights entering every loss, config errors. The CLI on
every algorithm and preset is a slow test; bit-exact resume of every algorithm (replay buffer
included) is in tests/test_registry.py.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsoc import buffers, config as config_lib
from jaxsoc.algos import offpolicy as op
from jaxsoc.algos.dqn import DQN, ValueDecomposition
from jaxsoc.algos.maddpg import MADDPG
from jaxsoc.algos.sac import SAC
from tests.fast import FAST_COMPILE
from tests.test_engine import leaves_equal

SMALL = (32, 32)
# The programs here are tiny and short: compiling them with XLA's backend optimisations off
# (tests/fast.py) cuts their compile time (most of this file's cost) and barely changes their run time.


def jit(fn):
    return jax.jit(fn, compiler_options=FAST_COMPILE)


# ----------------------------------------------------------------------------- shared maths
def test_update_target_hard_and_polyak():
    online, target = {"w": jnp.ones(3)}, {"w": jnp.zeros(3)}
    # Hard copies every 3 updates: after updates 3, 6, ... only.
    assert float(op.update_target(online, target, jnp.int32(2), 1.0, 3)["w"][0]) == 0.0
    assert float(op.update_target(online, target, jnp.int32(3), 1.0, 3)["w"][0]) == 1.0
    # Polyak every update.
    np.testing.assert_allclose(op.update_target(online, target, jnp.int32(7), 0.005, 1)["w"], 0.005)


def test_epsilon_schedules():
    exp = op.epsilon_schedule(1.0, 0.05, 50_000, "exponential")
    for n in (0, 10_000, 50_000, 200_000):  # the reference: 0.05 + 0.95 exp(-n / 50000)
        assert float(exp(n)) == pytest.approx(0.05 + 0.95 * np.exp(-n / 50_000), rel=1e-5)
    lin = op.epsilon_schedule(1.0, 0.1, 100, "linear")
    assert [round(float(lin(n)), 5) for n in (0, 50, 100, 1000)] == [1.0, 0.55, 0.1, 0.1]


def test_bins_are_the_reference_qmix_baselines():
    """docs/reference.md §2.7: TH bin b hunts segment b%5 at raw 0.3 + 0.7(b//5)/3 with scope 0.5, RO bin b
    isolates and remediates segment b%5 at raw 0.3 + 0.7(b//5)/2; every other dimension raw 0."""
    th = op.bin_table("threat_hunter", 16, 5, 16, 0.3, 1.0)
    ro = op.bin_table("response_orchestrator", 12, 5, 12, 0.3, 1.0)
    for b in range(16):
        want = np.zeros(16, np.float32)
        want[b % 5], want[5 + b % 5] = 0.3 + 0.7 * (b // 5) / 3, 0.5
        np.testing.assert_allclose(th[b], want, rtol=1e-6)
    for b in range(12):
        want = np.zeros(12, np.float32)
        want[b % 5] = want[5 + b % 5] = 0.3 + 0.7 * (b // 5) / 2
        np.testing.assert_allclose(ro[b], want, rtol=1e-6)


# ----------------------------------------------------------------------------- DQN on a chain
CHAIN = 5  # states 0..4; start 0; "right" from 3 reaches the goal 4: reward 1, terminal
CHAIN_LIMIT = 12  # steps before truncation (bootstrapped: discount stays 1)
GAMMA = 0.9


def chain_step(s, t, a):
    """`(s, t, a) -> (next_s, next_t, reward, discount, final_s)`, auto-resetting to 0."""
    nxt = jnp.where(a == 1, s + 1, jnp.maximum(s - 1, 0))
    goal = nxt == CHAIN - 1
    t = t + 1
    done = goal | (t >= CHAIN_LIMIT)
    return (jnp.where(done, 0, nxt), jnp.where(done, 0, t), goal.astype(jnp.float32),
            1.0 - goal.astype(jnp.float32), nxt)


def onehot(s):
    return jax.nn.one_hot(s, CHAIN)


@pytest.fixture(scope="module")
def dqn_run():
    agent = DQN(CHAIN, 2, SMALL, gamma=GAMMA, lr=1e-3, tau=1.0, target_period=50, epsilon_start=1.0,
                epsilon_end=0.1, epsilon_decay=3000, epsilon_schedule="linear")
    envs, steps, batch = 16, 500, 64
    example = {"obs": jnp.zeros(CHAIN), "next_obs": jnp.zeros(CHAIN), "action": jnp.int32(0),
               "reward": jnp.float32(0), "discount": jnp.float32(0)}

    def train(key):
        state = agent.init(key)
        buf = buffers.init(example, 4096)

        def step(carry, key):
            state, buf, s, t, n = carry
            k_act, k_sample = jax.random.split(key)
            a = agent.act(state, onehot(s), k_act, False, agent.epsilon(n))
            s2, t2, r, disc, final = chain_step(s, t, a)
            buf = buffers.add(buf, {"obs": onehot(s), "next_obs": onehot(final), "action": a,
                                    "reward": r, "discount": disc})
            items, _ = buffers.sample(buf, k_sample, batch)
            state, td, _ = agent.update(state, items, jnp.ones(batch), None)
            return (state, buf, s2, t2, n + envs), None

        zeros = jnp.zeros(envs, jnp.int32)
        (state, *_), _ = jax.lax.scan(step, (state, buf, zeros, zeros, jnp.int32(0)),
                                      jax.random.split(key, steps - 10))
        # 10 more updates: the target network lags (hard copies every 50 updates only).
        (late, *_), _ = jax.lax.scan(step, (state, buf, zeros, zeros, jnp.int32(0)), jax.random.split(key, 10))
        states = onehot(jnp.arange(CHAIN - 1))
        return (state, late, agent.q_values(state.params, states),
                agent.act(state, states, jax.random.key(1), greedy=True))

    return jit(train)(jax.random.key(0))


def test_dqn_solves_the_chain(dqn_run):
    state, late, q, greedy = dqn_run
    q = np.asarray(q)
    assert (q.argmax(-1) == 1).all(), q  # always go right
    assert greedy.tolist() == [1, 1, 1, 1]
    want = GAMMA ** np.arange(CHAIN - 2, -1, -1)  # Q*(s, right) = gamma^(3 - s)
    # Trained to within ~4e-4; 0.01 still fails a table one discount step off (the gap is >= 0.07,
    # e.g. a target that discounts the immediate reward too).
    np.testing.assert_allclose(q[:, 1], want, atol=0.01)
    # The target network is a real, separate network (D17), refreshed every 50 updates.
    assert int(state.steps) == 490 and int(late.steps) == 500
    assert not leaves_equal(state.target_params, state.params)  # 40 updates since the last copy
    assert leaves_equal(late.target_params, late.params)  # copied at update 500


# ----------------------------------------------------------------------------- SAC
SAC_DIM = 2


@pytest.fixture(scope="module")
def sac_run():
    """SAC on a one-step task: obs x ~ U(-0.7, 0.7)^2, reward -|a - x|^2, episodes of one step."""
    agent = SAC(SAC_DIM, SAC_DIM, SMALL, gamma=0.99, actor_lr=1e-3, critic_lr=1e-3, alpha_lr=3e-3)
    per_step, iters, batch = 32, 1000, 128
    example = {"obs": jnp.zeros(SAC_DIM), "next_obs": jnp.zeros(SAC_DIM), "action": jnp.zeros(SAC_DIM),
               "reward": jnp.float32(0), "discount": jnp.float32(0)}

    def train(key):
        state = agent.init(key)
        buf = buffers.init(example, 8192)

        def step(carry, key):
            state, buf = carry
            k_obs, k_act, k_sample, k_update = jax.random.split(key, 4)
            x = jax.random.uniform(k_obs, (per_step, SAC_DIM), minval=-0.7, maxval=0.7)
            a = agent.act(state, x, k_act)
            r = -jnp.sum(jnp.square(a - x), -1)
            buf = buffers.add(buf, {"obs": x, "next_obs": x, "action": a, "reward": r,
                                    "discount": jnp.zeros(per_step)})
            items, _ = buffers.sample(buf, k_sample, batch)
            state, _, m = agent.update(state, items, jnp.ones(batch), k_update)
            return (state, buf), {"alpha": m["alpha"], "entropy": m["entropy"]}

        (state, _), hist = jax.lax.scan(step, (state, buf), jax.random.split(key, iters))
        x = jax.random.uniform(jax.random.key(7), (256, SAC_DIM), minval=-0.7, maxval=0.7)
        greedy = agent.act(state, x, jax.random.key(0), greedy=True)
        mean, _ = agent.actor.apply(state.actor_params, x)
        return hist, x, greedy, mean

    hist, x, greedy, mean = jit(train)(jax.random.key(0))
    return agent, jax.tree.map(np.asarray, hist), (x, greedy, mean)


def test_sac_solves_target_matching(sac_run):
    _, _, (x, greedy, mean) = sac_run
    # The deterministic action is tanh(mean), inside (-1, 1) (D21: not the raw mean).
    np.testing.assert_allclose(greedy, np.tanh(mean), rtol=1e-5, atol=1e-6)
    assert float(np.mean(np.abs(greedy - x))) < 0.08


def test_sac_temperature_moves_toward_the_target_entropy(sac_run):
    agent, hist, _ = sac_run
    target = agent.entropy_target  # -action_dim
    start, end = hist["entropy"][:20].mean(), hist["entropy"][-100:].mean()
    # A fresh policy is broader than the target (entropy ~1.3 vs -2): alpha falls from 1, at every
    # step while the entropy stays above the target, and the entropy comes down toward the target.
    assert start > target + 1 and np.all(hist["entropy"] > target)
    assert hist["alpha"][0] == pytest.approx(1.0) and hist["alpha"][-1] < 0.25
    assert np.all(np.diff(hist["alpha"]) <= 1e-6)
    assert target < end < start - 1


# ----------------------------------------------------------------------------- MADDPG
@pytest.mark.parametrize("td3", [{}, {"twin_critics": True, "target_noise": 0.2, "policy_delay": 2}],
                         ids=["maddpg", "matd3"])
def test_maddpg_actor_learns_through_the_centralised_critic(td3):
    """One-step toy: state x, own action a, the other agent's action b (random), reward
    -(a - x)^2 - 0.5 b^2. The actor must move to a = x through the critic (D16: the reference's
    actor got no gradient); the critic's value of the actor's actions rises. Also with TD3's
    three corrections on (the actor then moves on every second update only)."""
    agent = MADDPG(1, 1, critic_obs_dim=1, others_action_dim=1, hidden=SMALL, actor_lr=1e-3, critic_lr=3e-3,
                   max_grad_norm=0.5, **td3)

    def batch_of(key, n=128):
        kx, ka, kb = jax.random.split(key, 3)
        x = jax.random.uniform(kx, (n, 1), minval=-0.5, maxval=0.5)
        a = jax.random.uniform(ka, (n, 1), minval=-1, maxval=1)
        b = jax.random.uniform(kb, (n, 1), minval=-1, maxval=1)
        r = -jnp.square(a - x)[:, 0] - 0.5 * jnp.square(b)[:, 0]
        return {"obs": x, "next_obs": x, "action": a, "reward": r, "discount": jnp.zeros(n),
                "critic_obs": x, "next_critic_obs": x, "others_action": b, "next_others_action": b}

    def train(key):
        state0 = agent.init(key)

        def step(state, key):
            kb, kn = jax.random.split(key)
            state, _, m = agent.update(state, batch_of(kb), jnp.ones(128), kn)
            return state, m["actor_loss"]

        state, losses = jax.lax.scan(step, state0, jax.random.split(key, 800))
        changed = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), state0.actor_params, state.actor_params)
        test = batch_of(jax.random.key(99), 512)
        x, b = test["obs"], test["others_action"]
        before, after = agent.actor.apply(state0.actor_params, x), agent.actor.apply(state.actor_params, x)
        # The trained critic scores the initial and the trained actor's actions.
        q_before = agent.q(state.critic_params, x, b, before).mean()
        q_after = agent.q(state.critic_params, x, b, after).mean()
        return changed, losses, q_before, q_after, jnp.abs(before - x).mean(), jnp.abs(after - x).mean()

    changed, losses, q_before, q_after, err_before, err_after = jit(train)(jax.random.key(3))
    assert min(float(c) for c in jax.tree.leaves(changed)) > 0  # every actor parameter moved
    assert float(q_after) > float(q_before) + 0.02
    assert float(err_after) < 0.1 < float(err_before)
    assert losses[-50:].mean() < losses[:50].mean()


def _td3_batch():
    """The MADDPG batch of the PER-weight tests below (16 random transitions, obs 3, action 2)."""
    return _agent_and_batch("maddpg", jax.random.key(5))[1]


def test_matd3_target_is_the_smaller_target_critic_and_the_actor_waits_for_its_turn():
    """twin_critics: |td| = |Q1(s, a) - (r + gamma * d * min(Q1', Q2')(s', mu'(s')))|, worked here from
    the networks directly; policy_delay 2: the actor and the targets keep their values on the
    first update and move on the second, the critics move on both."""
    agent = MADDPG(3, 2, 3, 1, (8,), gamma=0.9, twin_critics=True, policy_delay=2)
    batch, w = _td3_batch(), jnp.ones(16)
    state = agent.init(jax.random.key(0))
    # Targets that differ from the online critics, so min over the targets is not min over the online pair.
    state = state._replace(target_critic_params=agent.init(jax.random.key(1)).critic_params)
    a_next = agent.actor.apply(state.target_actor_params, batch["next_obs"])
    joint = lambda o, a: jnp.concatenate([o, a], axis=-1)  # noqa: E731
    q1t, q2t = agent.critic.apply(state.target_critic_params, batch["next_critic_obs"],
                                  joint(batch["next_others_action"], a_next))
    assert float(jnp.max(jnp.abs(q1t - q2t))) > 1e-3  # the min has something to choose
    y = batch["reward"] + 0.9 * batch["discount"] * jnp.minimum(q1t, q2t)
    q1, _ = agent.critic.apply(state.critic_params, batch["critic_obs"], joint(batch["others_action"], batch["action"]))
    s1, td, _ = agent.update(state, batch, w)
    np.testing.assert_allclose(td, jnp.abs(q1 - y), rtol=1e-5, atol=1e-6)

    moved = lambda a, b: max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))  # noqa: E731
    assert moved(s1.critic_params, state.critic_params) > 0
    assert moved(s1.actor_params, state.actor_params) == 0 and moved(s1.target_critic_params, state.target_critic_params) == 0
    s2, _, _ = agent.update(s1, batch, w)
    assert moved(s2.actor_params, s1.actor_params) > 0 and moved(s2.target_critic_params, s1.target_critic_params) > 0


def test_matd3_target_smoothing_noise_is_clipped_and_keyed():
    """target_noise: the key changes the target (so |td|); a clip far below the noise's scale gives
    back the unsmoothed target."""
    batch, w = _td3_batch(), jnp.ones(16)
    plain = MADDPG(3, 2, 3, 1, (8,))
    state = plain.init(jax.random.key(0))
    _, td_plain, _ = plain.update(state, batch, w)
    noisy = MADDPG(3, 2, 3, 1, (8,), target_noise=0.5)
    _, td_a, _ = noisy.update(state, batch, w, jax.random.key(1))
    _, td_b, _ = noisy.update(state, batch, w, jax.random.key(2))
    assert float(jnp.max(jnp.abs(td_a - td_b))) > 1e-4
    clipped = MADDPG(3, 2, 3, 1, (8,), target_noise=0.5, target_noise_clip=1e-7)
    _, td_c, _ = clipped.update(state, batch, w, jax.random.key(1))
    np.testing.assert_allclose(td_c, td_plain, atol=1e-5)


# ----------------------------------------------------------------------------- PER weights
def _agent_and_batch(kind, key, n=16):
    ks = jax.random.split(key, 6)
    obs, next_obs = jax.random.normal(ks[0], (n, 3)), jax.random.normal(ks[1], (n, 3))
    batch = {"obs": obs, "next_obs": next_obs, "reward": jax.random.normal(ks[2], (n,)), "discount": jnp.ones(n)}
    if kind == "dqn":
        return DQN(3, 2, (8,), tau=0.5, target_period=1), dict(batch, action=jax.random.randint(ks[3], (n,), 0, 2))
    action = jax.random.uniform(ks[3], (n, 2), minval=-1, maxval=1)
    if kind == "sac":
        return SAC(3, 2, (8,)), dict(batch, action=action)
    extra = {"critic_obs": obs, "next_critic_obs": next_obs, "others_action": jax.random.normal(ks[4], (n, 1)),
             "next_others_action": jax.random.normal(ks[5], (n, 1))}
    return MADDPG(3, 2, 3, 1, (8,)), dict(batch, action=action, **extra)


@pytest.mark.parametrize("kind", ["dqn", "sac", "maddpg"])
def test_importance_weights_enter_every_loss(kind):
    """Items with PER weight 0 have no influence on any parameter (critic, actor, temperature,
    targets), whatever they hold; weight-1 items do (the reference ignored the weights, D18)."""
    @jit
    def three_updates(key):
        agent, batch = _agent_and_batch(kind, key)
        state = agent.init(jax.random.key(1))
        n = batch["reward"].shape[0]
        weights = jnp.where(jnp.arange(n) < n // 2, 1.0, 0.0)
        garbage = jax.tree.map(lambda x: x.at[n // 2:].set(x[n // 2:] * 3 + 1), batch)
        a, td, _ = agent.update(state, batch, weights, jax.random.key(2))
        b, _, _ = agent.update(state, garbage, weights, jax.random.key(2))
        c, _, _ = agent.update(state, garbage, jnp.ones(n), jax.random.key(2))
        return a, b, c, td

    a, b, c, td = three_updates(jax.random.key(0))
    n = td.shape[0]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
    assert not leaves_equal(a, c)
    assert td.shape == (n,) and bool(jnp.all(td >= 0))


# ----------------------------------------------------------------------------- VDN / QMIX
def _value_decomposition(mixer):
    roles = (("threat_hunter", DQN(5, 4, (8,))), ("alert_triage", DQN(3, 4, (8,))),
             ("response_orchestrator", DQN(4, 3, (8,))))
    learner = ValueDecomposition(roles, state_dim=6, mixer=mixer, mixer_embed=8, hypernet_hidden=8)
    key = iter(jax.random.split(jax.random.key(5), 16))
    n = 32
    obs = {r: jax.random.normal(next(key), (n, a.obs_dim)) for r, a in roles}
    actions = {r: jax.random.randint(next(key), (n,), 0, a.n_actions) for r, a in roles}
    return learner, learner.init(next(key)), obs, actions, jax.random.normal(next(key), (n, 6))


def test_vdn_q_tot_is_the_sum_of_the_chosen_q_values():
    @jit
    def q_tot_and_sum():
        learner, state, obs, actions, ws = _value_decomposition("vdn")
        q_tot = learner.mix(state.params, learner.chosen_qs(state.params, obs, actions), ws)
        want = sum(jnp.take_along_axis(a.q_values(state.params[r], obs[r]), actions[r][:, None], -1)[:, 0]
                   for r, a in learner.agents)
        return q_tot, want, state.params

    q_tot, want, params = q_tot_and_sum()
    np.testing.assert_allclose(q_tot, want, rtol=1e-5, atol=1e-6)
    assert "mixer" not in params and float(jnp.std(q_tot)) > 0


def test_qmix_learner_is_monotonic_in_every_agent_q():
    """dQ_tot/dQ_i >= 0 for random states and per-agent values, at init and for random
    (non-initial) mixer weights, through the learner's own `mix`."""
    @jit
    def mixing_gradients():
        learner, state, obs, actions, ws = _value_decomposition("qmix")
        keys = iter(jax.random.split(jax.random.key(11), 64))
        random = jax.tree.map(lambda x: 3 * jax.random.normal(next(keys), x.shape), state.params)
        # A TD step too (the hypernetworks' |W|, not the initial weights, keep it monotone).
        batch = {"obs": obs, "next_obs": obs, "action": actions, "reward": jnp.ones(32),
                 "discount": jnp.ones(32), "mix_state": ws, "next_mix_state": ws}
        stepped, td, _ = learner.update(state, batch, jnp.ones(32))
        qs = 5 * jax.random.normal(next(keys), (32, 3))
        return td, [jax.vmap(jax.grad(lambda q, s: learner.mix(p, q[None], s[None])[0]))(qs, ws)
                    for p in (state.params, random, stepped.params)]

    td, all_grads = mixing_gradients()
    assert td.shape == (32,)
    for grads in all_grads:
        assert grads.shape == (32, 3) and bool(jnp.all(grads >= 0)), grads.min()
        assert float(grads.max()) > 0


# ----------------------------------------------------------------------------- configs
def resolve(tmp_path, name, algo="sac", scenario="hmarl-soc-v1", **flags):
    """A tiny real run's config: 4 envs, 6-step episodes, width-16 networks, a 48-slot buffer."""
    fam = {"sac": "sac", "maddpg": "maddpg"}.get(algo, "dqn")
    tiny = {"hidden_sizes": [16], "buffer_size": 48, "batch_size": 8, "utd": 0.25, "rollout": 2,
            "learning_starts": 0}
    if fam != "dqn":
        tiny["dqn"] = {"epsilon_decay": 40}
    base = {"algo": algo, "scenario": scenario, "num_envs": 4, "total_steps": 48, "env": {"max_steps": 6},
            "run": {"dir": str(tmp_path), "name": name, "progress": False, "tensorboard": False}, fam: tiny}
    return config_lib.resolve(flags=config_lib.merge(base, flags))


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(config_lib.ConfigError, match="dqn.utd"):
        resolve(tmp_path, "x", algo="dqn", dqn={"utd": 0.01})
    with pytest.raises(config_lib.ConfigError, match="sac.dqn.loss"):
        resolve(tmp_path, "x", algo="sac", sac={"dqn": {"loss": "l3"}})
    with pytest.raises(config_lib.ConfigError, match="maddpg.critic_input"):
        resolve(tmp_path, "x", algo="maddpg", maddpg={"critic_input": "all"})
    with pytest.raises(config_lib.ConfigError, match="maddpg.policy_delay"):
        resolve(tmp_path, "x", algo="maddpg", maddpg={"policy_delay": 0})
    with pytest.raises(config_lib.ConfigError, match="maddpg.twin_critics"):
        resolve(tmp_path, "x", algo="maddpg", maddpg={"twin_critics": "yes"})
    with pytest.raises(config_lib.ConfigError, match="hmarl.maddpg: need target_noise"):
        config_lib.resolve(flags={"algo": "hmarl", "hmarl": {"maddpg": {"target_noise": -0.1}},
                                  "run": {"dir": str(tmp_path), "name": "x"}})
    with pytest.raises(config_lib.ConfigError, match="buffer_size"):
        resolve(tmp_path, "x", algo="qmix", dqn={"buffer_size": 4, "batch_size": 2})
    # A run that would never hold a batch's worth of transitions trains nothing: refused. 48 steps
    # store 48 transitions per seed (4 envs x rollout 2 x 6 updates); 47 store 40.
    resolve(tmp_path, "x", algo="sac", sac={"learning_starts": 48})
    with pytest.raises(config_lib.ConfigError, match="sac: no gradient round would run: learning starts at "
                                                     "48 transitions .* total_steps 47 stores 40"):
        resolve(tmp_path, "x", algo="sac", total_steps=47, sac={"learning_starts": 48})
    with pytest.raises(config_lib.ConfigError, match="dqn: no gradient round would run: learning starts at 8 "):
        resolve(tmp_path, "x", algo="iql", total_steps=7)  # batch_size 8 > the 0 stored (no update)


def test_a_buffer_smaller_than_one_rollout_names_what_it_compares(tmp_path):
    # The check is on num_envs x rollout (8 here), not on num_envs alone (4).
    with pytest.raises(config_lib.ConfigError) as e:
        resolve(tmp_path, "x", algo="sac", sac={"buffer_size": 7, "batch_size": 2})
    assert str(e.value) == ("sac.buffer_size (7) is smaller than one rollout of all envs "
                            "(4 envs x rollout 2 = 8 transitions)")


# ----------------------------------------------------------------------------- CLI (slow)
@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["hmarl-soc-v1", "soc-v2"])
@pytest.mark.parametrize("algo", ["dqn", "iql", "vdn", "qmix", "sac", "maddpg"])
def test_cli_trains_every_algorithm_on_both_presets(algo, scenario, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("run_cli", Path(__file__).resolve().parent.parent / "train" / "run.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    fam = {"sac": "sac", "maddpg": "maddpg"}.get(algo, "dqn")
    argv = ["--algo", algo, "--scenario", scenario, "--num-envs", "4", "--num-seeds", "2", "--total-steps", "48",
            "--name", "r", "--set", f"run.dir={tmp_path}", "--set", "run.progress=false",
            "--set", "env.max_steps=6", "--set", f"{fam}.hidden_sizes=[16]", "--set", f"{fam}.buffer_size=32",
            "--set", f"{fam}.batch_size=8", "--set", f"{fam}.rollout=2", "--set", f"{fam}.utd=0.25",
            "--set", f"{fam}.learning_starts=0",  # configs/sac.yaml and maddpg.yaml wait 10,000
            "--set", "eval.every_chunks=1", "--set", "eval.episodes=2"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    from jaxsoc import run_log

    records, _ = run_log.read_jsonl(tmp_path / "r" / "metrics.jsonl")
    assert len(records) == 2 * 6 and {r["seed"] for r in records} == {0, 1}
    last = records[-1]["metrics"]
    assert last["grad_steps"] == 12 and last["buffer_size"] == 32
    losses = [k for k in last if k.endswith("loss")]
    assert losses and all(np.isfinite(last[k]) for k in losses)
    evals, _ = run_log.read_jsonl(tmp_path / "r" / "eval.jsonl")
    assert evals and all(e["episodes"] == 2 for e in evals)


def test_qmix_mixer_state_norm_reaches_the_mixer():
    """`dqn.mixer_state_norm` (off by default: Table II's QMIX reads the raw world state) builds the
    team's mixer on the state at unit length: Q_tot blind to the state's scale, and not without it."""
    import copy

    import jaxsoc.env as soc
    from jaxsoc.algos import dqn

    env, _ = soc.make("hmarl-soc-v1")
    assert dqn.DEFAULTS["mixer_state_norm"] is False
    for norm in (False, True):
        section = {**copy.deepcopy(dqn.DEFAULTS), "mixer_state_norm": norm, "hidden_sizes": [8]}
        team = dqn.make_team({"algo": "qmix", "scenario": "hmarl-soc-v1", "dqn": section}, env)
        learner = team.learner
        assert learner.qmixer.state_norm is norm
        params = learner.init(jax.random.key(0)).params
        qs = jax.random.normal(jax.random.key(1), (4, len(learner.agents)))
        ws = jax.random.uniform(jax.random.key(2), (4, learner.state_dim))
        same = np.allclose(learner.mix(params, qs, 10.0 * ws), learner.mix(params, qs, ws), rtol=1e-4, atol=1e-4)
        assert same == norm


# ------------------------------------------------------------------------------ action masks
def test_masked_choices_pick_only_legal_actions_and_all_legal_is_the_unmasked_draw():
    """A DQN acting on a role the env may forbid (banking's down channels, cage4's absent hosts)
    chose and bootstrapped from illegal actions (sac on banking: 5.9 fallbacks per episode). The
    masked choices stay legal; with every choice legal they are the unmasked ones bit for bit, so
    runs on always-legal roles (every SOC defender) are unchanged."""
    from jaxsoc.algos.dqn import best_choice, random_choice

    q = jnp.asarray([[1.0, 5.0, 3.0, 4.0], [9.0, 1.0, 2.0, 0.0]])
    avail = jnp.asarray([[True, False, True, True], [False, False, True, True]])
    np.testing.assert_array_equal(best_choice(q, avail), [3, 2])
    np.testing.assert_array_equal(best_choice(q, jnp.ones_like(avail)), best_choice(q))
    key = jax.random.key(3)
    draws = jax.vmap(lambda k: random_choice(k, (2,), 4, avail))(jax.random.split(key, 4000))  # [4000, 2]
    assert bool(jnp.all(jnp.take_along_axis(avail, draws.T, axis=1)))
    counts = np.bincount(np.asarray(draws[:, 0]), minlength=4) / 4000  # legal 0, 2, 3: a third each
    np.testing.assert_allclose(counts, [1 / 3, 0, 1 / 3, 1 / 3], atol=0.03)
    everything = jnp.ones((2, 4), bool)
    np.testing.assert_array_equal(random_choice(key, (2,), 4, everything), random_choice(key, (2,), 4))
    # the targets maximise over the next state's legal choices, double or not
    dqn = DQN(obs_dim=2, n_actions=4, hidden=(8,))
    params = dqn.init(jax.random.key(0)).params
    qs = dqn.q_values(params, jnp.ones((1, 2)))[0]
    only = jnp.zeros((1, 4), bool).at[0, 2].set(True)
    for double in (True, False):
        value = dqn.next_value(params, params, jnp.ones((1, 2)), only, double=double)
        np.testing.assert_allclose(value, qs[2:3], rtol=1e-6)


def test_sac_on_banking_never_routes_to_a_down_channel():
    """sac's DQN routers on banking: with the masks, no transaction falls back in training (it
    was 5.9 per episode at this size) and the greedy policy of `Trainer.act` stays legal."""
    from jaxsoc import algos
    import jaxsoc.env as soc

    cfg = config_lib.resolve(flags={"algo": "sac", "scenario": "banking", "num_envs": 8, "total_steps": 8 * 4 * 6,
                                    "env": {"max_steps": 4},
                                    "sac": {"hidden_sizes": [16], "rollout": 4, "learning_starts": 32,
                                            "batch_size": 16, "utd": 0.05}})
    env, p = soc.make("banking", max_steps=4)
    trainer = algos.make_train(cfg, env, p)
    assert trainer.num_updates == 6

    @jit
    def run(key):
        state = trainer.init(key)
        return jax.lax.scan(lambda s, _: trainer.update(s), state, None, length=6)

    state, metrics = run(jax.random.key(0))
    assert float(jnp.nansum(metrics["fallbacks"] * metrics["episodes"])) == 0.0
    assert float(jnp.sum(metrics["episodes"])) > 0
    obs, env_state = env.reset(jax.random.key(1), p)
    params = trainer.policy_params(state)
    for i in range(30):
        actions = jax.jit(trainer.act, static_argnums=4)(params, jax.random.key(i), obs, env_state, True)
        up = env.get_avail_actions(env_state, p)
        assert all(bool(up[a][actions[a]]) for a in env.agents)
        obs, env_state, *_ = env.step(jax.random.key(100 + i), env_state, actions, p)


def test_a_run_saved_before_the_masks_loads_resumes_and_evaluates(tmp_path, monkeypatch):
    """A sac run on banking saved before its buffer kept `next_avail` (2026-12-07): the review
    found every load of it refused as "damaged or incomplete files". It restores with its stored
    transitions' masks all True (what their targets assumed) and the same parameters."""
    from jaxsoc import engine

    cfg = config_lib.resolve(flags={"algo": "sac", "scenario": "banking", "num_envs": 8, "total_steps": 8 * 4 * 2,
                                    "env": {"max_steps": 4}, "run": {"dir": str(tmp_path), "name": "old",
                                                                     "progress": False, "tensorboard": False},
                                    "sac": {"hidden_sizes": [8], "rollout": 4, "learning_starts": 16,
                                            "batch_size": 8, "utd": 0.05}})
    with monkeypatch.context() as m:  # the layout of before: no masked role, so no masks stored
        m.setattr(op.Team, "masked", property(lambda self: ()))
        saved = engine.run(cfg)
    def masks(state):
        return [x for p, x in jax.tree_util.tree_flatten_with_path(state)[0] if op.is_mask_path(p)]

    assert not masks(saved.state)
    loaded = engine.load(tmp_path / "old")
    assert len(masks(loaded.state)) == 3 and all(bool(jnp.all(m)) for m in masks(loaded.state))
    assert leaves_equal(saved.state.agents, loaded.state.agents)
    policy = engine.load(tmp_path / "old", policy_only=True)
    assert leaves_equal(loaded.trainer.policy_params(loaded.state), policy.trainer.policy_params(policy.state))
