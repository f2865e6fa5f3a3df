"""eval/seed004.py's own logic (seed 004's study on cage4-like): no training, hand-made logs."""
from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from tests.cli_checks import refused

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "eval" / "seed004.py"


def load():
    spec = importlib.util.spec_from_file_location("seed004", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_log(run_dir, rows):
    run_dir.mkdir(parents=True)
    with open(run_dir / "metrics.jsonl", "w") as f:
        for update, seed, ret, episodes in rows:
            f.write(json.dumps({"update": update, "seed": seed, "env_steps": 100 * update,
                                "metrics": {"return": ret, "episodes": episodes}}) + "\n")


def test_episode_returns_expand_each_update_into_its_episodes_in_order(tmp_path):
    s4 = load()
    # Written out of order, as the engine may; an update of PPO (100 steps) holds two episodes.
    write_log(tmp_path / "r", [(2, 0, -3.0, 2), (1, 0, -5.0, 2), (1, 1, -4.0, 2), (2, 1, -1.0, 2), (3, 1, 0.0, 2)])
    got = s4.episode_returns(str(tmp_path / "r"))
    # Seed 1 has one update more: both seeds are cut to the shorter one's episodes.
    np.testing.assert_array_equal(got, [[-5, -5, -3, -3], [-4, -4, -1, -1]])


def test_summary_orders_the_learners_by_their_final_episodes():
    s4 = load()
    flat = np.zeros((3, 120))
    rising = np.concatenate([np.zeros((3, 20)), np.ones((3, 100))], axis=1) + np.arange(3)[:, None]
    text = s4.summary({"iac": flat, "mappo": rising}, {"iac": 10.0, "mappo": 20.0},
                      {"monitor": np.full((3, 100), -50.0)})
    assert "| monitor (scripted) | -50.0 ± 0.0 | [-50.0, -50.0] |" in text
    assert "Measured order (final-episode means): MAPPO > IAC." in text
    assert "| MAPPO | 2.0 ± 0.8 |" in text  # final 100 episodes of seeds 1, 2, 3: mean 2, population std 0.82


@pytest.mark.parametrize("argv, message", [
    (["--episodes", "50"], "--episodes must be at least 100 (the table averages the last 100), got 50"),
    (["--episodes", "0"], "argument --episodes: expected a positive integer, got '0'"),
    (["--seeds", "0"], "argument --seeds: expected a positive integer, got '0'"),
    (["--seeds", "-3"], "argument --seeds: expected a positive integer, got '-3'"),
    (["--seeds", "2.5"], "argument --seeds: expected an integer, got '2.5'"),
    (["--algos", "dqn"], "invalid choice"),
    (["--set", "dqn.lr=1"], "--set takes a2c.KEY=VALUE or ppo.KEY=VALUE"),
])
def test_bad_arguments_fail_before_anything_is_written(tmp_path, capsys, argv, message):
    s4 = load()
    out = tmp_path / "out"
    refused(s4.main, argv + ["--out", str(out)], capsys, message)
    assert not out.exists()


def test_the_study_pins_what_its_table_was_measured_with_whatever_the_learners_defaults():
    s4 = load()
    # configs/mappo.yaml's entropy is 0.001 (the SOC worlds'); the study's table used 0.01 for all four.
    for algo in ("iac", "maac", "ippo", "mappo"):
        family = s4.STUDY[algo][0]
        cfg = s4.study_config(algo, "/nonexistent/out", 2, 100)[family]
        assert (cfg["ent_coef"], cfg["max_grad_norm"]) == (0.01, 0.5), algo
        assert cfg["gae_lambda"] == (0.0 if family == "a2c" else 0.95)


def test_the_summary_names_every_departure_from_the_study():
    s4 = load()
    r = np.zeros((2, 150))
    text = s4.summary({"ippo": r}, {}, None, ["ppo.epochs=1"])
    assert "Not the study's settings: `--set ppo.epochs=1`." in text
    assert "Runs of 150 episodes: the first 100 and the final 100 share 50 episodes." in text
    assert "Not the study's" not in s4.summary({"ippo": np.zeros((2, 200))}, {}, None, [])
    assert "share" not in s4.summary({"ippo": np.zeros((2, 200))}, {}, None, [])
