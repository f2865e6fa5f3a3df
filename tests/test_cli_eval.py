"""Bad input to train/sweep.py, eval/evaluate.py and eval/paired.py: one line, exit status 2, before
any training or evaluation, and nothing written. Every case is refused before anything compiles."""
from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest
import yaml

from jaxsoc import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[1]


def load(path):
    spec = importlib.util.spec_from_file_location(path.stem + "_cli", REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tools():
    return load(pathlib.Path("train/sweep.py")), load(pathlib.Path("eval/evaluate.py")), load(
        pathlib.Path("eval/paired.py"))


def files(root):
    return sorted(p.relative_to(root) for p in pathlib.Path(root).rglob("*"))


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


# ----------------------------------------------------------------------------- train/sweep.py
SWEEP = ["--num-envs", "8", "--total-steps", "1024", "--num-seeds", "1", "--episodes", "1", "--name", "s1"]


@pytest.mark.parametrize("extra, message", [
    # 8: the grid would silently replace the --set (or flag) of the same key
    (["--grid", "ppo.lr=1e-4,1e-3", "--set", "ppo.lr=3e-4"],
     "train/sweep.py: error: --grid ppo.lr and --set ppo.lr=3e-4 both set ppo.lr: give its values in --grid only"),
    (["--grid", "num_envs=8,16"], "train/sweep.py: error: --grid num_envs and --num-envs both set num_envs: give its values in --grid only"),
    # 9: an unknown grid key is --grid's, not --set's
    (["--grid", "foo.bar=1,2"], "train/sweep.py: error: --grid foo.bar: unknown config key 'foo'"),
    (["--grid", "ppo.nope=1,2"], "train/sweep.py: error: --grid ppo.nope: unknown config key 'ppo.nope'"),
    # 10: a point only the env refuses: refused before the plan line is printed
    (["--grid", "env.max_steps=10,0"], "train/sweep.py: error: env 'soc-v2': max_steps must be a positive integer, got 0"),
])
def test_sweep_refuses_a_bad_grid_in_one_line_before_the_plan(tools, tmp_path, capsys, extra, message):
    sweep_cli = tools[0]
    assert sweep_cli.main(SWEEP + ["--set", f"run.dir={tmp_path}"] + extra) == 2
    assert one_line(capsys).startswith(message)
    assert files(tmp_path) == []


def test_sweep_refuses_an_output_it_cannot_write_before_training(tools, tmp_path, capsys):
    sweep_cli = tools[0]
    grid = ["--grid", "ppo.lr=1e-4,1e-3"]
    # 7: run.dir under a file: found at the start, not after every point has trained
    (tmp_path / "file").write_text("keep")
    assert sweep_cli.main(SWEEP + grid + ["--set", f"run.dir={tmp_path / 'file' / 'runs'}"]) == 2
    assert one_line(capsys) == f"train/sweep.py: error: cannot write {tmp_path / 'file' / 'runs' / 's1'}: {tmp_path / 'file'} is not a folder"
    # --name of an existing file with --overwrite: refused, the file kept
    argv = SWEEP[:-1] + ["file", "--overwrite", "--set", f"run.dir={tmp_path}"] + grid
    assert sweep_cli.main(argv) == 2
    assert one_line(capsys) == f"train/sweep.py: error: {tmp_path / 'file'} exists and is not a folder"
    assert files(tmp_path) == [pathlib.Path("file")] and (tmp_path / "file").read_text() == "keep"


# ----------------------------------------------------------------------------- eval/evaluate.py
def run_folder(root, name, algo, checkpoint=None):
    """A run folder as train/run.py writes it (its resolved config.yaml), with one checkpoint at
    update `checkpoint` (a stand-in state: these runs are refused before any is read)."""
    from jaxsoc.checkpoints import Checkpoints

    path = root / name
    path.mkdir()
    cfg = config_lib.resolve(flags={"algo": algo, "scenario": "soc-v2", "num_envs": 8, "total_steps": 2048,
                                    "run": {"name": name, "dir": str(root)}})
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    if checkpoint is not None:
        ckpts = Checkpoints(path / "checkpoints")
        ckpts.save(checkpoint, {"x": np.zeros(2)}, {"algo": algo, "scenario": "soc-v2"})
        ckpts.wait()
        ckpts.close()
    return path


@pytest.mark.parametrize("argv, message", [
    (["--batch", "-1"], "argument --batch: expected a positive integer, got '-1'"),  # 13
    (["--batch", "0"], "argument --batch: expected a positive integer, got '0'"),
    (["--update", "3"], "--update applies to a learner's run folder: --algo evaluates a scripted policy, which "
                        "reads no checkpoint"),  # 14
])
def test_evaluate_refuses_flags_it_cannot_use(tools, tmp_path, capsys, argv, message):
    evaluate = tools[1]
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--algo", "random", "--scenario", "soc-v2", "--episodes", "4", "--out", str(tmp_path / "o"), *argv])
    assert exit_.value.code == 2
    assert one_line(capsys) == f"eval/evaluate.py: error: {message} (see --help)"
    assert files(tmp_path) == []


def test_evaluate_refuses_an_out_it_cannot_write(tools, tmp_path, capsys):  # 15
    evaluate = tools[1]
    (tmp_path / "file").write_text("keep")
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--algo", "random", "--scenario", "soc-v2", "--episodes", "4", "--out", str(tmp_path / "file" / "o")])
    assert exit_.value.code == 2
    assert one_line(capsys) == (f"eval/evaluate.py: error: --out: cannot write {tmp_path / 'file' / 'o'}: "
                                f"{tmp_path / 'file'} is not a folder (see --help)")
    assert files(tmp_path) == [pathlib.Path("file")]


def test_evaluate_names_a_scenario_typo_as_the_users(tools, tmp_path, capsys):
    evaluate = tools[1]
    run = run_folder(tmp_path, "scripted", "random")
    assert evaluate.main([str(run), "--scenario", "soc-v9", "--episodes", "2"]) == 2
    assert one_line(capsys).startswith("eval/evaluate.py: error: unknown scenario 'soc-v9' to evaluate on "
                                       "(did you mean 'soc-v2'?); known: ")


def scripted_then_unreadable_learner(root):
    """Two small runs: a scripted one (Rule-SOAR: the first in every tool's order), then a learner
    whose checkpoint's metadata passes every check but whose arrays are another state's (found
    only when the learner is rebuilt)."""
    from jaxsoc import engine
    from jaxsoc.checkpoints import Checkpoints

    small = {"hosts_per_segment": 4, "max_steps": 5}
    for name, algo in (("a-scripted", "rule-soar"), ("b-learner", "mappo")):
        cfg = config_lib.resolve(flags={"algo": algo, "scenario": "soc-v2", "num_envs": 8, "total_steps": 2048,
                                        "env": small, "run": {"name": name, "dir": str(root)}})
        (root / name).mkdir()
        (root / name / "config.yaml").write_text(yaml.safe_dump(cfg))
        (root / name / "metrics.jsonl").write_text(json.dumps(  # one logged update, for the figures' curves
            {"update": 1, "seed": 0, "env_steps": 1024, "time": 1.0, "metrics": {
                "episodes": 4, "return": -1.0, "csr": 0.5, "fpr": 0.1, "mttd": 3.0, "mttr": 4.0}}) + "\n")
    ckpts = Checkpoints(root / "b-learner" / "checkpoints")
    ckpts.save(1, {"x": np.zeros(2)}, engine.checkpoint_meta(cfg, 1, 8 * 128, 0.0))
    ckpts.wait()
    ckpts.close()


def test_evaluate_writes_no_folder_when_a_later_checkpoint_cannot_be_read(tools, tmp_path, capsys):
    """The run evaluated before the unreadable one had its evaluation.json written already."""
    evaluate = tools[1]
    scripted_then_unreadable_learner(tmp_path)
    before = files(tmp_path)
    assert evaluate.main([str(tmp_path), "--episodes", "2"]) == 2
    assert one_line(capsys).startswith(f"eval/evaluate.py: error: cannot rebuild the policy of {tmp_path / 'b-learner'}")
    assert files(tmp_path) == before  # a-scripted evaluated, not written


def test_table_and_figures_write_no_evaluation_when_a_later_checkpoint_cannot_be_read(tmp_path, capsys):
    import eval.figures as fg
    import eval.table as tb

    (tmp_path / "runs").mkdir()
    scripted_then_unreadable_learner(tmp_path / "runs")
    before = files(tmp_path)
    assert tb.main([str(tmp_path / "runs"), "--protocol", "ours", "--episodes", "2"]) == 2
    assert "cannot rebuild the policy of" in one_line(capsys)
    assert fg.main([str(tmp_path / "runs"), "--protocol", "ours", "--episodes", "2", "--out", str(tmp_path / "f")]) == 2
    assert "cannot rebuild the policy of" in one_line(capsys)
    assert files(tmp_path) == before


def test_evaluate_checks_every_run_and_its_update_before_evaluating_any(tools, tmp_path, capsys):  # 14, 16
    evaluate = tools[1]
    scripted = run_folder(tmp_path, "scripted", "random", checkpoint=1)
    learner = run_folder(tmp_path, "learner", "mappo", checkpoint=2)
    bare = run_folder(tmp_path, "bare", "mappo")
    before = files(tmp_path)
    assert evaluate.main([str(scripted), "--update", "7", "--episodes", "4"]) == 2
    assert one_line(capsys) == (f"eval/evaluate.py: error: {scripted} is a scripted 'random' run: it reads no checkpoint, so an "
                                "update (7) does not apply")
    assert evaluate.main([str(learner), "--update", "7", "--episodes", "4"]) == 2
    assert one_line(capsys) == f"eval/evaluate.py: error: {learner} has no checkpoint at update 7 (it has [2])"
    # the scripted run first would be evaluated (and its evaluation.json written) before the
    # learner without a checkpoint was looked at
    assert evaluate.main([str(scripted), str(bare), "--episodes", "4", "--force"]) == 2
    assert one_line(capsys).startswith(f"eval/evaluate.py: error: {bare} has no checkpoint: 'mappo' is a learner")
    assert files(tmp_path) == before
    # the same checks refuse jaxsoc.load_policy (policy.check_run), where the number was ignored
    import jaxsoc
    from jaxsoc.analysis.runs import AnalysisError

    with pytest.raises(AnalysisError, match=r"is a scripted 'random' run: it reads no checkpoint"):
        jaxsoc.load_policy(scripted, update=7)
    with pytest.raises(AnalysisError, match=r"has no checkpoint at update 7 \(it has \[2\]\)"):
        jaxsoc.load_policies(learner, update=7)


# ----------------------------------------------------------------------------- eval/paired.py
def evaluation(path, content):
    path.mkdir()
    (path / "evaluation.json").write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


GOOD = {"run": "g", "request": {"episodes": 4, "batch": 4, "greedy": True, "heldout_stream": 7},
        "seeds": {"0": {"episodes": 4, "metrics": {"return": {"mean": 1.0, "std": 0.0, "n": 4}}},
                  "1": {"episodes": 4, "metrics": {"return": {"mean": 2.0, "std": 0.0, "n": 4}}}}}


@pytest.mark.parametrize("content, problem", [  # 17
    ({}, "is not an evaluation written by eval/evaluate.py"),
    ([], "is not an evaluation written by eval/evaluate.py"),
    ("{x", "cannot be read as JSON (Expecting property name"),
    ({**GOOD, "seeds": {}}, "holds no seeds"),
    ({**GOOD, "seeds": {"0": 5}}, ": seed 0 has no 'metrics' mapping"),
    ({**GOOD, "seeds": {"0": {"metrics": {"return": {"mean": "x"}}}}}, ": seed 0, metric 'return' has no numeric 'mean'"),
])
def test_paired_names_a_malformed_evaluation_file(tools, tmp_path, capsys, content, problem):
    paired = tools[2]
    good, bad = evaluation(tmp_path / "good", GOOD), evaluation(tmp_path / "bad", content)
    for argv in ([bad, good], [good, bad]):
        with pytest.raises(SystemExit) as exit_:
            paired.main(argv)
        assert exit_.value.code == 2
        line = one_line(capsys)
        assert line.startswith(f"eval/paired.py: error: {tmp_path / 'bad' / 'evaluation.json'}") and problem in line


@pytest.mark.parametrize("side_b, metrics, message", [
    ("other", "", "--metrics names no metric (e.g. --metrics return,csr)"),  # 18
    ("other", "return,return", "--metrics names return more than once"),  # 19
    ("good", "return", "{good} is on both sides (A and B): compare two different runs"),
    ("other,", "return", "'{other},' has an empty entry: give run folders separated by single commas"),
])
def test_paired_refuses_empty_or_repeated_metrics_and_a_run_compared_with_itself(tools, tmp_path, capsys, side_b,
                                                                                  metrics, message):
    paired = tools[2]
    good, other = evaluation(tmp_path / "good", GOOD), evaluation(tmp_path / "other", {**GOOD, "run": "o"})
    b = {"good": good + "/", "other": other, "other,": other + ","}[side_b]  # "good/": the same folder
    with pytest.raises(SystemExit) as exit_:
        paired.main([good, b, "--metrics", metrics])
    assert exit_.value.code == 2
    assert one_line(capsys) == f"eval/paired.py: error: {message.format(good=good, other=other)} (see --help)"
    assert paired.main([good, other, "--metrics", "return"]) == 0  # the same files, asked properly


def test_paired_says_n_a_for_a_metric_no_seed_defines_on_both_sides(tools, tmp_path, capsys):
    """v2's MTTD is null in a seed where nothing was detected: with no seed to pair the table
    divided by zero (a traceback); it now says so in that metric's row and pairs the others."""
    paired = tools[2]
    never = {**GOOD, "seeds": {s: {"metrics": {"mttd": {"mean": None}, "return": {"mean": float(s)}}}
                               for s in ("0", "1")}}
    a, b = evaluation(tmp_path / "a", never), evaluation(tmp_path / "b", never)
    assert paired.main([a, b, "--metrics", "mttd,return"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[2] == "| mttd | n/a | n/a | no seed defines it on both sides | n/a | n/a |"
    assert rows[3].startswith("| return | 0.50 ± 0.50 | 0.50 ± 0.50 | +0.00, +0.00 |")
