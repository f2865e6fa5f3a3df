"""The HMARL-SOC team (jaxsoc/algos/hmarl/) on a small soc-v2 network, checked on recorded rollouts.

* the coordinator's directive changes only where the env's clock is a multiple of K, and the
  tier-2 roles see the directive in force (their observations and the stored transitions);
* the PPO update consumes the executed directive and its log-probability at acting time;
* macro-rewards are the discounted sums of the step rewards between two decisions;
* every learner's parameters change in a short run, the explainer's weights are a distribution
  over the segments and receive gradient; the ablation switches change what they name;
* (slow) two seeds vmapped through the engine (the former XLA CPU hang of docs/hmarl.md; its cause
  is checked cheaply in tests/test_vmap_safety.py).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc import buffers
from jaxsoc import config as config_lib
from jaxsoc import engine
from jaxsoc.checkpoints import Checkpoints
from jaxsoc.algos import hierarchy as hz
from jaxsoc.algos import hmarl
from jaxsoc.algos import offpolicy as op
from jaxsoc.env.observe import feature_names
from tests.fast import fast_jit
from tests.test_engine import leaves_equal

K = 3
N, T = 16, 12
SMALL = dict(
    algo="hmarl", scenario="soc-v2", env={"hosts_per_segment": 8}, num_envs=N, total_steps=N * T * 6,
    hmarl={"k": K, "rollout": T, "hidden_sizes": [32, 32], "buffer_size": 4096, "batch_size": 32,
           "learning_starts": 64, "utd": 2 / (N * T),
           "coordinator": {"d_k": 16, "embed_dim": 16, "capacity": 1.5}},
    run={"chunk_updates": 3, "checkpoint_every": 6, "progress": False, "tensorboard": False},
)

# Without a coordinator its keys are refused (nothing reads them): SMALL's sizes are left out.
NO_COORDINATOR = {**SMALL, "hmarl": {**{k: v for k, v in SMALL["hmarl"].items() if k != "coordinator"},
                                     "train_coordinator": False}}


def build(**section):
    base = NO_COORDINATOR if section.get("train_coordinator") is False else SMALL
    cfg = config_lib.resolve(flags=config_lib.merge(base, {"hmarl": section}))
    env, env_params = soc.make(cfg["scenario"], **cfg["env"])
    return cfg, hmarl.make_train(cfg, env, env_params), hmarl.make_parts(cfg, env, env_params)


def test_hmarl_k_is_the_env_every_rebuild_steps():
    """hmarl.k went to the trainer's copy of the env only: evaluation, replay and the explainer
    rebuilt the scenario's K (5) around a team trained at K. Now it is the env's (every tool builds
    the env through engine.make_env_checked); settings nothing reads are refused."""
    cfg = config_lib.resolve(flags=config_lib.merge(SMALL, {"hmarl": {"k": 10}}))
    env, env_params = engine.make_env_checked(cfg)
    assert env_params.directive_period == 10 == hmarl.make_parts(cfg, env, env_params).setup.k
    assert cfg["env"].get("directive_period") is None  # the config is as given (its hash unchanged)
    for sets, match in ((["hmarl.k=10", "env.directive_period=3"], "name two directive periods"),
                        (["hmarl.coordinator_action=5"], "hmarl.coordinator_action is the fixed directive"),
                        (["hmarl.coordinator.num_heads=0"], "hmarl.coordinator.num_heads must be positive"),
                        (["hmarl.coordinator.embed_dim=-4"], "hmarl.coordinator.embed_dim must be positive")):
        with pytest.raises(config_lib.ConfigError, match=match):
            config_lib.resolve(flags=SMALL, sets=sets)
    # the explainer refuses a run without a coordinator (its weights were never trained)
    fixed = config_lib.resolve(flags=NO_COORDINATOR)
    with pytest.raises(ValueError, match="no coordinator \\(hmarl.train_coordinator: false\\)"):
        hmarl.attention_weights(None, None, fixed, env_params)


def collect_fn(parts):
    """`state -> (state, StepTrace [T, N])`: one rollout, nothing learned."""
    return fast_jit(functools.partial(hmarl.collect, parts))


@pytest.fixture(scope="module")
def recorded():
    """Two rollouts of the default team (the second after the first one's updates), jitted once.
    Unoptimised (tests/fast.py): a few updates of 16 envs x 12 steps never win back XLA's
    optimisation time."""
    cfg, trainer, parts = build()
    state = fast_jit(trainer.init)(jax.random.key(0))
    collect, update = collect_fn(parts), fast_jit(trainer.update)
    before = state
    state, trace = collect(state)
    state2, metrics = update(state)
    return dict(cfg=cfg, trainer=trainer, parts=parts, before=before, after_collect=state, trace=trace,
                updated=state2, metrics=metrics, update=update)


def test_directive_changes_only_at_multiples_of_k_and_tier2_sees_it(recorded):
    parts, state, trace = recorded["parts"], recorded["after_collect"], recorded["trace"]
    decided, held = np.asarray(trace.decided), np.asarray(trace.held)
    # The env's clock: envs start at t = 0 and nothing ended in 12 steps of a 200-step episode
    # unless an episode terminated; decisions are exactly the steps with t % K == 0.
    assert decided[0].all() and decided.shape == (T, N)
    changed = held[1:] != held[:-1]
    assert not (changed & ~decided[1:]).any(), "the directive changed between decisions"
    assert changed.any(), "a random coordinator over 20 directives should change its mind sometimes"
    # Tier 2 sees it: the stored transitions carry the directive one-hot, and the next observation
    # of every tier-2 role shows the focus and posture of the directive in force.
    stored = jax.tree.map(lambda x: np.asarray(x[: T * N]), buffers.replay_of(state.buffer).storage)
    held_flat = held.reshape(-1)
    p = parts.env_params
    np.testing.assert_array_equal(stored["directive"].argmax(-1), held_flat)
    np.testing.assert_array_equal(stored["directive"].sum(-1), 1.0)
    for role in hmarl.TIER2:
        names = feature_names(p)[role]
        focus = [i for i, n in enumerate(names) if n.startswith("directive.focus=")]
        posture = [i for i, n in enumerate(names) if n.startswith("directive.posture=")]
        assert len(focus) == p.num_segments and len(posture) == p.num_postures
        obs = stored["next_obs"][role]
        shown = obs[:, focus].argmax(-1) * p.num_postures + obs[:, posture].argmax(-1)
        np.testing.assert_array_equal(shown, held_flat, err_msg=role)


def test_ppo_consumes_the_executed_directive_and_its_acting_log_prob(recorded):
    parts, before, trace = recorded["parts"], recorded["before"], recorded["trace"]
    records, held, decided = trace.record, np.asarray(trace.held), np.asarray(trace.decided)
    emit = np.asarray(records.emit)
    assert emit.sum() > N  # every env completed at least one macro-step
    coord = parts.coordinator
    dist, _ = coord.dist(before.coordinator.actor_params, records.obs)
    recomputed = np.asarray(dist.log_prob(records.action))
    np.testing.assert_allclose(np.asarray(records.log_prob)[emit], recomputed[emit], rtol=1e-5, atol=1e-5)
    # The recorded action is the directive the env executed: the one held at the decision step.
    for n in range(N):
        steps = np.flatnonzero(decided[:, n])
        ends = [t for t in range(T) if emit[t, n]]
        for start, end in zip(steps, ends):
            assert records.action[end, n] == held[start, n]
    # The update's ratios start at exactly 1 (recorded log-probs = the policy's own): no clipping.
    adv, ret = fast_jit(lambda r: hz.macro_gae(r, 0.95))(records)
    w, (obs, act, lp, adv_g, ret_g) = hz.valid_first(jax.random.key(3), records.emit, 64, records.obs,
                                                            records.action, records.log_prob, adv, ret)
    batch = dict(obs=obs, action=act, log_prob=lp, advantage=adv_g, **{"return": ret_g}, weight=w)
    _, info = coord.loss((before.coordinator.actor_params, before.coordinator.critic_params), batch)
    assert abs(float(info["approx_kl"])) < 1e-6 and float(info["clip_frac"]) == 0.0


def test_macro_rewards_are_discounted_sums_between_decisions(recorded):
    gamma = recorded["cfg"]["hmarl"]["gamma"]
    trace = recorded["trace"]
    records, reward, decided = trace.record, np.asarray(trace.reward), np.asarray(trace.decided)
    emit, macro = np.asarray(records.emit), np.asarray(records.reward)
    checked = 0
    for n in range(N):
        steps = list(np.flatnonzero(decided[:, n]))
        for start, nxt in zip(steps, steps[1:]):
            end = nxt - 1  # the macro-step opened at `start` completes at the end of step nxt - 1
            assert emit[end, n]
            expect = sum(gamma ** j * reward[start + j, n] for j in range(nxt - start))
            np.testing.assert_allclose(macro[end, n], expect, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(np.asarray(records.discount)[end, n], gamma ** (nxt - start), rtol=1e-6)
            checked += 1
    assert checked >= N * (T // K - 1)


def _changed(a, b):
    return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_every_learner_changes_and_the_explainer_gets_gradient(recorded):
    update = recorded["update"]
    state = recorded["updated"]
    for _ in range(2):  # past learning_starts: tier-2 rounds run
        state, metrics = update(state)
    before = recorded["before"]
    assert int(state.grad_steps) > 0
    losses = {k: float(v) for k, v in metrics.items() if "loss" in k}
    assert any(k.startswith("th/") for k in losses) and any(k.startswith("ro/") for k in losses)
    assert all(np.isfinite(v) for v in losses.values()), losses
    explainer = lambda s: s.coordinator.actor_params["params"]["explainer"]
    assert _changed(explainer(before), explainer(state)), "the attention explainer did not learn"
    assert _changed(before.coordinator.actor_params, state.coordinator.actor_params)
    assert _changed(before.coordinator.critic_params, state.coordinator.critic_params)
    for role in hmarl.TIER2:
        assert _changed(before.agents[role], state.agents[role]), role
    sac, ro = state.agents["threat_hunter"], state.agents["response_orchestrator"]
    assert _changed(before.agents["threat_hunter"].actor_params, sac.actor_params)
    assert _changed(before.agents["response_orchestrator"].actor_params, ro.actor_params)  # D16 fixed
    # The explainer's weights: a distribution over the segments per head, for every decision.
    parts, records = recorded["parts"], recorded["trace"].record
    obs = {"coordinator": records.obs.reshape(-1, records.obs.shape[-1])}
    w, names = hmarl.attention_weights((state.coordinator.actor_params, state.agents), obs, recorded["cfg"],
                                       parts.env_params)
    assert w.shape == (T * N, 4, parts.env_params.num_segments) and len(names) == parts.env_params.num_segments
    np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, rtol=1e-5)
    assert (np.asarray(w) >= 0).all()
    # ... and they receive gradient from the policy loss (the key projection's gradient is non-zero).
    coord = parts.coordinator

    def logit_loss(params):
        dist, _ = coord.dist(params, records.obs[0])
        return jnp.sum(dist.log_prob(records.action[0]))

    g = jax.grad(logit_loss)(before.coordinator.actor_params)["params"]["explainer"]
    assert float(jnp.abs(g["attention"]["key"]["kernel"]).sum()) > 0


@pytest.mark.slow  # CI budget (10 min on 2 cores): ~65 CPU-s; the other recorded-rollout tests stay
def test_ablation_switches(recorded):
    # No coordinator: the fixed directive everywhere, the coordinator never changes.
    cfg, trainer, parts = build(train_coordinator=False, coordinator_action=7)
    s0 = jax.jit(trainer.init)(jax.random.key(0))
    s1, trace = collect_fn(parts)(s0)
    stored = buffers.replay_of(s1.buffer).storage
    np.testing.assert_array_equal(np.asarray(stored["directive"][: T * N]).argmax(-1), 7)
    p = parts.env_params
    np.testing.assert_array_equal(np.asarray(s1.env_state.focus * p.num_postures + s1.env_state.posture), 7)
    s2, _ = jax.jit(trainer.update)(s1)
    assert not _changed(s0.coordinator, s2.coordinator)
    # Separate buffers: one priority tree per learner (the other two held apart); uniform replay.
    _, trainer_sep, _ = build(shared_buffer=False)
    assert jax.eval_shape(trainer_sep.init, jax.random.key(0)).extra_priorities is not None
    assert recorded["before"].extra_priorities is None
    _, trainer_uni, _ = build(per=False)
    assert isinstance(jax.eval_shape(trainer_uni.init, jax.random.key(0)).buffer, buffers.ReplayState)
    assert isinstance(recorded["before"].buffer, buffers.PrioritizedState)
    # K: the env reads the directive every k steps.
    _, _, parts5 = build(k=5)
    assert parts5.env_params.directive_period == 5 and parts5.setup.k == 5
    assert recorded["parts"].env_params.directive_period == K


@pytest.mark.slow  # CI budget (10 min on 2 cores): tests/test_registry.py checks hmarl resume in the default run
def test_resume_from_a_checkpoint_is_bit_exact(recorded, tmp_path):
    """The train state after an update (pending macro-transitions, the replay and its PER tree,
    the held directives, keys), saved and restored by `Checkpoints`, then one more update: the
    same state and metrics, bit for bit, as the straight run."""
    update, state = recorded["update"], recorded["updated"]
    ckpt = Checkpoints(tmp_path / "checkpoints")
    try:
        ckpt.save(1, state, {})
        ckpt.wait()
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
        resumed = ckpt.restore(1, abstract)
    finally:
        ckpt.close()
    straight, m_straight = update(state)
    resumed, m_resumed = update(resumed)
    assert int(straight.grad_steps) > 0 and int(straight.pending.active.sum()) > 0  # learned, mid macro-step
    assert leaves_equal(straight, resumed)
    for k in m_straight:
        np.testing.assert_array_equal(np.asarray(m_straight[k]), np.asarray(m_resumed[k]), err_msg=k)


def test_act_gives_the_env_spaces_and_is_deterministic_given_its_key(recorded):
    trainer, parts, state = recorded["trainer"], recorded["parts"], recorded["updated"]
    first = lambda t: jax.tree.map(lambda x: x[0], t)
    obs, env_state = first(state.obs), first(state.env_state)
    params = trainer.policy_params(state)
    act = fast_jit(trainer.act, static_argnums=4)
    runs = {(greedy, k): act(params, jax.random.key(k), obs, env_state, greedy) for greedy in (True, False)
            for k in (1, 2)}
    for (greedy, k), actions in runs.items():
        assert set(actions) == set(parts.env.agents)
        for role, a in actions.items():
            space = parts.env.action_space(role)
            assert a.shape == space.shape, (role, a.shape)
            assert bool(space.contains(a)), (role, a)
    same = lambda a, b: all(np.array_equal(a[r], b[r]) for r in a)
    again = {greedy: act(params, jax.random.key(1), obs, env_state, greedy) for greedy in (True, False)}
    assert same(runs[True, 1], again[True]) and same(runs[False, 1], again[False])  # a key decides it all
    assert same(runs[True, 1], runs[True, 2])  # greedy: no randomness
    assert not same(runs[False, 1], runs[False, 2])  # sampled: the key matters
    # Greedy, the coordinator offers its policy's mode.
    dist, _ = parts.coordinator.dist(params[0], obs["coordinator"][None])
    assert int(runs[True, 1]["coordinator"]) == int(dist.mode()[0])


@pytest.mark.parametrize("scenario, value, extra", [("hmarl-soc-v1", "true", 8), ("soc-v2", "true", "directives"),
                                                    ("soc-v2", "false", 0), ("hmarl-soc-v1", "auto", 0)])
def test_condition_on_directive_is_set_from_the_command_line_and_widens_tier2(scenario, value, extra):
    """`--set hmarl.condition_on_directive=true` (docs/hmarl.md) was refused as "must be a string";
    true appends the directive (v1: its 8 numbers; soc-v2: the one-hot of its directives) to
    each tier-2 role's observation, and the team traces through an update at those widths."""
    flags = config_lib.merge(SMALL, {"scenario": scenario, "hmarl": {"k": 5}})
    cfg = config_lib.resolve(flags=flags, sets=[f"hmarl.condition_on_directive={value}"])
    assert cfg["hmarl"]["condition_on_directive"] == {"true": True, "false": False, "auto": "auto"}[value]
    env, env_params = soc.make(cfg["scenario"], **cfg["env"])
    parts = hmarl.make_parts(cfg, env, env_params)
    specs = parts.setup.specs
    extra = env_params.num_directives if extra == "directives" else extra  # 5 focus x 3 postures
    assert {r: parts.setup.tier2_obs_dims[r] - specs[r].obs_dim for r in hmarl.TIER2} == dict.fromkeys(hmarl.TIER2, extra)
    trainer = hmarl.make_train(cfg, env, env_params)
    jax.eval_shape(trainer.update, jax.eval_shape(trainer.init, jax.random.key(0)))  # shapes agree


def test_bad_hmarl_config_is_refused():
    with pytest.raises(ValueError, match="hmarl.k"):
        config_lib.resolve(flags=config_lib.merge(SMALL, {"hmarl": {"k": 0}}))
    with pytest.raises(ValueError, match="did you mean"):
        config_lib.resolve(flags=config_lib.merge(SMALL, {"hmarl": {"shared_bufer": False}}))


@pytest.mark.parametrize("section, message", [
    # The nested sections are checked as the learners' own (sac's), not left to fail in the trainer
    # (a 55-line traceback after compiling began, for target_entropy "abc").
    ({"sac": {"target_entropy": "abc"}}, "hmarl.sac.target_entropy must be a number or null, got 'abc'"),
    ({"sac": {"target_entropy": True}}, "hmarl.sac.target_entropy must be a number or null, got True"),
    ({"sac": {"actor_lr": -1.0}}, "hmarl.sac.actor_lr must be positive, got -1.0"),
    ({"sac": {"tau": 5.0}}, "hmarl.sac.tau must be in (0, 1], got 5.0"),
    ({"sac": {"init_alpha": -1.0}}, "hmarl.sac.init_alpha must be positive"),
    ({"sac": {"target_period": 0}}, "hmarl.sac.target_period must be positive, got 0"),
    ({"coordinator": {"lr": -1.0}}, "hmarl.coordinator.lr must be positive, got -1.0"),
    ({"coordinator": {"clip_eps": 0.0}}, "hmarl.coordinator.clip_eps must be positive"),
    ({"coordinator": {"gae_lambda": 1.5}}, "hmarl.coordinator.gae_lambda must be in [0, 1], got 1.5"),
    ({"coordinator": {"ent_coef": -0.1}}, "hmarl.coordinator: need ent_coef >= 0 and max_grad_norm >= 0, got -0.1"),
])
def test_hmarl_checks_its_nested_sections(section, message):
    with pytest.raises(ValueError) as err:
        config_lib.resolve(flags=config_lib.merge(SMALL, {"hmarl": section}))
    assert message in str(err.value)


@pytest.mark.slow  # a whole 2-seed hmarl compile; the hang's cause has a fast test in test_vmap_safety.py
def test_two_seeds_through_the_engine(tmp_path):
    cfg = config_lib.resolve(flags=config_lib.merge(SMALL, {"num_seeds": 2, "run": {"dir": str(tmp_path),
                                                                                   "name": "two"}}))
    result = engine.run(cfg)
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 6
    assert result.updates == 6
    # Two independent seeds: every leaf carries the seed axis, and the seeds learned differently.
    assert all(x.shape[:1] == (2,) for x in jax.tree.leaves(result.state))
    np.testing.assert_array_equal(np.asarray(result.state.env_steps), [N * T * 6] * 2)
    assert (np.asarray(result.state.grad_steps) > 0).all()
    start = jax.vmap(result.trainer.init)(engine.seed_keys(cfg["seed"], 2))
    for i in (0, 1):
        seed = lambda tree: jax.tree.map(lambda x: x[i], tree.coordinator.actor_params)  # noqa: E731
        assert _changed(seed(result.state), seed(start))


@pytest.mark.slow  # CI budget (10 min on 2 cores): ~55 CPU-s
def test_separate_buffers_give_every_learner_the_new_transitions():
    """`shared_buffer: false`: the alert triage's and response orchestrator's own priority trees
    hold every stored transition too (new items at their tree's max priority, as `add` gives), so
    each learner samples the whole replay with its own priorities, not slot 0 forever."""
    cfg, trainer, parts = build(shared_buffer=False)
    state = jax.jit(trainer.init)(jax.random.key(0))
    update = jax.jit(trainer.update)
    for _ in range(2):
        state, metrics = update(state)
    assert int(state.grad_steps) > 0
    size = int(state.buffer.size)
    assert size == 2 * N * T
    trees = [state.buffer] + [buffers.with_priority_part(state.buffer, pt) for pt in state.extra_priorities]
    prios = [np.asarray(buffers.slot_priorities(t))[:size] for t in trees]
    for p in prios:
        assert (p > 0).all(), "a learner's tree is missing stored transitions"
    # Each learner re-prioritised what it sampled from its own TD errors: the trees differ.
    assert not np.allclose(prios[0], prios[1]) and not np.allclose(prios[1], prios[2])
    # ... and samples many distinct slots.
    for t in trees[1:]:
        _, batch = buffers.sample_prioritized(t, jax.random.key(3), 64)
        assert len(np.unique(np.asarray(batch.indices))) > 16
