"""Bad command lines of the red-team/game tools and the small and benchmark tools under eval/ are
refused in one line (exit 2, no traceback) before any compile, training or benchmark, and before
anything is written. Each case calls the tool's `main` in-process; none runs the tool's work."""
from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

from tests.cli_checks import no_work, refused

EVAL = pathlib.Path(__file__).resolve().parents[1] / "eval"


def load(name):
    """eval/<name>.py as a module (eval/ first on the path: some tools import their siblings)."""
    if str(EVAL) not in sys.path:
        sys.path.insert(0, str(EVAL))
    spec = importlib.util.spec_from_file_location(f"cli_tools_{name}", EVAL / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- eval/redblue.py, eval/psro_soc.py, eval/meta_adapt.py: step counts and --out (items 38-41)

STEPS = "env steps per seed the int32 step counters hold"


@pytest.mark.parametrize("tool, argv, match", [
    ("redblue", ["--blue-steps", "inf"], "--blue-steps: expected an integer, got 'inf'"),
    ("redblue", ["--red-steps", "nan"], "--red-steps: expected an integer, got 'nan'"),
    ("redblue", ["--red-steps", "1e300"], f"--red-steps: more than the 2,147,483,647 {STEPS}, got '1e300'"),
    ("redblue", ["--blue-steps", "2147483648"], f"--blue-steps: more than the 2,147,483,647 {STEPS}"),
    ("redblue", ["--seeds", "1.5"], "--seeds: expected an integer, got '1.5'"),
    ("redblue", ["--bogus"], "unrecognized arguments: --bogus"),
    ("psro_soc", ["--blue-steps", "inf"], "--blue-steps: expected an integer, got 'inf'"),
    ("psro_soc", ["--final-red-steps", "1e300"], f"--final-red-steps: more than the 2,147,483,647 {STEPS}"),
    ("psro_soc", ["--iterations", "3", "--blue-steps", "1e9"],
     "--iterations x --blue-steps = 3,000,000,000 env steps is more than the 2,147,483,647"),
    ("psro_soc", ["--red-steps", "1e5", "--final-red-steps", "2.5e5"], "must be a positive multiple of --red-steps"),
])
def test_game_tools_refuse_impossible_step_counts(tmp_path, capsys, monkeypatch, tool, argv, match):
    module = load(tool)
    monkeypatch.setattr(module.soc, "make", no_work(module, "the env"))
    out = tmp_path / "out.json"
    refused(module.main, argv + ["--out", str(out)], capsys, match)
    assert list(tmp_path.iterdir()) == []


def test_psro_soc_takes_a_large_blue_budget_without_the_baseline(tmp_path, capsys, monkeypatch):
    """The chain's total only bounds the baseline's one straight run: --no-baseline lifts it."""
    ps = load("psro_soc")
    monkeypatch.setattr(ps.soc, "make", no_work(ps, "the env"))
    with pytest.raises(AssertionError, match="reached the env"):
        ps.main(["--iterations", "3", "--blue-steps", "1e9", "--no-baseline", "--compile-cache", "none",
                 "--out", str(tmp_path / "out.json")])


@pytest.mark.parametrize("argv, match", [
    (["--train-steps", "inf"], "--train-steps: expected an integer, got 'inf'"),
    (["--train-steps", "nan"], "--train-steps: expected an integer, got 'nan'"),
    (["--train-steps", "1e300"], f"--train-steps: more than the 2,147,483,647 {STEPS}"),
    (["--k", "0"], "--k: expected a positive integer"),
    (["--num-envs", "-1"], "--num-envs: expected a positive integer"),
])
def test_meta_adapt_refuses_bad_numbers(capsys, argv, match):
    refused(load("meta_adapt").main, argv, capsys, match)


def test_meta_adapt_refuses_fewer_steps_than_one_reptile_update(capsys, monkeypatch):
    """Below one update the meta team trained 0 updates (scratch under another name) after minutes
    of compiling: refused with the minimum, before anything is compiled; the minimum itself runs."""
    import jax

    import jaxsoc.algos.meta  # noqa: F401 - their module-level jits run before jit is replaced
    import jaxsoc.env  # noqa: F401

    ma = load("meta_adapt")
    monkeypatch.setattr(jax, "jit", no_work(jax, "a compile"))
    refused(ma.main, ["--train-steps", "32767"], capsys,
            "eval/meta_adapt.py: error: --train-steps 32,767 is less than one Reptile update: 4 tasks x 4 inner "
            "updates x 64 envs x rollout 32 = 32,768 env steps per seed, the minimum (see --help)")
    refused(ma.main, ["--num-envs", "2", "--set", "meta.tasks_per_step=3", "--train-steps", "100"], capsys,
            "--train-steps 100 is less than one Reptile update: 3 tasks x 4 inner updates x 2 envs x rollout 32 "
            "= 768 env steps per seed, the minimum")
    with pytest.raises(AssertionError, match="reached a compile"):
        ma.main(["--num-envs", "2", "--set", "meta.tasks_per_step=3", "--train-steps", "768"])


def test_meta_adapt_takes_a_step_count_written_5e6(monkeypatch):
    """5e6 is an integer: parsing passes and the tool goes on to its config (stubbed here)."""
    import jaxsoc.config

    ma = load("meta_adapt")
    seen = {}

    def resolve(flags, sets):
        seen.update(flags)
        raise AssertionError("reached the config")

    monkeypatch.setattr(jaxsoc.config, "resolve", resolve)
    with pytest.raises(AssertionError, match="reached the config"):
        ma.main(["--train-steps", "5e6"])
    assert seen["total_steps"] == 5_000_000


@pytest.mark.parametrize("tool", ["redblue", "psro_soc"])
def test_game_tools_refuse_an_unwritable_or_existing_out(tmp_path, capsys, monkeypatch, tool):
    module = load(tool)
    monkeypatch.setattr(module.soc, "make", no_work(module, "the env"))
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    refused(module.main, ["--out", str(blocker / "out.json")], capsys, f"{blocker} is not a folder")
    refused(module.main, ["--out", str(tmp_path)], capsys, "is a folder, not a file")
    refused(module.main, ["--out", str(blocker)], capsys, f"{blocker} exists; --force overwrites it")
    assert blocker.read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    with pytest.raises(AssertionError, match="reached the env"):  # --force: past the checks, to the work
        module.main(["--out", str(blocker), "--force", "--compile-cache", "none"] if tool == "psro_soc"
                    else ["--out", str(blocker), "--force"])
    assert blocker.read_text() == "keep"


# --- eval/cage4_calibration.py, eval/psro_toy.py, eval/game_accuracy.py (items 46-48)

@pytest.mark.parametrize("argv, match", [
    (["--episodes", "0"], "--episodes: expected a positive integer, got '0'"),
    (["--episodes", "-1"], "--episodes: expected a positive integer, got '-1'"),
    (["--batch", "-1"], "--batch: expected a positive integer, got '-1'"),
    (["--batch", "0"], "--batch: expected a positive integer, got '0'"),
    (["--policies", "monitor", "monitor"], "--policies names monitor twice"),
])
def test_cage4_calibration_refuses_bad_numbers(capsys, monkeypatch, argv, match):
    cc = load("cage4_calibration")
    monkeypatch.setattr(cc.cage4, "make", no_work(cc, "the env"))
    refused(cc.main, argv, capsys, match)


def test_cage4_calibration_plays_the_same_episodes_whatever_the_order_and_the_batch(capsys, monkeypatch):
    cc = load("cage4_calibration")
    make = cc.cage4.make
    monkeypatch.setattr(cc.cage4, "make", lambda: make(max_steps=6))  # short episodes: a quick compile

    def table(argv):
        cc.main(argv + ["--episodes", "3"])
        lines = capsys.readouterr().out.splitlines()
        header = next(line for line in lines if line.startswith("| metric"))
        names = [c.strip() for c in header.strip("|").split("|")][1:]
        rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")[1:]]
                for line in lines if line.startswith("| ") and not line.startswith("| metric")}
        return {name: {k: v[i] for k, v in rows.items()} for i, name in enumerate(names)}

    both = table(["--policies", "monitor", "restore", "--batch", "2"])
    alone = table(["--policies", "restore", "--batch", "3"])
    assert alone["restore"] == both["restore"]  # its column, in another position and batching
    assert both["restore"]["return"] != both["monitor"]["return"]  # the policies do differ


@pytest.mark.parametrize("argv, match", [
    (["--size", "1000000"], "--size 1,000,000: the 1,000,000 x 1,000,000 payoff matrix would take 7,450.6 GiB"),
    (["--size", "11586"], "more than the 1 GiB bound (at most 11,585 actions)"),
    (["--iterations", "1e6"], "the meta-game of 1,000,001 members per side would take"),
    (["--size", "0"], "--size: expected a positive integer"),
    (["--meta", ""], "--meta names no meta-solver; expected some of last, nash, uniform"),
    (["--meta", " , "], "--meta names no meta-solver"),
    (["--meta", "nash,foo"], "unknown meta-solver(s) ['foo']"),
    (["--meta", "nash,uniform,nash"], "meta-solver(s) ['nash'] given twice in --meta"),
])
def test_psro_toy_refuses_huge_games_and_bad_solver_lists(capsys, monkeypatch, argv, match):
    from jaxsoc.game import toy

    monkeypatch.setattr(toy, "random_zero_sum", no_work(toy, "the game"))
    refused(load("psro_toy").main, argv, capsys, match)


@pytest.mark.parametrize("argv, match", [
    (["--shapes", "100000x100000"], "--shapes 100000x100000: 20 games of that shape would take 1,490.1 GiB"),
    (["--shapes", "10x10,5000x5000", "--count", "6"], "--shapes 5000x5000: 6 games of that shape would take 1.1 GiB"),
    (["--shapes", "1x100000", "--count", "1"], "the 100,000 x 100,000 game the solve times use would take 74.5 GiB"),
    (["--shapes", ""], "--shapes must look like 10x10,30x60, got ''"),
    (["--shapes", "3x"], "--shapes must look like 10x10,30x60, got '3x'"),
    (["--shapes", "10x10,30x30,10X10"], "--shapes names 10x10 twice"),
    (["--count", "0"], "--count: expected a positive integer"),
])
def test_game_accuracy_refuses_shapes_past_the_memory_bound(capsys, monkeypatch, argv, match):
    from jaxsoc.game import metagame

    monkeypatch.setattr(metagame, "solve_zero_sum", no_work(metagame, "the solver"))
    refused(load("game_accuracy").main, argv, capsys, match)


# --- the benchmark and profiling tools (item 49): refused before any compile or timing

def bench_refused(tool, argv, capsys, monkeypatch, match, parse=None):
    """`tool`'s command line `argv` refused in one line, exit 2. The tool's first jitted program
    is replaced by one that fails the test, so a missed refusal cannot start a benchmark."""
    import jax

    # Imported first: module-level jax.jit decorators (the envs', the tool's imports) run before
    # jit is replaced, whichever tests ran before in this process.
    import importlib

    import jaxsoc.env  # what the parsers import to check scenario names

    for name in jaxsoc.env.ENV_MODULES.values():  # the other worlds' modules (a check may make one)
        importlib.import_module(name)
    module = load(tool)
    monkeypatch.setattr(jax, "jit", no_work(jax, "a compile"))
    main = getattr(module, parse or "main")
    if parse:  # a parser that reads sys.argv (bench_env sets XLA flags from it before importing JAX)
        monkeypatch.setattr(sys, "argv", [f"eval/{tool}.py", *argv])
        return refused(lambda _argv: main(), argv, capsys, match)
    return refused(main, argv, capsys, match)


@pytest.mark.parametrize("tool, argv, match", [
    # eval/bench_offpolicy.py: flags of a part its --skip-* leaves out, nothing left, sizes a round refuses
    ("bench_offpolicy", ["--skip-rounds", "--skip-train"], "--skip-rounds and --skip-train together leave nothing"),
    ("bench_offpolicy", ["--skip-rounds", "--reps", "5"], "--reps sets what --skip-rounds leaves out"),
    ("bench_offpolicy", ["--skip-train", "--envs", "7"], "--envs sets what --skip-train leaves out"),
    ("bench_offpolicy", ["--skip-train", "--batch", "64", "--capacity", "32"], "--batch 64 is more than"),
    ("bench_offpolicy", ["--skip-train", "--algos", "dqn", "--capacity", "1000"],
     "the dqn update round (--capacity 1000, --batch 256) cannot run: dqn.buffer_size (1000) is smaller"),
    ("bench_buffers", ["--capacity", "0"], "--capacity: expected a positive integer, got '0'"),
    ("bench_buffers", ["--reps", "0"], "--reps: expected a positive integer, got '0'"),
    ("bench_buffers", ["--add", "10", "--capacity", "5"], "--add 10 is more than --capacity 5"),
    ("bench_matmul", ["--sizes", "0"], "--sizes: expected a positive integer, got '0'"),
    ("bench_matmul", ["--dtypes", "foo"], "--dtypes: invalid choice: 'foo'"),
    ("bench_matmul", ["--repeats", "0"], "--repeats: expected a positive integer"),
    ("bench_offpolicy", ["--algos", "foo"], "--algos: invalid choice: 'foo'"),
    ("bench_offpolicy", ["--algos", "dqn", "dqn"], "--algos names dqn twice"),
    ("bench_offpolicy", ["--reps", "0"], "--reps: expected a positive integer"),
    ("bench_fixes", ["--envs", "0"], "--envs: expected a positive integer, got '0'"),
    ("bench_fixes", ["--fixes", "fix_d99"], "--fixes: invalid choice: 'fix_d99'"),
    ("bench_fixes", ["--fixes", "fix_d2_alert_origin", "fix_d2_alert_origin"], "--fixes names fix_d2_alert_origin twice"),
    ("bench_train", ["--envs", "0"], "--envs: expected a positive integer, got '0'"),
    ("bench_train", ["--scenario", "nope"], "unknown --scenario 'nope'; known: "),
    ("bench_train", ["--scenario", "soc_v2"], "unknown --scenario 'soc_v2' (did you mean 'soc-v2'?)"),
    ("bench_train", ["--rounds-scenario", "nope"], "unknown --rounds-scenario 'nope'"),
    ("bench_train", ["--scenario", "missing.yaml"], "--scenario: scenario file missing.yaml does not exist"),
    ("bench_train", ["--updates", "-1"], "--updates: expected 0 or more"),
    ("bench_train", ["--cases", "mappo", "--scenario", "retail", "--detector", "--skip-rounds"],
     "--detector: scenario 'retail' has no SOC network whose host telemetry a detector reads"),
    ("profile_env", ["--envs", "0"], "--envs: expected a positive integer"),
    ("profile_train", ["--algo", "mappo", "--envs", "0"], "--envs: expected a positive integer"),
])
def test_benchmarks_refuse_bad_input(capsys, monkeypatch, tool, argv, match):
    bench_refused(tool, argv, capsys, monkeypatch, match)


RUNS = "cage4-like, hmarl-soc-v1, soc-strategic, soc-v2, soc-v2-10x100, soc-v2-20x250, soc-v2-redblue"


@pytest.mark.parametrize("argv, line", [
    (["--presets", "retail"], f"eval/profile_env.py: error: preset 'retail' is not one this profiler runs; it runs: "
                              f"{RUNS} (see --help)"),
    (["--presets", "soc-v2", "banking", "soc-hybrid"],
     f"eval/profile_env.py: error: presets 'banking', 'soc-hybrid' are not ones this profiler runs; it runs: "
     f"{RUNS} (see --help)"),
])
def test_profile_env_says_a_world_make_builds_is_not_profiled_rather_than_unknown(capsys, monkeypatch, argv, line):
    # retail, banking and soc-hybrid are scenarios jaxsoc.env.make knows: "unknown preset" was wrong.
    pe = load("profile_env")
    monkeypatch.setattr(pe, "profile", no_work(pe, "the profile"))
    assert refused(pe.main, argv, capsys, "not one") == line


@pytest.mark.parametrize("argv, match", [
    (["--skip-rounds", "--capacity", "5"], "--capacity sets the update rounds, and --skip-rounds skips them"),
    (["--skip-rounds", "--hidden", "64"], "--hidden sets the update rounds, and --skip-rounds skips them"),
    # given as the default is still given: the sentinel is None, not the default's value
    (["--skip-rounds", "--batch", "256"], "--batch sets the update rounds, and --skip-rounds skips them"),
    (["--skip-rounds", "--round-reps", "2"], "--round-reps sets the update rounds, and --skip-rounds skips them"),
    (["--skip-rounds", "--round-repeats", "2"], "--round-repeats sets the update rounds, and --skip-rounds skips"),
    (["--skip-rounds", "--rounds-scenario", "soc-v2"], "--rounds-scenario sets the update rounds, and --skip"),
    (["--cases", "mappo", "hmarl", "--rounds-scenario", "soc-v2"],
     "--rounds-scenario is the scenario of the off-policy cases' rounds, and --cases has none (dqn, iql, vdn, "
     "qmix, sac, maddpg): only the HMARL round runs, always on hmarl-soc-v1"),
    (["--detector-windows", "1000"], "--detector-windows goes with --detector: without it no detector is timed"),
    (["--cases", "hybrid", "red-ppo", "--scenario", "soc-v2", "--no-raw"],
     "--scenario does nothing here: every case brings its own (hybrid, red-ppo), and with --no-raw and no "
     "--detector nothing else runs on it"),
    (["--cases", "mappo", "ippo", "--set", "dqn.utd=0.5"],
     "--set dqn.utd=0.5 applies to none of the cases: each takes env.* and its family's section (ppo)"),
    (["--cases", "dqn", "--set", "seed=3"], "--set seed=3 applies to none of the cases"),
    # a --set the case's config refuses: it was an error row after the other timings, and exit 0
    (["--cases", "mappo", "--skip-rounds", "--no-raw", "--set", "ppo.bogus=1"],
     "case mappo: --set: unknown config key 'ppo.bogus'"),
])
def test_bench_train_refuses_flags_its_mode_ignores(capsys, monkeypatch, argv, match):
    # Imported as the --rounds-scenario check does, before bench_refused replaces jit (optax jits on import).
    monkeypatch.syspath_prepend(str(EVAL))
    import bench_offpolicy  # noqa: F401

    bench_refused("bench_train", argv, capsys, monkeypatch, match)


SOC_ROLES = "coordinator, threat_hunter, alert_triage, response_orchestrator"


@pytest.mark.parametrize("argv, line", [
    # qmix's round acts through the SOC roles: on retail or soc-hybrid it failed as an error row
    # (AttributeError) after the other timings
    (["--cases", "mappo", "qmix", "--rounds-scenario", "retail"],
     f"--rounds-scenario: --algo qmix acts through the SOC team's roles ({SOC_ROLES}) and their action "
     "layouts; scenario 'retail' has other agents (warehouse_0, warehouse_1, warehouse_2, warehouse_3, "
     "warehouse_4): train it with a learner that takes any agents (e.g. mappo or ippo) (see --help)"),
    (["--cases", "dqn", "sac", "--rounds-scenario", "soc-hybrid"],
     f"--rounds-scenario: --algo dqn acts through the SOC team's roles ({SOC_ROLES}) and their action "
     "layouts; scenario 'soc-hybrid' has other agents (segment_0, segment_1, segment_2, segment_3, segment_4, "
     "network): train it with a learner that takes any agents (e.g. mappo or ippo) (see --help)"),
    (["--cases", "sac", "--rounds-scenario", "soc-v2-redblue"],
     "--rounds-scenario: this scenario has a learnable red agent (red_control): train it with --algo red-ppo "
     "or redblue (docs/redblue.md), or the SOC team on soc-v2 (see --help)"),
    # the round's buffer under one rollout of its 1,024 envs: an error row after the timings
    (["--cases", "dqn", "sac", "--capacity", "20000"],
     "the sac update round (--capacity 20000, --batch 256) cannot run: sac.buffer_size (20000) is smaller than "
     "one rollout of all envs (1024 envs x rollout 20 = 20480 transitions) (see --help)"),
    # the rounds take their case's --set (env.* and the family's section): a bad one is refused before timing
    (["--cases", "dqn", "--set", "env.max_steps=0"],
     "the dqn update round (--capacity 200000, --batch 256 --set env.max_steps=0) cannot run: env 'hmarl-soc-v1': "
     "max_steps must be a positive integer, got 0 (see --help)"),
    # the autoencoder trains on minibatches of 256: fewer windows ended in a ValueError after the timings
    (["--cases", "mappo", "--skip-rounds", "--detector", "--detector-windows", "255"],
     "--detector-windows 255 is fewer than one autoencoder minibatch (256 windows) (see --help)"),
])
def test_bench_train_refuses_rounds_and_detector_sizes_that_cannot_run_before_timing(capsys, monkeypatch, argv,
                                                                                      line):
    monkeypatch.syspath_prepend(str(EVAL))
    import bench_offpolicy  # noqa: F401 - imported before bench_refused replaces jit (optax jits on import)
    import jaxsoc.demos.retail  # noqa: F401 - the worlds soc.make imports, likewise
    import jaxsoc.env.hybrid  # noqa: F401

    assert bench_refused("bench_train", argv, capsys, monkeypatch, "error:") == "eval/bench_train.py: error: " + line


def test_bench_train_refuses_a_rounds_world_whose_roles_the_team_cannot_build(capsys, monkeypatch):
    # sac builds its heads from common.role_specs, which refuses soc-hybrid's MultiDiscrete segments
    monkeypatch.syspath_prepend(str(EVAL))
    import bench_offpolicy  # noqa: F401
    import jaxsoc.env.hybrid  # noqa: F401

    line = bench_refused("bench_train", ["--cases", "sac", "--rounds-scenario", "soc-hybrid"], capsys, monkeypatch,
                         "error:")
    assert line.startswith("eval/bench_train.py: error: --rounds-scenario: role 'segment_0' ")


def test_bench_train_takes_a_rounds_world_every_selected_round_acts_in():
    parse = load("bench_train")._parse
    args = parse(["--cases", "mappo", "sac", "maddpg", "--rounds-scenario", "retail"])
    assert (args.rounds_scenario, args.capacity) == ("retail", 200_000)
    args = parse(["--cases", "hybrid", "--scenario", "soc-hybrid", "--detector", "--detector-windows", "256",
                  "--skip-rounds"])
    assert args.detector_windows == 256


def test_bench_train_takes_the_flags_its_mode_uses_and_fills_the_defaults():
    parse = load("bench_train")._parse
    args = parse(["--cases", "mappo", "dqn", "--rounds-scenario", "soc-v2", "--capacity", "5000",
                  "--detector", "--detector-windows", "1000", "--set", "env.max_steps=50", "--set", "ppo.epochs=2"])
    assert (args.rounds_scenario, args.capacity, args.detector_windows) == ("soc-v2", 5000, 1000)
    assert (args.scenario, args.batch, args.hidden, args.round_reps) == ("soc-v2", 256, [256, 256, 256], 20)
    args = parse(["--cases", "hybrid", "--scenario", "soc-hybrid", "--detector", "--skip-rounds"])
    assert (args.scenario, args.detector_windows, args.rounds_scenario) == ("soc-hybrid", 131_072, "hmarl-soc-v1")


@pytest.mark.parametrize("tool, memory, argv, match", [
    # 4096 x 4096 float32: 7 arrays of 64 MiB fit in 1 GiB; 8192 x 8192 do not
    ("bench_matmul", 2**30, ["--sizes", "4096", "8192"], "--sizes 8192: float32 products of 8,192 x 8,192 need "
                                                          "1.8 GiB at once, more than this machine's 1.0 GiB of memory"),
    ("bench_matmul", 8 * 2**30, ["--sizes", "20000", "--dtypes", "bfloat16", "float32"],
     "--sizes 20000: float32 products of 20,000 x 20,000 need 10.4 GiB at once, more than this machine's "
     "8.0 GiB of memory"),
    ("bench_buffers", 2**30, [], "--capacity 200,000: the full buffer, its copy and its work arrays need 1.1 GiB "
                                 "(float32 observations), more than this machine's 1.0 GiB of memory"),
    ("bench_buffers", 2**30, ["--capacity", "1e9", "--obs-dtype", "bfloat16"],
     "--capacity 1,000,000,000: the full buffer, its copy and its work arrays need 2,940.4 GiB (bfloat16"),
])
def test_benchmarks_refuse_arrays_past_the_machines_memory(capsys, monkeypatch, tool, memory, argv, match):
    import jaxsoc.memory

    monkeypatch.setattr(jaxsoc.memory, "machine_bytes", lambda: memory)  # read when the tool is loaded
    bench_refused(tool, argv, capsys, monkeypatch, match)


@pytest.mark.parametrize("tool, memory, argv", [
    ("bench_matmul", 2**20, ["--sizes", "64", "--dtypes", "float32"]),
    ("bench_buffers", 64 * 2**20, ["--capacity", "10000"]),  # 2 x 29.8 MB and the work arrays
])
def test_benchmarks_take_arrays_that_fit(monkeypatch, tool, memory, argv):
    import jax

    import jaxsoc.memory

    monkeypatch.setattr(jaxsoc.memory, "machine_bytes", lambda: memory)
    module = load(tool)
    monkeypatch.setattr(jax, "jit", no_work(jax, "a compile"))
    with pytest.raises(AssertionError, match="reached a compile"):
        module.main(argv)


@pytest.mark.parametrize("argv, match", [
    (["--envs", "0"], "--envs: expected a positive integer, got '0'"),
    (["--repeats", "0"], "--repeats: expected a positive integer, got '0'"),
    (["--presets", "nope"], "preset 'nope' is unknown; it times: cage4-like, hmarl-soc-v1, "),
    (["--presets", "soc-v3"], "preset 'soc-v3' is unknown (did you mean 'soc-v2'"),
    # a scenario make knows whose env this benchmark cannot time (it failed mid-run, AttributeError)
    (["--presets", "retail"], "preset 'retail' is not one this benchmark times; it times: "),
    (["--presets", "soc-hybrid"], "preset 'soc-hybrid' is not one this benchmark times"),
    (["--presets", "missing.yaml"], "--presets: scenario file missing.yaml does not exist"),
    (["--cpu-devices", "-1"], "--cpu-devices: expected 0 or more"),
    # bench() skipped counts a mesh cannot split evenly: an empty table, no message
    (["--cpu-devices", "2", "--envs", "3", "64", "5"],
     "--envs 3 5: not divisible by --cpu-devices 2 (each device steps an equal share); give multiples of 2"),
    (["--cpu-devices", "3"], "--cpu-devices 3: none of the default env counts (1 64 1024 4096 16384) is a "
                             "multiple of it; give --envs"),
])
def test_bench_env_refuses_bad_input(capsys, monkeypatch, argv, match):
    bench_refused("bench_env", argv, capsys, monkeypatch, match, parse="_parse")


def test_bench_env_cuts_its_default_counts_to_what_cpu_devices_can_share(monkeypatch):
    parse = load("bench_env")._parse
    monkeypatch.setattr(sys, "argv", ["eval/bench_env.py", "--cpu-devices", "2"])
    assert parse().envs == [64, 1024, 4096, 16384]
    monkeypatch.setattr(sys, "argv", ["eval/bench_env.py", "--cpu-devices", "2", "--envs", "2", "64"])
    assert parse().envs == [2, 64]
    monkeypatch.setattr(sys, "argv", ["eval/bench_env.py"])
    assert parse().envs == [1, 64, 1024, 4096, 16384]


def test_bench_env_refuses_a_missing_reference_folder(capsys, monkeypatch, tmp_path):
    bench_refused("bench_env", ["--reference", str(tmp_path / "nowhere")], capsys, monkeypatch,
                  "is not a folder (the original HMARL-SOC code/ folder)", parse="_parse")


# --- eval/detector_quality.py, eval/strategic.py, eval/mixer_gain.py (item 50)

@pytest.mark.parametrize("argv, match", [
    (["--stealth-levels", "0,0,0.3"], "--stealth-levels gives 0 twice, in '0,0,0.3'"),
    (["--contamination", "0,0.05,0.05"], "--contamination gives 0.05 twice"),
])
def test_detector_quality_refuses_a_doubled_level(tmp_path, capsys, argv, match):
    out = tmp_path / "dq"
    refused(load("detector_quality").main, argv + ["--out", str(out)], capsys, match)
    assert not out.exists()


def test_detector_quality_keeps_an_earlier_runs_outputs_unless_forced(tmp_path, capsys):
    dq = load("detector_quality")
    out = tmp_path / "dq"
    out.mkdir()
    (out / "table.json").write_text("earlier")
    refused(dq.main, ["--out", str(out)], capsys, f"{out} already holds table.json; --force overwrites them")
    (out / "roc.png").write_text("earlier")
    refused(dq.main, ["--out", str(out), "--no-figures"], capsys, "already holds table.json, roc.png;")
    (out / "table.json").unlink()  # only a figure left: beside a tables-only run's tables it would read as theirs
    refused(dq.main, ["--out", str(out), "--no-figures"], capsys, "already holds roc.png;")
    refused(dq.main, ["--out", str(out)], capsys, "already holds roc.png;")
    # --force gets past the check (to the next refusal here: the scenario)
    refused(dq.main, ["--out", str(out), "--force", "--scenario", "no-such-world"], capsys, "no-such-world")
    assert sorted(p.name for p in out.iterdir()) == ["roc.png"] and (out / "roc.png").read_text() == "earlier"


def test_detector_quality_refuses_an_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    refused(load("detector_quality").main, ["--out", str(blocker)], capsys, f"{blocker} exists and is not a folder")
    refused(load("detector_quality").main, ["--out", str(blocker / "dq")], capsys, f"{blocker} is not a folder")
    assert blocker.read_text() == "keep"


@pytest.mark.parametrize("argv, match", [
    (["--episodes", "0"], "--episodes: expected a positive integer, got '0'"),
    (["--episodes", "1"], "--episodes must be at least 2"),
    (["--search-episodes", "inf"], "--search-episodes: expected an integer, got 'inf'"),
    # more envs at once than memory holds: refused before the work (a RESOURCE_EXHAUSTED traceback)
    (["--search-episodes", "1e12", "--episodes", "2"], "--search-episodes 1,000,000,000,000 x 5 rows needs at least"),
])
def test_strategic_refuses_bad_counts(capsys, argv, match):
    refused(load("strategic").main, argv, capsys, match)


def test_strategic_memory_check_counts_every_row_of_a_call(capsys, monkeypatch):
    """lead_program steps ROWS_PER_CALL rows of --search-episodes envs at once; the check counted
    one row, so a search that could not fit passed it and failed in XLA (audit-strategic #4)."""
    import jax
    import jaxsoc.env as soc
    from jaxsoc import engine
    from jaxsoc.analysis import leads
    from jaxsoc.memory import tree_bytes

    env, p = soc.make("soc-strategic")
    per_env = tree_bytes(jax.eval_shape(env.reset, jax.random.PRNGKey(0), p))
    device = jax.local_devices()[0]
    # room for 1,000 envs x 3 rows: one row fits, the 5 rows of a call do not
    monkeypatch.setattr(engine, "_device_memory", lambda: (device, 3 * 1000 * per_env))
    monkeypatch.setattr(leads, "compare_leads", no_work(leads, "the comparison"))
    refused(load("strategic").main, ["--episodes", "2", "--search-episodes", "1000"], capsys,
            f"--search-episodes 1,000 x {leads.ROWS_PER_CALL} rows needs at least")


def test_strategic_margin_says_apart_whichever_side_informed_is():
    """Intervals apart with informed below the other were printed as OVERLAP (the gap was taken
    as informed's low minus the other's high only)."""
    from types import SimpleNamespace

    def row(name, mean, half):
        return SimpleNamespace(name=name, mean={"return": mean}, interval=lambda m: (mean - half, mean + half))

    line = load("strategic").margin_line
    informed = row("informed", -115.84, 14.34)
    assert line("return", informed, row("best fixed", -22.30, 4.32)) == (
        "return: informed - best fixed = -93.540 (intervals apart by 74.880, informed below)")
    assert line("return", informed, row("idle", -150.0, 5.0)).endswith("(intervals apart by 14.820, informed above)")
    assert line("return", informed, row("close", -110.0, 3.0)).endswith("(intervals OVERLAP)")


def test_strategic_takes_episodes_written_1e3(capsys, monkeypatch):
    """1e3 is the shared integer parser's 1000: parsing passes and the tool goes on to its env."""
    import jaxsoc.env as soc

    made = []
    monkeypatch.setattr(soc, "make", lambda name: made.append(name) or no_work(soc, "the env")())
    with pytest.raises(AssertionError, match="reached the env"):
        load("strategic").main(["--episodes", "1e3", "--search-episodes", "1e3"])
    assert made == ["soc-strategic"]


@pytest.mark.parametrize("argv, match", [
    (["--envs", "0"], "--envs: expected a positive integer, got '0'"),
    (["--steps", "-3"], "--steps: expected a positive integer, got '-3'"),
    (["--steps", "nan"], "--steps: expected an integer, got 'nan'"),
])
def test_mixer_gain_refuses_bad_counts(tmp_path, capsys, argv, match):
    mg = load("mixer_gain")
    with pytest.raises(SystemExit) as exc:
        mg.main([str(tmp_path)] + argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err


def test_guarded_turns_expected_failures_into_one_line_and_a_status(capsys):
    from jaxsoc import cli
    from jaxsoc.analysis.runs import AnalysisError

    def refuse():
        raise AnalysisError("runs/x does not exist")

    assert cli.guarded(refuse, "eval/evaluate.py") == 2
    assert capsys.readouterr().err == "eval/evaluate.py: error: runs/x does not exist\n"

    def closed_pipe():  # `eval/evaluate.py --json | head`: a traceback before
        raise BrokenPipeError(32, "Broken pipe")

    assert cli.guarded(closed_pipe, "eval/evaluate.py") == 1
    assert capsys.readouterr().err == ""
    assert cli.guarded(lambda: 0, "eval/evaluate.py") == 0


def test_the_hmarl_round_is_compared_with_the_reference_only_at_its_sizes(monkeypatch):
    """34 ms is the original round at batch 256 of a 200,000-transition buffer: a ratio at other
    sizes ("9.84x" at batch 16) meant nothing."""
    monkeypatch.syspath_prepend(str(EVAL))
    import bench_offpolicy as bo

    small = bo.hmarl_round(hidden=(16,), batch=16, capacity=2048, reps=1, repeats=1)
    assert small["ratio_to_reference"] is None and small["ms"] > 0
    assert bo.REFERENCE_SIZES == {"batch": 256, "capacity": 200_000}
