"""A run on a scenario file is self-contained (ext audit F1): the file's contents are stored in the
run's config.yaml (`scenario_spec`) and every rebuild (load_policy, evaluation, resume) builds the
env from them. A relative path from another folder, an edited, moved or deleted file change
nothing; a run saved before the contents were stored still reads its file, as it always did.

The fast tests use scripted runs (a config.yaml is all their policy needs); the slow one trains a
real run, edits the file so that its shapes change, and resumes and loads it."""
from __future__ import annotations

import io
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import jax
import pytest
import yaml

import jaxsoc
import jaxsoc.env as soc
from jaxsoc import config as config_lib, engine
from jaxsoc.analysis import protocols
from jaxsoc.analysis.runs import AnalysisError

REPO = Path(__file__).resolve().parent.parent
SCENARIO = "base: soc-v2\nnum_segments: 2\nhosts_per_segment: 3\nmax_steps: 8\nstealth: 9e-1\n"
EDITED = "base: soc-v2\nnum_segments: 2\nhosts_per_segment: 5\nmax_steps: 8\nstealth: 0.1\n"


def trained_world():
    """The params the run was trained on, by hand: soc-v2, 2 segments of 3 hosts, 8 steps, stealth 0.9."""
    return soc.build_params("soc-v2", num_segments=2, hosts_per_segment=3, max_steps=8, stealth=0.9).replace(name="w")


def scripted_run(root: Path, name: str = "r") -> Path:
    """A random-policy run folder trained from `root` on the relative path `w.yaml`: its config.yaml."""
    (root / "w.yaml").write_text(SCENARIO)
    cfg = config_lib.resolve(flags={"algo": "random", "scenario": "w.yaml", "num_envs": 2,
                                    "run": {"name": name, "dir": str(root / "runs")}})
    run_dir = root / "runs" / name
    run_dir.mkdir(parents=True)
    config_lib.save(cfg, run_dir / "config.yaml")
    return run_dir


def test_a_run_loads_from_anywhere_with_its_file_edited_or_gone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = scripted_run(tmp_path)
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["scenario_spec"] == {
        "base": "soc-v2", "num_segments": 2, "hosts_per_segment": 3, "max_steps": 8, "stealth": 0.9, "name": "w"}
    (tmp_path / "w.yaml").write_text(EDITED)  # edited after training
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where "w.yaml" does not exist
    policy = jaxsoc.load_policy(run_dir)
    assert policy.env_params == trained_world()
    assert (policy.env_params.stealth, policy.env_params.hosts_per_segment) == (0.9, (3, 3))
    (tmp_path / "w.yaml").unlink()
    assert jaxsoc.load_policy(run_dir).env_params == trained_world()
    protocols.check_evaluation(run_dir, episodes=4)  # the env is built: an evaluation would go ahead


def test_a_run_saved_before_the_contents_were_stored_reads_its_file_as_before(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = scripted_run(tmp_path)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    del cfg["scenario_spec"]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (tmp_path / "w.yaml").write_text(EDITED)
    assert jaxsoc.load_policy(run_dir).env_params.stealth == 0.1  # the file as it is now, as before
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    message = (f"cannot rebuild the policy of {run_dir}: env 'w.yaml': scenario file not found: w.yaml "
               f"(relative to {elsewhere})")
    with pytest.raises(AnalysisError) as err:
        jaxsoc.load_policy(run_dir)
    assert str(err.value) == message
    # evaluation refuses it before any work, unless an evaluation it would reuse is there
    with pytest.raises(AnalysisError) as err:
        protocols.check_evaluation(run_dir, episodes=4)
    assert str(err.value) == message
    protocols.check_evaluation(run_dir)  # without an evaluation to come: the config alone


def test_too_few_total_steps_names_what_makes_an_update(tmp_path):
    """ext audit F10: the message named the product (1,024 env steps), not its terms."""
    cfg = config_lib.resolve(flags={"algo": "random", "scenario": "soc-v2", "num_envs": 8, "total_steps": 1000,
                                    "run": {"name": "x", "dir": str(tmp_path)}})
    with pytest.raises(config_lib.ConfigError) as err:
        engine.run(cfg)
    assert str(err.value) == ("total_steps=1,000 is less than one update (1,024 env steps per seed: num_envs 8 x "
                              "scripted.rollout 128; raise total_steps to at least 1,024, or lower num_envs or "
                              "scripted.rollout)")
    assert not any(tmp_path.iterdir())


def _train_cli(argv):
    """(exit status, stderr) of train/run.py's main."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("jaxsoc_train_run_sf", REPO / "train" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = module.main(argv)
    return code, err.getvalue()


@pytest.mark.slow  # two compiles of a real env's run (~15 CPU-s)
def test_a_run_resumes_and_loads_as_trained_after_its_file_changed_shape(tmp_path, monkeypatch):
    """Trained on w.yaml (relative, 3 hosts a segment); the file then says 5 hosts and stealth 0.1
    (its env states would no longer fit the checkpoint: this was reported as a damaged checkpoint)
    and the run is resumed: it continues from its stored contents, with a note, and ends bit for
    bit where the uninterrupted run ended; both load from another folder."""
    from tests.fast import fast_compile

    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.yaml").write_text(SCENARIO)
    argv = ["--algo", "random", "--scenario", "w.yaml", "--num-envs", "2", "--total-steps", "32",
            "--set", "scripted.rollout=8", "--set", "run.chunk_updates=1", "--set", "run.checkpoint_every=1",
            "--set", "run.progress=false", "--set", "run.tensorboard=false", "--set", f"run.dir={tmp_path / 'runs'}",
            "--name", "w"]
    with fast_compile():
        assert _train_cli(argv)[0] == 0
    straight = tmp_path / "runs" / "w"
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    (tmp_path / "w.yaml").write_text(EDITED)
    with fast_compile():
        code, err = _train_cli(["--resume", str(resumed), "--from-update", "1", "--set", "run.progress=false"])
    assert code == 0, err
    assert ("note: scenario file w.yaml has changed since this run was trained: it goes on with the scenario "
            "stored in its config.yaml (scenario_spec), as trained") in err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    a, b = engine.load(straight), engine.load(resumed)
    assert a.updates == b.updates == 2
    assert all(bool((x == y).all()) for x, y in zip(jax.tree.leaves(a.state), jax.tree.leaves(b.state)))
    assert engine.make_env_checked(b.config)[1] == trained_world()
