"""The IMPALA-style actor-learner with V-trace (jaxsoc/algos/impala.py, docs/impala.md).

  * V-trace targets and advantages against hand-worked numbers on a 3-step trajectory (off-policy
    weights, truncation levels, termination and time-limit truncation); on-policy with
    rho = c = 1 they are the n-step returns (GAE's lambda = 1), with c_bar = 0 one-step TD;
  * the importance weights per value column (joint ratio for a world critic, own ratio for local);
  * on the tiny SOC-shaped toy (tests/onpolicy_toys.py), through jaxsoc.engine: with lag L the
    actors act with the learner's parameters from exactly L updates ago; the team learns (per-step
    return from below 0 to above +0.5; random play scores about -0.3) with lag 0 and with lag 3;
    an interrupted-and-resumed run ends bit for bit as the straight one (a new train state: the
    lag queue), and two seeds differ;
  * bad config values are refused in one line before anything is traced.

Compiling dominates: the toy runs are compiled unoptimised (tests/fast.py) and the resumed run
reuses the straight run's programs (persistent compile cache).
"""
from __future__ import annotations

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsoc import config as config_lib, engine, run_log
from jaxsoc.algos import impala, onpolicy
from jaxsoc.algos.common import RoleSpec
from jaxsoc.config import ConfigError
from tests.fast import fast_compile
from tests.onpolicy_toys import make_toy_soc
from tests.test_config import differing_keys
from tests.test_engine import leaves_equal

# ----------------------------------------------------------------------------- V-trace by hand
GAMMA = 0.9
R = jnp.array([1.0, 2.0, 3.0])
V = jnp.array([0.5, 1.0, 1.5])
V_AFTER = jnp.array([1.0, 1.5, 2.0])  # V(x_{t+1}); 2.0 bootstraps after the rollout's last step
NO = jnp.zeros(3, bool)


def vtrace(ratios, rho_bar, c_bar, next_values=V_AFTER, terminated=NO, done=NO):
    return impala.vtrace(jnp.log(jnp.asarray(ratios)), R, V, next_values, terminated, done, GAMMA, rho_bar, c_bar)


def test_vtrace_targets_and_advantages_by_hand():
    # pi/mu = 2, 0.5, 1.2 with rho_bar 1.5, c_bar 1: rho = 1.5, 0.5, 1.2 and c = 1, 0.5, 1.
    # TD errors r + .9 V' - V: 1.4, 2.35, 3.3; deltas rho * TD: 2.1, 1.175, 3.96.
    # v2 - V2 = 3.96; v1 - V1 = 1.175 + .9 * .5 * 3.96 = 2.957; v0 - V0 = 2.1 + .9 * 1 * 2.957 = 4.7613
    vs, adv = vtrace([2.0, 0.5, 1.2], 1.5, 1.0)
    np.testing.assert_allclose(vs, [5.2613, 3.957, 5.46], rtol=1e-6)
    # A_t = rho_t (r_t + .9 v_{t+1} - V_t): 1.5 (1 + .9 * 3.957 - .5), .5 (2 + .9 * 5.46 - 1), 1.2 * 3.3
    np.testing.assert_allclose(adv, [6.09195, 2.957, 3.96], rtol=1e-6)

    # Step 1 terminated: no value after it (the 1.5 is ignored) and the trace stops there.
    # v1 - V1 = .5 (2 - 1) = .5; v0 - V0 = 2.1 + .9 * .5; A0 = 1.5 (1 + .9 * 1.5 - .5); A1 = .5 * 1
    ended = jnp.array([False, True, False])
    vs, adv = vtrace([2.0, 0.5, 1.2], 1.5, 1.0, terminated=ended, done=ended)
    np.testing.assert_allclose(vs, [3.05, 1.5, 5.46], rtol=1e-6)
    np.testing.assert_allclose(adv, [2.775, 0.5, 3.96], rtol=1e-6)

    # Step 1 truncated by the time limit, its terminal state worth 9: bootstrap from it, stop the trace.
    # v1 - V1 = .5 (2 + 8.1 - 1) = 4.55; v0 - V0 = 2.1 + .9 * 4.55 = 6.195; A0 = 1.5 (1 + .9 * 5.55 - .5)
    vs, adv = vtrace([2.0, 0.5, 1.2], 1.5, 1.0, next_values=jnp.array([1.0, 9.0, 2.0]), done=ended)
    np.testing.assert_allclose(vs, [6.695, 5.55, 5.46], rtol=1e-6)
    np.testing.assert_allclose(adv, [8.2425, 4.55, 3.96], rtol=1e-6)


def test_vtrace_on_policy_is_the_n_step_return_and_c_bar_0_is_one_step_td():
    # On-policy, rho = c = 1: the discounted return to the rollout's end, bootstrapped from V = 2.
    vs, adv = vtrace([1.0, 1.0, 1.0], 1.0, 1.0)
    np.testing.assert_allclose(vs[0], 1 + .9 * 2 + .81 * 3 + .729 * 2.0, rtol=1e-6)
    np.testing.assert_allclose(vs, [6.688, 6.32, 4.8], rtol=1e-6)
    np.testing.assert_allclose(adv, vs - V, rtol=1e-6)
    # ... which is GAE with lambda = 1 (targets and advantages), also through ends and [T, N, C] columns.
    rng = np.random.default_rng(0)
    r, v, nv = (jnp.asarray(rng.normal(size=(7, 3, 2)), jnp.float32) for _ in range(3))
    term = jnp.asarray(rng.random((7, 3, 1)) < 0.2)
    done = term | jnp.asarray(rng.random((7, 3, 1)) < 0.2)
    gae_adv, gae_ret = onpolicy.gae(r, v, nv, term, done, GAMMA, 1.0)
    vs, adv = impala.vtrace(jnp.zeros((7, 3, 2)), r, v, nv, term, done, GAMMA, 1.0, 1.0)
    np.testing.assert_allclose(vs, gae_ret, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adv, gae_adv, rtol=1e-5, atol=1e-6)
    # c_bar = 0: no trace, v_t = V_t + rho_t (r_t + gamma V_{t+1} - V_t), one-step TD (GAE lambda = 0 on-policy).
    vs, _ = vtrace([2.0, 0.5, 1.2], 1.0, 0.0)
    np.testing.assert_allclose(vs, [0.5 + 1.4, 1.0 + 0.5 * 2.35, 1.5 + 3.3], rtol=1e-6)
    _, td_ret = onpolicy.gae(r, v, nv, term, done, GAMMA, 0.0)
    vs, _ = impala.vtrace(jnp.zeros((7, 3, 2)), r, v, nv, term, done, GAMMA, 1.0, 0.0)
    np.testing.assert_allclose(vs, td_ret, rtol=1e-5, atol=1e-6)


def test_importance_weights_per_value_column():
    roles = ("coordinator", "alert_triage")
    policy = onpolicy.Policy((RoleSpec("coordinator", 2, "discrete", 3), RoleSpec("alert_triage", 2, "discrete", 4)))
    log_ratios = {"coordinator": jnp.array([0.3, -0.2]), "alert_triage": jnp.array([0.1, 0.4])}
    weights = {"coordinator": jnp.array([1.0, 0.0]), "alert_triage": jnp.ones(2)}  # step 1: coordinator not read
    world = impala.column_log_rhos(log_ratios, weights, policy, onpolicy.Critic("world", roles))
    np.testing.assert_allclose(world, [[0.4], [0.4]], rtol=1e-6)  # the joint ratio: 0.3 + 0.1; 0 + 0.4
    local = impala.column_log_rhos(log_ratios, weights, policy, onpolicy.Critic("local", roles))
    np.testing.assert_allclose(local, [[0.3, 0.1], [0.0, 0.4]], rtol=1e-6)


# ----------------------------------------------------------------------------- the clipped surrogate
def tiny_segment(policy, mu_params, key, n=4, T=5):
    """A hand-made `Segment` of two discrete roles: mu's actions sampled, rewards random."""
    k_obs, k_act, k_rew, k_last = jax.random.split(key, 4)
    obs = {s.name: jax.random.normal(jax.random.fold_in(k_obs, i), (n, T, s.obs_dim))
           for i, s in enumerate(policy.specs)}
    masks = {s.name: jnp.ones((n, T, s.size), bool) for s in policy.specs}
    mu = policy.dists(mu_params, obs, masks)
    actions, _ = onpolicy.sample(mu, k_act)
    acted = onpolicy.Acted(obs, masks, actions, onpolicy.log_probs_of(mu, actions),
                           {r: jnp.ones((n, T)) for r in policy.roles})
    last = {s.name: jax.random.normal(jax.random.fold_in(k_last, i), (n, s.obs_dim))
            for i, s in enumerate(policy.specs)}
    ended = jnp.zeros((n, T), bool).at[1, 2].set(True)
    return impala.Segment(acted, None, last, None, jax.random.normal(k_rew, (n, T)), ended, ended)


def test_clipped_surrogate_starts_as_v_trace_and_weighs_the_targets_by_the_start_policy():
    policy = onpolicy.Policy((RoleSpec("alert_triage", 3, "discrete", 4), RoleSpec("threat_hunter", 2, "discrete", 3)),
                             hidden_sizes=(8,))
    critic = onpolicy.Critic("local", policy.roles, (8,))
    k_mu, k_pi, k_moved, k_critic, k_seg = jax.random.split(jax.random.PRNGKey(3), 5)
    segment = tiny_segment(policy, policy.init(k_mu), k_seg)
    pi = {"actor": policy.init(k_pi), "critic": critic.init(k_critic, {"alert_triage": 3, "threat_hunter": 2}, 0)}
    start = onpolicy.log_probs_of(policy.dists(pi["actor"], segment.acted.obs, segment.acted.masks),
                                  segment.acted.actions)
    clipped = segment._replace(start_log_probs=start)
    vtrace_cfg, clip_cfg = impala.VTraceConfig(), impala.VTraceConfig(clip_eps=0.2)
    grad = lambda p, seg, cfg: jax.grad(impala.loss, has_aux=True)(p, seg, policy, critic, cfg)  # noqa: E731

    # At the update's start (pi = pi_start) the clipped loss's gradient is V-trace's, every leaf.
    (g_vtrace, m_vtrace), (g_clip, m_clip) = grad(pi, segment, vtrace_cfg), grad(pi, clipped, clip_cfg)
    for a, b in zip(jax.tree.leaves(g_vtrace), jax.tree.leaves(g_clip)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    assert m_clip["clip_frac/alert_triage"] == 0.0 and "clip_frac/alert_triage" not in m_vtrace
    assert float(m_clip["value_loss"]) == pytest.approx(float(m_vtrace["value_loss"]), rel=1e-6)

    # Away from it, the targets keep pi_start's weights (the value loss does not move with the
    # actor), while V-trace's follow the current actor; and the clip now binds on some samples.
    leaves, tree = jax.tree.flatten(pi["actor"])  # the heads start near 0 (scale 0.01): move every leaf by N(0, 1)
    noise = [jax.random.normal(k, x.shape) for k, x in zip(jax.random.split(k_moved, len(leaves)), leaves)]
    moved = {**pi, "actor": jax.tree.unflatten(tree, [x + e for x, e in zip(leaves, noise)])}
    _, m_clip_moved = grad(moved, clipped, clip_cfg)
    _, m_vtrace_moved = grad(moved, segment, vtrace_cfg)
    assert float(m_clip_moved["value_loss"]) == pytest.approx(float(m_clip["value_loss"]), rel=1e-6)
    assert abs(float(m_vtrace_moved["value_loss"]) - float(m_vtrace["value_loss"])) > 1e-3
    assert 0.0 < float(m_clip_moved["clip_frac/alert_triage"]) < 1.0


# ----------------------------------------------------------------------------- on the toy team
UPDATES, CHECKPOINT_AT, LAG = 40, 20, 3


def toy_config(root, name, lag, chunk_updates, clip_eps=None):
    section = {"hidden_sizes": [32], "rollout": 16, "lr": 3e-3, "minibatches": 2, "policy_lag": lag,
               "clip_eps": clip_eps}
    flags = {"algo": "impala", "scenario": "toy-soc", "num_envs": 32, "total_steps": 32 * 16 * UPDATES,
             "num_seeds": 2, "impala": section,
             "run": {"dir": str(root), "name": name, "chunk_updates": chunk_updates,
                     "checkpoint_every": CHECKPOINT_AT, "progress": False, "tensorboard": False}}
    return config_lib.resolve(flags=flags, scenarios=["toy-soc"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Lag LAG (every update's state kept) and the same run resumed from its checkpoint at update
    CHECKPOINT_AT; under -m slow also lag 0 (`lag0`), another program to compile."""
    root = tmp_path_factory.mktemp("impala")
    states = {}

    def keep(update, state):
        states[update] = jax.device_get((state.params["actor"], state.lagged))

    out = {}
    with fast_compile():  # the runs are short: compiling dominates
        out["lag"] = engine.run(toy_config(root, "lag", LAG, 1), make_env=make_toy_soc, on_chunk=keep)
        shutil.copytree(root / "lag", root / "resumed")
        out["resumed"] = engine.run(toy_config(root, "ignored", LAG, 1), resume=root / "resumed",
                                    from_update=CHECKPOINT_AT, make_env=make_toy_soc)
    out["states"], out["root"] = states, root
    return out


@pytest.fixture(scope="module")
def lag0(runs):
    with fast_compile():
        return engine.run(toy_config(runs["root"], "lag0", 0, UPDATES), make_env=make_toy_soc)


@pytest.fixture(scope="module")
def clipped(runs):
    with fast_compile():
        return engine.run(toy_config(runs["root"], "clip", LAG, UPDATES, clip_eps=0.1), make_env=make_toy_soc)


def records_of(result, seed):
    records, _ = run_log.read_jsonl(result.run_dir / "metrics.jsonl")
    return [r["metrics"] for r in records if r["seed"] == seed]


@pytest.mark.slow  # CI budget (10 min on 2 cores): the toy runs' fixture (~45 CPU-s); V-trace's hand-worked tests stay
def test_actors_act_with_the_learners_parameters_from_lag_updates_ago(runs):
    states = runs["states"]  # update u -> (the learner's actor parameters theta_u, the lag queue)
    slot = lambda queue, j: jax.tree.map(lambda x: x[:, j], queue)  # noqa: E731  ([seeds, L, ...])
    theta = {u: actor for u, (actor, _) in states.items()}
    theta[0] = slot(states[1][1], -1)  # the queue's newest entry after update 1: the initial parameters
    assert not leaves_equal(theta[0], theta[1])
    for u in range(1, UPDATES + 1):
        queue = states[u][1]
        # After update u the queue holds theta_{u-L}, ..., theta_{u-1} (theta_0 before the start);
        # update u + 1 learns from theta_u and its actors act with slot 0, theta_{u-L}: L updates behind.
        for j in range(LAG):
            assert leaves_equal(slot(queue, j), theta[max(u - LAG + j, 0)]), (u, j)
    # ... and the rollouts really act with them: KL(mu || pi) on the actors' samples (averaged over
    # roles and the update's two minibatches) grows with the actors' staleness over updates 1-4,
    # which act with theta_0 while the learner holds theta_0 ... theta_3 (lag 0 stays flat: below).
    for seed in (0, 1):
        kl = [mean_kl(m) for m in records_of(runs["lag"], seed)[:LAG + 1]]
        print(f"seed {seed}: KL(mu || pi), updates 1-{LAG + 1}: " + ", ".join(f"{k:.1e}" for k in kl))
        assert kl[1] > 3 * kl[0] and kl[2] > kl[1] and kl[3] > kl[2]  # measured 4e-5, 3e-4, 7e-4, 1.5e-3


def mean_kl(metrics):
    return np.mean([v for k, v in metrics.items() if k.startswith("approx_kl/")])


def assert_learns(result, name):
    for seed in (0, 1):
        rows = records_of(result, seed)
        assert len(rows) == UPDATES
        assert all(m["masked"] == 0.0 for m in rows)  # masked choices are never taken
        per_step = [m["return"] / m["length"] for m in rows]
        first, last = np.mean(per_step[:5]), np.mean(per_step[-5:])
        print(f"{name} seed {seed}: return per step {first:.2f} (updates 1-5) -> {last:.2f} (updates 36-40)")
        # Random play scores about -0.3 per step, the best team about +1.5 (tests/test_ppo.py).
        assert first < 0.0
        assert last > 0.5


@pytest.mark.slow  # CI budget (10 min on 2 cores): the toy runs' fixture (~45 CPU-s); V-trace's hand-worked tests stay
def test_learns_the_toy_team_with_lag(runs):
    assert_learns(runs["lag"], f"lag {LAG}")


@pytest.mark.slow  # CI budget: one more program to compile (~12 CPU-s); V-trace on-policy is GAE(1), tested above
def test_learns_the_toy_team_without_lag_and_its_actors_stay_close(runs, lag0):
    assert_learns(lag0, "lag 0")
    # At lag 0 only the second minibatch of an update is off-policy (one step): KL(mu || pi) stays
    # tiny and flat, far below the lagged actors' over the last 20 updates.
    late = {name: np.mean([mean_kl(m) for m in records_of(r, 0)[-20:]]) for name, r in (("lag", runs["lag"]),
                                                                                          ("lag0", lag0))}
    print(f"KL(mu || pi), updates 21-40: lag {LAG} {late['lag']:.1e}, lag 0 {late['lag0']:.1e}")
    assert late["lag"] > 10 * late["lag0"]  # measured 5.7e-3 against 1.0e-4


def test_an_on_policy_update_clips_no_importance_weight():
    """Lag 0, one minibatch: every sample is on-policy, its log-ratio 0 up to float rounding
    (~5e-6), and `rho_clip_frac` is 0; a strict `> log(rho_bar)` counted 24-26 % of them here."""
    from jaxsoc import algos

    cfg = toy_config("unused", "onpolicy", 0, 1)
    cfg["impala"].update(minibatches=1, hidden_sizes=[8])
    cfg["num_envs"], cfg["total_steps"] = 8, 8 * 16 * 2
    env, params = make_toy_soc(cfg["scenario"])
    trainer = algos.make_train(cfg, env, params)
    with fast_compile():
        run = jax.jit(lambda key: jax.lax.scan(lambda s, _: trainer.update(s), trainer.init(key), None, length=2))
        _, metrics = run(jax.random.key(0))
    assert np.all(np.asarray(metrics["rho_clip_frac"]) == 0.0), metrics["rho_clip_frac"]
    assert np.all(np.abs(np.asarray([metrics[f"approx_kl/{r}"] for r in env.agents])) < 1e-5)


@pytest.mark.slow  # CI budget: one more program to compile (~12 CPU-s); the surrogate's gradient is tested above
def test_learns_the_toy_team_with_the_clipped_surrogate(clipped):
    assert_learns(clipped, "clip 0.1")
    # The clip binds: some samples' ratios to the update's start policy leave 1 +- 0.1.
    fractions = [v for m in records_of(clipped, 0) for k, v in m.items() if k.startswith("clip_frac/")]
    assert len(fractions) == 4 * UPDATES and max(fractions) > 0.0  # the toy's four roles, every update


@pytest.mark.slow  # CI budget (10 min on 2 cores): the toy runs' fixture (~45 CPU-s); V-trace's hand-worked tests stay
def test_resume_is_bit_exact_and_seeds_differ(runs):
    straight, resumed = runs["lag"], runs["resumed"]
    assert resumed.updates == straight.updates == UPDATES
    # learner and lag-queue parameters, Adam moments, env states, observations, keys, counters
    assert leaves_equal(resumed.state, straight.state)
    assert all(records_of(resumed, i) == records_of(straight, i) for i in (0, 1))
    w = jax.tree.leaves(straight.state.params["actor"]["alert_triage"])[0]
    assert not np.allclose(w[0], w[1])


# ----------------------------------------------------------------------------- config
def test_bad_config_values_are_refused_in_one_line():
    flags = {"algo": "impala", "scenario": "soc-v2", "num_envs": 8, "run": {"name": "x"}}
    assert config_lib.resolve(flags=flags, scenarios=["soc-v2"])["impala"]["critic"] == "world"
    bad = {
        "impala.critic=joint": "impala.critic must be one of world, local",
        "impala.policy_lag=-1": "impala.policy_lag must be an integer >= 0",
        "impala.c_bar=-0.5": "impala.c_bar must be >= 0",
        "impala.rho_bar=0": "impala.rho_bar must be positive",
        "impala.minibatches=3": r"num_envs \(8\) must be divisible by impala.minibatches \(3\)",
        "impala.gamma=1.5": r"impala.gamma must be in \[0, 1\]",
        "impala.clip_eps=0": "impala.clip_eps must be a number > 0 or null, got 0",
        "impala.clip_eps=wide": "impala.clip_eps must be a number > 0 or null, got 'wide'",
    }
    for item, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            config_lib.resolve(flags=flags, sets=[item], scenarios=["soc-v2"])


def test_the_clipped_config_is_impala_s_with_the_clip_and_mappo_s_learning_rate():
    plain = config_lib.resolve(config_file=config_lib.CONFIG_DIR / "impala.yaml")
    clipped = config_lib.resolve(config_file=config_lib.CONFIG_DIR / "impala-clip.yaml")
    assert differing_keys(plain, clipped) == {"impala.clip_eps", "impala.lr"}
    assert (plain["impala"]["clip_eps"], clipped["impala"]["clip_eps"]) == (None, 0.2)
    mappo = config_lib.resolve(config_file=config_lib.CONFIG_DIR / "mappo.yaml")
    assert clipped["impala"]["lr"] == mappo["ppo"]["lr"] and clipped["impala"]["clip_eps"] == mappo["ppo"]["clip_eps"]


@pytest.mark.slow  # tracing soc-v2's step costs ~10 CPU-s; the default run trains on the toy, -m slow runs tests/test_registry.py on hmarl-soc-v1
@pytest.mark.parametrize("critic, clip_eps", [("world", None), ("local", None), ("world", 0.2)])
def test_traces_on_soc_v2(critic, clip_eps):
    """One update and `act` traced (not compiled) on soc-v2: shapes, metric names, action spaces."""
    import jaxsoc.env as soc
    from jaxsoc import algos

    cfg = config_lib.resolve(flags={"algo": "impala", "scenario": "soc-v2", "num_envs": 8, "total_steps": 8 * 4,
                                    "run": {"name": "x"},
                                    "impala": {"rollout": 4, "hidden_sizes": [8], "minibatches": 2, "critic": critic,
                                               "policy_lag": 2, "clip_eps": clip_eps}})
    env, params = soc.make("soc-v2", hosts_per_segment=4)
    trainer = algos.make_train(cfg, env, params)
    state = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))
    new_state, metrics = jax.eval_shape(trainer.update, state)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert {"env_steps", "episodes", "return", "csr", "value_loss", "rho_clip_frac"} <= set(metrics)
    assert {f"approx_kl/{r}" for r in env.agents} <= set(metrics)
    assert ({f"clip_frac/{r}" for r in env.agents} <= set(metrics)) == (clip_eps is not None)
    one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), (state.obs, state.env_state))
    actions = jax.eval_shape(lambda p, o, s: trainer.act(p, jax.random.PRNGKey(1), o, s, False),
                             trainer.policy_params(state), *one)
    for agent in env.agents:
        assert actions[agent].shape == env.action_space(agent).shape
