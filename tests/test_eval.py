"""Evaluation, Table II and figures (jaxsoc.analysis, eval/*.py).

Cheap tests use synthetic run folders (hand-written config.yaml + metrics.jsonl) and the engine's
toy learner; one module fixture runs `execute.execute` and `report.write` for real on `hmarl-soc-v1` (Rule-SOAR,
2 seeds, a few updates, 256 held-out episodes per seed) and the tests read its outputs.
"""
from __future__ import annotations

import json
import shutil

import matplotlib

matplotlib.use("Agg", force=True)
import matplotlib.pyplot  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from jaxsoc import algos, host  # noqa: E402
from jaxsoc.analysis import attention, execute, figures, paper, plan as plan_lib, protocols, report, runs, tables  # noqa: E402,E501
from jaxsoc.analysis.runs import AnalysisError  # noqa: E402
from jaxsoc.demos import HEURISTICS  # noqa: E402
from tests.cli_checks import refused  # noqa: E402


# ----------------------------------------------------------------------------- synthetic runs
def fake_run(root, name, algo, seed, updates_per_seed, scenario="hmarl-soc-v1", env=None, num_envs=1,
             steps_per_update=1000):
    """A run folder whose seeds `seed..` logged `updates_per_seed[i]` = [(episodes, {metric: v})]."""
    path = root / name
    path.mkdir(parents=True)
    cfg = {"algo": algo, "scenario": scenario, "env": env or {}, "num_envs": num_envs,
           "num_seeds": len(updates_per_seed), "total_steps": 10_000, "seed": seed, "devices": 1,
           "run": {"name": name, "dir": str(root)}, "scripted": {"rollout": 128}}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    lines = []
    for u in range(max(len(x) for x in updates_per_seed)):
        for i, ups in enumerate(updates_per_seed):
            if u < len(ups):
                eps, m = ups[u]
                lines.append({"update": u + 1, "seed": seed + i, "env_steps": (u + 1) * steps_per_update,
                              "time": 1.0, "metrics": {"episodes": eps, **m}})
    (path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def R(ret, csr):
    return {"return": ret, "csr": csr, "mttd": 8.0, "mttr": 100.0, "fpr": 0.05}


@pytest.fixture()
def synthetic(tmp_path):
    # seed 42: the last 2 updates hold 900 + 1200 >= 2000 episodes
    s42 = [(1000, R(-10, .1)), (500, R(-20, .2)), (1200, R(-30, .3)), (900, R(-40, .5))]
    # seed 43: an update without episodes logs null metrics
    s43 = [(800, R(-5, .2)), (0, R(None, None)), (1500, R(-15, .6)), (700, R(-25, .4))]
    # seed 44, in a second run folder of the same method: pooled with 42 and 43
    s44 = [(3000, R(-50, .7))]
    fake_run(tmp_path, "rs-a", "rule-soar", 42, [s42, s43])
    fake_run(tmp_path, "rs-b", "rule-soar", 44, [s44])
    fake_run(tmp_path, "const", "constant", 0, [[(2500, R(10, .98))], [(2500, R(12, .96))]])
    return tmp_path


# ----------------------------------------------------------------------------- aggregation
def test_population_std_reproduces_the_papers_own_per_seed_numbers():
    """Table II's HMARL and QMIX cells are mean ± ddof-0 std (not ddof 1) of their published per-seed
    values (themselves rounded, hence half a unit of the last printed digit of slack)."""
    for algo, key in [("hmarl", "return"), ("hmarl", "csr"), ("hmarl", "fpr"), ("qmix", "csr")]:
        values = list(paper.published_per_seed(algo)[key].values())
        stat = runs.Stat.of(values)
        mean, std = paper.published(algo)[key]
        spec = runs.metric(key)
        unit = 10.0 ** -spec.decimals / spec.scale
        assert abs(stat.mean - mean) <= 0.6 * unit and abs(stat.std - std) <= 0.6 * unit, (algo, key)
        assert abs(np.std(values, ddof=1) - std) > 0.6 * unit  # the sample std would not match
    assert tables.cell_text(runs.Stat(6.9, 1.0, 5, 5), "return") == "+6.9 ± 1.0"
    assert tables.cell_text(runs.Stat(0.0017, 0.0008, 5, 5), "fpr") == "0.17 ± 0.08"
    assert tables.cell_text(runs.Stat(0.5, 0.1, 3, 5, coverage=0.83), "mttd") == "0.5 ± 0.1 (83%) [3/5 seeds]"
    assert tables.cell_text(runs.Stat(0.5, 0.1, 5, 5, coverage=0.9996), "mttd") == "0.5 ± 0.1 (>99.9%)"


def test_trailing_window_by_hand():
    eps = [1000, 500, 1200, 900]
    vals = [-10, -20, -30, -40]
    means, counts, starts = protocols.trailing_window(eps, vals, 2000)
    # update 2: 500 + 1200 < 2000, so the window reaches back to update 0; update 3: 1200 + 900
    assert starts.tolist() == [0, 0, 0, 2]
    assert counts.tolist() == [1000, 1500, 2700, 2100]
    np.testing.assert_allclose(means, [-10, (-10000 - 10000) / 1500, (-10000 - 10000 - 36000) / 2700,
                                       (-36000 - 36000) / 2100])
    # NaN values (no episodes) carry no weight; window 1 = each update alone
    means, counts, _ = protocols.trailing_window([800, 0, 1500], [-5, np.nan, -15], 1)
    assert np.isnan(means[1]) and means[2] == -15 and counts.tolist() == [800, 0, 1500]


def test_paper_protocol_table_from_synthetic_logs(synthetic):
    groups = runs.group_runs(runs.find_runs([synthetic]))
    assert [g.label for g in groups] == ["Rule-SOAR", "Constant (all-zero)"]
    assert groups[0].seeds == [42, 43, 44]
    res = [protocols.paper_protocol(g) for g in groups]
    rs = res[0]
    # hand-computed: newest whole updates holding >= 2000 episodes, episode-weighted
    np.testing.assert_allclose(rs.values("return"), [-34.2857142857, -18.1818181818, -50.0])
    np.testing.assert_allclose(rs.values("csr"), [0.3857142857, 0.5363636364, 0.7])
    assert [s.episodes for s in rs.seeds] == [2100, 2200, 3000]
    st = rs.stat("return")
    assert st.n == 3 and abs(st.mean - -34.1558441558) < 1e-9 and abs(st.std - 12.9900429366) < 1e-9
    assert abs(rs.stat("csr").std - 0.1283431150) < 1e-9

    table = tables.build_table(res, "paper", paper="matched")
    assert [(r.label, r.source) for r in table.rows] == [
        ("Rule-SOAR", "ours"), ("Rule-SOAR", "paper"), ("Constant (all-zero)", "ours")]
    md = tables.to_markdown(table)
    assert ("| Rule-SOAR | ours | 3 | -34.2 ± 13.0 | 8.0 ± 0.0 | 100.0 ± 0.0 | 5.00 ± 0.00 | 54.1 ± 12.8 |"
            in md)
    assert ("| Rule-SOAR | paper | 5 | -1238.2 ± 26.6 | 8.0 ± 0.1 | 136.9 ± 3.1 | 5.14 ± 0.01 | 35.2 ± 1.8 |"
            in md)
    assert "| Constant (all-zero) | ours | 2 | +11.0 ± 1.0 |" in md
    rows = list(__import__("csv").DictReader(tables.to_csv(table).splitlines()))
    assert rows[0]["return_mean"] == "-34.1558" and rows[0]["csr_std"] == "0.128343" and rows[0]["return_n"] == "3"
    tex = tables.to_latex(table)
    assert r"-34.2 $\pm$ 13.0" in tex and r"CSR \%" in tex and tex.count(r"\\") == 4
    # every published method is listed with paper="all"
    everything = tables.build_table(res, "paper", paper="all")
    assert [r.label for r in everything.rows if r.source == "paper"] == [
        "Rule-SOAR", "Single-DRL", "IQL", "MAPPO", "QMIX", "HMARL-SOC"]
    # the bars draw the same numbers, the paper's methods without runs as diamonds alone
    _, data = figures.metric_bars(res, ("csr",), with_paper="all")
    assert list(data["csr"])[:3] == ["Rule-SOAR", "Single-DRL (paper)", "IQL (paper)"]
    assert data["csr"]["HMARL-SOC (paper)"] == (0.710, 0.104)
    assert data["csr"]["Rule-SOAR"] == pytest.approx((0.5406926407, 0.1283431150))


def test_notes_short_windows_and_paper_rows_only_on_the_papers_env(tmp_path):
    fake_run(tmp_path, "a", "rule-soar", 0, [[(300, R(-1, .5)), (400, R(-2, .5))]],
             env={"hosts_per_segment": 8}, num_envs=4, steps_per_update=400)
    res = [protocols.paper_protocol(g) for g in runs.group_runs(runs.find_runs([tmp_path]))]
    assert res[0].seeds[0].episodes == 700
    notes = " ".join(res[0].notes)
    assert "only 700 episodes" in notes and "length bias" in notes
    table = tables.build_table(res, paper="all")
    assert not table.has_paper_rows and "hosts_per_segment=8" in table.title


@pytest.mark.parametrize("short_first", [False, True])
def test_a_seed_that_stopped_short_is_named_and_its_curve_ends_where_its_log_does(tmp_path, short_first):
    """audit-evalstats #3: an interrupted run's seed was pooled without a word, and its curve was
    extended flat to the others' last step (or, listed first, cut theirs to its length)."""
    full = [(1000, R(-10.0 * u, .1)) for u in range(1, 11)]  # 10 updates of 1,000 steps: the budget
    fake_run(tmp_path, "b" if short_first else "a", "rule-soar", 0, [full, full])
    fake_run(tmp_path, "a" if short_first else "b", "rule-soar", 2, [full[:6]])  # killed after update 6
    (group,) = runs.group_runs(runs.find_runs([tmp_path]))
    assert [r.seeds for r in group.runs] == ([[2], [0, 1]] if short_first else [[0, 1], [2]])
    res = protocols.paper_protocol(group, window=1)
    assert "seed 2 stopped short (interrupted?): 6,000 env steps logged of 10,000; pooled with the others" in res.notes
    curve = figures.curve_series(group, "return", window=1)
    assert curve["steps"].tolist() == [1000.0 * u for u in range(1, 11)]
    row = curve["per_seed"][curve["seeds"].index(2)]
    np.testing.assert_array_equal(row[:6], [-10.0 * u for u in range(1, 7)])
    assert np.isnan(row[6:]).all()
    np.testing.assert_array_equal(curve["mean"], [-10.0 * u for u in range(1, 11)])  # the seeds there
    # the complete seeds alone: no note
    full_only = runs.group_runs([runs.read_run(tmp_path / ("b" if short_first else "a"))])[0]
    assert not any("stopped short" in n for n in protocols.paper_protocol(full_only, window=1).notes)


def test_no_length_bias_note_where_every_episode_runs_the_whole_limit(tmp_path):
    """A world without early ends (retail: every episode is max_steps long) has no short episodes
    to over-represent; the same window with shorter episodes keeps the note."""
    import jaxsoc.env as soc

    limit = soc.build_params("hmarl-soc-v1").max_steps
    for algo, length in (("rule-soar", limit), ("constant", limit - 3)):  # two methods: two groups
        fake_run(tmp_path, algo, algo, 0, [[(300, {**R(-1, .5), "length": length}),
                                            (400, {**R(-2, .5), "length": length})]],
                 num_envs=4, steps_per_update=400)
    notes = {g.algo: " ".join(protocols.paper_protocol(g).notes) for g in runs.group_runs(runs.find_runs([tmp_path]))}
    assert "length bias" not in notes["rule-soar"] and "length bias" in notes["constant"]


def test_run_folders_are_found_through_links_and_not_inside_a_run(tmp_path):
    """A folder of links to runs is a way to group them (rglob did not follow the links: "no run
    folders under ..."); a link back up the tree is walked once; a run's own subfolders are not
    searched (a checkpoint tree holds thousands of files)."""
    real = tmp_path / "real"
    a = fake_run(real, "a", "rule-soar", 0, [[(10, R(0, 0))]])
    b = fake_run(real, "b", "rule-soar", 1, [[(10, R(0, 0))]])
    (a / "checkpoints" / "nested").mkdir(parents=True)
    (a / "checkpoints" / "nested" / "config.yaml").write_text("not a run's")
    group = tmp_path / "group"
    group.mkdir()
    (group / "first").symlink_to(a, target_is_directory=True)
    (group / "second").symlink_to(b, target_is_directory=True)
    (group / "loop").symlink_to(group, target_is_directory=True)
    assert runs.run_folders_below(group) == [group / "first", group / "second"]
    assert [r.path.name for r in runs.find_runs([group])] == ["first", "second"]
    assert runs.run_folders_below(real) == [a, b]


def test_methods_that_differ_are_labelled(tmp_path):
    fake_run(tmp_path, "k5", "rule-soar", 0, [[(10, R(0, 0))]])
    fake_run(tmp_path, "k10", "rule-soar", 0, [[(10, R(0, 0))]], env={"directive_period": 10})
    labels = sorted(g.label for g in runs.group_runs(runs.find_runs([tmp_path])))
    assert labels == ["Rule-SOAR (env.directive_period=10)", "Rule-SOAR (env.directive_period=default)"]


def test_a_seed_in_two_runs_comes_from_the_newest_with_a_note(tmp_path, capsys):
    import os

    import eval.table as tb

    # the same command twice (seeds 0 and 1, then seed 0 alone, written later): seed 0 from the
    # newer run, seed 1 from the older one
    old = fake_run(tmp_path, "b-old", "rule-soar", 0, [[(10, R(-1, .1))], [(10, R(-2, .2))]])
    new = fake_run(tmp_path, "a-new", "rule-soar", 0, [[(10, R(-3, .3))]])
    for run, when in ((old, 1_000_000), (new, 2_000_000)):
        for f in run.iterdir():
            os.utime(f, (when, when))
    (group,) = runs.group_runs(runs.find_runs([tmp_path]))
    assert group.seeds == [0, 1] and [r.seeds for r in group.runs] == [[0], [1]]
    assert group.notes == [f"seed 0 of Rule-SOAR on hmarl-soc-v1 also in {old}: using the newest run, {new}"]
    res = protocols.paper_protocol(group, window=1)
    assert res.values("return").tolist() == [-3, -2]
    curve = figures.curve_series(group, "return", window=1)
    assert curve["seeds"] == [0, 1] and curve["per_seed"][:, -1].tolist() == [-3, -2]
    for run, returns in ((old, {"0": -10, "1": -20}), (new, {"0": -30})):  # cached evaluations
        seeds = {s: {"episodes": 4, "metrics": {"return": {"mean": v, "n": 4}}} for s, v in returns.items()}
        (run / protocols.EVALUATION_FILE).write_text(json.dumps(
            {"algo": "rule-soar", "run": str(run), "seeds": seeds, "request": request_of(4)}))
    assert protocols.ours_protocol(group, evaluate=False).values("return").tolist() == [-30, -20]
    # a run whose every seed is newer elsewhere drops out; the table tool says so and goes on
    for f in new.iterdir():
        os.utime(f, (500_000, 500_000))
    (group,) = runs.group_runs(runs.find_runs([tmp_path]))
    assert [r.path for r in group.runs] == [old] and group.seeds == [0, 1]
    assert tb.main([str(tmp_path), "--protocol", "paper", "--window", "1"]) == 0
    out = capsys.readouterr()
    assert f"note: seed 0 of Rule-SOAR on hmarl-soc-v1 also in {new}: using the newest run, {old}" in out.err
    assert "| Rule-SOAR | ours | 2 | -1.5 ± 0.5 |" in out.out


def request_of(episodes, scenario="hmarl-soc-v1", env=None, greedy=True):
    """An evaluation.json's "request" as eval/evaluate.py writes it for a scripted run."""
    return {"format": protocols.EVAL_FORMAT, "episodes": episodes, "greedy": greedy, "batch": episodes,
            "scenario": scenario, "env": env or {}, "checkpoint": None, "heldout_stream": protocols.HELDOUT_STREAM}


def cached_evaluation(run, first_seed, returns, checkpoint=None, **request):
    """`run`'s evaluation.json (seeds `first_seed`.. with these mean returns) made as `request_of(**request)`."""
    seeds = {str(first_seed + i): {"episodes": request.get("episodes", 4),
                                   "metrics": {"return": {"mean": v, "std": 0.0, "n": 4}}}
             for i, v in enumerate(returns)}
    record = {"request": request_of(**{"episodes": 4, **request}), "run": str(run), "algo": "rule-soar",
              "trained_on": "hmarl-soc-v1", "checkpoint_update": checkpoint, "seeds": seeds}
    (run / protocols.EVALUATION_FILE).write_text(json.dumps(record))


def test_no_evaluate_refuses_another_worlds_record_and_says_how_records_were_made(tmp_path, capsys, monkeypatch):
    """audit-evalstats #1: --no-evaluate tabulated any cached evaluation.json: one made on another
    scenario (another world's numbers in this world's table), a stochastic one under a "greedy"
    title, an older checkpoint's, and runs of one method on different episode counts, unsaid."""
    import eval.figures as fg
    import eval.table as tb

    a = fake_run(tmp_path, "a", "rule-soar", 0, [[(10, R(-1, .1))]])
    b = fake_run(tmp_path, "b", "rule-soar", 1, [[(10, R(-2, .2))]])
    cached_evaluation(a, 0, [-3.0], scenario="soc-v2")
    cached_evaluation(b, 1, [-4.0])
    for tool, extra in ((tb, []), (fg, ["--out", str(tmp_path / "f")])):
        assert tool.main([str(tmp_path), "--protocol", "ours", "--no-evaluate", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{a / 'evaluation.json'} was evaluated on 'soc-v2'" in err, err
        assert "not on the run's 'hmarl-soc-v1'" in err
    cached_evaluation(a, 0, [-3.0], env={"max_steps": 10})
    assert tb.main([str(tmp_path), "--protocol", "ours", "--no-evaluate"]) == 2
    assert "'hmarl-soc-v1' with env max_steps=10" in capsys.readouterr().err
    # sampled actions, 8 episodes where b has 4, from checkpoint 3 of a run whose newest is 5
    cached_evaluation(a, 0, [-3.0], greedy=False, episodes=8, checkpoint=3)
    monkeypatch.setattr(runs, "checkpoint_index", lambda run: ([3, 5], {}) if run.path == a else ([], {}))
    assert tb.main([str(tmp_path), "--protocol", "ours", "--no-evaluate", "--paper", "none"]) == 0
    out = capsys.readouterr().out
    assert "greedy and stochastic policies (see notes) on held-out episodes" in out
    assert f"stochastic policy (sampled actions, not greedy) in {a}" in out
    assert f"{a} evaluated at checkpoint 3, not its newest (5)" in out
    assert f"runs evaluated on different numbers of episodes: {a} 8, {b} 4" in out
    cached_evaluation(b, 1, [-4.0], greedy=False, episodes=8)
    res = protocols.ours_protocol(runs.group_runs(runs.find_runs([tmp_path]))[0], evaluate=False)
    title = tables.build_table([res]).title
    assert "stochastic policy on held-out" in title and "greedy" not in title


@pytest.mark.parametrize("content, problem", [
    ('{"seeds": ', "cannot be read as JSON"),
    ({"request": {}, "seeds": {"0": {"episodes": 5}}}, "seed 0 has no 'metrics' mapping"),
    ({"request": {}, "seeds": {"0": {"metrics": {}}}}, "seed 0 has no integer 'episodes'"),
])
def test_a_damaged_cached_evaluation_is_one_line(tmp_path, capsys, content, problem):
    """audit-evalstats #2: table/figures --no-evaluate printed a JSONDecodeError or KeyError trace."""
    import eval.figures as fg
    import eval.table as tb

    run = fake_run(tmp_path, "a", "rule-soar", 0, [[(10, R(-1, .1))]])
    (run / protocols.EVALUATION_FILE).write_text(content if isinstance(content, str) else json.dumps(content))
    for tool, extra in ((tb, []), (fg, ["--out", str(tmp_path / "f")])):
        assert tool.main([str(run), "--protocol", "ours", "--no-evaluate", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{tool.build_parser().prog}: error: {run / 'evaluation.json'}"), err
        assert problem in err and err.count("\n") == 1


def test_a_damaged_evaluation_npz_is_evaluated_again(tmp_path):
    """audit-evalstats #2: evaluate.py reusing a matching evaluation.json beside a damaged
    evaluation.npz failed in np.load with a stack trace; the npz is now taken as missing."""
    run = fake_run(tmp_path, "a", "random", 0, [[(10, R(0, 0))]], scenario="soc-v2",
                   env={"hosts_per_segment": 2, "max_steps": 5})
    first = protocols.evaluate_run(run, 2)
    (run / protocols.EPISODES_FILE).write_bytes(b"PK\x03\x04 not a zip")
    again = protocols.evaluate_run(run, 2)
    assert not again["reused"] and again["seeds"] == first["seeds"]
    with np.load(run / protocols.EPISODES_FILE) as z:  # written anew
        np.testing.assert_array_equal(z["return"], first["per_episode"]["return"])
    assert protocols.evaluate_run(run, 2)["reused"]


def test_bad_logs_and_folders_give_one_clear_message(tmp_path):
    empty = fake_run(tmp_path, "empty", "rule-soar", 0, [[(10, R(0, 0))]])
    (empty / "metrics.jsonl").write_text("")
    group = runs.group_runs([runs.read_run(empty)])[0]
    with pytest.raises(AnalysisError, match="metrics.jsonl is empty"):
        protocols.paper_protocol(group)
    noeps = fake_run(tmp_path, "noeps", "rule-soar", 0, [[(0, R(None, None)), (0, R(None, None))]])
    with pytest.raises(AnalysisError, match="no episode ended"):
        protocols.paper_protocol(runs.group_runs([runs.read_run(noeps)])[0])
    nocount = fake_run(tmp_path, "nocount", "rule-soar", 0, [[(5, R(0, 0))]])
    (nocount / "metrics.jsonl").write_text(json.dumps({"update": 1, "seed": 0, "metrics": {"return": 1}}) + "\n")
    with pytest.raises(AnalysisError, match="no 'episodes' count"):
        protocols.paper_protocol(runs.group_runs([runs.read_run(nocount)])[0])
    with pytest.raises(AnalysisError, match="does not exist"):
        runs.find_runs([tmp_path / "nope"])
    (tmp_path / "plain").mkdir()
    with pytest.raises(AnalysisError, match="no config.yaml"):
        runs.read_run(tmp_path / "plain")
    with pytest.raises(AnalysisError, match="no run folders"):
        runs.find_runs([tmp_path / "plain"])
    with pytest.raises(AnalysisError, match="no methods"):
        tables.build_table([])


def test_cli_errors_are_one_line(tmp_path, capsys):
    import eval.evaluate as ev
    import eval.table as tb

    empty = fake_run(tmp_path, "empty", "rule-soar", 0, [[(10, R(0, 0))]])
    (empty / "metrics.jsonl").write_text("")
    assert tb.main([str(empty), "--protocol", "paper"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eval/table.py: error: ") and "is empty" in err and "Traceback" not in err and err.count("\n") == 1
    assert ev.main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # a flag that would be ignored is refused: a run is evaluated on its own env and seeds
    for flag in (["--set", "env.max_steps=10"], ["--seeds", "3"]):
        with pytest.raises(SystemExit) as exit_:
            ev.main([str(empty), *flag])
        assert exit_.value.code == 2
        assert f"{flag[0]} only applies with --algo" in capsys.readouterr().err


def test_table_and_figures_refuse_a_run_they_cannot_rebuild_before_evaluating_any(tmp_path, capsys, monkeypatch):
    """ext audit F2: the tools evaluated method by method and found a run whose env cannot be built
    (here a run saved before scenario files were stored, its file gone) only after evaluating the
    others, whose folders then held evaluations; a log that cannot be read likewise. Now both are
    refused first, and nothing is written (no JAX work at all)."""
    import eval.figures as fg
    import eval.table as tb

    monkeypatch.chdir(tmp_path)
    tiny = {"hosts_per_segment": 2, "max_steps": 5}
    good = fake_run(tmp_path, "good", "random", 0, [[(10, R(0, 0))]], scenario="soc-v2", env=tiny)
    gone = fake_run(tmp_path, "gone", "random", 0, [[(10, R(0, 0))]], scenario="zz/gone.yaml")  # after soc-v2
    message = (f"error: cannot rebuild the policy of {gone}: env 'zz/gone.yaml': scenario file not found: "
               f"zz/gone.yaml (relative to {tmp_path})\n")
    assert tb.main([str(good), str(gone), "--protocol", "ours", "--episodes", "2"]) == 2
    assert capsys.readouterr().err == "eval/table.py: " + message
    assert fg.main([str(good), str(gone), "--protocol", "ours", "--episodes", "2", "--out", str(tmp_path / "f")]) == 2
    assert capsys.readouterr().err == "eval/figures.py: " + message
    shutil.rmtree(gone)
    # a log read after the evaluations (the paper protocol of a later table) is read before them
    empty = fake_run(tmp_path, "empty", "random", 0, [[(10, R(0, 0))]], scenario="soc-v2-redblue", env=tiny)
    (empty / "metrics.jsonl").write_text("")
    assert tb.main([str(good), str(empty), "--episodes", "2"]) == 2
    assert "is empty" in capsys.readouterr().err
    assert fg.main([str(good), str(empty), "--episodes", "2", "--out", str(tmp_path / "f")]) == 2
    assert "is empty" in capsys.readouterr().err
    assert sorted(p.name for p in good.iterdir()) == ["config.yaml", "metrics.jsonl"]
    assert not (tmp_path / "f").exists()


# ----------------------------------------------------------------------------- a learner (toy)
@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    from tests import engine_toys

    return engine_toys.trained_toy_run(tmp_path_factory.mktemp("toy"))


def test_learner_evaluation_loads_its_checkpoint_and_is_greedy(toy_run):
    import jax

    from jaxsoc import engine
    from jaxsoc.evaluation import make_evaluator
    from tests import engine_toys
    from tests.fast import fast_compile, fast_jit

    with fast_compile():  # the toy's evaluation program: compiling is its cost (tests/fast.py)
        rec = protocols.evaluate_run(toy_run, 16, make_env=engine_toys.make_toy_env)
    assert rec["checkpoint_update"] == 6 and sorted(rec["seeds"]) == ["0", "1"]
    loaded = engine.load(toy_run, make_env=engine_toys.make_toy_env)
    env, p = engine_toys.make_toy_env("toy")
    rollout = fast_jit(make_evaluator(env, p, loaded.trainer.act, 16, greedy=True))
    for i, seed in enumerate((0, 1)):
        params = jax.tree.map(lambda x: x[i], loaded.trainer.policy_params(loaded.state))
        want = rollout(params, jax.random.fold_in(protocols.heldout_key(seed), 0))
        np.testing.assert_allclose(rec["per_episode"]["return"][i], np.asarray(want["return"]), rtol=1e-6)
    again = protocols.evaluate_run(toy_run, 16, make_env=engine_toys.make_toy_env)
    assert again["reused"] and json.loads((toy_run / "evaluation.json").read_text())["request"]["episodes"] == 16


def test_a_scripted_evaluation_written_with_out_pairs_with_a_run(toy_run, tmp_path, capsys):
    """`eval/evaluate.py --algo ... --out DIR` writes what a run folder's evaluation holds, with the
    same request keys (a scripted policy's record once lacked `batch`, so eval/paired.py refused
    to pair it with any run), and refuses what it would ignore or overwrite before evaluating."""
    import eval.evaluate as ev
    import eval.paired as paired
    from tests import engine_toys
    from tests.fast import fast_compile

    out = tmp_path / "rule-soar"
    flags = ["--algo", "rule-soar", "--scenario", "hmarl-soc-v1", "--seeds", "0-1", "--episodes", "4",
             "--set", "env.max_steps=12", "--out", str(out)]
    assert ev.main(flags) == 0
    written = json.loads((out / protocols.EVALUATION_FILE).read_text())
    assert written["request"]["batch"] == 4 and sorted(written["seeds"]) == ["0", "1"]
    with np.load(out / protocols.EPISODES_FILE) as z:
        assert z["return"].shape == (2, 4)
        assert np.mean(z["return"][1]) == pytest.approx(written["seeds"]["1"]["metrics"]["return"]["mean"])
    with fast_compile():
        run_rec = protocols.evaluate_run(toy_run, 4, write=False, reuse=False, make_env=engine_toys.make_toy_env)
    assert set(written["request"]) == set(run_rec["request"])
    protocols.write_evaluation(tmp_path, run_rec, run_rec["per_episode"])
    capsys.readouterr()
    # hmarl-soc-v1 (max_steps 12) against the toy world: other episodes, so no paired sample
    refused(paired.main, [str(out), str(tmp_path), "--metrics", "return"], capsys,
            f"{out} was evaluated on 'hmarl-soc-v1' with env {{'max_steps': 12}} and {tmp_path} on "
            f"{run_rec['request']['scenario']!r}")
    # (the same request keys, checked above, are what lets paired.py take a scripted evaluation and
    # a run's on the same world: tests/test_paired.py)
    before = (out / protocols.EVALUATION_FILE).read_text()
    for bad, words in ((flags, "exists: --force replaces it"), (flags + ["--no-write"], "contradict"),
                       ([str(toy_run), "--out", str(out)], "--out applies with --algo")):
        with pytest.raises(SystemExit) as exit_:
            ev.main(bad)
        assert exit_.value.code == 2 and words in capsys.readouterr().err
    assert (out / protocols.EVALUATION_FILE).read_text() == before
    assert ev.main(flags + ["--force"]) == 0


def test_learner_bad_checkpoints(toy_run, tmp_path):
    from tests import engine_toys

    no_ckpt = tmp_path / "no_ckpt"
    shutil.copytree(toy_run, no_ckpt)
    shutil.rmtree(no_ckpt / "checkpoints")
    with pytest.raises(AnalysisError, match="has no checkpoint: 'toy' is a learner"):
        protocols.evaluate_run(no_ckpt, 4, make_env=engine_toys.make_toy_env)
    other = tmp_path / "other"
    shutil.copytree(toy_run, other)
    cfg = yaml.safe_load((other / "config.yaml").read_text())
    (other / "config.yaml").write_text(yaml.safe_dump({**cfg, "algo": "rule-soar"}))
    with pytest.raises(AnalysisError, match="written by a run with algo 'toy'.*says 'rule-soar'"):
        protocols.evaluate_run(other, 4, make_env=engine_toys.make_toy_env)
    (other / "config.yaml").write_text(yaml.safe_dump({**cfg, "scenario": "hmarl-soc-v1"}))
    with pytest.raises(AnalysisError, match="scenario 'toy'.*says 'hmarl-soc-v1'"):
        protocols.evaluate_run(other, 4, make_env=engine_toys.make_toy_env)
    with pytest.raises(AnalysisError, match="evaluating it on 'soc-v2' is refused"):
        protocols.evaluate_run(toy_run, 4, scenario="soc-v2", make_env=engine_toys.make_toy_env)
    with pytest.raises(AnalysisError, match="is a 'toy' run, not 'mappo'"):
        protocols.evaluate_run(toy_run, 4, algo="mappo", make_env=engine_toys.make_toy_env)


def test_attention_glue_feeds_the_learners_explainer(toy_run, tmp_path, monkeypatch):
    """attention.draw_attention: observations at the coordinator's decisions of a greedy episode
    go to the family's `attention_weights`, whose output is drawn."""
    from tests import engine_toys

    seen = {}

    def attention_weights(params, obs, config, env_params):  # the contract of docs/evaluation.md
        seen["obs"] = obs
        w = np.abs(np.asarray(obs["a"]))[:, None, :].repeat(2, axis=1) + 1e-3  # [D, heads=2, tokens=3]
        return w / w.sum(-1, keepdims=True), ["t0", "t1", "t2"]

    monkeypatch.setattr(engine_toys, "attention_weights", attention_weights, raising=False)
    paths = attention.draw_attention(toy_run, tmp_path / "attention", decisions=3,
                                     make_env=engine_toys.make_toy_env)
    # Three decisions asked, every 5 steps (the toy has no directive_period: the default K): the toy's
    # first held-out episode (from seed 0's batch-0 key, as eval/evaluate.py's) ends before step 5 here,
    # so decision 0 is its own and the observations of steps 5 and 10 are later episodes' (the env
    # auto-resets): they are left out, not drawn as decisions 2 and 3.
    assert seen["obs"]["a"].shape == (1, engine_toys.N_ACTIONS) and seen["obs"]["b"].shape == (1, 3)
    assert all(p.stat().st_size > 1000 for p in paths)


# ----------------------------------------------------------------------------- jaxsoc.load_policy
# The rebuild evaluation uses (jaxsoc/policy.py), one seed at a time; the real learners are checked
# against their own greedy act in tests/test_registry.py (dqn, hmarl; all with -m slow) and
# tests/test_ppo.py (mappo).
def load_toy(path, **kw):
    import jaxsoc
    from tests import engine_toys

    return jaxsoc.load_policy(path, make_env=engine_toys.make_toy_env, **kw)


def test_the_named_seed_and_checkpoint_act_as_the_trainer(toy_run):
    import jax

    from jaxsoc import engine
    from tests import engine_toys
    from tests.test_engine import leaves_equal

    loaded = engine.load(toy_run, make_env=engine_toys.make_toy_env)
    params = loaded.trainer.policy_params(loaded.state)
    policy = load_toy(toy_run, seed=1)
    assert (policy.algo, policy.seed, policy.update, policy.run) == ("toy", 1, 6, toy_run)
    assert leaves_equal(policy.params, jax.tree.map(lambda x: x[1], params))
    assert not leaves_equal(policy.params, jax.tree.map(lambda x: x[0], params))
    assert load_toy(toy_run).seed == 0  # the run's first seed by default
    older = load_toy(toy_run, seed=1, update=4)
    assert older.update == 4 and not leaves_equal(older.params, policy.params)

    # Greedy: the argmax of the toy's logits (obs @ w + b) whatever the key, jitted as eager.
    obs, state = policy.env.reset(jax.random.key(0), policy.env_params)
    w, b = np.asarray(policy.params["w"]), np.asarray(policy.params["b"])
    want = {a: int(np.argmax(np.asarray(obs[a]) @ w + b)) for a in engine_toys.AGENTS}
    for k in range(3):
        got = jax.jit(policy.act)(jax.random.key(k), obs, state)
        assert {a: int(v) for a, v in got.items()} == want
    assert not policy.reads_state and leaves_equal(policy.act(jax.random.key(0), obs), jax.jit(policy.act)(
        jax.random.key(0), obs))
    # Sampling draws from the key: some key picks another action than the greedy one.
    sampled = load_toy(toy_run, seed=1, greedy=False)
    picks = jax.vmap(lambda k: sampled.act(k, obs)["a"])(jax.random.split(jax.random.key(1), 64))
    assert len(set(np.asarray(picks).tolist())) > 1


def test_load_policies_reads_every_seed_at_once_as_load_policy_does(toy_run):
    import jaxsoc
    from tests import engine_toys
    from tests.test_engine import leaves_equal

    both = jaxsoc.load_policies(toy_run, make_env=engine_toys.make_toy_env)
    assert [p.seed for p in both] == [0, 1]
    for p in both:
        assert leaves_equal(p.params, load_toy(toy_run, seed=p.seed).params)
    one = jaxsoc.load_policies(toy_run, seeds=[1], update=4, make_env=engine_toys.make_toy_env)
    assert [(p.seed, p.update) for p in one] == [(1, 4)]
    assert leaves_equal(one[0].params, load_toy(toy_run, seed=1, update=4).params)
    assert not leaves_equal(both[1].params, one[0].params)
    with pytest.raises(AnalysisError, match=r"trained seed\(s\) 0, 1, not seed 7, 9"):
        jaxsoc.load_policies(toy_run, seeds=[0, 7, 9], make_env=engine_toys.make_toy_env)


def test_folders_it_cannot_use_give_one_clear_error(toy_run, tmp_path):
    with pytest.raises(AnalysisError, match="does not exist"):
        load_toy(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnalysisError, match="is not a run folder: it has no config.yaml"):
        load_toy(tmp_path / "empty")
    with pytest.raises(AnalysisError, match=r"trained seed\(s\) 0, 1, not seed 7"):
        load_toy(toy_run, seed=7)
    with pytest.raises(AnalysisError, match=r"has no checkpoint at update 5 \(it has \[2, 4, 6\]\)"):
        load_toy(toy_run, update=5)  # was a CheckpointError from deep in the load

    def copy(name, edit=None):
        path = tmp_path / name
        shutil.copytree(toy_run, path)
        if edit:
            cfg = yaml.safe_load((path / "config.yaml").read_text())
            (path / "config.yaml").write_text(yaml.safe_dump({**cfg, **edit}))
        return path

    # (No checkpoint and a mixed-up config.yaml: test_learner_bad_checkpoints, the same checks.)
    with pytest.raises(AnalysisError, match="algorithm 'mystery', which this checkout does not know"):
        load_toy(copy("unknown", {"algo": "mystery"}))
    # A damaged newest checkpoint: named, and nothing half-loaded comes back.
    damaged = copy("damaged")
    for f in (damaged / "checkpoints" / "6" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\0" * 16)
    with pytest.raises(AnalysisError, match=r"cannot rebuild the policy of .*damaged: .*checkpoint 6 of .*damaged cannot be read"):
        load_toy(damaged)


def test_scripted_policies_need_no_run_and_learners_do():
    import jax

    import jaxsoc
    from tests.test_engine import leaves_equal

    with pytest.raises(AnalysisError, match="'mappo' is a learner"):
        jaxsoc.scripted_policy("mappo", "soc-v2")
    with pytest.raises(AnalysisError, match="unknown scripted policy 'rule_soar'.*did you mean 'rule-soar'"):
        jaxsoc.scripted_policy("rule_soar", "soc-v2")
    policy = jaxsoc.scripted_policy("no-defender", "soc-v2", env={"hosts_per_segment": 4})
    assert (policy.seed, policy.update, policy.run, policy.reads_state) == (None, None, None, False)
    obs, _ = policy.env.reset(jax.random.key(0), policy.env_params)
    assert leaves_equal(policy.act(jax.random.key(0), obs), policy.env.idle_actions(policy.env_params))


# ----------------------------------------------------------------------------- a real reproduce run
@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    """Rule-SOAR on hmarl-soc-v1 (full 5x40 network), seeds 42 and 43 in one program, 4 updates of
    32 envs x 128 steps, 256 held-out episodes per seed: the whole reproduce pipeline, small."""
    out = tmp_path_factory.mktemp("repro")
    plan = plan_lib.make_plan("hmarl-soc-v1", ["rule-soar"], seeds=(42, 43), out=out, num_envs=32,
                              total_steps=32 * 128 * 4, episodes=256)
    summary = execute.execute(plan, progress=False, log=lambda *_: None)
    report.write(summary, command="pytest", log=lambda *_: None)
    return plan, summary


@pytest.mark.slow  # CI budget (10 min on 2 cores): the reproduce fixture runs a whole small table (~55 CPU-s)
def test_reproduce_writes_tables_figures_and_timings(repro, tmp_path):
    plan, summary = repro
    out = plan.out
    assert not summary.failures
    for stem in ("table2_paper", "table2_ours"):
        for ext in ("md", "csv", "tex"):
            assert (out / "tables" / f"{stem}.{ext}").stat().st_size > 0
    for stem in ("curves", "bars_paper", "bars_ours", "seeds_paper", "seeds_ours"):
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{stem}.{ext}").stat().st_size > 1000
    timings = json.loads((out / "timings.json").read_text())
    assert timings["Rule-SOAR"]["train_s"] > 0 and timings["Rule-SOAR"]["seeds"] == [42, 43]
    readme = (out / "README.md").read_text()
    assert "Wall-clock per method" in readme and "| Rule-SOAR | paper | 5 | -1238.2 ± 26.6" in readme
    assert host.cpu_description() in readme  # which host made the table (floats can differ between hosts)
    run = runs.read_run(out / "runs" / "rule-soar-s42-43")
    assert run.seeds == [42, 43]
    assert runs.checkpoint_meta(run)[1]["contents"] == "policy"  # the table reads nothing else
    # a second call would reuse the finished run and its evaluation
    cfg = plan_lib.run_config(plan.methods[0], plan.methods[0].runs[0], out / "runs")
    assert execute.run_state(run.path, cfg) == "complete"
    assert protocols.evaluate_run(run.path, plan.episodes)["reused"]
    early = tmp_path / "early"  # stopped before its first checkpoint: resumed (from the start)
    shutil.copytree(run.path, early, ignore=shutil.ignore_patterns("checkpoints"))
    assert execute.run_state(early, cfg) == "partial"
    cfg["total_steps"] *= 2
    assert execute.run_state(run.path, cfg) == "different"


@pytest.mark.slow  # CI budget (10 min on 2 cores): the reproduce fixture runs a whole small table (~55 CPU-s)
def test_scripted_evaluation_reproduces_table_ii_rule_soar(repro):
    """Greedy held-out evaluation of Rule-SOAR matches the paper's row within sampling error, as
    the env tests' rollouts do (tests/env/test_policies.py): 3 x sqrt(se^2 + paper std^2 / 5)."""
    plan, _ = repro
    rec = json.loads((plan.out / "runs" / "rule-soar-s42-43" / protocols.EVALUATION_FILE).read_text())
    per_ep = np.load(plan.out / "runs" / "rule-soar-s42-43" / protocols.EPISODES_FILE)
    assert rec["request"]["episodes"] == 256 and set(rec["seeds"]) == {"42", "43"}
    for key, (mean, sd) in paper.published("rule-soar").items():
        ours = per_ep[key].ravel()
        assert ours.size == 512
        tol = 3 * np.sqrt(ours.var() / ours.size + sd ** 2 / 5)
        if key == "fpr":
            tol = max(tol, 0.0005)
        assert abs(ours.mean() - mean) < tol, (key, ours.mean(), mean, tol)
    # ...and evaluating the policy without any run folder gives the same episodes
    free = protocols.evaluate_policy("rule-soar", "hmarl-soc-v1", (42, 43), 256)
    np.testing.assert_array_equal(free["per_episode"]["return"], per_ep["return"])


@pytest.mark.slow  # CI budget (10 min on 2 cores): the reproduce fixture runs a whole small table (~55 CPU-s)
def test_curves_come_from_the_log(repro):
    plan, _ = repro
    run = runs.read_run(plan.out / "runs" / "rule-soar-s42-43")
    group = runs.group_runs([run])[0]
    recs = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
    last = {r["seed"]: r["metrics"]["return"] for r in recs if r["update"] == max(x["update"] for x in recs)}
    fig, data = figures.learning_curves([group], ("return", "csr"), window=1)
    line = fig.axes[0].lines[0]
    assert line.get_ydata()[-1] == pytest.approx(np.mean(list(last.values())))
    assert data["return"]["Rule-SOAR"]["per_seed"][:, -1].tolist() == pytest.approx([last[42], last[43]])
    # the default window's last point is the paper-protocol table value
    _, data = figures.learning_curves([group], ("csr",))
    table_value = protocols.paper_protocol(group).stat("csr").mean
    assert data["csr"]["Rule-SOAR"]["mean"][-1] == pytest.approx(table_value)
    paths = figures.save(fig, plan.out / "extra" / "c")
    assert all(p.stat().st_size > 1000 for p in paths)


@pytest.mark.slow  # CI budget (10 min on 2 cores): the reproduce fixture runs a whole small table (~55 CPU-s)
def test_clis_on_the_run(repro, capsys):
    import eval.evaluate as ev
    import eval.figures as fg
    import eval.table as tb

    plan, _ = repro
    run_dir = plan.out / "runs" / "rule-soar-s42-43"
    assert ev.main([str(run_dir), "--episodes", "256"]) == 0
    out = capsys.readouterr().out
    assert "cached evaluation.json" in out and "| 42 | 256 |" in out and "**mean ± std**" in out
    assert tb.main([str(plan.out / "runs"), "--no-evaluate", "--out", str(plan.out / "t")]) == 0
    out = capsys.readouterr().out
    assert "greedy policy on held-out episodes" in out and "Exfil %" in out
    assert (plan.out / "t" / "table2_hmarl-soc-v1_paper.tex").is_file()
    argv = [str(plan.out / "runs"), "--no-evaluate", "--protocol", "ours", "--out", str(plan.out / "f")]
    assert fg.main(argv) == 0
    assert (plan.out / "f" / "seeds_hmarl-soc-v1_ours.pdf").stat().st_size > 1000


@pytest.mark.slow  # CI budget (10 min on 2 cores): the reproduce fixture runs a whole small table (~55 CPU-s)
def test_scripted_run_without_checkpoints_still_evaluates(repro, tmp_path):
    plan, _ = repro
    bare = tmp_path / "bare"
    shutil.copytree(plan.out / "runs" / "rule-soar-s42-43", bare)
    shutil.rmtree(bare / "checkpoints")
    (bare / protocols.EVALUATION_FILE).unlink()
    rec = protocols.evaluate_run(bare, 256, write=False)
    assert rec["checkpoint_update"] is None
    per_ep = np.load(plan.out / "runs" / "rule-soar-s42-43" / protocols.EPISODES_FILE)
    np.testing.assert_array_equal(rec["per_episode"]["csr"], per_ep["csr"])


# ----------------------------------------------------------------------------- HMARL figures, plan
@pytest.mark.parametrize("draw", [figures.metric_bars, figures.seed_scatter])
def test_method_labels_never_overlap_in_bar_and_seed_figures(draw):
    """Long method labels (methods told apart by their config) and many or few methods: no two
    texts of the figure (tick labels, titles) overlap, and no label runs into another panel."""
    def result(label, algo, offset):
        seeds = [runs.SeedResult(s, {k: offset + s for k in runs.TABLE_METRICS}, {}, 10) for s in range(3)]
        return runs.MethodResult(label, algo, "hmarl-soc-v1", "paper", seeds)

    long = [result(f"MAPPO (ppo.lr={lr}, total_steps=3000000)", "mappo", i) for i, lr in enumerate((3e-4, 1e-3))]
    for results in (long + [result("HMARL-SOC", "hmarl", 5)],
                    long + [result(runs.display_name(a), a, i) for i, a in enumerate(runs.PAPER_METHODS)]):
        fig, _ = draw(results, title="t")
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        axes = [ax for ax in fig.axes if ax.get_visible()]
        labels = {ax: drawn_tick_labels(ax) for ax in axes}
        texts = [t for ax in axes for t in labels[ax] + [ax.title]]
        boxes = [t.get_window_extent(renderer) for t in texts]
        for i, a in enumerate(boxes):
            clash = [texts[j].get_text() for j, b in enumerate(boxes) if j != i and a.overlaps(b)]
            assert not clash, f"{texts[i].get_text()!r} overlaps {clash}"
        for ax in axes:
            for t in labels[ax]:
                box = t.get_window_extent(renderer)
                assert not any(box.overlaps(other.get_window_extent(renderer)) for other in axes if other is not ax)
        matplotlib.pyplot.close(fig)


def test_curves_title_says_when_no_seed_logged_the_window(tmp_path):
    """audit-evalstats #6: the curves were titled "trailing mean over >= 2,000 episodes" when every
    seed had logged a few hundred (each point the mean since the start)."""
    fake_run(tmp_path, "a", "rule-soar", 0, [[(300, R(-1, .5)), (400, R(-2, .5))]])
    group = runs.group_runs(runs.find_runs([tmp_path]))

    def title(window):
        fig, _ = figures.learning_curves(group, ("return",), window)
        text = fig._suptitle.get_text()
        matplotlib.pyplot.close(fig)
        return text

    assert title(2000) == ("mean over every logged training episode per seed (fewer than the window of 2,000); "
                           "band: ± std over seeds")
    assert title(500).startswith("trailing mean over >= 500 episodes; band")
    fake_run(tmp_path, "b", "rule-soar", 1, [[(100, R(-1, .5))]])  # a seed of the same method with fewer
    group = runs.group_runs(runs.find_runs([tmp_path]))
    assert title(500).startswith("trailing mean over >= 500 episodes (all logged, where a seed logged fewer)")


def test_bars_draw_no_bar_for_an_undefined_metric(synthetic):
    """audit-evalstats #5: a metric no seed defines (MTTR of a policy that never responds: n/a in
    the table) was drawn as a bar of 0, which for MTTR reads as the best response time."""
    res = [protocols.paper_protocol(g) for g in runs.group_runs(runs.find_runs([synthetic]))]
    for s in res[1].seeds:  # the constant policy: no response, so no MTTR
        s.values["mttr"] = float("nan")

    def drawn(ax):
        bars = [p for p in ax.patches if p.get_height() > 0]
        return len(bars), [t.get_text().strip() for t in ax.texts]

    fig, data = figures.metric_bars(res, ("mttr", "csr"), with_paper=False)
    assert np.isnan(data["mttr"]["Constant (all-zero)"][0])
    assert [drawn(ax) for ax in fig.axes[:2]] == [(1, ["n/a"]), (2, [])]
    fig, _ = figures.ablation_chart({"full": {"mttr": [10.0, 12.0], "csr": [.5]}, "no-x": {"mttr": [], "csr": [.4]}},
                                    ("mttr", "csr"))
    assert [drawn(ax) for ax in fig.axes[:2]] == [(1, ["n/a"]), (2, [])]
    matplotlib.pyplot.close("all")


def drawn_tick_labels(ax):
    """The tick labels matplotlib draws: visible, non-empty, at a tick inside the view."""
    out = []
    for axis in (ax.xaxis, ax.yaxis):
        lo, hi = sorted(axis.get_view_interval())
        for loc, tick in zip(axis.get_majorticklocs(), axis.get_major_ticks()):
            if tick.label1.get_visible() and tick.label1.get_text() and lo <= loc <= hi:
                out.append(tick.label1)
    return out


def test_attention_k_sweep_and_ablation_figures_from_synthetic_data(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.random((3, 4, 6))
    w /= w.sum(-1, keepdims=True)
    names = ["DMZ", "Corporate", "Development", "DataCenter", "Cloud", "alerts"]
    fig, data = figures.attention_maps(w, names, ["a", "b", "c"])
    np.testing.assert_allclose(data["mean"], w.mean(1))
    np.testing.assert_allclose(fig.axes[0].images[0].get_array()[-1], w[0].mean(0))
    # each cell prints its weight (a near-uniform map is one colour; the numbers say how near)
    printed = [float(x.get_text()) for x in fig.axes[0].texts]
    np.testing.assert_allclose(printed, np.vstack([w[0], w[0].mean(0)]).ravel(), atol=5e-4)
    assert all(p.stat().st_size > 1000 for p in figures.save(fig, tmp_path / "att"))
    with pytest.raises(AnalysisError, match="decisions, heads, tokens"):
        figures.attention_maps(w[0], names)
    with pytest.raises(AnalysisError, match="5 token names for 6 tokens"):
        figures.attention_maps(w, names[:5])

    sweep = {"HMARL-SOC": {k: {"return": [k, k + 2.0], "csr": [0.5, 0.7]} for k in (1, 5, 20)}}
    fig, data = figures.k_sweep(sweep, ("return", "csr"))
    assert data["return"]["HMARL-SOC"]["mean"].tolist() == [2.0, 6.0, 21.0]
    assert data["return"]["HMARL-SOC"]["std"].tolist() == [1.0, 1.0, 1.0]
    figures.save(fig, tmp_path / "k")
    variants = {"full": {"return": [6.0, 8.0]}, "w/o SC": {"return": [1.0, 1.0]}}
    fig, data = figures.ablation_chart(variants, ("return",))
    assert data["return"] == {"full": (7.0, 1.0), "w/o SC": (1.0, 0.0)}
    assert (tmp_path / "k.png").stat().st_size > 1000
    figures.save(fig, tmp_path / "abl")


def test_a_quick_plan_lets_off_policy_learners_learn_within_its_budget(tmp_path):
    """HMARL-SOC, SAC and MADDPG wait 10,000 transitions by default, more than a quick run's 64 envs
    x 4 updates store: the quick plan starts them at their first batch (a --set still wins)."""
    plan = plan_lib.make_plan("soc-v2", ["hmarl", "sac", "mappo"], quick=True)
    for mp in plan.methods:
        cfg = plan_lib.run_config(mp, mp.runs[0], tmp_path)
        family = algos.family_of(mp.algo)
        if family == "ppo":
            assert not any("learning_starts" in s for s in mp.sets)
            continue
        section = cfg[family]
        assert section["learning_starts"] == 0
        stored = cfg["total_steps"] // (cfg["num_envs"] * section["rollout"]) * cfg["num_envs"] * section["rollout"]
        assert stored >= section["batch_size"]
    own = plan_lib.make_plan("soc-v2", ["sac"], quick=True, sets=["sac.learning_starts=128"])
    assert plan_lib.run_config(own.methods[0], own.methods[0].runs[0], tmp_path)["sac"]["learning_starts"] == 128


def test_a_plans_runs_keep_only_the_policy_in_their_last_checkpoint(tmp_path):
    """The table reads only the policies; `--set run.final_checkpoint=full` keeps whole states."""
    for sets, contents in (((), "policy"), (("run.final_checkpoint=full",), "full")):
        mp = plan_lib.make_plan("soc-v2", ["mappo"], quick=True, sets=sets).methods[0]
        assert plan_lib.run_config(mp, mp.runs[0], tmp_path)["run"]["final_checkpoint"] == contents


def _window_of_simulated_log(lengths, num_envs, rollout, updates, window, rng):
    """(episodes in the paper window, first env step of the window per env) of a scripted run
    whose episodes take `lengths(rng)` steps, logged per update as `paper_protocol` reads it."""
    ends = np.zeros(updates, dtype=np.int64)
    horizon = updates * rollout
    for _ in range(num_envs):
        t = 0
        while True:
            t += int(lengths(rng))
            if t > horizon:
                break
            ends[(t - 1) // rollout] += 1  # the episode ends at step t, logged by its update
    _, counts, starts = protocols.trailing_window(ends, np.ones(updates), window)
    return int(counts[-1]), int(starts[-1]) * rollout


def test_scripted_budget_holds_the_paper_window_whatever_the_episode_lengths(tmp_path):
    """The scripted rows train the fewest updates whose paper window (`--window` episodes) starts
    after every env's first `max_steps` steps, for any episode lengths up to the limit."""
    assert plan_lib.scripted_updates(200, 512, 128, 2000) == 9  # 2 + ceil(4 x 200 / 128)
    assert plan_lib.scripted_updates(200, 512, 128, 5000) == 18  # 2 + ceil(10 x 200 / 128)
    assert plan_lib.scripted_updates(200, 256, 128, 2000) == 15  # 2 + ceil(8 x 200 / 128)
    assert plan_lib.scripted_updates(10, 4, 100, 1) == 2  # one update for the limit, one for the window
    with pytest.raises(ValueError, match="positive"):
        plan_lib.scripted_updates(200, 0, 128, 2000)
    rng = np.random.default_rng(0)
    for limit, num_envs, rollout, window in [(12, 7, 5, 30), (200, 16, 128, 60), (9, 3, 4, 10), (5, 2, 16, 9)]:
        updates = plan_lib.scripted_updates(limit, num_envs, rollout, window)
        for lengths in (lambda r: limit, lambda r: r.integers(1, limit + 1), lambda r: r.integers(limit // 2 + 1, limit + 1)):
            for _ in range(5):
                held, first = _window_of_simulated_log(lengths, num_envs, rollout, updates, window, rng)
                assert held >= window and first >= limit, (limit, num_envs, rollout, window, held, first)
    # one update fewer falls short when every episode runs to the limit (the bound is tight there)
    held, first = _window_of_simulated_log(lambda r: 12, 7, 5, plan_lib.scripted_updates(12, 7, 5, 30) - 1, 30, rng)
    assert held < 30 or first < 12
    # the table's plan: the preset's 200-step limit at 512 envs x 128 steps, the window from --window
    for window, updates in ((2000, 9), (5000, 18)):
        mp = plan_lib.make_plan("soc-v2", ["constant"], window=window).methods[0]
        cfg = plan_lib.run_config(mp, mp.runs[0], tmp_path)
        assert (cfg["num_envs"], cfg["total_steps"]) == (512, updates * 512 * 128)
    mp = plan_lib.make_plan("soc-v2", ["constant"], total_steps=65536).methods[0]
    assert plan_lib.run_config(mp, mp.runs[0], tmp_path)["total_steps"] == 65536
    with pytest.raises(AnalysisError, match="window must be >= 0"):
        plan_lib.make_plan("soc-v2", ["constant"], window=-1)


def test_plan_defaults_to_table_ii_rows_all_plans_every_method_and_seeds_group(monkeypatch):
    from tests import engine_toys

    assert plan_lib.seed_runs(paper.SEEDS) == [(42, 1), (123, 1), (456, 1), (789, 1), (1024, 1)]
    assert plan_lib.seed_runs([3, 0, 1, 2, 7]) == [(0, 4), (7, 1)]
    plan = plan_lib.make_plan("hmarl-soc-v1")
    # by default Table II's rows: the paper's six methods in its order, then the scripted baselines
    # (not every registered learner: that plan is hours on a CPU, `["all"]` asks for it)
    main = [m.algo for m in plan.methods if m.kind == "main"]
    assert main == list(runs.PAPER_METHODS) + ["constant", "no-defender", "random"] and not plan.skipped
    # ["all"]: every registered method that acts on the preset, the others skipped with their
    # reason (found by building each one's trainer: `method_problem`, tests/test_cli_studies.py;
    # stood in for here, which keeps this test from building two dozen trainers)
    other_world = {"hybrid", "red-ppo"}
    monkeypatch.setattr(plan_lib, "method_problem", lambda mp, out: "another world" if mp.algo in other_world else None)
    everything = plan_lib.make_plan("hmarl-soc-v1", ["all"])
    assert {m.algo for m in everything.methods} == set(algos.ALGORITHMS) - set(HEURISTICS) - other_world
    assert sorted(everything.skipped) == [("hybrid", "another world"), ("red-ppo", "another world")]
    assert [m.algo for m in everything.methods][:len(runs.PAPER_METHODS)] == list(runs.PAPER_METHODS)
    assert len(plan.methods[0].runs) == 5 and plan.seeds == paper.SEEDS
    assert plan_lib.make_plan("soc-v2").methods[0].runs[0].num_seeds == 5
    with pytest.raises(AnalysisError, match="unknown method 'rule-soa'.*did you mean 'rule-soar'"):
        plan_lib.make_plan(methods=["rule-soa"])
    with pytest.raises(AnalysisError, match="unknown method 'all'.*or 'all' alone"):
        plan_lib.make_plan(methods=["all", "mappo"])
    with pytest.raises(AnalysisError, match="unknown preset"):
        plan_lib.make_plan("soc-v3")
    # a registered HMARL learner brings its K-sweep; ablations whose keys its family lacks are skipped
    monkeypatch.setattr(algos, "ALGORITHMS", dict(algos.ALGORITHMS))  # restored after the test
    algos.register("hmarl", "toy", module=engine_toys.__name__)
    plan = plan_lib.make_plan("hmarl-soc-v1", ["hmarl"], quick=True)
    assert [(m.kind, m.tag) for m in plan.methods] == [("main", None), ("k-sweep", 1), ("k-sweep", 20)]
    assert "env.directive_period=20" in plan.methods[2].sets
    assert sum("ablation" in name for name, _ in plan.skipped) == 3 and not plan.attention


@pytest.mark.parametrize("scenario", ["retail", "hmarl-soc-v1"])
def test_episode_metric_names_are_what_a_step_reports(scenario):
    """Read off shapes (nothing compiles); a table of a world without SOC metrics takes its
    columns from them, so a learner's statistics in the log are never columns."""
    import jax

    import jaxsoc.env as soc
    from jaxsoc import evaluation

    env, params = soc.make(scenario, max_steps=3)
    key = jax.random.key(0)
    _, state = env.reset(key, params)
    infos = env.step(key, state, env.idle_actions(params), params)[4]
    assert evaluation.episode_metric_names(env, params) == tuple(sorted(infos["metrics"]))
    assert protocols.env_metric_names({"scenario": scenario, "env": {"max_steps": 3}}) == tuple(sorted(infos["metrics"]))
    assert protocols.env_metric_names({"scenario": "gone.yaml", "env": {}}) is None  # cannot be built: the log decides
