"""Bad input to the viewing tools (eval/replay.py, eval/table.py, eval/figures.py, eval/explain.py)
is one line on stderr, exit status 2, before any work, and nothing is written or changed.

Every case is refused before JAX compiles anything, so each runs in milliseconds: the tools are
called in-process through their `main(argv)`, on hand-made run folders (config.yaml and a short
metrics.jsonl; no checkpoints). The last tests check which metrics eval/table.py, eval/figures.py
and eval/evaluate.py show, by default and when chosen, on a SOC world and on one without the SOC
metrics (retail), from hand-made logs and evaluations.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import eval.explain as explain_tool
import eval.figures as figures_tool
import eval.replay as replay_tool
import eval.table as table_tool


def call(main, argv, capsys):
    """(exit status, stderr) of `main(argv)`: argparse refusals raise SystemExit, the rest return."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    return code, err


def refused(main, argv, capsys, message):
    code, err = call(main, argv, capsys)
    assert code == 2, err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def make_run(root: Path, name: str, algo: str = "rule-soar", scenario: str = "hmarl-soc-v1",
             episodes: int = 3000, evaluated: bool = False) -> Path:
    """A run folder as train/run.py leaves it (no checkpoints): config.yaml and a two-update log."""
    path = root / name
    path.mkdir(parents=True)
    cfg = {"algo": algo, "scenario": scenario, "env": {}, "num_envs": 1, "num_seeds": 1, "seed": 0,
           "total_steps": 10_000, "run": {"name": name, "dir": str(root)}}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    metrics = {"return": -1.0, "csr": 0.5, "mttd": 8.0, "mttr": 100.0, "fpr": 0.05}
    lines = [{"update": u, "seed": 0, "env_steps": 1000 * u, "metrics": {"episodes": episodes, **metrics}}
             for u in (1, 2)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def snapshot(root: Path) -> dict:
    """Every file under `root` with its bytes: to show that a refusal changed nothing."""
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def runs(tmp_path):
    make_run(tmp_path / "runs", "scripted")
    make_run(tmp_path / "runs", "learner", algo="mappo", scenario="soc-v2")
    return tmp_path / "runs"


# ----------------------------------------------------------------------------- eval/replay.py
SCRIPTED = ["--algo", "random", "--scenario", "soc-v2"]


@pytest.mark.parametrize("argv, message", [
    (SCRIPTED + ["--update", "5"], "--update goes with a run folder: a scripted policy has no checkpoint"),
    (SCRIPTED + ["--stochastic"], "--stochastic goes with a learner's run"),
    (SCRIPTED + ["--animate", "0", "--format", "mp4"], "--format sets the animation, and --animate 0 draws none"),
    (SCRIPTED + ["--animate", "0", "--format", "auto"], "--format sets the animation"),
    (SCRIPTED + ["--animate", "0", "--fps", "2"], "--fps sets the animation, and --animate 0 draws none"),
    (SCRIPTED + ["--out", "/proc/x"], "cannot write /proc/x"),
    (SCRIPTED + ["--fps", "nan"], "expected a finite number above 0"),
])
def test_replay_refuses_flags_it_would_ignore_and_unwritable_out(argv, message, tmp_path, capsys):
    refused(replay_tool.main, argv, capsys, message)
    assert list(tmp_path.iterdir()) == []


def test_replay_on_a_scripted_run_refuses_update_and_stochastic(runs, capsys):
    before = snapshot(runs)
    for flag in (["--update", "9"], ["--stochastic"]):
        refused(replay_tool.main, [str(runs / "scripted"), *flag], capsys,
                f"{flag[0]} goes with a learner's run: {runs / 'scripted'} is a scripted 'rule-soar' run")
    assert snapshot(runs) == before and not (runs / "scripted" / "replay").exists()


def test_replay_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("keep")
    refused(replay_tool.main, SCRIPTED + ["--out", str(tmp_path / "f")], capsys, "exists and is not a folder")
    assert (tmp_path / "f").read_text() == "keep"


def test_replay_never_overwrites_an_earlier_replay_without_force(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.png").write_text("an earlier summary")
    (out / "notes.txt").write_text("mine")  # not an output of replay: no reason to refuse
    refused(replay_tool.main, SCRIPTED + ["--format", "gif", "--out", str(out)], capsys,
            f"{out} already holds summary.png of an earlier replay (--force overwrites them")
    assert snapshot(out) == {out / "notes.txt": b"mine", out / "summary.png": b"an earlier summary"}


def test_replay_force_replaces_the_earlier_replay_whole(tmp_path, capsys):
    """--force left an earlier replay's other episode animations beside the new trace."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("episode_0.gif", "episode_1.gif", "episode_7.mp4", "trace.json", "summary.png"):
        (out / name).write_text("earlier")
    (out / "notes.txt").write_text("mine")
    argv = SCRIPTED + ["--set", "env.hosts_per_segment=4", "--set", "env.max_steps=5", "--episodes", "1",
                       "--animate", "0", "--out", str(out), "--force"]
    assert replay_tool.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "summary.png", "trace.json"]
    assert (out / "notes.txt").read_text() == "mine" and (out / "trace.json").read_text() != "earlier"


# ----------------------------------------------------------------------------- eval/table.py
@pytest.mark.parametrize("argv, message", [
    (["--window", "0"], "--window: expected a positive integer, got '0'"),
    (["--window", "-5"], "--window: expected a positive integer, got '-5'"),
    (["--episodes", "0"], "--episodes: expected a positive integer, got '0'"),
    (["--protocol", "ours", "--window", "500"], "--window goes with --protocol paper or both"),
    (["--protocol", "paper", "--episodes", "5"], "--episodes goes with --protocol ours or both"),
    (["--protocol", "paper", "--no-evaluate"], "--no-evaluate goes with --protocol ours or both"),
    (["--no-evaluate", "--episodes", "5"], "--episodes sets how runs are evaluated, and --no-evaluate evaluates none"),
    (["--formats", "md"], "--formats goes with --out: without it no file is written"),
    (["--formats", "", "--out", "OUT"], "--formats: no table format given (md, csv, tex)"),
    (["--formats", "md,xls", "--out", "OUT"], "--formats: unknown table format 'xls' (md, csv, tex)"),
    (["--metrics", ""], "--metrics: no metric given"),
    (["--metrics", "return,csr,return"], "--metrics names return more than once"),
    (["--protocol", "paper", "--metrics", "return,foo"], "unknown metric 'foo' (known: alert_precision, csr,"),
    (["--out", "/proc/x"], "cannot write /proc/x"),
    (["--out", "FILE"], "exists and is not a folder"),
])
def test_table_refuses_bad_flags_before_any_work(argv, message, runs, tmp_path, capsys):
    (tmp_path / "file").write_text("keep")
    argv = [{"OUT": str(tmp_path / "t1"), "FILE": str(tmp_path / "file")}.get(a, a) for a in argv]
    before = snapshot(tmp_path)
    refused(table_tool.main, [str(runs / "scripted"), *argv], capsys, message)
    assert snapshot(tmp_path) == before and not (tmp_path / "t1").exists()


def test_table_title_states_the_window_and_metrics_the_runs_log_are_known(runs, capsys):
    assert table_tool.main([str(runs / "scripted"), "--protocol", "paper", "--window", "500"]) == 0
    out = capsys.readouterr().out
    assert "mean over the last 500 training episodes per seed (the paper's protocol uses 2,000)" in out
    # a window longer than the log (2 x 3,000 episodes) uses every logged episode, and says so
    assert table_tool.main([str(runs / "scripted"), "--protocol", "paper", "--window", "1e12"]) == 0
    out = capsys.readouterr().out
    assert "mean over every logged training episode per seed (fewer than the window of 1,000,000,000,000)" in out
    assert table_tool.main([str(runs / "scripted"), "--protocol", "paper"]) == 0
    assert "last 2,000 training episodes per seed (the paper's protocol)" in capsys.readouterr().out
    # not in the tables' own list, but in the log: a column like any other
    assert table_tool.main([str(runs / "scripted"), "--protocol", "paper", "--metrics", "episodes"]) == 0


def test_table_never_overwrites_tables_without_force(runs, tmp_path, capsys):
    out = tmp_path / "t"
    argv = [str(runs / "scripted"), "--protocol", "paper", "--out", str(out), "--formats", "md,csv"]
    assert table_tool.main(argv) == 0
    capsys.readouterr()
    (out / "table2_hmarl-soc-v1_paper.csv").write_text("edited")
    before = snapshot(out)
    refused(table_tool.main, argv, capsys, f"{out} already holds table2_hmarl-soc-v1_paper.md, "
            "table2_hmarl-soc-v1_paper.csv (--force overwrites them")
    assert snapshot(out) == before
    assert table_tool.main(argv + ["--force"]) == 0
    assert (out / "table2_hmarl-soc-v1_paper.csv").read_text().startswith("method,")


def test_a_failing_method_leaves_no_table_behind(runs, tmp_path, capsys):
    (runs / "learner" / "metrics.jsonl").write_text("")  # paper protocol: an empty log is refused
    out = tmp_path / "t"
    refused(table_tool.main, [str(runs), "--protocol", "paper", "--out", str(out)], capsys, "is empty")
    assert not out.exists()


# ----------------------------------------------------------------------------- eval/figures.py
@pytest.mark.parametrize("argv, message", [
    (["--window", "0"], "--window: expected a positive integer, got '0'"),
    (["--window", "-1"], "--window: expected a positive integer, got '-1'"),
    (["--protocol", "ours", "--episodes", "0"], "--episodes: expected a positive integer, got '0'"),
    (["--protocol", "paper", "--episodes", "5"], "--episodes goes with --protocol ours or both"),
    (["--protocol", "paper", "--no-evaluate"], "--no-evaluate goes with --protocol ours or both"),
    (["--protocol", "ours", "--no-evaluate", "--episodes", "5"], "--episodes sets how runs are evaluated"),
    (["--metrics", ""], "--metrics: no metric given"),
    (["--protocol", "paper", "--metrics", "foo"], "unknown metric 'foo' (known: alert_precision, csr,"),
    # a learner without a checkpoint cannot be evaluated: refused before the paper figures are drawn
    (["--protocol", "both"], "has no checkpoint: 'mappo' is a learner"),
    (["--protocol", "ours", "--no-evaluate"], "has not been evaluated yet"),
])
def test_figures_refuse_bad_input_and_write_nothing(argv, message, runs, tmp_path, capsys):
    refused(figures_tool.main, [str(runs), *argv, "--out", str(tmp_path / "f")], capsys, message)
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize("out, message", [("/proc/x", "cannot write /proc/x"), ("FILE", "exists and is not a folder")])
def test_figures_refuse_an_unwritable_out(out, message, runs, tmp_path, capsys):
    (tmp_path / "file").write_text("keep")
    out = str(tmp_path / "file") if out == "FILE" else out
    refused(figures_tool.main, [str(runs / "scripted"), "--protocol", "paper", "--out", out], capsys, message)
    assert (tmp_path / "file").read_text() == "keep"


def test_figures_never_overwrite_without_force(runs, tmp_path, capsys):
    out = tmp_path / "f"
    out.mkdir()
    (out / "bars_hmarl-soc-v1_paper.pdf").write_text("an earlier figure")
    argv = [str(runs / "scripted"), "--protocol", "paper", "--window", "1", "--out", str(out)]
    refused(figures_tool.main, argv, capsys, f"{out} already holds bars_hmarl-soc-v1_paper.pdf (--force overwrites")
    assert snapshot(out) == {out / "bars_hmarl-soc-v1_paper.pdf": b"an earlier figure"}
    assert figures_tool.main(argv + ["--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{k}_hmarl-soc-v1{p}.{e}" for k, p in
                                                     (("bars", "_paper"), ("curves", ""), ("seeds", "_paper"))
                                                     for e in ("pdf", "png")]
    assert (out / "bars_hmarl-soc-v1_paper.pdf").read_bytes().startswith(b"%PDF")


def test_figures_check_every_run_before_computing_anything(runs, tmp_path, capsys, monkeypatch):
    from jaxsoc.analysis import figures, protocols

    def never(*args, **kwargs):
        raise AssertionError("work started before every run was checked")

    for module, name in ((protocols, "paper_protocol"), (protocols, "evaluate_run"), (figures, "learning_curves")):
        monkeypatch.setattr(module, name, never)
    refused(figures_tool.main, [str(runs), "--out", str(tmp_path / "f")], capsys,
            f"{runs / 'learner'} has no checkpoint")
    assert not (tmp_path / "f").exists()


# ----------------------------------------------------------------------------- eval/explain.py
@pytest.mark.parametrize("argv, message", [
    (["--episodes", "0"], "argument --episodes: expected a positive integer, got '0'"),
    (["--examples", "-1"], "argument --examples: expected a positive integer, got '-1'"),
    (["--episodes", "lots"], "argument --episodes: expected an integer, got 'lots'"),
    (["--out", "/proc/x"], "cannot write /proc/x"),
])
def test_explain_errors_are_one_line(argv, message, runs, capsys):
    before = snapshot(runs)
    err = refused(explain_tool.main, [str(runs / "learner"), *argv], capsys, message)
    assert err.startswith("eval/explain.py: error: ") and "usage:" not in err
    assert snapshot(runs) == before


def test_explain_takes_5e3_episodes():
    assert explain_tool.build_parser().parse_args(["r", "--episodes", "5e3"]).episodes == 5000


def test_explain_never_overwrites_its_figure_without_force(runs, tmp_path, capsys):
    run = runs / "learner"
    (run / "explain_attention.png").write_text("an earlier figure")
    before = snapshot(runs)
    refused(explain_tool.main, [str(run)], capsys,
            f"{run / 'explain_attention.png'} already exists (--force overwrites, or choose another --out)")
    out = tmp_path / "figs"
    (out).mkdir()
    (out / "learner_explain_attention.pdf").write_text("another")
    refused(explain_tool.main, [str(run), "--out", str(out)], capsys,
            f"{out / 'learner_explain_attention.pdf'} already exists")
    assert snapshot(runs) == before and snapshot(out) == {out / "learner_explain_attention.pdf": b"another"}


def test_explain_out_names_figures_by_run_and_refuses_a_clash(runs, tmp_path, capsys):
    assert explain_tool.figure_stem(str(runs / "learner"), None) == runs / "learner" / "explain_attention"
    assert explain_tool.figure_stem(str(runs / "learner"), "o") == Path("o") / "learner_explain_attention"
    other = make_run(tmp_path / "elsewhere", "learner")
    refused(explain_tool.main, [str(runs / "learner"), str(other), "--out", str(tmp_path / "o")], capsys,
            "two runs would write the same figure")
    assert not (tmp_path / "o").exists()


# ------------------------------------------------- default and chosen metrics on every world
def evaluation(path: Path, scenario: str, **means) -> None:
    """An evaluation.json of seed 0 over 8 held-out episodes, as eval/evaluate.py writes it for a
    scripted run on `scenario`, with `means` per metric (and an evaluation.npz beside it)."""
    import numpy as np

    from jaxsoc.analysis import protocols

    request = {"format": protocols.EVAL_FORMAT, "episodes": 8, "greedy": True, "batch": 8, "scenario": scenario,
               "env": {}, "checkpoint": None, "heldout_stream": protocols.HELDOUT_STREAM}
    record = {"request": request, "run": str(path), "algo": "random", "trained_on": scenario,
              "checkpoint_update": None, "seconds": 1.0,
              "seeds": {"0": {"episodes": 8,
                              "metrics": {k: {"mean": v, "std": 0.0, "n": 8} for k, v in means.items()}}}}
    protocols.write_evaluation(path, record, {k: np.full((1, 8), v, np.float32) for k, v in means.items()})


@pytest.fixture()
def retail(tmp_path):
    """A scripted retail run: a log of retail's own metrics (and learner statistics, per role and
    not, which are no metrics of the world) and an evaluation of them."""
    path = make_run(tmp_path / "runs", "retail", algo="random", scenario="retail")
    lines = [{"update": u, "seed": 0, "env_steps": 1000 * u,
              "metrics": {"episodes": 3000, "return": -20.0 * u, "cost": 20.0 * u, "fill_rate": 0.5 + 0.2 * u,
                          "reward": -0.1, "actor_loss/warehouse_0": 0.3, "value_loss": 2.0}} for u in (1, 2)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def table_rows(out: str) -> list:
    return [line for line in out.splitlines() if line.startswith("|")]


def test_table_shows_a_worlds_own_metrics_when_it_has_no_soc_ones(retail, capsys):
    # paper protocol, no evaluation yet: the log's metrics, return first (update 2 holds the last
    # 2,000 episodes: return -40, cost 40, fill rate 0.9); reward, actor_loss/... and value_loss
    # are no columns (value_loss was: only what retail's env reports is a metric of the world)
    assert table_tool.main([str(retail), "--protocol", "paper"]) == 0
    assert table_rows(capsys.readouterr().out) == [
        "| Method | Seeds | Reward | cost | fill_rate |", "|---|---:|---:|---:|---:|",
        "| Random | 1 | -40.0 ± 0.0 | 40.000 ± 0.000 | 0.900 ± 0.000 |"]
    # ours: the evaluation's metrics
    evaluation(retail, "retail", **{"return": -30.0, "cost": 30.0, "fill_rate": 0.75, "length": 50.0})
    assert table_tool.main([str(retail), "--protocol", "ours", "--no-evaluate"]) == 0
    assert table_rows(capsys.readouterr().out) == [
        "| Method | Seeds | Reward | cost | fill_rate | Length |", "|---|---:|---:|---:|---:|---:|",
        "| Random | 1 | -30.0 ± 0.0 | 30.000 ± 0.000 | 0.750 ± 0.000 | 50.0 ± 0.0 |"]


def with_length(scripted: Path) -> Path:
    """The SOC run `scripted` with a length logged (40) and evaluated (60), as every SOC world has."""
    lines = [json.loads(x) for x in (scripted / "metrics.jsonl").read_text().splitlines()]
    for x in lines:
        x["metrics"]["length"] = 40.0
    (scripted / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    evaluation(scripted, "hmarl-soc-v1", **{"return": -2.0, "csr": 0.25, "length": 60.0})
    return scripted


def test_table_fills_chosen_metrics_outside_the_soc_set(runs, capsys):
    # a SOC run: its defaults are as before, and --metrics return,length fills Length (it was n/a)
    scripted = with_length(runs / "scripted")
    assert table_tool.main([str(scripted), "--protocol", "paper", "--paper", "none"]) == 0
    assert table_rows(capsys.readouterr().out)[0] == "| Method | Seeds | Reward | MTTD | MTTR | FPR % | CSR % |"
    assert table_tool.main([str(scripted), "--protocol", "ours", "--no-evaluate", "--paper", "none"]) == 0
    assert table_rows(capsys.readouterr().out)[0] == ("| Method | Seeds | Reward | MTTD | MTTR | FPR % | CSR % | "
                                                      "Exfil % | Hosts compromised |")
    for protocol, row in (("paper", "| Rule-SOAR | 1 | -1.0 ± 0.0 | 40.0 ± 0.0 |"),
                          ("ours", "| Rule-SOAR | 1 | -2.0 ± 0.0 | 60.0 ± 0.0 |")):
        argv = [str(scripted), "--protocol", protocol, "--metrics", "return,length", "--paper", "none"]
        assert table_tool.main(argv + (["--no-evaluate"] if protocol == "ours" else [])) == 0
        assert table_rows(capsys.readouterr().out)[2] == row


@pytest.fixture()
def drawn(monkeypatch):
    """What eval/figures.py draws: (function, metrics, each result's values per metric, or None for curves)."""
    from jaxsoc.analysis import figures

    calls = []
    for name in ("learning_curves", "metric_bars", "seed_scatter"):
        def spy(first, metrics, *a, _original=getattr(figures, name), _name=name, **k):
            values = None if _name == "learning_curves" else [r.values(m).tolist() for r in first for m in metrics]
            calls.append((_name, tuple(metrics), values))
            return _original(first, metrics, *a, **k)
        monkeypatch.setattr(figures, name, spy)
    return calls


def test_figures_draw_a_worlds_own_metrics(retail, tmp_path, capsys, drawn):
    evaluation(retail, "retail", **{"return": -30.0, "cost": 30.0, "fill_rate": 0.75})
    argv = [str(retail), "--protocol", "both", "--no-evaluate", "--force"]
    assert figures_tool.main(argv + ["--out", str(tmp_path / "f")]) == 0
    own = ("return", "cost", "fill_rate")
    assert drawn == [("learning_curves", own, None),
                     ("metric_bars", own, [[-40.0], [40.0], [0.9]]), ("seed_scatter", own, [[-40.0], [40.0], [0.9]]),
                     ("metric_bars", own, [[-30.0], [30.0], [0.75]]), ("seed_scatter", own, [[-30.0], [30.0], [0.75]])]
    drawn.clear()
    assert figures_tool.main(argv + ["--out", str(tmp_path / "g"), "--metrics", "cost"]) == 0
    assert [values for _, _, values in drawn] == [None, [[40.0]], [[40.0]], [[30.0]], [[30.0]]]
    capsys.readouterr()


def test_figures_fill_chosen_metrics_outside_the_soc_set(runs, tmp_path, capsys, drawn):
    from jaxsoc.analysis import runs as runs_lib

    # a SOC run: its default curves and bars as before, and a chosen metric outside them (length) filled
    scripted = with_length(runs / "scripted")
    assert figures_tool.main([str(scripted), "--protocol", "both", "--no-evaluate", "--out", str(tmp_path / "h")]) == 0
    assert [m for _, m, _ in drawn] == [("return", "csr", "fpr", "mttr")] + [runs_lib.TABLE_METRICS] * 4
    drawn.clear()
    assert figures_tool.main([str(scripted), "--protocol", "both", "--no-evaluate", "--metrics", "length",
                              "--out", str(tmp_path / "i")]) == 0
    assert [values for _, _, values in drawn] == [None, [[40.0]], [[40.0]], [[60.0]], [[60.0]]]
    capsys.readouterr()


def test_evaluate_prints_a_worlds_own_metrics(retail, capsys):
    import eval.evaluate as evaluate_tool

    # the cached evaluation answers the request (8 greedy episodes): printed, nothing run
    evaluation(retail, "retail", **{"return": -30.0, "cost": 30.0, "fill_rate": 0.75, "length": 50.0})
    before = snapshot(retail)
    assert evaluate_tool.main([str(retail), "--episodes", "8"]) == 0
    out = capsys.readouterr().out
    assert "(cached evaluation.json; --force to redo)" in out and snapshot(retail) == before
    assert table_rows(out) == [
        "| Seed | Episodes | Reward | cost | fill_rate | Length |", "|---|---:|---:|---:|---:|---:|",
        "| 0 | 8 | -30.0 | 30.000 | 0.750 | 50.0 |",
        "| **mean ± std** | 8 | -30.0 ± 0.0 | 30.000 ± 0.000 | 0.750 ± 0.000 | 50.0 ± 0.0 |"]


def test_explain_names_rows_by_folder_or_by_path_where_two_folders_share_a_name():
    """Two runs named alike (runs/x and other/x) put one set of rows in the table: the second's
    replaced the first's."""
    assert explain_tool.row_labels(["runs/x", "runs/y"]) == {"runs/x": "x", "runs/y": "y"}
    assert explain_tool.row_labels(["runs/x", "other/x", "runs/y"]) == {"runs/x": "runs/x", "other/x": "other/x",
                                                                        "runs/y": "y"}
