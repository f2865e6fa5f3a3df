"""train/run.py's refusals that must come at the start, in one line, before compiling or writing:
an unwritable run folder, what --resume cannot apply (another folder, another algorithm, another
training config), a damaged checkpoint (without orbax's background tracebacks), an evaluation
too big for the device, and numbers or env settings a run would refuse. Nothing here trains:
each refusal is checked before the engine builds or compiles a program."""
from __future__ import annotations

import importlib.util
import io
import re
import sys
import time
import types
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
import yaml

from tests import engine_toys as toys
from jaxsoc import config as config_lib, engine
from jaxsoc.checkpoints import Checkpoints, UnreadableCheckpoint
from jaxsoc.config import ConfigError

REPO = Path(__file__).resolve().parent.parent
SMALL = ["--algo", "random", "--num-envs", "8", "--total-steps", "2000", "--set", "run.progress=false"]


def _import_cli():
    """train/run.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("jaxsoc_train_run", REPO / "train" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv):
    """(exit status, stdout, stderr) of train/run.py's main."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = _import_cli().main(argv)
    return code, out.getvalue(), err.getvalue()


def refused(argv, message):
    """The CLI refuses `argv` with exit 2 and one line holding `message`; returns that line."""
    code, out, err = main(argv)
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("train/run.py: error: ") and err.count("\n") == 1, err
    assert message in err, err
    return err.strip()


@pytest.fixture
def no_program(monkeypatch):
    """Fails the test if the engine gets as far as building (let alone compiling) a program."""
    def reached(*args, **kwargs):
        raise AssertionError("the engine built a program before refusing")

    monkeypatch.setattr(engine, "build_program", reached)


@pytest.fixture
def saved_run(tmp_path):
    """A run folder as `--resume` first reads it: its config.yaml (random, 8 envs, 2,000 steps),
    saved when the run was at another place (the folder was moved since)."""
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    cfg = config_lib.resolve(flags={"algo": "random", "num_envs": 8, "total_steps": 2000,
                                    "run": {"name": "started-as", "dir": "/elsewhere/runs"}})
    config_lib.save(cfg, run_dir / "config.yaml")
    return run_dir


# ----------------------------------------------------------------------------- run folder
def test_an_unwritable_run_folder_is_refused_at_the_start_and_the_check_leaves_nothing(tmp_path, no_program):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    refused([*SMALL, "--set", f"run.dir={a_file}", "--name", "a"],
            f"cannot write {a_file / 'a'}: {a_file} is not a folder")
    if Path("/proc/self").is_dir():  # mode bits do not stop root; /proc takes no new folder for anyone
        refused([*SMALL, "--set", "run.dir=/proc/jaxsoc-x", "--name", "a"],
                "cannot write /proc/jaxsoc-x/a: /proc refuses new files")
    # The engine itself refuses (before building anything), and its probe leaves nothing.
    cfg = toys.toy_config(run={"dir": str(a_file / "deeper"), "name": "x"})
    with pytest.raises(ConfigError, match="is not a folder"):
        engine.run(cfg, make_env=toys.make_toy_env)
    fine = toys.toy_config(run={"dir": str(tmp_path / "new" / "runs"), "name": "x"})
    with pytest.raises(AssertionError, match="built a program"):  # the checks passed
        engine.run(fine, make_env=toys.make_toy_env)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_an_existing_file_as_the_run_name_is_not_offered_to_resume(tmp_path, no_program):
    (tmp_path / "afile").write_text("x")
    line = refused([*SMALL, "--set", f"run.dir={tmp_path}", "--name", "afile"],
                   f"{tmp_path / 'afile'} exists and is a file, not a run folder: choose another run.name")
    assert "--resume" not in line
    refused([*SMALL, "--set", f"run.dir={tmp_path}", "--name", "afile", "--overwrite"], "exists and is a file")
    assert (tmp_path / "afile").read_text() == "x"


# ----------------------------------------------------------------------------- resume
def test_resume_refuses_another_folder_instead_of_ignoring_it(saved_run, tmp_path, no_program):
    resume = ["--resume", str(saved_run)]
    refused([*resume, "--name", "other"], "--name does not apply with --resume (the run keeps its folder)")
    for key in ("dir", "name"):
        refused([*resume, "--set", f"run.{key}={tmp_path / 'elsewhere'}"],
                f"--set run.{key} does not apply with --resume (the run keeps its folder, {saved_run})")
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text(f"run:\n  dir: {tmp_path / 'elsewhere'}\n")
    refused([*resume, "--config", str(elsewhere)], f"{elsewhere} sets run.dir: {tmp_path / 'elsewhere'}, which "
            "does not apply with --resume")
    # A config file naming the run's own place is no change: it gets as far as the training config.
    here = tmp_path / "here.yaml"
    here.write_text(f"run:\n  dir: {saved_run.parent}\n  name: r1\n")
    refused([*resume, "--config", str(here), "--num-envs", "16"], "different config (num_envs: 8 -> 16)")
    assert not (tmp_path / "elsewhere").exists()


def test_the_saved_run_name_and_dir_are_not_taken_for_flags(saved_run):
    """config.yaml says the run started as /elsewhere/runs/started-as: a moved folder resumes, and
    the resolved config names the folder it continues in."""
    code, out, err = main(["--resume", str(saved_run), "--print-config"])
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert printed["run"]["dir"] == str(saved_run.parent) and printed["run"]["name"] == "r1"


def test_resume_names_a_changed_algorithm_and_a_changed_training_key_first(saved_run, no_program):
    resume = ["--resume", str(saved_run)]
    algo = f"cannot resume: {saved_run} was trained with algorithm 'random', not 'mappo'"
    refused([*resume, "--algo", "mappo"], algo)
    refused([*resume, "--config", str(REPO / "configs" / "mappo.yaml")], algo)
    refused([*resume, "--set", "algo=mappo"], algo)
    refused([*resume, "--algo", "rule-soar"], "trained with algorithm 'random', not 'rule-soar'")  # same family
    # 16 envs make 2,000 steps less than one update: the changed key is what the user must hear.
    refused([*resume, "--num-envs", "16"],
            f"cannot resume: {saved_run} was trained with a different config (num_envs: 8 -> 16)")
    refused([*resume, "--total-steps", "4000"], "different config (total_steps: 2000 -> 4000)")
    # --print-config refuses what the run would (it printed num_envs: 16, exit 0)
    refused([*resume, "--num-envs", "16", "--print-config"],
            f"cannot resume: {saved_run} was trained with a different config (num_envs: 8 -> 16)")
    code, out, err = main([*resume, "--print-config"])
    assert code == 0 and "num_envs: 8" in out, err


def test_print_config_refuses_more_devices_than_there_are(tmp_path):
    import jax

    n = len(jax.local_devices())
    refused([*SMALL, "--num-envs", str(8 * (n + 1)), "--devices", str(n + 1), "--print-config"],
            f"devices={n + 1} but only {n} local device(s)")


# ----------------------------------------------------------------------------- damaged checkpoint
def test_a_truncated_checkpoint_fails_without_orbaxs_background_tracebacks(tmp_path, monkeypatch):
    """orbax reads every array at once and closed its event loop at the first failed read while
    the others were still in flight; TensorStore then called the closed loop from its threads, and
    each `RuntimeError: Event loop is closed` went to sys.unraisablehook (~230 lines of tracebacks
    after a resume's one-line error). jaxsoc.checkpoints makes the failed call wait for its reads."""
    keys = jax.random.split(jax.random.key(0), 48)  # random: OCDBT inlines what compresses small
    state = {f"w{i:02d}": jax.random.normal(k, (4096,)) for i, k in enumerate(keys)}
    ckpts = Checkpoints(tmp_path / "c", keep=2)
    ckpts.save(1, state, {"update": 1})
    ckpts.wait()
    ckpts.close()
    data = list((tmp_path / "c" / "1" / "state").glob("ocdbt.process_*/d/*"))
    assert data
    for f in data:
        with open(f, "r+b") as handle:
            handle.truncate(10)

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(repr(u.exc_value)))
    abstract = jax.eval_shape(lambda: state)
    ckpts = Checkpoints(tmp_path / "c", create=False)
    try:
        for _ in range(10):  # how many reads are still in flight at the first failure is timing
            with pytest.raises(UnreadableCheckpoint, match="checkpoint 1 .* is unreadable"):
                ckpts.restore(1, abstract)
    finally:
        ckpts.close()
    time.sleep(0.2)  # a read left behind would report within this
    import gc

    gc.collect()
    assert unraisable == [], f"{len(unraisable)} errors on sys.unraisablehook, e.g. {unraisable[0][:200]}"


# ----------------------------------------------------------------------------- memory
def test_a_huge_evaluation_is_refused_before_compiling_naming_eval_episodes(tmp_path, monkeypatch):
    cli_line = refused([*SMALL, "--set", f"run.dir={tmp_path}", "--set", "eval.every_chunks=1",
                        "--set", "eval.episodes=1e11", "--name", "big"], "the evaluation needs at least")
    assert "eval.episodes 100,000,000,000 x 1 seed(s)" in cli_line and cli_line.endswith("lower eval.episodes")

    def compiled(*args):
        raise AssertionError("compiled before refusing")

    monkeypatch.setattr(engine, "check_memory", compiled)  # called only once compiled
    device = jax.local_devices()[0]
    monkeypatch.setattr(engine, "_device_memory", lambda: (device, 2**20))  # a 1-MiB device
    cfg = toys.toy_config(run={"dir": str(tmp_path), "name": "toy"}, eval={"every_chunks": 1, "episodes": 100_000})
    with pytest.raises(ConfigError, match=r"evaluation needs at least \d\.\d MiB .*eval.episodes 100,000 x 1 "
                       r"seed\(s\)\), which has 1\.0 MiB: lower eval.episodes"):
        engine.run(cfg, make_env=toys.make_toy_env)
    big_state = toys.toy_config(run={"dir": str(tmp_path), "name": "toy"}, num_envs=100_000, total_steps=400_000)
    with pytest.raises(ConfigError, match=r"this run needs at least .* \(100,000 envs x 1 seed\(s\)\).*lower num_envs"):
        engine.run(big_state, make_env=toys.make_toy_env)
    assert not any(tmp_path.iterdir())


def test_the_compiled_estimate_blames_the_program_that_does_not_fit(monkeypatch):
    device = jax.local_devices()[0]
    monkeypatch.setattr(engine, "_device_memory", lambda: (device, 2 * 2**30))

    def exe(gib):
        return types.SimpleNamespace(memory_analysis=lambda: types.SimpleNamespace(
            argument_size_in_bytes=gib * 2**30, output_size_in_bytes=0, temp_size_in_bytes=0, alias_size_in_bytes=0))

    cfg = config_lib.resolve(flags={"algo": "random", "num_envs": 8, "eval": {"episodes": 5000}})
    engine.check_memory(exe(1), exe(1), cfg)  # both fit
    eval_too_big = r"the evaluation needs about 3\.0 GiB .*eval.episodes 5,000 .* lower eval.episodes$"
    with pytest.raises(ConfigError, match=eval_too_big):
        engine.check_memory(exe(1), exe(3), cfg)
    with pytest.raises(ConfigError, match=r"this run needs about 3\.0 GiB .*lower num_envs or num_seeds$"):
        engine.check_memory(exe(3), exe(3), cfg)  # the training first: a smaller evaluation would not help
    with pytest.raises(ConfigError, match="the evaluation needs about"):
        engine.check_memory(None, exe(3), cfg)  # a resumed run with no update left only evaluates


# ----------------------------------------------------------------------------- numbers, env
def test_huge_numbers_are_written_short_and_seeds_stay_in_uint32(tmp_path, no_program):
    line = refused([*SMALL, "--set", f"run.dir={tmp_path}", "--total-steps", "1e300"],
                   "total_steps=1e+300 is more than the 2,147,483,647 env steps per seed")
    assert len(line) < 200
    refused([*SMALL, "--set", f"run.dir={tmp_path}", "--num-envs", "1e300"], "one update is 1.28e+302 env steps")
    refused([*SMALL, "--set", f"run.dir={tmp_path}", "--seed", "1e300"], "seeds 1e+300..1e+300 (seed + num_seeds - 1)")
    refused([*SMALL, "--set", f"run.dir={tmp_path}", "--num-seeds", "1e300"], "go past 4,294,967,295, the largest seed")
    assert config_lib.resolve(flags={"algo": "random", "seed": 2**32 - 1})["seed"] == 2**32 - 1
    with pytest.raises(ConfigError, match="seeds 4,294,967,295..4,294,967,296"):
        config_lib.resolve(flags={"algo": "random", "seed": 2**32 - 1, "num_seeds": 2})
    assert config_lib.format_count(2000) == "2,000" and config_lib.format_count(10**300) == "1e+300"
    assert not any(tmp_path.iterdir())


def test_print_config_refuses_the_env_settings_a_run_refuses(tmp_path):
    refused([*SMALL, "--print-config", "--set", "env.max_steps=-5"],
            "env 'soc-v2': max_steps must be a positive integer, got -5")
    refused([*SMALL, "--print-config", "--set", "env.bogus=1"], "unknown env parameter 'bogus'")
    code, out, err = main([*SMALL, "--print-config", "--set", "env.max_steps=50", "--set", f"run.dir={tmp_path}"])
    assert code == 0 and "max_steps: 50" in out, err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("flags, sets, message", [
    ({"algo": "reptile"}, ["meta.tasks=[[bogus, 0.3, 0.95]]"],
     "meta.tasks: 'bogus' is not a field of EnvParams (meta.tasks ranges this world's own numeric fields)"),
    ({"algo": "reptile"}, ["meta.tasks=[[stealt, 0.3, 0.95]]"],
     "meta.tasks: 'stealt' is not a field of EnvParams (did you mean 'stealth'?) "
     "(meta.tasks ranges this world's own numeric fields)"),
    ({"algo": "reptile"}, ["meta.tasks=[[max_steps, 3, 9]]"],
     "meta.tasks: max_steps is static (it fixes shapes or code paths); only numeric fields can vary between tasks"),
    ({"algo": "redblue", "scenario": "soc-v2"}, [],
     "redblue trains the learnable red agent: use a scenario with red_control (soc-v2-redblue), not 'soc-v2'"),
    ({"algo": "random", "num-envs": "8", "total-steps": "1000"}, [],
     "total_steps=1,000 is less than one update (1,024 env steps per seed: num_envs 8 x scripted.rollout 128; "
     "raise total_steps to at least 1,024, or lower num_envs or scripted.rollout)"),
])
def test_print_config_refuses_what_the_learner_refuses_when_its_trainer_is_built(tmp_path, no_program, flags, sets,
                                                                                    message):
    """These pass the config's own checks, and --print-config printed them (exit 0); a run refuses
    them when it builds the trainer (or checks its budget), before any program. --print-config
    builds the trainer and checks the budget too."""
    argv = [a for k, v in flags.items() for a in (f"--{k}", v)] + [a for e in sets for a in ("--set", e)]
    assert refused([*argv, "--print-config", "--set", f"run.dir={tmp_path}"], message) == f"train/run.py: error: {message}"
    named = {k.replace("-", "_"): int(v) if v.isdigit() else v for k, v in flags.items()}
    cfg = config_lib.resolve(flags={**named, "run": {"dir": str(tmp_path), "name": "r"}}, sets=sets)
    with pytest.raises(ValueError, match=re.escape(message)):
        engine.run(cfg)  # a run says the same, at the same point (no_program: before any program)
    assert not any(tmp_path.iterdir())


def test_print_config_refuses_a_missing_checkpoint_and_a_live_log_without_its_library(saved_run):
    """What the run refused at once, --print-config printed (exit 0): a --from-update with no such
    checkpoint (saved_run has none), run.wandb without wandb installed."""
    refused(["--resume", str(saved_run), "--from-update", "5", "--print-config"],
            "cannot resume: no checkpoint at update 5 (have [])")
    try:
        import wandb  # noqa: F401  (installed: nothing to refuse)
    except ImportError:
        refused([*SMALL, "--set", "run.wandb=proj", "--print-config"],
                "run.wandb is 'proj' but wandb is not installed (pip install wandb)")


def test_print_config_prints_a_learner_config_its_trainer_accepts():
    code, out, err = main(["--algo", "reptile", "--set", "meta.tasks=[[stealth, 0.3, 0.95]]", "--print-config"])
    assert code == 0 and yaml.safe_load(out)["meta"]["tasks"] == [["stealth", 0.3, 0.95]], err


def test_ctrl_c_before_an_overwriting_run_wrote_offers_no_resume_of_the_earlier_run(saved_run, monkeypatch):
    """`--overwrite` replaces the earlier folder only when the new run's first chunk is done; a
    Ctrl-C before then offered `--resume` of the earlier run (refused, when it held a policy-only
    checkpoint) as if it were the new one's."""
    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "run", interrupted)
    code, out, err = main([*SMALL, "--set", f"run.dir={saved_run.parent}", "--name", saved_run.name, "--overwrite"])
    assert code == 130
    assert err.strip() == (f"interrupted before the first update was logged: nothing was written, and the earlier "
                           f"run in {saved_run} is as it was")
