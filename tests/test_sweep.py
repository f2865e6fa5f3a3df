"""Vectorised sweeps (jaxsoc/sweep.py, train/sweep.py) on the toy learner (tests/engine_toys.py)."""
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest

from jaxsoc import config as config_lib, sweep
from jaxsoc.config import ConfigError
from tests import engine_toys as toys
from tests.fast import fast_compile

REPO = Path(__file__).resolve().parent.parent
FLAGS = {"algo": "toy", "scenario": "toy", "num_envs": 8, "total_steps": 8 * 4 * 6, "num_seeds": 3, "seed": 2,
         "run": {"name": "sw"}}


@pytest.fixture(scope="module", autouse=True)
def _toy():
    toys.register()
    with fast_compile():
        yield


def plan(grid, **kw):
    return sweep.make_plan(FLAGS, [], sweep.parse_grid(grid), episodes=kw.pop("episodes", 16), scenarios=["toy"])


@pytest.mark.parametrize("items, message", [
    (["toy.lr"], "is not KEY=V1,V2"),
    (["toy.lr=0.1,fast"], "'fast' is not a number"),
    (["toy.lr=0.1,inf"], "not a finite number"),
    (["toy.lr=0.1,0.1"], "repeats a value"),
    (["toy.lr=0.1", "toy.lr=0.2"], "names toy.lr twice"),
    (["toy.lr="], "has no values"),
    (["toy.lr=1e-4,,1e-3"], "an empty value in the list"),  # was two points, silently
    ([], "at least one --grid"),
])
def test_grids_that_cannot_be_swept_are_refused(items, message):
    with pytest.raises(ConfigError, match=message):
        sweep.parse_grid(items)


def test_points_are_validated_and_grouped_by_what_changes_the_program():
    p = plan(["toy.lr=0.05,0.2", "toy.rollout=2,4"])
    assert len(p.groups) == 2 and all(g.traced == ("toy.lr",) for g in p.groups)  # rollout: a shape
    assert [pt["toy.rollout"] for g in p.groups for pt in g.points] == [2, 2, 4, 4]
    assert p.seeds == (2, 3, 4)
    with pytest.raises(ConfigError, match="toy.lr"):  # the learner's own check: lr must be positive
        plan(["toy.lr=0.1,-1"])
    with pytest.raises(ConfigError, match=r"^--grid toy\.nope: unknown config key 'toy\.nope'$"):
        plan(["toy.nope=1,2"])
    with pytest.raises(ConfigError, match="seeds are the sweep's other axis"):
        plan(["seed=1,2"])
    # keys the sweep never reads: every point trained alike, then ranked (eval.*, run.*, devices)
    with pytest.raises(ConfigError, match=r"^--grid eval\.episodes: the sweep does not read it"):
        plan(["eval.episodes=4,8"])
    with pytest.raises(ConfigError, match=r"^--set eval\.greedy=false: the sweep does not read eval\.greedy \(.*--stochastic"):
        sweep.make_plan(FLAGS, ["eval.greedy=false"], sweep.parse_grid(["toy.lr=0.1,0.2"]), scenarios=["toy"])
    with pytest.raises(ConfigError, match=r"^--set devices=2: the sweep does not read devices"):
        sweep.make_plan(FLAGS, ["devices=2"], sweep.parse_grid(["toy.lr=0.1,0.2"]), scenarios=["toy"])
    # sweep.json's base config is the config without the grid (it recorded the first point's)
    assert p.base_config["toy"]["lr"] == config_lib.resolve(flags=FLAGS, scenarios=["toy"])["toy"]["lr"]
    assert p.base_config["toy"]["lr"] not in (0.05, 0.2)


def test_one_program_equals_each_point_alone_and_the_values_are_used(monkeypatch):
    """Two learning rates vmapped in one program against each trained as a one-point sweep: the
    same held-out results; and the two rates give different results (the traced value is used)."""
    both = plan(["toy.lr=0.02,0.5"])
    assert len(both.groups) == 1
    lines = io.StringIO()

    class EveryTick(sweep.UpdateTicker):  # a line per update, so the lines count the updates run
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "every_s": 0.0})

    monkeypatch.setattr(sweep, "UpdateTicker", EveryTick)
    together = sweep.run_group(both.groups[0], both, toys.make_toy_env, progress="p", stream=lines)
    # One line per update, each update run once (the training is not run a second time to learn
    # its output's shapes); the ticker changes no number.
    shown = lines.getvalue().splitlines()
    assert [line.split(",")[0] for line in shown] == [f"p: update {u}/6" for u in range(1, 7)]
    for i, lr in enumerate((0.02, 0.5)):
        alone_plan = plan([f"toy.lr={lr}"])
        alone = sweep.run_group(alone_plan.groups[0], alone_plan, toys.make_toy_env)
        np.testing.assert_allclose(together["return"][i], alone["return"][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(together["train_return"][i], alone["train_return"][0], rtol=1e-5, atol=1e-6)
    assert together["return"].shape == (2, 3, 16)
    assert not np.allclose(together["train_return"][0], together["train_return"][1])
    rows = sweep.summarise(both, [together])
    assert [r["rank"] for r in rows] == [1, 2] and rows[0]["return"]["mean"] >= rows[1]["return"]["mean"]
    r = rows[0]["return"]
    half = 4.302653 * np.std(r["seeds"], ddof=1) / np.sqrt(3)  # t_{0.975, 2}, a printed table
    assert r["mean"] == pytest.approx(np.mean(r["seeds"])) and r["ci95"] == pytest.approx(half)


def test_the_cli_writes_the_ranked_table_and_figure_once(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("sweep_cli", REPO / "train" / "sweep.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    # FLAGS' sizes, so the persistent compilation cache serves the program the test above compiled.
    args = ["--algo", "toy", "--scenario", "toy", "--grid", "toy.lr=0.02,0.5", "--num-seeds", "3", "--seed", "2",
            "--num-envs", "8", "--total-steps", "192", "--episodes", "16", "--name", "s", "--set", f"run.dir={tmp_path}"]
    assert cli.main(args, toys.make_toy_env, ["toy"]) == 0
    summary = json.loads((tmp_path / "s" / sweep.SUMMARY_FILE).read_text())
    assert [r["rank"] for r in summary["ranking"]] == [1, 2] and summary["programs"] == 1
    assert (tmp_path / "s" / sweep.FIGURE_FILE).stat().st_size > 0
    assert "| rank | toy.lr |" in (tmp_path / "s" / sweep.TABLE_FILE).read_text()
    out = capsys.readouterr()
    assert "best: {'toy.lr':" in out.out and "program 1/1: update 6/6, " in out.err
    assert cli.main(args, toys.make_toy_env, ["toy"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli.main(args[:5] + ["toy.lr=0.1,x"] + args[6:] + ["--overwrite"], toys.make_toy_env, ["toy"]) == 2
    assert "'x' is not a number" in capsys.readouterr().err
    # --overwrite replaces a sweep's files, nothing else: a run's folder (or a stray file) is refused
    (tmp_path / "s" / "config.yaml").write_text("algo: toy\n")
    before = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert cli.main(args + ["--overwrite"], toys.make_toy_env, ["toy"]) == 2
    assert "is not a sweep's folder (it holds config.yaml); refusing to replace it" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == before


def test_one_seed_writes_its_missing_interval_as_null_not_nan(tmp_path):
    """One seed has no 95 % interval (ci95 NaN); sweep.json writes null, which strict JSON
    parsers take (they reject NaN)."""
    p = plan(["toy.lr=0.1,0.2"])
    rows = [{"point": point, "return": {"seeds": [1.5], "mean": 1.5, "ci95": float("nan")},
             "csr": {"seeds": [np.float32(0.5)], "mean": 0.5, "ci95": np.float64("nan")}, "rank": i + 1}
            for i, point in enumerate(p.groups[0].points)]
    sweep.write(tmp_path, p, rows, [(1.0, 2.0)])

    def strict(name):
        raise ValueError(f"not JSON: {name}")

    summary = json.loads((tmp_path / sweep.SUMMARY_FILE).read_text(), parse_constant=strict)
    assert [r["return"]["ci95"] for r in summary["ranking"]] == [None, None]
    assert [r["csr"] for r in summary["ranking"]] == [{"seeds": [0.5], "mean": 0.5, "ci95": None}] * 2
    assert summary["ranking"][0]["return"]["mean"] == 1.5 and summary["base_config"]["algo"] == "toy"
    table = (tmp_path / sweep.TABLE_FILE).read_text()
    assert "| 1.500 (1 seed: no interval) | 0.500 (1 seed: no interval) |" in table and "nan" not in table


def test_stochastic_plays_the_held_out_episodes_sampling(monkeypatch, capsys):
    """`--stochastic` reaches the evaluator (a learner deployed sampling, e.g. MAPPO on soc-hybrid,
    would be ranked by a greedy mode it never uses) and the table says how the episodes were played."""
    from jaxsoc import evaluation

    seen = []

    def evaluator_stub(env, env_params, act, episodes, greedy=True, max_steps=None):
        seen.append(greedy)
        raise RuntimeError("stub: stop before compiling")

    monkeypatch.setattr(evaluation, "make_evaluator", evaluator_stub)
    for greedy in (True, False):
        p = sweep.make_plan(FLAGS, [], sweep.parse_grid(["toy.lr=0.02"]), episodes=16, scenarios=["toy"], greedy=greedy)
        with pytest.raises(RuntimeError, match="stub"):
            sweep.run_group(p.groups[0], p, toys.make_toy_env)
    assert seen == [True, False]
    row = {"rank": 1, "point": {"toy.lr": 0.02}, "return": {"mean": 1.0, "ci95": 0.5}}
    assert sweep.to_markdown(p, [row]).startswith("Held-out episodes played sampling each policy's actions (16 per seed).")
    assert sweep.to_markdown(plan(["toy.lr=0.02"]), [row]).startswith("| rank |")
    # The command passes it on.
    spec = importlib.util.spec_from_file_location("sweep_cli", REPO / "train" / "sweep.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    asked = []

    def make_plan_stub(*args, **kwargs):
        asked.append(kwargs["greedy"])
        raise ConfigError("stub")

    monkeypatch.setattr(sweep, "make_plan", make_plan_stub)
    for extra, greedy in (([], True), (["--stochastic"], False)):
        assert cli.main(["--algo", "toy", "--grid", "toy.lr=0.1", "--name", "s"] + extra, toys.make_toy_env, ["toy"]) == 2
    assert asked == [True, False]
    capsys.readouterr()


def test_a_sweep_plays_the_episodes_of_eval_evaluate(monkeypatch):
    """audit-evalstats #4: the sweep rolled its held-out episodes from `heldout_key(s)` while
    eval/evaluate.py rolls them from `fold_in(heldout_key(s), 0)` (batch 0): other episodes than
    it said. An evaluator whose "return" is drawn from its key shows which keys each one used."""
    import types

    import jax

    from jaxsoc import evaluation
    from jaxsoc.analysis import protocols

    def evaluator_from_key(env, env_params, act, episodes, greedy=True, max_steps=None):
        return lambda params, key: {"return": jax.random.uniform(key, (episodes,))}

    monkeypatch.setattr(evaluation, "make_evaluator", evaluator_from_key)
    p = plan(["toy.lr=0.02"])
    with fast_compile():
        swept = sweep.run_group(p.groups[0], p, toys.make_toy_env)
    env, env_params = toys.make_toy_env("toy")
    stub = types.SimpleNamespace(act=None, policy_env_params=None)
    evaluated = protocols.evaluate_episodes(env, env_params, stub, p.seeds, 16)
    np.testing.assert_array_equal(swept["return"][0], evaluated["return"])
    key = protocols.heldout_batch_key(5, 2)
    assert (jax.random.key_data(key) == jax.random.key_data(jax.random.fold_in(protocols.heldout_key(5), 2))).all()


def test_the_status_line_times_the_updates_after_the_first(monkeypatch):
    """The clock starts when the first update ends, so only later updates are timed: a one-update
    program showed 4,096,000,000,000 env-steps/s (1,024 steps over 1e-9 s), two updates twice the
    rate."""
    clock = iter([10.0, 12.0, 14.0])
    monkeypatch.setattr(sweep.time, "perf_counter", lambda: next(clock))
    lines = io.StringIO()
    ticker = sweep.UpdateTicker("g", 3, 1024, every_s=0.0, stream=lines)
    for _ in range(3):
        ticker.tick()
    assert lines.getvalue().splitlines() == [
        "g: update 1/3, - env-steps/s (one update: nothing timed yet)",
        "g: update 2/3, 512 env-steps/s (all learners), ~2 s left",  # 1,024 steps in 2 s
        "g: update 3/3, 512 env-steps/s (all learners), ~0 s left",
    ]
