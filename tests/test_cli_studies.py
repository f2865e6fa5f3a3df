"""Refusals of the study tools (eval/demos.py, eval/reproduce.py, eval/seed004.py,
eval/train_detector.py): one line, exit status 2, before any work and before anything is written."""
from __future__ import annotations

import importlib.util
import pathlib

import pytest
import yaml

EVAL = pathlib.Path(__file__).resolve().parents[1] / "eval"


def load(name):
    spec = importlib.util.spec_from_file_location(f"cli_studies_{name}", EVAL / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def refused(capsys, main, argv) -> str:
    """The one-line error of `main(argv)` (exit status 2, by SystemExit or return)."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def tree(path: pathlib.Path) -> dict:
    """Every file under `path` with its bytes: what a refusal must leave unchanged."""
    return {p: p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def fake_run(path: pathlib.Path, algo: str, scenario: str) -> pathlib.Path:
    """A run folder as `jaxsoc.analysis.runs.read_run` sees it (a config.yaml), never trained."""
    from jaxsoc import config as config_lib

    cfg = config_lib.resolve(flags={"algo": algo, "scenario": scenario,
                                    "run": {"name": path.name, "dir": str(path.parent)}})
    path.mkdir(parents=True)
    config_lib.save(cfg, path / "config.yaml")
    return path


# ----------------------------------------------------------------------------- eval/demos.py

@pytest.mark.parametrize("argv, message", [
    (["--episodes", "0"], "argument --episodes: expected a positive integer, got '0'"),
    (["--out", "/proc/x/demo"], "--out: cannot write /proc/x/demo.md"),
    (["--out", "figures/"], "--out names the files' stem (OUT.md and OUT.png are written), not a folder"),
    (["--baselines", "random", "random"], "--baselines names a policy twice"),
    (["--baselines", "foo"], "eval/demos.py: error: unknown scripted policy 'foo'; retail has: base-stock, random"),
    (["--baselines", "least-cost"], "eval/demos.py: error: scripted policy 'least-cost' does not act on this scenario"),
])
def test_demos_refuses_bad_arguments_before_evaluating(tmp_path, capsys, argv, message):
    run = fake_run(tmp_path / "runs" / "r", "base-stock", "retail")
    before = tree(tmp_path)
    assert message in refused(capsys, load("demos").main, [str(run)] + argv)
    assert tree(tmp_path) == before  # no evaluation.json, no OUT.md


def test_demos_refuses_a_missing_run_and_a_run_of_another_scenario(tmp_path, capsys):
    demos = load("demos")
    assert refused(capsys, demos.main, [str(tmp_path / "nope")]) == f"eval/demos.py: error: {tmp_path / 'nope'} does not exist"
    run = fake_run(tmp_path / "v2", "random", "soc-v2")
    before = tree(tmp_path)
    err = refused(capsys, demos.main, [str(run)])
    assert err == f"eval/demos.py: error: {run} was trained on 'soc-v2'; this tool reports the demos retail, banking only"
    assert tree(tmp_path) == before  # evaluated nothing: no evaluation.json in the run


@pytest.mark.parametrize("algo, label", [("base-stock", "| base-stock (scripted) |"),
                                         ("mappo", "| mappo (trained) |")])
def test_demos_labels_a_scripted_run_scripted_and_a_learner_trained(tmp_path, capsys, monkeypatch, algo, label):
    from jaxsoc.analysis import protocols

    demos = load("demos")
    run = fake_run(tmp_path / "runs" / "r", algo, "retail")

    def record(*_a, **_k):  # what evaluate_run / evaluate_policy return, for two seeds
        metrics = {c: {"mean": 1.0} for c in demos.COLUMNS["retail"]}
        return {"seeds": {"0": {"metrics": metrics}, "1": {"metrics": metrics}}, "checkpoint_env_steps": 0}

    monkeypatch.setattr(protocols, "evaluate_run", record)
    monkeypatch.setattr(protocols, "evaluate_policy", record)
    assert demos.main([str(run), "--baselines", "random", "--episodes", "2"]) == 0
    rows = [ln.split("|")[1].strip() for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")]
    assert rows[1:] == [label.strip("| "), "random"]


def test_demos_keeps_an_earlier_table_and_curve_unless_force(tmp_path, capsys):
    demos = load("demos")
    run = fake_run(tmp_path / "runs" / "r", "base-stock", "retail")
    out = tmp_path / "docs" / "demos-retail"
    out.parent.mkdir()
    (tmp_path / "docs" / "demos-retail.png").write_bytes(b"an earlier curve")
    before = tree(tmp_path)
    err = refused(capsys, demos.main, [str(run), "--out", str(out)])
    assert err == (f"eval/demos.py: error: --out: {out}.png already exists "
                   "(--force overwrites them, or choose another --out) (see --help)")
    assert tree(tmp_path) == before
    (tmp_path / "docs" / "demos-retail.md").write_text("an earlier table")
    before = tree(tmp_path)
    err = refused(capsys, demos.main, [str(run), "--out", str(out)])
    assert err == (f"eval/demos.py: error: --out: {out}.md and {out}.png already exist "
                   "(--force overwrites them, or choose another --out) (see --help)")
    assert tree(tmp_path) == before  # refused before the evaluation: no evaluation.json either
    err = refused(capsys, demos.main, [str(run), "--force"])
    assert err == "eval/demos.py: error: --force goes with --out: without it no file is written (see --help)"
    # With --force the check lets it through: the next refusal is the scenario's, still before writing.
    v2 = fake_run(tmp_path / "runs" / "v2", "random", "soc-v2")
    before = tree(tmp_path)
    err = refused(capsys, demos.main, [str(v2), "--out", str(out), "--force"])
    assert err.startswith(f"eval/demos.py: error: {v2} was trained on 'soc-v2'")
    assert tree(tmp_path) == before


# ----------------------------------------------------------------------------- eval/reproduce.py

QUICK_RANDOM = ["--quick", "--methods", "random"]


@pytest.mark.parametrize("argv, message", [
    (["--set", "foo"], "eval/reproduce.py: error: Random: --set expects KEY=VALUE with a dotted KEY"),
    (["--set", "unknown.key=1"], "eval/reproduce.py: error: Random: --set: unknown config key 'unknown'"),
    (["--set", "ppo.clip_eps=0.3"], "eval/reproduce.py: error: --set ppo.clip_eps=0.3 applies to none of the planned methods (random)"),
    (["--total-steps", "0"], "argument --total-steps: expected a positive integer, got '0'"),
    (["--num-envs", "-1"], "argument --num-envs: expected a positive integer, got '-1'"),
    (["--episodes", "0"], "argument --episodes: expected a positive integer, got '0'"),
    (["--window", "0"], "argument --window: expected a positive integer, got '0'"),
    # a budget below one update (of its trainer: random's is 64 envs x 32 steps under --quick)
    (["--total-steps", "100"], "eval/reproduce.py: error: Random: total_steps=100 is less than one update"),
    # the plan's own keys: the runs would train elsewhere and the table find nothing
    (["--set", "run.dir=elsewhere"], "--set run.dir=elsewhere: eval/reproduce.py sets run.dir for each run itself (under --out)"),
    (["--set", "seed=3"], "--set seed=3: eval/reproduce.py sets seed for each run itself (--seeds)"),
])
@pytest.mark.parametrize("listing", [False, True])
def test_reproduce_refuses_bad_training_values_before_writing(tmp_path, capsys, argv, message, listing):
    out = tmp_path / "out"
    argv = QUICK_RANDOM + argv + ["--out", str(out)] + (["--list"] if listing else [])
    assert message in refused(capsys, load("reproduce").main, argv)
    assert not out.exists()  # no README.md, timings.json or runs/


@pytest.mark.parametrize("argv, message", [
    (["--methods", ""], "argument --methods: no methods in ''"),
    (["--methods", "mappo,random,mappo"], "argument --methods: mappo given twice in 'mappo,random,mappo'"),
    (["--out", "/proc/x"], "--out: cannot write /proc/x"),
    (["--list", "--overwrite"], "--overwrite does nothing with --list"),
    (["--list", "--compile-cache", "none"], "--compile-cache does nothing with --list"),
    (["--compile-cache", __file__], f"--compile-cache: {__file__} exists and is not a folder"),
])
def test_reproduce_refuses_bad_lists_folders_and_ignored_flags(tmp_path, capsys, argv, message):
    assert message in refused(capsys, load("reproduce").main, argv)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("preset", ["retail", "soc-hybrid"])
def test_reproduce_says_a_world_that_is_not_a_soc_preset_is_not_one_rather_than_unknown(tmp_path, capsys, preset):
    import jaxsoc.env as soc

    out = tmp_path / "out"
    err = refused(capsys, load("reproduce").main, ["--preset", preset, "--quick", "--out", str(out)])
    assert err == (f"eval/reproduce.py: error: reproduce builds Table II on the SOC presets ({', '.join(soc.preset_names())}) or a "
                   f"scenario .yaml; {preset!r} is another world (jaxsoc.env.make builds it), not a SOC preset")
    assert not out.exists()
    # A name no scenario has stays unknown, with a suggestion.
    err = refused(capsys, load("reproduce").main, ["--preset", "soc-v3", "--quick", "--list"])
    assert err.startswith("eval/reproduce.py: error: unknown preset 'soc-v3' (did you mean 'soc-v2'?); known: hmarl-soc-v1, ")


@pytest.mark.parametrize("listing", [False, True])
def test_reproduce_refuses_no_extras_without_hmarl_planned(tmp_path, capsys, listing):
    out = tmp_path / "out"
    argv = ["--quick", "--methods", "random,mappo", "--no-extras", "--out", str(out)] + (["--list"] if listing else [])
    err = refused(capsys, load("reproduce").main, argv)
    assert err == ("eval/reproduce.py: error: --no-extras does nothing here: it skips HMARL-SOC's K-sweep, ablations and attention "
                   "maps, and hmarl is not among the planned methods (random, mappo)")
    assert not out.exists()


def test_reproduce_takes_no_extras_with_hmarl_planned(capsys):
    assert load("reproduce").main(["--quick", "--methods", "random,hmarl", "--no-extras", "--list",
                                   "--out", "/tmp/never-written"]) == 0
    printed = capsys.readouterr().out
    assert "HMARL-SOC " in printed and "K=" not in printed  # the main run only, no K-sweep
    assert not pathlib.Path("/tmp/never-written").exists()


def test_reproduce_lists_a_valid_plan(capsys):
    assert load("reproduce").main(QUICK_RANDOM + ["--list", "--out", "/tmp/never-written"]) == 0
    assert "Random" in capsys.readouterr().out
    assert not pathlib.Path("/tmp/never-written").exists()


# ----------------------------------------------------------------------------- eval/seed004.py

@pytest.mark.parametrize("argv, message", [
    (["--set", "ppo.bogus=1"], "eval/seed004.py: error: ippo: --set: unknown config key 'ppo.bogus'"),
    (["--algos", "iac", "maac", "--set", "ppo.epochs=2"], "--set ppo.epochs=2 is for learners of section 'ppo', "
                                                          "and --algos has none"),
    (["--algos", "iac", "iac"], "--algos names a learner twice: iac iac"),
    (["--seeds", "2.5"], "argument --seeds: expected an integer, got '2.5'"),
])
def test_seed004_refuses_bad_settings_before_training_any_learner(tmp_path, capsys, argv, message):
    out = tmp_path / "s004"
    assert message in refused(capsys, load("seed004").main, ["--out", str(out), "--seeds", "1"] + argv)
    assert not out.exists()  # no iac/ or maac/ trained before ippo's key was refused


def test_seed004_refuses_an_unwritable_out(capsys):
    assert "--out: cannot write /proc/x" in refused(capsys, load("seed004").main, ["--out", "/proc/x"])


def study_run(s4, out, algo, seeds, episodes):
    """OUT/<algo> as the study would leave it after being stopped before its first checkpoint."""
    run = out / algo
    run.mkdir(parents=True)
    from jaxsoc import config as config_lib

    config_lib.save(s4.study_config(algo, str(out), seeds, episodes), run / "config.yaml")
    (run / "metrics.jsonl").write_text("")
    return run


def test_seed004_reuses_no_run_of_other_settings_or_interrupted(tmp_path, capsys):
    s4 = load("seed004")
    out = tmp_path / "s004"
    study_run(s4, out, "iac", seeds=2, episodes=100)  # the old rule reused it for any settings
    before = tree(tmp_path)
    err = refused(capsys, s4.main, ["--out", str(out), "--algos", "iac", "--seeds", "3", "--episodes", "100"])
    assert err == (f"eval/seed004.py: error: {out / 'iac'} holds another run or one trained with other settings "
                   "(--seeds, --episodes, --set): choose another --out, or --force to retrain it")
    # the same settings, but no checkpoint: stopped before its end, so not reused either
    err = refused(capsys, s4.main, ["--out", str(out), "--algos", "iac", "--seeds", "2", "--episodes", "100"])
    assert err.startswith(f"eval/seed004.py: error: {out / 'iac'} is incomplete")
    assert tree(tmp_path) == before


def test_seed004_reports_a_failed_training_in_one_line(tmp_path, capsys, monkeypatch):
    import subprocess

    s4 = load("seed004")

    def fail(cmd, check):
        raise subprocess.CalledProcessError(2, cmd)

    monkeypatch.setattr(subprocess, "run", fail)
    code = s4.main(["--out", str(tmp_path / "s004"), "--algos", "iac", "--seeds", "1", "--episodes", "100"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "eval/seed004.py: error: training iac failed (train/run.py exit status 2, its message above)"


# ----------------------------------------------------------------------------- eval/train_detector.py

@pytest.fixture(scope="module")
def saved_detector(tmp_path_factory):
    """A z-score detector saved for soc-v2, as eval/train_detector.py would (no telemetry gathered)."""
    import numpy as np

    from jaxsoc import detectors as det

    _, params = det.telemetry_world("soc-v2")
    windows = np.random.default_rng(0).normal(size=(8, 4, params.telemetry_features))
    path = tmp_path_factory.mktemp("detector") / "zscore"
    det.save_detector(path, det.fit_zscore(windows), params, 3.0, 0.01)
    return path


@pytest.fixture
def no_telemetry(monkeypatch):
    """Gathering telemetry (the tool's first work) fails the test: refusals come before it."""
    from jaxsoc import detectors

    def gather(*args, **kwargs):
        raise AssertionError("telemetry gathered before --out was checked")

    monkeypatch.setattr(detectors, "gather_telemetry", gather)


def test_train_detector_refuses_to_replace_a_detector_without_force(saved_detector, capsys, no_telemetry):
    before = tree(saved_detector)
    err = refused(capsys, load("train_detector").main, ["--out", str(saved_detector)])
    assert err == (f"eval/train_detector.py: error: --out {saved_detector} holds a detector already; "
                   "--force replaces it (see --help)")
    assert tree(saved_detector) == before


def test_train_detector_checks_out_before_gathering_telemetry(tmp_path, capsys, no_telemetry):
    main = load("train_detector").main
    (tmp_path / "file").write_text("kept")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("kept")
    before = tree(tmp_path)
    assert "--out: cannot write /proc/x" in refused(capsys, main, ["--out", "/proc/x"])
    assert f"--out: {tmp_path / 'file'} exists and is not a folder" in refused(
        capsys, main, ["--out", str(tmp_path / "file")])
    assert f"--out {tmp_path / 'full'} is not empty and holds no detector" in refused(
        capsys, main, ["--out", str(tmp_path / "full"), "--force"])
    assert tree(tmp_path) == before


def test_train_detector_saves_when_the_held_out_stream_has_nothing_to_rank(tmp_path, capsys):
    """One step of one env holds no attacked window: the ROC-AUC is reported as n/a (it used to
    raise after the detector was saved, so a re-run was refused without --force)."""
    out = tmp_path / "det"
    assert load("train_detector").main(["--out", str(out), "--envs", "1", "--steps", "1", "--window", "1",
                                        "--train-windows", "256"]) == 0
    printed = capsys.readouterr().out
    assert "held-out ROC-AUC n/a (none attacked) over 200 windows; saved to" in printed
    from jaxsoc import detectors as det

    assert det.read_detector_meta(out)["kind"] == "zscore"


def test_methods_all_plans_what_acts_on_the_preset_and_names_the_rest(tmp_path):
    """`--methods all` failed on the first method of another world (detector-alone: soc-hybrid's);
    such methods are now skipped with their reason, found as a run would refuse them."""
    from jaxsoc.analysis import plan as plan_lib

    out = tmp_path / "out"
    assert plan_lib.method_problem(plan_lib.method_plan("rule-soar", "hmarl-soc-v1", (0,), True, None, None, []),
                                   out) is None
    why = plan_lib.method_problem(plan_lib.method_plan("detector-alone", "hmarl-soc-v1", (0,), True, None, None, []),
                                  out)
    assert why.startswith("scripted policy 'detector-alone' does not act on this scenario")
    assert not out.exists()
