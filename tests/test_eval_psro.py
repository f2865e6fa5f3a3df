"""The red-vs-blue evidence scripts (eval/psro_soc.py, eval/redblue.py; docs/redblue.md): bad
command lines refused in one line before anything is written, the evidence arithmetic on
hand-worked numbers, the one-member population of the baseline arm; slow: a tiny end-to-end run of
eval/psro_soc.py with both arms."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eval.psro_soc as ps
import eval.redblue as rb
from jaxsoc.env.attacker import RED_ADVANCE
from tests.cli_checks import TOOL_ERROR
from tests.fake_runs import fake_run

TINY = ["--seeds", "2", "--iterations", "1", "--blue-steps", "1024", "--red-steps", "1024",
        "--final-red-steps", "2048", "--episodes", "4", "--eval-episodes", "8", "--hosts-per-segment", "8",
        "--num-envs", "8", "--set", "redblue.hidden_sizes=[16,16]", "--set", "redblue.rollout=16",
        "--set", "redblue.minibatches=2", "--compile-cache", "none"]


def refused(main, argv, out, capsys, match, monkeypatch):
    """`main(argv + --out out)` exits with argparse's status 2, its error one line naming `match`,
    and writes nothing. A refusal missed fails at once instead of training: each script's first
    piece of work (PSRO's oracles; redblue's env) raises."""
    def work(*_a, **_k):
        raise AssertionError("the command was not refused: it reached the training")

    if main is ps.main:
        monkeypatch.setattr(ps.socgame.SOCGame, "zero_sum", work)
    else:  # the env module is shared: patched for this script's call only
        monkeypatch.setattr(rb.soc, "make", work)
    with pytest.raises(SystemExit) as exc:
        main(argv + ["--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert TOOL_ERROR.match(err) and match in err, err
    assert not out.exists()


@pytest.mark.parametrize("argv, match", [
    (["--seeds", "0"], "--seeds: expected a positive integer"),
    (["--iterations", "-1"], "--iterations: expected a positive integer"),
    (["--blue-steps", "0"], "--blue-steps: expected a positive integer"),
    (["--red-steps", "-5"], "--red-steps: expected a positive integer"),
    (["--eval-episodes", "0"], "--eval-episodes: expected a positive integer"),
    (["--hosts-per-segment", "0"], "--hosts-per-segment: expected a positive integer"),
    (["--red-steps", "1e5", "--final-red-steps", "2.5e5"], "must be a positive multiple of --red-steps"),
    (["--red-steps", "1e5", "--final-red-steps", "5e4"], "must be a positive multiple of --red-steps"),
    (["--seed", "1e30"], "--seed: expected a seed from 0 to 4,294,967,295"),  # was an OverflowError
    # --set keys the tool would override or not read (they were taken, then ignored)
    (["--set", "env.hosts_per_segment=8"], "this tool takes redblue.KEY=VALUE only"),
    (["--set", "total_steps=1000"], "this tool takes redblue.KEY=VALUE only"),
    (["--set", "redblue.rounds_updates=8"], "this tool does not read redblue.rounds_updates"),
])
def test_psro_soc_refuses_bad_numbers(tmp_path, capsys, monkeypatch, argv, match):
    refused(ps.main, argv, tmp_path / "out.json", capsys, match, monkeypatch)


def test_psro_soc_refuses_budgets_below_one_update(tmp_path, capsys, monkeypatch):
    refused(ps.main, ["--num-envs", "64", "--blue-steps", "10", "--red-steps", "10", "--final-red-steps", "10",
                      "--compile-cache", "none"], tmp_path / "out.json", capsys, "--blue-steps must cover", monkeypatch)


@pytest.mark.parametrize("argv, match", [
    (["--seeds", "0"], "--seeds: expected a positive integer"),
    (["--num-envs", "-2"], "--num-envs: expected a positive integer"),
    (["--blue-steps", "0"], "--blue-steps: expected a positive integer"),
    (["--red-steps", "-1"], "--red-steps: expected a positive integer"),
    (["--episodes", "0"], "--episodes: expected a positive integer"),
    (["--red-steps", "10"], "--red-steps must cover at least one PPO update"),
    (["--seed", "-1"], "--seed: expected a seed from 0 to"),
    (["--set", "seed=7"], "this tool takes redblue.KEY=VALUE only"),
    (["--set", "redblue.blue=lead-oracle"], "this tool does not read redblue.blue"),
    (["--blue-run", "runs/x", "--blue-steps", "1e5"], "--blue-steps trains a blue; with --blue-run none is trained"),
])
def test_redblue_refuses_bad_numbers(tmp_path, capsys, monkeypatch, argv, match):
    refused(rb.main, argv, tmp_path / "out.json", capsys, match, monkeypatch)


@pytest.mark.parametrize("name, algo, scenario, env, extra, match", [
    ("v2", "rule-soar", "soc-v2", None, [], "trained on 'soc-v2'"),
    ("red", "red-ppo", "soc-v2-redblue", None, [], "red's"),
    ("iql", "iql", "soc-v2-redblue", None, [], "not a SOC team"),
    ("big", "rule-soar", "soc-v2-redblue", {}, [], "env overrides"),
    ("quiet", "rule-soar", "soc-v2-redblue", None, ["--quiet-anywhere"], "env overrides"),
])
def test_redblue_refuses_a_blue_run_of_another_scenario_side_learner_or_env(tmp_path, capsys, monkeypatch, name,
                                                                            algo, scenario, env, extra, match):
    path = fake_run(tmp_path, name, algo, scenario, env)
    refused(rb.main, ["--hosts-per-segment", "8", "--blue-run", str(path)] + extra, tmp_path / "out.json",
            capsys, match, monkeypatch)


def test_redblue_refuses_a_missing_blue_run(tmp_path, capsys, monkeypatch):
    refused(rb.main, ["--blue-run", str(tmp_path / "nowhere")], tmp_path / "out.json", capsys, "does not exist", monkeypatch)


def test_evidence_rows_on_hand_worked_numbers():
    """Two seeds, two episodes: per-seed means per attacker, exploitability = scripted - BR."""
    ret = np.array([[[4.0, 2.0], [1.0, 0.0]],      # seed 0: 3 vs scripted, 0.5 vs BR
                    [[-1.0, -3.0], [0.0, 2.0]]])   # seed 1: -2 vs scripted, 1 vs BR
    out = {"return": ret, "exfiltrated": np.array([[[1, 0], [0, 0]], [[1, 1], [0, 1]]]),
           "csr": np.zeros((2, 2, 2)), "hosts_compromised": np.full((2, 2, 2), 3.0),
           "actions": np.array([[[[0, 4], [0, 4]], [[1, 1], [3, 3]]], [[[0, 2], [0, 2]], [[2, 0], [0, 0]]]])}
    ev = ps.evidence_rows({"arm": out})["arm"]
    assert ev["scripted campaign"]["return"] == [3.0, -2.0]
    assert ev["red BR to it"]["return"] == [0.5, 1.0]
    assert ev["scripted campaign"]["exfiltrated"] == [0.5, 1.0]
    assert ev["red BR to it"]["exfiltrated"] == [0.0, 0.5]
    assert ev["red BR to it"]["hosts_compromised"] == [3.0, 3.0]
    assert ev["exploitability"] == [2.5, -3.0]
    assert ev["scripted campaign"]["red_action_share"] == [[0.0, 1.0], [0.0, 1.0]]
    assert ev["red BR to it"]["red_action_share"] == [[0.5, 0.5], [1.0, 0.0]]


def test_single_member_plays_only_the_given_team():
    """The baseline's blue as a population: slot 0 holds each seed's team, all weight on it, so a
    mixture draw always picks it."""
    from jaxsoc.algos import redblue

    actors = {"w": jnp.arange(6.0).reshape(2, 3)}  # two seeds' "teams"
    pop, meta = ps.single_member(actors, 4)
    assert pop.policies["w"].shape == (2, 4, 3) and np.all(np.asarray(pop.size) == 1)
    np.testing.assert_array_equal(np.asarray(pop.policies["w"][:, 0]), np.asarray(actors["w"]))
    np.testing.assert_array_equal(np.asarray(meta), [[1, 0, 0, 0], [1, 0, 0, 0]])
    members, params = redblue.mixture_play_args(jax.random.key(0), redblue.Mixture(pop.policies["w"][1], meta[1]), 64)
    assert np.all(np.asarray(members) == 0)
    np.testing.assert_array_equal(np.asarray(params), np.broadcast_to(np.asarray(actors["w"][1]), (64, 3)))


@pytest.mark.slow  # trains PSRO, the baseline blue and two red BRs end to end (compiles five programs; 164 s wall on the shared 2 cores); cheap checks: the refusals, evidence_rows and single_member above
def test_psro_soc_end_to_end_tiny(tmp_path):
    out = tmp_path / "psro.json"
    ps.main(TINY + ["--out", str(out)])
    rec = json.loads(out.read_text())
    for key in ("args", "timings_s", "table", "history", "payoffs", "evidence", "exploitability", "baseline",
                "exploitability_difference", "mixture_return", "final_red_reward"):
        assert key in rec, key
    for key in ("psro", "red BR to the blue mixture", "evaluation", "baseline: blue vs scripted",
                "baseline: red BR to it", "baseline: evaluation", "total"):
        assert key in rec["timings_s"], key
    ev = rec["evidence"]
    assert set(ev) == {ps.PSRO_ROW, ps.BASELINE_ROW}
    for arm in ev.values():
        want = np.subtract(arm["scripted campaign"]["return"], arm["red BR to it"]["return"])
        np.testing.assert_allclose(arm["exploitability"], want, rtol=1e-6)
        assert len(arm["exploitability"]) == 2
    np.testing.assert_allclose(rec["exploitability"], ev[ps.PSRO_ROW]["exploitability"])
    np.testing.assert_allclose(rec["exploitability_difference"],
                               np.subtract(ev[ps.PSRO_ROW]["exploitability"], ev[ps.BASELINE_ROW]["exploitability"]),
                               rtol=1e-6)
    # The baseline blue trained the PSRO chain's steps (1 iteration x 1024 / (8 envs x 16 rollout) = 8 updates),
    # its red BR the final BR's two calls; the two arms are different teams.
    assert np.asarray(rec["baseline"]["blue_train_return"]).shape == (2, 8)
    assert len(rec["baseline"]["final_red_reward"]) == 2
    assert ev[ps.PSRO_ROW] != ev[ps.BASELINE_ROW]
    assert ps.BASELINE_ROW in rec["table"] and "PSRO minus script-trained" in rec["table"]
    for arm in ev.values():  # the scripted campaign only ever advances
        np.testing.assert_allclose(np.asarray(arm["scripted campaign"]["red_action_share"])[:, RED_ADVANCE], 1.0)


@pytest.mark.slow  # trains two tiny red best responses and compiles four evaluations (50 s wall on the shared 2 cores); cheap checks: the --blue-run refusals above
def test_redblue_blue_run_attacks_the_run_folders_team(tmp_path):
    """--blue-run of a scripted Rule-SOAR run: no blue is trained, and the "blue" rows against the
    scripted campaign are the Rule-SOAR rows exactly (the same team, the same held-out episodes)."""
    path = fake_run(tmp_path, "soar", "rule-soar")
    out = tmp_path / "rb.json"
    rb.main(["--seeds", "2", "--num-envs", "8", "--red-steps", "256", "--episodes", "8", "--hosts-per-segment", "8",
             "--set", "redblue.hidden_sizes=[16,16]", "--set", "redblue.rollout=16", "--blue-run", str(path),
             "--out", str(out)])
    rec = json.loads(out.read_text())
    assert "train blue vs scripted" not in rec["timings_s"]
    assert rec["blue_train_return"] == [[], []]
    s = rec["summary"]
    mine, soar = s["SOC team of soar | scripted campaign"], s["Rule-SOAR | scripted campaign"]
    for key in ("return", "exfiltrated", "csr", "hosts_compromised", "phase_steps", "actions"):
        np.testing.assert_array_equal(mine[key], soar[key])
    assert set(rec["exploitability"]) == {"SOC team of soar", "Rule-SOAR"}
