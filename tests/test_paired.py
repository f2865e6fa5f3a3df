"""eval/paired.py: paired per-seed differences of two evaluated runs and their t interval."""
from __future__ import annotations

import importlib.util
import json
import pathlib

import pytest

from tests.cli_checks import refused

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "eval" / "paired.py"


@pytest.fixture(scope="module")
def paired():
    spec = importlib.util.spec_from_file_location("paired", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(run, returns, csr, episodes=500, first_seed=0, greedy=True):
    """An evaluation.json as eval/evaluate.py writes it, for seeds `first_seed`.. with these per-seed means."""
    seeds = {str(first_seed + i): {"episodes": episodes, "metrics": {"return": {"mean": r, "std": 1.0, "n": episodes},
                                                        "csr": {"mean": c, "std": 0.1, "n": episodes}}}
             for i, (r, c) in enumerate(zip(returns, csr))}
    req = {"episodes": episodes, "batch": episodes, "greedy": greedy, "heldout_stream": 7}
    return {"run": run, "request": req, "seeds": seeds}


def test_table_pairs_seed_by_seed(paired, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for path, rec in ((a, record("a", [-10.0, -8.0, -6.0], [0.5, 0.5, 0.5])),
                      (b, record("b", [-7.0, -8.0, -4.0], [0.6, 0.5, 0.7]))):
        path.mkdir()
        (path / "evaluation.json").write_text(json.dumps(rec))
    assert paired.main([str(a), str(b), "--metrics", "return,csr"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].startswith("| return | -8.00 ± 1.63 | -6.33 ± 1.70 | +3.00, +0.00, +2.00 | +1.67 [")
    assert out[2].endswith("| 2 of 3 |")  # a tie is not ahead
    assert out[3].startswith("| csr % | 50.00 ± 0.00 | 60.00 ± 8.16 | +10.00, +0.00, +20.00 | +10.00 [")
    other = tmp_path / "c"
    other.mkdir()
    (other / "evaluation.json").write_text(json.dumps(record("c", [-1.0, -2.0], [0.1, 0.2])))
    refused(paired.main, [str(a), str(other)], capsys, "same seeds")


def write(path, rec):
    path.mkdir()
    (path / "evaluation.json").write_text(json.dumps(rec))
    return str(path)


def test_one_seed_says_its_interval_needs_two(paired, tmp_path, capsys):
    a = write(tmp_path / "a", record("a", [-10.0], [0.5]))
    b = write(tmp_path / "b", record("b", [-4.75], [0.5]))
    assert paired.main([a, b, "--metrics", "return"]) == 0
    row = capsys.readouterr().out.splitlines()[2]
    assert "| +5.25 | +5.25 [needs 2 seeds] | 1 of 1 |" in row and "nan" not in row


def test_a_side_can_join_runs_of_other_seeds(paired, tmp_path, capsys):
    # seeds 0-1 in one run, 2-3 in another, on both sides: paired as four seeds, in seed order
    a = ",".join([write(tmp_path / "a0", record("a0", [1.0, 2.0], [0.5, 0.5])),
                  write(tmp_path / "a2", record("a2", [3.0, 4.0], [0.5, 0.5], first_seed=2))])
    b = ",".join([write(tmp_path / "b2", record("b2", [3.5, 3.0], [0.5, 0.5], first_seed=2)),
                  write(tmp_path / "b0", record("b0", [2.0, 2.0], [0.5, 0.5]))])
    assert paired.main([a, b, "--metrics", "return"]) == 0
    row = capsys.readouterr().out.splitlines()[2]
    # differences +1, 0, +0.5, -1: mean +0.125, sample std 0.854, t(3, 0.975) = 3.182 -> +-1.359
    assert row.startswith("| return | 2.50 ± 1.12 | 2.62 ± 0.65 | +1.00, +0.00, +0.50, -1.00 | +0.12 [-1.23, +1.48] | 2 of 4 |")
    # the same seed twice on one side, or two evaluation requests on one side: refused
    again = write(tmp_path / "a0-again", record("a0-again", [1.0, 2.0], [0.5, 0.5]))
    refused(paired.main, [f"{a},{again}", b], capsys, "seed 0 is in more than one")
    longer = write(tmp_path / "a2-longer", record("a2-longer", [3.0, 4.0], [0.5, 0.5], episodes=100, first_seed=2))
    refused(paired.main, [f"{tmp_path / 'a0'},{longer}", b], capsys, "same request")
    sampled = write(tmp_path / "a2-sampled", record("a2-sampled", [3.0, 4.0], [0.5, 0.5], first_seed=2, greedy=False))
    refused(paired.main, [f"{tmp_path / 'a0'},{sampled}", b], capsys, "--stochastic on both or neither")


def test_a_greedy_side_pairs_with_a_sampling_side_and_says_so(paired, tmp_path, capsys):
    """The evaluator's env keys do not depend on how the policy acts (jaxsoc.evaluation splits
    each step's key into an action key and an env key), so greedy against sampled is paired as
    two greedy policies are; the table is the same, under a line naming each side's mode."""
    a = write(tmp_path / "a", record("a", [1.0, 2.0, 3.0], [0.5, 0.5, 0.5]))
    b = write(tmp_path / "b", record("b", [2.0, 2.0, 5.0], [0.5, 0.5, 0.5], greedy=False))
    assert paired.main([a, b, "--metrics", "return"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "A acted greedily, B sampled its actions (the same held-out episodes: actions have keys of their own)"
    assert out[4].startswith("| return | 2.00 ± 0.82 | 3.00 ± 1.41 | +1.00, +0.00, +2.00 | +1.00 [")


def world_record(run, scenario, env=None, **metrics):
    """An evaluation.json of seeds 0.. on `scenario` (and env overrides), `metrics` name -> per-seed means."""
    n = len(next(iter(metrics.values())))
    seeds = {str(i): {"episodes": 8, "metrics": {k: {"mean": v[i], "std": 0.0, "n": 8} for k, v in metrics.items()}}
             for i in range(n)}
    req = {"episodes": 8, "batch": 8, "greedy": True, "heldout_stream": 7, "scenario": scenario, "env": env or {}}
    return {"run": run, "request": req, "seeds": seeds}


def test_default_metrics_on_a_world_without_the_soc_ones(paired, tmp_path, capsys):
    # retail: no csr, so the default is the return, then the metrics both sides hold, sorted
    # ("moved" is only in A: no row)
    a = write(tmp_path / "a", world_record("a", "retail", **{"return": [-10.0, -20.0]}, cost=[10.0, 20.0],
                                           fill_rate=[0.5, 1.0], moved=[3.0, 4.0]))
    b = write(tmp_path / "b", world_record("b", "retail", **{"return": [-8.0, -21.0]}, cost=[8.0, 21.0],
                                           fill_rate=[0.75, 1.0]))
    assert paired.main([a, b]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [r.split(" | ")[0] for r in rows] == ["| return", "| cost", "| fill_rate"]
    assert rows[0].startswith("| return | -15.00 ± 5.00 | -14.50 ± 6.50 | +2.00, -1.00 | +0.50 [")
    assert rows[2].startswith("| fill_rate | 0.75 ± 0.25 | 0.88 ± 0.12 | +0.25, +0.00 | +0.12 [")


def test_soc_world_keeps_its_default_metrics(paired, tmp_path, capsys):
    names = paired.METRICS
    a = write(tmp_path / "a", world_record("a", "soc-v2", **{m: [1.0, 2.0] for m in names}))
    b = write(tmp_path / "b", world_record("b", "soc-v2", **{m: [2.0, 2.0] for m in names}))
    assert paired.main([a, b]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [r.split(" | ")[0].split(" %")[0] for r in rows] == [f"| {m}" for m in names]


@pytest.mark.parametrize("world_b, text", [
    (("banking", {}), "was evaluated on 'retail' and {b} on 'banking'"),
    (("retail", {"max_steps": 20}), "was evaluated on 'retail' and {b} on 'retail' with env {{'max_steps': 20}}"),
])
def test_evaluations_of_different_worlds_are_refused(paired, tmp_path, capsys, world_b, text):
    a = write(tmp_path / "a", world_record("a", "retail", cost=[1.0, 2.0]))
    b = write(tmp_path / "b", world_record("b", *world_b, cost=[1.0, 2.0]))
    line = refused(paired.main, [a, b, "--metrics", "cost"], capsys, text.format(b=b))
    assert line.startswith(f"eval/paired.py: error: {a} was evaluated on") and "cannot be paired" in line
    # the flag that pairs them is named only where it would (one scenario, two env overrides)
    assert ("--env-may-differ pairs them by seed" in line) == (world_b[0] == "retail")
    assert capsys.readouterr().out == ""  # no table, not even its header
    # two runs joined on one side must share their world too
    rec = world_record("a-other", *world_b, cost=[1.0, 2.0])
    rec["seeds"] = {"5": rec["seeds"]["0"], "6": rec["seeds"]["1"]}  # other seeds than a's
    other = write(tmp_path / "a-other", rec)
    refused(paired.main, [f"{a},{other}", b, "--metrics", "cost"], capsys, "cannot be joined")


def test_env_may_differ_pairs_one_scenario_under_two_env_overrides(paired, tmp_path, capsys):
    # a K sweep's points: one scenario, each its own directive_period; the flag pairs them by seed
    # and says above the table that the worlds differ
    a = write(tmp_path / "a", world_record("a", "hmarl-soc-v1", **{"return": [8.0, 9.0, 5.0]}))
    b = write(tmp_path / "b", world_record("b", "hmarl-soc-v1", {"directive_period": 20},
                                           **{"return": [-1.0, 9.5, 9.0]}))
    assert paired.main([a, b, "--metrics", "return", "--env-may-differ"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("A played 'hmarl-soc-v1', B 'hmarl-soc-v1' with env {'directive_period': 20}: the same "
                      "held-out keys in two worlds, so each seed's pair shares its keys, not its episodes")
    # differences -9, +0.5, +4: mean -1.5; sample std 6.727, t(0.975, 2) = 4.303 -> half-width 16.71
    assert out[4].startswith("| return | 7.33 ± 1.70 | 5.83 ± 4.84 | -9.00, +0.50, +4.00 | -1.50 [-18.21, +15.21] | 2 of 3 |")
    # a sampling side in another world: the acting line does not claim the same episodes either
    rec = world_record("c", "hmarl-soc-v1", {"directive_period": 20}, **{"return": [-1.0, 9.5, 9.0]})
    rec["request"]["greedy"] = False
    c = write(tmp_path / "c", rec)
    assert paired.main([a, c, "--metrics", "return", "--env-may-differ"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "A acted greedily, B sampled its actions (the same held-out keys: actions have keys of their own)"


def test_env_may_differ_still_refuses_other_scenarios_and_is_refused_where_it_does_nothing(paired, tmp_path, capsys):
    a = write(tmp_path / "a", world_record("a", "retail", cost=[1.0, 2.0]))
    b = write(tmp_path / "b", world_record("b", "banking", cost=[1.0, 2.0]))
    refused(paired.main, [a, b, "--metrics", "cost", "--env-may-differ"], capsys, "cannot be paired")
    same = write(tmp_path / "same", world_record("same", "retail", cost=[2.0, 2.0]))
    refused(paired.main, [a, same, "--metrics", "cost", "--env-may-differ"], capsys,
            "--env-may-differ does nothing here: both sides were evaluated on 'retail'")
    assert capsys.readouterr().out == ""
    # runs joined on one side must share their world even with the flag
    rec = world_record("a-other", "retail", {"max_steps": 20}, cost=[1.0, 2.0])
    rec["seeds"] = {"5": rec["seeds"]["0"], "6": rec["seeds"]["1"]}
    other = write(tmp_path / "a-other", rec)
    refused(paired.main, [f"{a},{other}", same, "--metrics", "cost", "--env-may-differ"], capsys, "cannot be joined")


@pytest.mark.parametrize("level, shown", [("0.999", "99.9%"), ("0.995", "99.5%"), ("0.95", "95%"), ("0.9", "90%")])
def test_the_header_shows_the_level_as_given(paired, tmp_path, capsys, level, shown):
    """audit-evalstats #7: --level 0.999 and 0.995 were printed as a 100% interval."""
    a = write(tmp_path / "a", record("a", [-10.0, -8.0], [0.5, 0.5]))
    b = write(tmp_path / "b", record("b", [-7.0, -8.0], [0.6, 0.5]))
    assert paired.main([a, b, "--metrics", "return", "--level", level]) == 0
    assert f"| B - A mean [{shown} t interval] |" in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_nan_mean_is_refused_in_one_line(paired, tmp_path, capsys, bad):
    """audit-evalstats #8: a NaN mean (json reads it; eval/evaluate.py never writes it) went into
    the differences as "+nan [+nan, +nan]"."""
    rec = record("a", [-10.0, -8.0, -6.0], [0.5, 0.5, 0.5])
    rec["seeds"]["1"]["metrics"]["return"]["mean"] = bad
    a = write(tmp_path / "a", rec)  # json.dumps writes NaN / Infinity as Python's json reads them
    b = write(tmp_path / "b", record("b", [-7.0, -8.0, -4.0], [0.6, 0.5, 0.7]))
    refused(paired.main, [a, b, "--metrics", "return,csr"], capsys,
            f"{tmp_path / 'a' / 'evaluation.json'}: seed 1, metric 'return' has a mean of {bad}")
