"""PSRO on the SOC game (jaxsoc/game/socgame.py, docs/redblue.md (b)): the mixture opponent draws
its members by the meta-strategy, the meta-game's entries are the pairings' `play` results, PSRO is
deterministic per seed; red-ppo's fixed SOC team loaded from a run folder."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc import config as C
from jaxsoc.algos import make_train, redblue
from jaxsoc.game import psro, socgame
from tests.fake_runs import fake_run
from tests.fast import fast_compile, fast_jit

SMALL = ["env.hosts_per_segment=8", "redblue.hidden_sizes=[16,16]", "redblue.rollout=8", "redblue.minibatches=2"]


# ----------------------------------------------------------------------------- the mixture opponent
class Clock:
    """A two-agent env ("blue", "red") whose episodes last `length` steps; its info shows red's
    action, so a test sees which opponent member acted. For ONE env, like SOCEnv."""

    agents = ["blue", "red"]
    default_params = None
    world_state_size = 0

    def __init__(self, length):
        self.length = length

    def reset(self, key, params):
        obs = {a: jnp.zeros(1) for a in self.agents}
        return obs, jnp.int32(0)

    def step(self, key, t, actions, params):
        t = t + 1
        done = t >= self.length
        obs = {a: jnp.zeros(1) for a in self.agents}
        return (obs, jnp.where(done, 0, t), {a: jnp.float32(0) for a in self.agents},
                {"blue": done, "red": done, "__all__": done}, {"final_obs": obs, "red": actions["red"]})


@functools.lru_cache(maxsize=None)
def red_program(num_envs, steps, length):
    """`(key, meta [capacity]) -> red's action [steps, num_envs]` when red is a mixture whose member
    i plays action 10 * (i + 1); compiled once per shape."""
    env = redblue.SideEnv(Clock(length), "blue", lambda member, key, obs, state, p: {"red": member})

    def run(key, meta):
        policies = 10 * jnp.arange(1, meta.shape[0] + 1, dtype=jnp.int32)
        params = redblue.Versus(None, redblue.Mixture(policies, meta))
        k_reset, k_run = jax.random.split(key)
        _, st = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_envs), params)

        def body(st, k):
            _, st, _, _, info = jax.vmap(env.step, in_axes=(0, 0, None, None))(
                jax.random.split(k, num_envs), st, {"blue": jnp.zeros(num_envs)}, params)
            return st, info["red"]

        return jax.lax.scan(body, st, jax.random.split(k_run, steps))[1]

    return fast_jit(run)


def red_actions(meta, num_envs=512, steps=12, length=3, key=0):
    return np.asarray(red_program(num_envs, steps, length)(jax.random.key(key), jnp.asarray(meta, jnp.float32)))


def test_a_one_hot_meta_strategy_plays_exactly_that_member():
    for i in range(3):
        meta = np.eye(4)[i]
        np.testing.assert_array_equal(red_actions(meta, num_envs=16), 10 * (i + 1))


def test_a_mixed_meta_strategy_draws_members_per_episode_by_its_weights():
    meta = [0.2, 0.5, 0.3, 0.0]  # the last slot holds no member
    acts = red_actions(meta, num_envs=2048, steps=12, length=3)
    episodes = acts.reshape(4, 3, -1)  # [episode, step in it, env]
    # One member per episode: every step of an episode plays the same one.
    assert np.all(episodes == episodes[:, :1])
    first = episodes[:, 0].ravel()  # 4 x 2048 episodes
    freq = np.array([(first == 10 * (i + 1)).mean() for i in range(4)])
    se = np.sqrt(np.asarray(meta) * (1 - np.asarray(meta)) / first.size)
    assert np.all(np.abs(freq - meta) <= 4 * se + 1e-9), freq
    assert freq[3] == 0.0
    # Members are redrawn at each reset, not fixed per env: most envs change member at some point.
    assert np.mean(np.any(episodes[:, 0] != episodes[:1, 0], axis=0)) > 0.5
    # play's per-env arguments for a mixture draw by the same weights.
    members, params = redblue.mixture_play_args(jax.random.key(1), redblue.Mixture(jnp.arange(4), jnp.asarray(meta)),
                                                8192)
    np.testing.assert_array_equal(np.asarray(params), np.asarray(members))
    assert np.all(np.abs(np.bincount(np.asarray(members), minlength=4) / 8192 - meta) <= 0.02)


# ----------------------------------------------------------------------------- the SOC game
def tiny_game(**kw):
    cfg = C.resolve(flags={"algo": "redblue", "scenario": "soc-v2-redblue", "num_envs": 8, "total_steps": 64},
                    sets=SMALL)
    env, p = soc.make("soc-v2-redblue", hosts_per_segment=8)
    args = dict(blue_steps=64, red_steps=64, episodes=4, **kw)
    return socgame.SOCGame(cfg, env, p, **args), env, p


def test_game_refuses_bad_budgets():
    game, env, p = tiny_game()
    with pytest.raises(ValueError, match="blue_steps"):
        socgame.SOCGame(game.config, env, p, blue_steps=10, red_steps=64, episodes=4)
    with pytest.raises(ValueError, match="episodes"):
        socgame.SOCGame(game.config, env, p, blue_steps=64, red_steps=64, episodes=0)
    with pytest.raises(ValueError, match="red_control"):
        socgame.SOCGame(game.config, *soc.make("soc-v2", hosts_per_segment=8), blue_steps=64, red_steps=64,
                        episodes=4)


@pytest.mark.slow  # compiles `play` twice on the 5 x 8 network (4.6 min wall on the loaded 2 cores); cheap check: the mixture tests
def test_payoff_matrix_equals_the_pairings_play_results():
    game, env, p = tiny_game()
    keys = jax.random.split(jax.random.key(0), 2)
    blue, red = jax.vmap(game.initial)(keys[:, None])  # two members per side, [2, 1, ...]
    blue, red = (jax.tree.map(lambda x: x[:, 0], t) for t in (blue, red))
    pops = [psro.Population(t, jnp.int32(2)) for t in (blue, red)]
    key = jax.random.key(7)
    with fast_compile():
        matrix = np.asarray(psro.payoff_matrix(game.payoff, key, *pops))
        one = jax.jit(lambda k, b, r: redblue.play(
            env, p, lambda kk, o, s: game.greedy["blue"](b, kk, o, s, p),
            lambda kk, o, s: game.greedy["red"](r, kk, o, s, p), k, 4)["return"])
        for i in range(2):
            for j in range(2):
                k = jax.random.fold_in(jax.random.fold_in(key, i), j)
                ret = np.asarray(one(k, psro.member(pops[0], i), psro.member(pops[1], j)))
                np.testing.assert_allclose(matrix[i, j], ret.mean(), rtol=1e-5, atol=1e-5)
    assert len({round(float(x), 4) for x in matrix.ravel()}) > 1  # the members differ


@pytest.mark.slow  # two tiny PSRO runs: compiles two trainers and the pairing program (10 min wall on the loaded 2 cores); cheap check: the mixture tests
def test_psro_on_the_soc_game_is_deterministic_per_seed():
    game, _, _ = tiny_game()
    keys = jax.random.split(jax.random.key(3), 2)
    runs = []
    with fast_compile():
        for _ in range(2):
            zs, trained = game.zero_sum()
            blue0, red0 = game.initial(keys)
            runs.append((psro.run_psro_batch(zs, blue0, red0, keys, iterations=2), trained))
    (a, ta), (b, tb) = runs
    timeless = [{k: v for k, v in r.history.items() if k != "seconds"} for r in (a, b)]  # all but wall clock
    for x, y in zip(jax.tree.leaves((a._replace(history=None), timeless[0], [t["metrics"] for t in ta])),
                    jax.tree.leaves((b._replace(history=None), timeless[1], [t["metrics"] for t in tb]))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert [t["side"] for t in ta] == ["blue", "red", "blue", "red"] and len(tb) == 4
    assert a.payoffs.shape == (2, 3, 3) and np.all(np.asarray(a.row_population.size) == 3)
    assert not np.array_equal(np.asarray(a.payoffs[0]), np.asarray(a.payoffs[1]))  # the seeds differ
    np.testing.assert_allclose(np.asarray(a.row_meta).sum(axis=1), 1.0, atol=1e-5)


# ----------------------------------------------------------------------------- red-ppo's blue from a run
def resolve_red(blue):
    return C.resolve(flags={"algo": "red-ppo", "scenario": "soc-v2-redblue", "num_envs": 8, "total_steps": 64},
                     sets=SMALL + [f"redblue.blue={blue}"])


def test_red_ppo_refuses_a_blue_run_of_another_scenario_side_or_network(tmp_path):
    for name, algo, scenario, env, msg in [
            ("v2", "rule-soar", "soc-v2", None, "trained on 'soc-v2'"),
            ("red", "red-ppo", "soc-v2-redblue", None, "red's"),
            ("big", "rule-soar", "soc-v2-redblue", {}, "env overrides"),
            ("iql", "iql", "soc-v2-redblue", None, "not a SOC team")]:
        path = fake_run(tmp_path, name, algo, scenario, env)
        with pytest.raises(C.ConfigError, match=msg):
            resolve_red(path)
    with pytest.raises(C.ConfigError, match="does not exist"):
        resolve_red(tmp_path / "nowhere")


def test_red_ppo_plays_against_the_soc_team_of_a_run_folder(tmp_path):
    """A scripted SOC run on the red-control scenario as red-ppo's fixed team: its actions are the
    scripted policy's (a learned redblue run loads its checkpoint the same way: `load_policy`)."""
    path = fake_run(tmp_path, "soar", "rule-soar")
    cfg = resolve_red(path)
    env, p = soc.make("soc-v2-redblue", hosts_per_segment=8)
    tr = make_train(cfg, env, p)
    obs, st = env.reset(jax.random.key(0), p)
    params = jax.eval_shape(tr.policy_params, jax.eval_shape(tr.init, jax.random.key(0)))
    params = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), params)
    # red-ppo's act gives the SOC team the second half of its key; one program for both
    got, want = fast_jit(lambda k: (tr.act(params, k, obs, st, True),
                                    soc.POLICIES["rule-soar"](jax.random.split(k)[1], obs, st, p)))(jax.random.key(1))
    assert set(got) == set(env.agents)
    for a in want:
        if a != "red":
            np.testing.assert_array_equal(np.asarray(got[a]), np.asarray(want[a]))


@pytest.mark.slow  # trains a tiny redblue run through train/run.py (a subprocess; 4.5 min wall on the loaded 2 cores); cheap check: the scripted run above
def test_red_ppo_plays_against_the_blue_team_of_a_redblue_run(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import jaxsoc

    root = Path(__file__).resolve().parent.parent
    sets = [x for s in SMALL + ["redblue.rounds_updates=1", f"run.dir={tmp_path}", "run.progress=false"]
            for x in ("--set", s)]
    subprocess.run([sys.executable, str(root / "train/run.py"), "--algo", "redblue", "--scenario", "soc-v2-redblue",
                    "--num-envs", "8", "--total-steps", "128", "--name", "sp", *sets], check=True, cwd=root)
    cfg = resolve_red(tmp_path / "sp")
    env, p = soc.make("soc-v2-redblue", hosts_per_segment=8)
    tr = make_train(cfg, env, p)
    team = jaxsoc.load_policy(tmp_path / "sp")
    obs, st = env.reset(jax.random.key(0), p)
    params = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype),
                          jax.eval_shape(tr.policy_params, jax.eval_shape(tr.init, jax.random.key(0))))
    with fast_compile():
        got = jax.jit(lambda k: tr.act(params, k, obs, st, True))(jax.random.key(1))
        want = jax.jit(lambda k: team.act(jax.random.split(k)[1], obs, st))(jax.random.key(1))
    for a in soc.AGENTS:
        np.testing.assert_array_equal(np.asarray(got[a]), np.asarray(want[a]))
    # The loaded team is the run's trained blue, not a scripted one.
    soar = soc.POLICIES["rule-soar"](jax.random.split(jax.random.key(1))[1], obs, st, p)
    assert any(not np.array_equal(np.asarray(got[a]), np.asarray(soar[a])) for a in soc.AGENTS)
