"""The benchmark scripts' own logic (eval/bench_*.py): cheap checks, no timings asserted."""
from __future__ import annotations

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import pytest

EVAL = pathlib.Path(__file__).resolve().parents[1] / "eval"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EVAL / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_matmul_chain_keeps_its_values(dtype):
    bm = load("bench_matmul")
    # Products with the identity keep every value 0.5: a chain that overflowed or decayed into
    # denormals would time the slow path of the FPU, not the machine's matrix products.
    chain, a, b = bm.make_chain(16, dtype, reps=300)
    assert bool(jnp.all(chain(a, b) == 0.5))
    assert bool(jnp.all(bm.make_chain(16, dtype, reps=300, jit=jax.jit)[0](a, b) == 0.5))
    rates = bm.matmul_gflops(16, dtype, reps=3, repeats=1)
    assert set(rates) == {"jaxsoc", "xla-default"} and min(rates.values()) > 0


def test_reference_round_refuses_a_folder_that_is_not_the_original(tmp_path):
    bo = load("bench_offpolicy")
    with pytest.raises(SystemExit, match="not the original HMARL-SOC code/ folder"):
        bo.reference_round(str(tmp_path))


def test_fix_costs_plan_and_rounds():
    bf = load("bench_fixes")
    # v1 and soc-v2 first, then soc-v2 without each named fix, labelled by its D number.
    plan = bf.programs(["fix_d2_alert_origin", "fix_d10_resample_network"])
    assert [(label, preset, over) for label, preset, over in plan] == [
        ("hmarl-soc-v1", "hmarl-soc-v1", {}), ("soc-v2", "soc-v2", {}),
        ("soc-v2 without D2", "soc-v2", {"fix_d2_alert_origin": False}),
        ("soc-v2 without D10", "soc-v2", {"fix_d10_resample_network": False})]
    with pytest.raises(SystemExit, match="unknown fix 'fix_d99'"):
        bf.programs(["fix_d99"])
    # every program is timed once per round, in order
    calls = []
    fns = {name: (lambda key, name=name: calls.append(name) or jnp.zeros(())) for name in ("a", "b")}
    seconds = bf.time_in_turn(fns, rounds=3)
    assert calls == ["a", "b"] + ["a", "b"] * 3 and [len(s) for s in seconds.values()] == [3, 3]


def test_with_obs_makes_the_benchmark_compute_the_observations():
    import jax

    import jaxsoc.env as soc

    be = load("bench_env")
    env, _ = soc.make("soc-v2", hosts_per_segment=4)
    plain = be.make_runner(env, 2, 3)
    full = be.make_runner(env, 2, 3, with_obs=True)
    # Same envs, same keys: the rewards-only checksum, then with every observation's sum added.
    a, b = float(plain(jax.random.key(1))), float(full(jax.random.key(1)))
    assert a != b


def test_gpu_check_runs_the_gpu_tests_and_flags_the_benchmarks_accept(monkeypatch):
    """eval/gpu_check.sh runs on a machine this project rarely gets: its commands must not rot
    here (a renamed flag would only show there, in a lease's minutes)."""
    import shlex
    import subprocess
    import sys

    script = EVAL / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    parts = [shlex.split(line)[1:] for line in script.read_text().splitlines() if line.startswith("part ")]
    names = [p[0] for p in parts]
    assert names == ["devices", "tests", "env", "env_obs", "train"]
    commands = {p[0]: p[1:] for p in parts}
    assert commands["tests"][-1] == "tests/test_gpu.py" and "gpu" in commands["tests"]
    assert (EVAL.parent / "tests" / "test_gpu.py").exists()
    for name in ("env", "env_obs", "train"):
        python, path, *argv = commands[name]
        module = load(pathlib.Path(path).stem)
        monkeypatch.setattr(sys, "argv", [path, *argv])
        args = module._parse()  # argparse exits on an unknown flag or a bad value
        assert args.envs in ([4096, 65536, 262144], 4096)
    assert commands["env_obs"][-1] == "--with-obs"


def test_gpu_check_keeps_an_earlier_checks_figures(tmp_path):
    """`tee` emptied OUTDIR/<part>.txt of an earlier check; an OUTDIR holding them is refused
    before anything runs (no python is started: the refusal comes first)."""
    import subprocess

    (tmp_path / "env.txt").write_text("an earlier check's figures")
    out = subprocess.run(["bash", str(EVAL / "gpu_check.sh"), str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == (f"eval/gpu_check.sh: error: {tmp_path} already holds an earlier check's .txt "
                                  "files: give another OUTDIR")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env.txt"]
    assert (tmp_path / "env.txt").read_text() == "an earlier check's figures"


def test_every_learner_has_a_training_benchmark_case():
    # Each registered learner's defaults are to be measured at 4,096 envs: a learner
    # registered without a line in eval/bench_train.py's CASES would go unmeasured (red-ppo did).
    from jaxsoc import algos
    bt = load("bench_train")
    # jaxsoc's own learners (other tests register toys in the same process)
    learners = {name for name, family in algos.ALGORITHMS.items()
                if family != "scripted" and algos.family_module(name).__name__.startswith("jaxsoc.")}
    missing = sorted(learners - {algo for algo, _ in bt.CASES.values()})
    assert missing == [], f"no benchmark case for {missing}: add a line to CASES in eval/bench_train.py"


def test_off_policy_rounds_take_their_cases_sets_but_not_the_keys_of_their_own_flags():
    # The rounds ignored every --set: `--set dqn.per=false` timed the case without PER, its round with it.
    bt, bo = load("bench_train"), load("bench_offpolicy")
    sets = ["dqn.per=false", "env.max_steps=50", "dqn.batch_size=64", "sac.tau=0.01", "ppo.lr=1e-4"]
    assert bt.round_sets(sets, "iql") == (["dqn.per=false", "env.max_steps=50"], ["dqn.batch_size=64"])
    assert bt.round_sets(sets, "sac") == (["env.max_steps=50", "sac.tau=0.01"], [])
    cfg = bo.bench_config("iql", 1024, (8,), 32, 16384, sets=bt.round_sets(sets, "iql")[0])
    assert cfg["dqn"]["per"] is False and cfg["env"] == {"max_steps": 50}
    assert (cfg["dqn"]["batch_size"], cfg["dqn"]["buffer_size"], cfg["dqn"]["hidden_sizes"]) == (32, 16384, [8])


def test_algorithm_round_refuses_a_soc_team_learner_on_another_world():
    # qmix acts through the SOC roles: its team failed deep in the setup with an AttributeError.
    from jaxsoc.config import ConfigError

    bo = load("bench_offpolicy")
    with pytest.raises(ConfigError, match="^--algo qmix acts through the SOC team's roles .* scenario 'retail' "
                                          "has other agents"):
        bo.algorithm_round("qmix", hidden=(8,), batch=8, capacity=8192, scenario="retail", reps=1, repeats=1)


@pytest.mark.slow  # compiles and times one small SAC round on retail (~10 s)
def test_algorithm_round_names_roles_outside_the_soc_team_by_their_names():
    # ROLE_ABBREV has the SOC roles only: retail's warehouses failed with a KeyError after the timing.
    bo = load("bench_offpolicy")
    r = bo.algorithm_round("sac", hidden=(8,), batch=8, capacity=20480, scenario="retail", reps=1, repeats=1)
    assert r["roles"] == "+".join(f"warehouse_{i}" for i in range(5)) and r["ms"] > 0
