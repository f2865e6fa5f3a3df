"""COMA (jaxsoc/algos/coma.py).

  * the counterfactual advantage and the TD(lambda) targets against hand-worked numbers on a
    2-agent case, masked choices left out of the baseline;
  * the critic: one head of |U_a| values per role, reading the other roles' actions, not its own;
  * the loss wires each role's advantage, log-probability and entropy, and the critic's error;
  * config checks: one-line errors before anything is traced;
  * learning on the toy team (tests/onpolicy_toys.py) by a stated margin over the random policy,
    never taking a masked choice, the same numbers for the same seed; the soc-v2 trainer traces
    with env-shaped actions (the binned Box roles).

The engine path (checkpoints, resume, evaluation, `load_policy`) is the generic one: every
registered algorithm, COMA included, gets tests/test_registry.py's checks with `-m slow`.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsoc import algos, config as config_lib
from jaxsoc.algos import coma, onpolicy
from jaxsoc.algos.common import RoleSpec
from jaxsoc.config import ConfigError
from jaxsoc.distributions import MaskedCategorical
from tests.fast import fast_jit
from tests.onpolicy_toys import make_toy_soc
from tests.test_config import differing_keys

# Two agents: "a" has 3 choices, "b" has 2. The joint action value Q(u_a, u_b):
Q = np.array([[1.0, 2.0],
              [3.0, 0.0],
              [5.0, -1.0]], np.float32)
PI_A, PI_B = np.array([0.5, 0.3, 0.2], np.float32), np.array([0.4, 0.6], np.float32)
TAKEN = (1, 0)  # u_a = 1, u_b = 0


def test_counterfactual_advantage_by_hand_and_masked_choices_are_left_out():
    u_a, u_b = TAKEN
    # a's head with b's action fixed: Q(., u_b=0) = [1, 3, 5]; baseline .5*1 + .3*3 + .2*5 = 2.4.
    adv_a = coma.counterfactual_advantage(jnp.asarray(Q[:, u_b]), jnp.asarray(PI_A), jnp.asarray(u_a))
    assert float(adv_a) == pytest.approx(3.0 - 2.4, rel=1e-6)
    # b's head with a's action fixed: Q(u_a=1, .) = [3, 0]; baseline .4*3 + .6*0 = 1.2.
    adv_b = coma.counterfactual_advantage(jnp.asarray(Q[u_a, :]), jnp.asarray(PI_B), jnp.asarray(u_b))
    assert float(adv_b) == pytest.approx(3.0 - 1.2, rel=1e-6)
    # a's choice 2 masked: the policy renormalises over [0, 1] (.625, .375), and the masked
    # choice's value (never learned by the critic; inf here) is not in the baseline:
    # .625*1 + .375*3 = 1.75, A = 3 - 1.75.
    mask = jnp.array([True, True, False])
    probs = MaskedCategorical(jnp.log(jnp.asarray(PI_A)), mask).probs
    q = jnp.array([1.0, 3.0, jnp.inf])
    assert float(coma.counterfactual_advantage(q, probs, jnp.asarray(u_a))) == pytest.approx(3.0 - 1.75, rel=1e-6)
    # Batched: [B, n] heads, [B] actions.
    both = coma.counterfactual_advantage(jnp.stack([Q[:, 0], Q[:, 1]]), jnp.stack([PI_A, PI_A]), jnp.array([1, 2]))
    np.testing.assert_allclose(both, [0.6, -1.0 - (1.0 + 0.0 - 0.2)], rtol=1e-6)  # .5*2 + .3*0 + .2*(-1) = .8


def test_td_lambda_targets_by_hand():
    gamma, lam = 0.9, 0.5
    r = jnp.array([1.0, 2.0, 3.0])[:, None]          # [T=3, N=1]
    q = jnp.array([0.5, 1.0, 1.5])[:, None, None]    # [T, N, A=1]
    last = jnp.array([[2.0]])                        # Q(s_3, u_3)
    zero = jnp.zeros((3, 1), bool)
    y = coma.td_lambda_targets(r, q, last, zero, zero, gamma, lam)[:, 0, 0]
    # y2 = 3 + .9*2 = 4.8; y1 = 2 + .9*(.5*1.5 + .5*4.8) = 4.835; y0 = 1 + .9*(.5*1 + .5*4.835) = 3.62575
    np.testing.assert_allclose(y, [3.62575, 4.835, 4.8], rtol=1e-6)
    # The episode ends at step 1 (COMA counts a time-limit cut as the end too): nothing after it.
    end = jnp.array([False, True, False])[:, None]
    y = coma.td_lambda_targets(r, q, last, end, end, gamma, lam)[:, 0, 0]
    np.testing.assert_allclose(y, [1 + 0.9 * (0.5 * 1.0 + 0.5 * 2.0), 2.0, 4.8], rtol=1e-6)


def test_the_critic_has_one_head_per_role_that_reads_the_others_actions_not_its_own():
    sizes = (3, 2, 4)
    critic = coma.COMACritic(sizes, (16, 16))
    batch, width = 5, 6
    params = fast_jit(critic.init)(jax.random.PRNGKey(0), jnp.zeros((1, width)), jnp.zeros((1, sum(sizes))))
    order = tuple(zip("abc", sizes))
    rng = np.random.default_rng(0)
    state = jnp.asarray(rng.normal(size=(batch, width)), jnp.float32)
    acts = {r: jnp.asarray(rng.integers(0, n, batch)) for r, n in order}

    @fast_jit
    def heads(actions):
        return critic.apply(params, state, coma.joint_one_hot(actions, order))

    q = heads(acts)
    assert [h.shape for h in q] == [(batch, n) for n in sizes]
    # Changing a's own action leaves a's head unchanged (it already holds all of a's choices),
    # and changes the others' heads (a's action is part of their input).
    moved = heads({**acts, "a": (acts["a"] + 1) % 3})
    np.testing.assert_array_equal(moved[0], q[0])
    assert not np.allclose(moved[1], q[1]) and not np.allclose(moved[2], q[2])
    # The taken joint action's value from each head, [B, A].
    taken = coma.taken_values(dict(zip("abc", q)), acts, "abc")
    assert taken.shape == (batch, 3)
    np.testing.assert_array_equal(taken[:, 1], q[1][np.arange(batch), acts["b"]])


def test_the_loss_wires_each_roles_advantage_log_prob_and_the_critic_error():
    # Actors with no hidden layer on a 1-wide observation of 1: logits = bias = log(pi).
    specs = (RoleSpec("a", 1, "discrete", 3), RoleSpec("b", 1, "discrete", 2))
    policy = onpolicy.Policy(specs, hidden_sizes=())
    actor = {r: {"params": {"logits": {"kernel": jnp.zeros((1, n)), "bias": jnp.log(jnp.asarray(pi))}}}
             for (r, n), pi in zip((("a", 3), ("b", 2)), (PI_A, PI_B))}
    order = (("a", 3), ("b", 2))
    critic = coma.COMACritic((3, 2), (8,))
    critic_params = fast_jit(critic.init)(jax.random.PRNGKey(1), jnp.zeros((1, 2)), jnp.zeros((1, 5)))
    cfg = coma.COMALoss(policy, critic, order, ent_coef=0.0, normalize_advantages=False)
    one = lambda x: jnp.asarray(x)[None]  # noqa: E731  (a batch of one sample)
    actions = {"a": one(TAKEN[0]), "b": one(TAKEN[1])}
    acted = onpolicy.Acted(obs={"a": jnp.ones((1, 1)), "b": jnp.ones((1, 1))},
                           masks={"a": jnp.ones((1, 3), bool), "b": jnp.ones((1, 2), bool)},
                           actions=actions,
                           log_probs={"a": one(math.log(PI_A[1])), "b": one(math.log(PI_B[0]))},
                           weights={"a": jnp.ones(1), "b": jnp.ones(1)})
    world = jnp.array([[0.3, -0.7]])
    targets = jnp.array([[2.0, -1.0]])
    batch = coma.Batch(acted, world, {"a": one(Q[:, TAKEN[1]]), "b": one(Q[TAKEN[0], :])}, targets)
    params = {"actor": actor, "critic": critic_params}
    # One program for the loss, its gradient and the critic's heads (eager op-by-op dispatch would
    # compile every primitive on its own).
    (total, m), grads, (q_a, q_b) = fast_jit(lambda p, b: (
        coma.loss(p, b, cfg), jax.grad(lambda p: coma.loss(p, b, cfg)[0])(p),
        critic.apply(p["critic"], b.world_state, coma.joint_one_hot(b.acted.actions, order))))(params, batch)
    # Advantages 0.6 (a) and 1.8 (b), as by hand above; each actor's loss -A log pi(u).
    assert float(m["advantage/a"]) == pytest.approx(0.6, rel=1e-5)
    assert float(m["advantage/b"]) == pytest.approx(1.8, rel=1e-5)
    assert float(m["actor_loss/a"]) == pytest.approx(-0.6 * math.log(0.3), rel=1e-5)
    assert float(m["actor_loss/b"]) == pytest.approx(-1.8 * math.log(0.4), rel=1e-5)
    assert float(m["approx_kl/a"]) == pytest.approx(0.0, abs=1e-6)
    want = 0.5 * np.mean([(q_a[0, 1] - 2.0) ** 2, (q_b[0, 0] + 1.0) ** 2])
    assert float(m["critic_loss"]) == pytest.approx(float(want), rel=1e-5)
    assert float(total) == pytest.approx(float(m["actor_loss/a"] + m["actor_loss/b"] + m["critic_loss"]), rel=1e-5)
    # The baseline is a constant of the actor's gradient: d loss / d logits_a = -A (onehot(u) - pi).
    np.testing.assert_allclose(grads["actor"]["a"]["params"]["logits"]["bias"],
                               -0.6 * (np.eye(3)[TAKEN[0]] - PI_A), rtol=1e-5, atol=1e-6)


def test_config_checks():
    flags = {"algo": "coma", "scenario": "soc-v2", "num_envs": 10, "run": {"name": "x"}}
    cfg = config_lib.resolve(flags=flags, scenarios=["soc-v2"])
    assert algos.family_of("coma") == "coma" and cfg["coma"]["target_period"] == 1
    bad = {
        "coma.td_lambda=1.5": r"coma.td_lambda must be in \[0, 1\]",
        "coma.coordinator=native": "coma.coordinator must be one of onehot, hmarl",
        "coma.minibatches=3": r"must be divisible by coma.minibatches \(3\)",
        "coma.hidden_sizes=[]": "coma.hidden_sizes must be a non-empty list",
        "coma.target_period=0": "coma.target_period must be positive",
        "coma.bin_high=0.2": "coma.bin_low and bin_high must satisfy",
        "coma.th_bins=0": "coma.th_bins must be positive",
        "coma.critic_epochs=-1": r"coma.critic_epochs must be an integer >= 0, got -1",
        "coma.critic_epochs=1.5": r"coma.critic_epochs must be an integer",
        "coma.critic_fraction=0": r"coma.critic_fraction must be a number in \(0, 1\], got 0",
        "coma.critic_fraction=1.5": r"coma.critic_fraction must be a number in \(0, 1\]",
    }
    for item, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            config_lib.resolve(flags=flags, sets=[item], scenarios=["soc-v2"])
    # configs/coma.yaml fits the critic first over a quarter; a share with no critic-only passes:
    with pytest.raises(ConfigError, match=r"coma.critic_fraction < 1 needs coma.critic_epochs > 0"):
        config_lib.resolve(flags=flags, sets=["coma.critic_epochs=0"], scenarios=["soc-v2"])
    # 10 envs x 32 steps = 320 samples: 0.01 of them is 3, fewer than the 4 minibatches.
    with pytest.raises(ConfigError, match=r"coma.critic_fraction 0.01 of 320 samples per update leaves fewer "
                                          r"than coma.minibatches \(4\)"):
        config_lib.resolve(flags=flags, sets=["coma.critic_epochs=2", "coma.critic_fraction=0.01"],
                           scenarios=["soc-v2"])


# ----------------------------------------------------------------------------- the toy team
UPDATES = 40


def toy_trainer(**section):
    cfg = config_lib.resolve(flags={
        "algo": "coma", "scenario": "toy-soc", "num_envs": 32, "total_steps": 32 * 16 * UPDATES,
        "coma": {"hidden_sizes": [32], "rollout": 16, "lr": 3e-3, **section}, "run": {"name": "x"}},
        scenarios=["toy-soc"])
    env, params = make_toy_soc("toy-soc")
    # The family's own builder: the toy is no `SOCEnv`, so `algos.make_train`'s check of a SOC
    # world (`common.check_soc_team`, for real scenarios) refuses it, though its roles have the
    # SOC team's layout (one segment for the bins).
    return coma.make_train(cfg, env, params)


@pytest.fixture(scope="module")
def toy():
    """40 updates of 32 envs x 16 steps (20k env steps): seed 0 twice and seed 1, one program."""
    trainer = toy_trainer(target_period=2)  # the default 1 has no separate target: cover the copies
    # Compiled unoptimised (tests/fast.py): 11 CPU-s to compile + 1 s a run, against 23 + 0.4.
    train = fast_jit(trainer.train)
    return {name: jax.device_get(train(jax.random.PRNGKey(seed))) for name, seed in (("0", 0), ("0 again", 0), ("1", 1))}


@pytest.mark.slow  # CI budget (10 min on 2 cores): toy training fixture (~30 CPU-s); the hand-worked advantage and loss tests stay
def test_coma_learns_the_toy_team_and_never_takes_a_masked_choice(toy):
    # Uniformly random allowed choices (the untrained actors: logit heads start at gain 0.01)
    # score about -0.5 per step: 1/3 of the read coordinator steps (1 or 3 of 5 choices
    # allowed besides the target), 0.4 of triage steps, minus ~1.1 for random bins of the Box
    # roles. The best binned team scores about +0.87 (0.5 + 1 - 0.63 from the nearest bins).
    for seed in ("0", "1"):
        _, metrics = toy[seed]
        assert np.all(metrics["masked"] == 0.0)  # episodes' count of masked choices taken
        per_step = metrics["return"] / metrics["length"]
        assert np.all(np.isfinite(per_step))
        first, last = np.mean(per_step[:5]), np.mean(per_step[-5:])
        print(f"COMA on the toy team, seed {seed}: {first:.2f} per step (updates 1-5) -> {last:.2f} (updates 36-40)")
        assert first < -0.3
        assert last > first + 0.6


@pytest.mark.slow  # CI budget (10 min on 2 cores): toy training fixture (~30 CPU-s); the hand-worked advantage and loss tests stay
def test_the_same_seed_gives_the_same_run_and_another_seed_another(toy):
    (state0, m0), (state0b, m0b), (state1, m1) = toy["0"], toy["0 again"], toy["1"]
    for a, b in zip(jax.tree.leaves((state0, m0)), jax.tree.leaves((state0b, m0b))):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(m0["return"], m1["return"])
    # The target critic was copied after update 40 (target_period 2): equal to the critic now,
    # and no longer its initialisation.
    for a, b in zip(jax.tree.leaves(state0.target), jax.tree.leaves(state0.params["critic"])):
        np.testing.assert_array_equal(a, b)
    # Every layer moved from seed 0's initial critic (measured: 0.14 to 0.43 at most per layer;
    # the bar sits far above the last-bit rounding of another compile of `init`).
    init = fast_jit(toy_trainer(target_period=2).init)(jax.random.PRNGKey(0))
    for a, b in zip(jax.tree.leaves(state0.target), jax.tree.leaves(init.params["critic"])):
        assert np.abs(a - b).max() > 0.01, a.shape


@pytest.mark.slow  # CI budget: two more toy programs (~8 CPU-s cold); the default run's toy trains with period 2
def test_the_target_network_is_copied_every_target_period_updates():
    trainer = toy_trainer(target_period=2)
    state = fast_jit(trainer.init)(jax.random.PRNGKey(0))
    update = fast_jit(trainer.update)
    first, _ = update(state)
    second, _ = update(first)
    for got, want in ((first.target, state.params["critic"]), (second.target, second.params["critic"])):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(jax.tree.leaves(first.target)[0], jax.tree.leaves(first.params["critic"])[0])


def one_toy_update(**section):
    """One update of the toy team from seed 0's start in 2 minibatches: `(state, updated, metrics)`.
    `critic_fraction` defaults to the whole rollout here (configs/coma.yaml's passes take a quarter)."""
    trainer = toy_trainer(**{"minibatches": 2, "critic_fraction": 1.0, **section})
    state = fast_jit(trainer.init)(jax.random.PRNGKey(0))
    return state, *jax.device_get(fast_jit(trainer.update)(state))


def test_critic_epochs_fit_the_critic_first_and_its_q_drives_the_actors():
    """`critic_epochs > 0`: the critic's passes alone, then the actors' on the fitted critic's Q."""
    state, fit1, m1 = one_toy_update(critic_epochs=1)
    _, fit3, m3 = one_toy_update(critic_epochs=3)
    _, fit1_two_actor_passes, _ = one_toy_update(critic_epochs=1, epochs=2)
    # Each network has its own optimiser, stepped only in its own pass.
    assert set(state.opt_state) == {"actor", "critic"}
    # More critic passes fit the rollout's targets better (in sample) than the critic had before.
    for m in (m1, m3):
        assert m["explained_variance_fit"] > m["explained_variance"]
    assert m3["explained_variance_fit"] > m1["explained_variance_fit"]
    # The actors' step reads the fitted critic: it depends on how far the critic was fitted ...
    a1, a3 = jax.tree.leaves(fit1.params["actor"]), jax.tree.leaves(fit3.params["actor"])
    assert any(not np.array_equal(x, y) for x, y in zip(a1, a3))
    # ... and the critic is fitted before the actors and never by their pass: the same critic
    # whether the actors then take one pass or two.
    for x, y in zip(jax.tree.leaves(fit1.params["critic"]), jax.tree.leaves(fit1_two_actor_passes.params["critic"])):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(
        jax.tree.leaves(fit1.params["actor"]), jax.tree.leaves(fit1_two_actor_passes.params["actor"])))


def test_critic_fraction_passes_visit_a_share_of_the_rollout_and_still_fit_it():
    """`critic_fraction` < 1: each critic pass over a fresh half of the rollout (32 envs x 16 steps
    = 512 samples: 2 minibatches of 128 instead of 256), as many critic steps for half the work."""
    _, whole, m_whole = one_toy_update(critic_epochs=3, critic_fraction=1.0)
    _, half, m_half = one_toy_update(critic_epochs=3, critic_fraction=0.5)
    # The halves' critic fits its rollout's targets (in sample, all 512) better than before the
    # update, though each of its 6 steps saw 128 samples; it is another critic than the whole's.
    assert m_half["explained_variance_fit"] > m_half["explained_variance"]
    assert m_half["explained_variance"] == m_whole["explained_variance"]  # the same rollout
    assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(whole.params["critic"]),
                                                         jax.tree.leaves(half.params["critic"])))


def test_the_default_fits_the_critic_first_and_the_joint_config_is_the_old_default():
    plain = config_lib.resolve(config_file=config_lib.CONFIG_DIR / "coma.yaml")
    joint = config_lib.resolve(config_file=config_lib.CONFIG_DIR / "coma-joint.yaml")
    assert differing_keys(plain, joint) == {"coma.critic_epochs", "coma.critic_fraction"}
    assert (plain["coma"]["critic_epochs"], plain["coma"]["critic_fraction"]) == (8, 0.25)
    # The joint config is the code's own defaults (critic_epochs 0, the whole rollout), so its
    # runs train exactly what the runs from before the keys existed trained.
    assert (joint["coma"]["critic_epochs"], joint["coma"]["critic_fraction"]) == (
        coma.DEFAULTS["critic_epochs"], coma.DEFAULTS["critic_fraction"]) == (0, 1.0)


def soc_v2_trainer():
    import jaxsoc.env as soc

    cfg = config_lib.resolve(flags={"algo": "coma", "scenario": "soc-v2", "num_envs": 8, "total_steps": 8 * 4,
                                    "run": {"name": "x"}, "coma": {"rollout": 4, "hidden_sizes": [8],
                                                                   "minibatches": 2}})
    env, params = soc.make("soc-v2", hosts_per_segment=4)
    return env, algos.make_train(cfg, env, params)


def test_the_soc_v2_trainer_acts_in_the_env_spaces():
    """Traces `init` and `act` on soc-v2 without compiling them: the Box roles act through
    their bins (16 threat-hunter and 12 response-orchestrator choices) and give the env vectors."""
    env, trainer = soc_v2_trainer()
    state = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))
    heads = state.params["critic"]["params"]
    assert [heads[f"q_{a}"]["bias"].shape for a in range(4)] == [(15,), (16,), (4,), (12,)]
    one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), (state.obs, state.env_state))
    for greedy in (True, False):
        actions = jax.eval_shape(lambda p, o, s: trainer.act(p, jax.random.PRNGKey(1), o, s, greedy),
                                 trainer.policy_params(state), *one)
        for agent in env.agents:
            space = env.action_space(agent)
            assert actions[agent].shape == space.shape and actions[agent].dtype == space.dtype, agent


@pytest.mark.slow  # CI budget: tracing soc-v2's step costs ~5 CPU-s; the toy's update runs in the default run
def test_the_soc_v2_update_traces():
    env, trainer = soc_v2_trainer()
    assert trainer.env_steps_per_update == 32 and trainer.num_updates == 1
    state = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))
    new_state, metrics = jax.eval_shape(trainer.update, state)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert all(m.shape == () for m in metrics.values())
    assert {"env_steps", "episodes", "return", "csr", "critic_loss", "explained_variance"} <= set(metrics)
    assert {f"{k}/{r}" for k in ("entropy", "actor_loss", "advantage", "approx_kl") for r in env.agents} <= set(metrics)
