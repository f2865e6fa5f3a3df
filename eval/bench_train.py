"""Training throughput of every learner: env-steps/s of whole training updates (rollout + learning)
per algorithm, next to the raw env-steps/s of the same scenario and env count, measured in the
same run; then update rounds per second of the off-policy learners and of the HMARL round.

    python eval/bench_train.py                          # every case, 4096 envs, soc-v2, and the rounds
    python eval/bench_train.py --cases mappo ippo --envs 1024 --scenario hmarl-soc-v1
    python eval/bench_train.py --set ppo.epochs=4       # any config override, for every case
    python eval/bench_train.py --cases dqn sac --skip-rounds
    python eval/bench_train.py --cases hybrid --scenario soc-hybrid --detector --skip-rounds
    python eval/bench_train.py --envs 64 --updates 2 --repeats 1 --cases mappo dqn \
        --round-reps 2 --round-repeats 1 --capacity 20000   # a smoke test, not a measurement

A case is an algorithm name and config overrides (`CASES` below; add a line for a new learner).
Each is timed through exactly what `train/run.py` runs: `jaxsoc.engine.build_program` (the seed
vmap and the jitted `lax.scan` chunk of `update`s), one seed, after a warm-up chunk; the number
is the best of `--repeats` chunks. Hyper-parameters are each algorithm's `configs/<algo>.yaml`
over its family's defaults: on-policy learners use the reference's 2 x 256 networks (plus a
3 x 256 MAPPO case), off-policy ones and HMARL the paper's 3 x 256 networks, batch 256 and their
update-to-data ratio `utd` (update rounds per env transition; the `update` column shows the
rollout length T and utd, and the rounds one update runs). An off-policy row whose timed chunks
ran fewer rounds than that (the buffer was still below `learning_starts`) says so. A case whose
trainer fails to build or run prints an error row; the other cases still run. "raw" steps the
same envs with uniformly random actions (`eval/bench_env.py`'s runner).

Update rounds (skip with `--skip-rounds`) reuse `eval/bench_offpolicy.py`: `hmarl_round` (the
reference's train_fast round at hmarl-soc-v1 sizes: sample `--batch` from a full PER buffer of
`--capacity`, SAC threat hunter + DQN alert triage + MADDPG response orchestrator, priorities;
its ratio to the reference's 34 ms is printed) and `algorithm_round` for each off-policy
algorithm among the selected cases (its own team, networks and buffer type), `--hidden` widths,
on `--rounds-scenario`, with the `--set`s its case takes (its family's section and `env.*`; the
widths, batch and buffer size stay the round's own flags, and the rounds' header says which
`--set` each round took). Each is the best of `--round-repeats` calls of `--round-reps` rounds.

A flag given that the chosen mode would ignore is refused in one line before any timing: the
rounds' flags with `--skip-rounds`, `--rounds-scenario` when no selected case is off-policy (only
the HMARL round runs, on hmarl-soc-v1), `--detector-windows` without `--detector`, `--scenario`
when every case brings its own and neither the raw env nor the detectors are timed, and a `--set`
no case takes (each takes `env.*` and its family's section). "Given" is told apart from a default
by a None default (`UNSET` below holds the defaults that replace it after the checks). So are
sizes and worlds a part cannot run (`refuse_rounds`): an off-policy round whose config its
`--capacity` or `--batch` breaks (the round steps 1,024 envs), a `--rounds-scenario` that is not a
SOC world for the DQN family (dqn, iql, vdn, qmix act through the SOC roles) or whose roles a team
cannot be built for, and `--detector-windows` under one autoencoder minibatch (256).

Machines are noisy and shared: the load average is printed with each row; compare numbers from
one run only.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from jaxsoc import cli  # noqa: E402
from jaxsoc.names import repeated  # noqa: E402
from jaxsoc.host import cpu_description  # noqa: E402

# name -> (algorithm, config overrides as `--set` strings). Hyper-parameters are each algorithm's
# configs/<algo>.yaml (the paper's 2 x 256 ReLU networks for PPO); off-policy learners add theirs.
CASES: dict[str, tuple[str, list[str]]] = {
    "mappo": ("mappo", []),
    "ippo": ("ippo", []),
    "single-drl": ("single-drl", []),
    "iac": ("iac", []),
    "maac": ("maac", []),
    "trpo": ("trpo", []),  # TRPO's natural-gradient actors, each role with its own critic (docs/trpo.md)
    "matrpo": ("matrpo", []),  # TRPO's natural-gradient actors with MAPPO's world critic (docs/trpo.md)
    "matrpo-fisher8": ("matrpo", ["trpo.fisher_stride=8"]),  # the Fisher-vector products on an eighth of the batch
    "coma": ("coma", []),
    # COMA's one joint pass (its default until 2026-12-06, configs/coma-joint.yaml) and 4 critic-only
    # passes over the whole rollout (docs/coma.md "Critic first"), beside the default's 8 over a quarter
    "coma-joint": ("coma", ["coma.critic_epochs=0", "coma.critic_fraction=1.0"]),
    "coma-critic4": ("coma", ["coma.critic_epochs=4", "coma.critic_fraction=1.0"]),
    # the V-trace actor-learner (docs/impala.md): MAPPO's networks and batching, actors lagging by 1
    "impala": ("impala", []),
    # the same MAPPO with three hidden layers of 256 (networks.DEFAULT_HIDDEN), for comparison
    "mappo-3x256": ("mappo", ["ppo.hidden_sizes=[256, 256, 256]"]),
    "mappo-comm": ("mappo-comm", []),  # MAPPO with CommNet messages among the tier-2 roles (docs/comm.md)
    # off-policy learners (docs/offpolicy.md): paper's 3 x 256 networks, batch 256, their utd
    "dqn": ("dqn", []),
    "dqn-reference": ("dqn", ["dqn.utd=0.02"]),  # the reference's ratio, configs/dqn-reference.yaml (the default until 2026-12-06)
    "iql": ("iql", []),
    "vdn": ("vdn", []),
    "qmix": ("qmix", []),
    "sac": ("sac", []),
    "maddpg": ("maddpg", []),
    # the hierarchical team (section `hmarl:`): PPO coordinator, SAC/DQN/MADDPG tier 2, shared PER
    "hmarl": ("hmarl", []),
    # Reptile over the MAPPO team (docs/meta.md): one update = tasks_per_step x inner_updates PPO updates
    "reptile": ("reptile", []),
    # alternating red/blue PPO on the learnable-red preset (docs/redblue.md): one update = a round
    "redblue": ("redblue", ["scenario=soc-v2-redblue"]),
    # red's PPO alone against the fixed scripted SOC team (`redblue.blue`, rule-soar) on the same preset
    "red-ppo": ("red-ppo", ["scenario=soc-v2-redblue"]),
    # seed 000's hybrid team on its own scenario (docs/hybrid.md): QMIX segment agents + MADDPG network agent
    "hybrid": ("hybrid", ["scenario=soc-hybrid"]),
    # the same with the QMIX mixer on the raw world state (before 2026-12-04 evening), for the norm's cost
    "hybrid-raw-state": ("hybrid", ["scenario=soc-hybrid", "hybrid.mixer_state_norm=false"]),
}


# The defaults of the flags that some modes ignore. Their parser default is None (not given), so
# that a flag the chosen mode would ignore can be refused; these values replace None after the checks.
UNSET = {"scenario": "soc-v2", "detector_windows": 131_072, "hidden": [256, 256, 256], "batch": 256,
         "capacity": 200_000, "round_reps": 20, "round_repeats": 5, "rounds_scenario": "hmarl-soc-v1"}
# The minibatch of the timed autoencoder epoch (time_detector): --detector-windows holds at least one.
DETECTOR_BATCH = 256
# The flags of the update rounds (skipped by --skip-rounds), by their dest.
ROUND_FLAGS = {"hidden": "--hidden", "batch": "--batch", "capacity": "--capacity", "round_reps": "--round-reps",
               "round_repeats": "--round-repeats", "rounds_scenario": "--rounds-scenario"}


def _parse(argv=None):
    ap = cli.Parser(prog="eval/bench_train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), metavar="CASE",
                    help=f"cases to time (default: all): {', '.join(CASES)}")
    ap.add_argument("--envs", type=cli.parse_positive_int, default=4096, help="parallel envs (one seed)")
    ap.add_argument("--scenario", help="scenario of the cases (those that bring their own keep it), the raw "
                    "env and the detectors (soc-v2)")
    ap.add_argument("--updates", type=cli.parse_non_negative_int, default=0,
                    help="updates per timed chunk (default: enough for ~2M env steps, at least 2; "
                         "off-policy cases at most enough for ~2,000 update rounds)")
    ap.add_argument("--repeats", type=cli.parse_positive_int, default=2, help="timed chunks per case (best is kept)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="config override applied to every case that takes it (e.g. ppo.epochs=4) and to its off-policy round")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw env measurement")
    ap.add_argument("--detector", action="store_true",
                    help="also time detector training beside the raw env (docs/hybrid.md): telemetry "
                         "windows gathered and trained on per second")
    ap.add_argument("--detector-windows", type=cli.parse_positive_int, metavar="M",
                    help="with --detector: windows of the timed autoencoder epoch and z-score fit (131,072; at least "
                         f"one minibatch, {DETECTOR_BATCH})")
    rounds = ap.add_argument_group("update rounds (eval/bench_offpolicy.py)")
    rounds.add_argument("--skip-rounds", action="store_true", help="skip the update-round measurements")
    rounds.add_argument("--hidden", nargs="+", type=cli.parse_positive_int,
                        help="layer widths of the rounds' networks (default: the paper's 3 x 256)")
    rounds.add_argument("--batch", type=cli.parse_positive_int, help="batch size of a round (256)")
    rounds.add_argument("--capacity", type=cli.parse_positive_int, help="replay buffer size (filled; 200,000)")
    rounds.add_argument("--round-reps", type=cli.parse_positive_int, help="update rounds per timed call (20)")
    rounds.add_argument("--round-repeats", type=cli.parse_positive_int, help="timed calls (best is kept; 5)")
    rounds.add_argument("--rounds-scenario",
                        help="scenario of the per-algorithm rounds, for off-policy cases (hmarl-soc-v1; "
                             "the HMARL round is always hmarl-soc-v1)")
    args = ap.parse_args(argv)
    from jaxsoc import config  # the scenario registry, as jaxsoc.config checks a run's scenario
    from jaxsoc.names import suggest

    known = config.known_scenarios() or []
    for flag, name in (("--scenario", args.scenario), ("--rounds-scenario", args.rounds_scenario)):
        if name is None:  # not given: the default, known
            continue
        if config.is_scenario_file(name) and not os.path.isfile(name):
            ap.error(f"{flag}: scenario file {name} does not exist")
        if not config.is_scenario_file(name) and name not in known:
            ap.error(f"unknown {flag} {name!r}{suggest(name, known)}; known: {', '.join(sorted(known))}")
    twice = repeated(args.cases)
    if twice:
        ap.error(f"--cases names {', '.join(twice)} twice")
    refuse_ignored(ap, args)
    for dest, default in UNSET.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
    if not args.skip_rounds:
        refuse_rounds(ap, args)
    from jaxsoc.config import ConfigError

    for name in args.cases:  # a bad --set was an error row after the other timings, and exit 0
        try:
            case_config(name, args)
        except ConfigError as e:
            ap.error(f"case {name}: {e}")
    return args


def refuse_ignored(ap, args) -> None:
    """`ap.error` for a flag given (not None) that the chosen mode would ignore (module docstring)."""
    from jaxsoc import algos

    if args.skip_rounds:
        for dest, flag in ROUND_FLAGS.items():
            if getattr(args, dest) is not None:
                ap.error(f"{flag} sets the update rounds, and --skip-rounds skips them")
    elif args.rounds_scenario is not None:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from bench_offpolicy import OFFPOLICY  # eval/bench_offpolicy.py: the algorithms it has rounds for

        if not any(CASES[c][0] in OFFPOLICY for c in args.cases):
            ap.error(f"--rounds-scenario is the scenario of the off-policy cases' rounds, and --cases has none "
                     f"({', '.join(OFFPOLICY)}): only the HMARL round runs, always on hmarl-soc-v1")
    if args.detector_windows is not None and not args.detector:
        ap.error("--detector-windows goes with --detector: without it no detector is timed")
    if args.detector:  # the detectors watch a SOC network's hosts; other worlds failed after the timings
        from jaxsoc import detectors as det

        try:
            det.telemetry_world(args.scenario if args.scenario is not None else UNSET["scenario"])
        except ValueError as e:
            ap.error(f"--detector: {e}")
    if args.detector_windows is not None and args.detector_windows < DETECTOR_BATCH:
        # train_autoencoder refuses fewer windows than one minibatch, after the other timings
        ap.error(f"--detector-windows {args.detector_windows} is fewer than one autoencoder minibatch "
                 f"({DETECTOR_BATCH} windows)")
    own = [c for c in args.cases if any(x.startswith("scenario=") for x in CASES[c][1])]
    if args.scenario is not None and len(own) == len(args.cases) and args.no_raw and not args.detector:
        ap.error(f"--scenario does nothing here: every case brings its own ({', '.join(own)}), and with "
                 "--no-raw and no --detector nothing else runs on it")
    families = sorted({algos.family_of(CASES[c][0]) for c in args.cases})
    for s in args.sets:
        if s.split(".")[0] not in families + ["env"]:  # the filter time_case applies
            ap.error(f"--set {s} applies to none of the cases: each takes env.* and its family's section "
                     f"({', '.join(families)})")


# Section keys of an off-policy round that its own flags decide (--hidden, --batch, --capacity).
ROUND_FLAG_KEYS = {"hidden_sizes": "--hidden", "batch_size": "--batch", "buffer_size": "--capacity"}


def round_sets(sets, algo: str) -> tuple[list, list]:
    """`(taken, left)`: the `--set`s an off-policy round of `algo` applies (its family's section
    and `env.*`, as its case does) and those of its section it leaves to the round's own flags."""
    from jaxsoc import algos

    family = algos.family_of(algo)
    mine = [s for s in sets if s.split(".")[0] in (family, "env")]
    left = [s for s in mine if s.split("=")[0] in {f"{family}.{k}" for k in ROUND_FLAG_KEYS}]
    return [s for s in mine if s not in left], left


def refuse_rounds(ap, args) -> None:
    """`ap.error` when an off-policy case's update round cannot be built: its config at the rounds'
    sizes (e.g. a `--capacity` under one rollout of the round's 1,024 envs), or `--rounds-scenario`'s
    world, where the DQN family acts through the SOC team's roles (`common.check_soc_team`, as
    `algos.make_train` checks) and every team is built from `common.role_specs` (no learnable red).
    Found here, not as an error row after the other timings."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_offpolicy as bo  # eval/bench_offpolicy.py

    from jaxsoc import algos
    from jaxsoc.algos import common
    from jaxsoc.config import ConfigError

    selected = list(dict.fromkeys(CASES[c][0] for c in args.cases if CASES[c][0] in bo.OFFPOLICY))
    if not selected:
        return
    for algo in selected:
        taken, _ = round_sets(args.sets, algo)
        try:
            _, env = bo.round_setup(algo, args.hidden, args.batch, args.capacity, args.rounds_scenario, taken)
        except ConfigError as e:
            sets = "".join(f" --set {s}" for s in taken)
            ap.error(f"the {algo} update round (--capacity {args.capacity}, --batch {args.batch}{sets}) cannot run: {e}")
        try:
            if getattr(algos.family_module(algo), "SOC_TEAM", False):
                common.check_soc_team(algo, args.rounds_scenario, env)
            common.role_specs(env)
        except ConfigError as e:
            ap.error(f"--rounds-scenario: {e}")


def _load() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def case_config(name: str, args) -> dict:
    """The resolved config case `name` trains with: its own sets, then the `--set`s of its family's
    section and `env.*` (ConfigError for an unknown key or a value the learner refuses)."""
    from jaxsoc import algos, config as config_lib

    algo, sets = CASES[name]
    family = algos.family_of(algo)
    return config_lib.resolve(
        flags={"algo": algo, "scenario": args.scenario, "num_envs": args.envs, "num_seeds": 1,
               "total_steps": 10**12, "run": {"name": "bench"}},
        sets=sets + [s for s in args.sets if s.split(".")[0] in (family, "env")])


def time_case(name: str, args) -> dict:
    import jax
    import numpy as np

    from jaxsoc import algos, config as config_lib, engine
    import jaxsoc.env as soc

    algo = CASES[name][0]
    family = algos.family_of(algo)
    cfg = case_config(name, args)
    env, env_params = engine.make_env_checked(cfg)
    trainer = algos.make_train(cfg, env, env_params)
    per_update = trainer.env_steps_per_update
    s = cfg[family]
    rounds = None  # off-policy (a `utd` key): update rounds per update
    if "utd" in s:
        from jaxsoc.algos import offpolicy

        rounds = offpolicy.rounds_per_update(cfg, s)
    updates = -(-2_000_000 // per_update)
    if rounds is not None:  # at 4096 envs and utd 0.02, ~2M env steps would be ~40,000 rounds
        updates = min(updates, -(-2_000 // rounds))
    updates = args.updates or max(2, updates)
    program = engine.build_program(trainer, cfg, engine.make_mesh(1), env, env_params)
    state = program.init(engine.seed_keys(cfg["seed"], 1))
    run_chunk = program.chunk(updates)
    chunk = lambda s: run_chunk(s, np.int32(updates))  # noqa: E731 - every chunk runs them all
    t0 = time.perf_counter()
    state, metrics = chunk(state)  # compiles, then runs once (warm-up)
    jax.block_until_ready(state)
    first = time.perf_counter() - t0
    best = float("inf")
    load_before = _load()
    fewest = None  # off-policy: the fewest update rounds run in a timed chunk
    for _ in range(args.repeats):
        done_before = _grad_steps(metrics)
        t0 = time.perf_counter()
        state, metrics = chunk(state)
        jax.block_until_ready(metrics)
        best = min(best, time.perf_counter() - t0)
        if rounds is not None and done_before is not None:
            ran = _grad_steps(metrics) - done_before
            fewest = ran if fewest is None else min(fewest, ran)
    if rounds is not None:
        shape = f"T={s['rollout']} utd={s['utd']:g} ({rounds} round{'s' if rounds != 1 else ''})"
    else:
        shape = f"T={s['rollout']}"
        if family == "ppo":
            shape += f" x{s['epochs']} ep x{s['minibatches']} mb"
    hidden = s.get("hidden_sizes", [])
    if rounds is not None and fewest is not None and fewest < updates * rounds:
        shape += f", only {fewest} of {updates * rounds} rounds timed (learning_starts)"
    row = dict(case=name, algo=algo, envs=args.envs, scenario=cfg["scenario"], shape=shape,
               hidden="x".join(map(str, hidden)) or "-",
               sps=updates * per_update / best, compile_s=max(first - best, 0.0),
               steps=updates * per_update, load=f"{load_before} -> {_load()}")
    print(f"  {name:12s} {row['sps']:>10,.0f} training env-steps/s  ({shape}, hidden {row['hidden']}, "
          f"{row['steps']:,} steps per chunk, compile ~{row['compile_s']:.0f} s, load {row['load']})",
          flush=True)
    return row


def _grad_steps(metrics) -> int | None:
    """Update rounds done so far (off-policy trainers log the running count), from a chunk's
    stacked `[updates, seeds]` metrics; None for trainers without the count."""
    if "grad_steps" not in metrics:
        return None
    return int(metrics["grad_steps"][-1].max())


def try_case(name: str, args) -> dict:
    """`time_case`, or an error row when the case's trainer fails to build or run."""
    algo = CASES[name][0]
    try:
        return time_case(name, args)
    except Exception as e:  # noqa: BLE001 - one broken learner must not stop the benchmark
        error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
        print(f"  {name:12s} ERROR {error}", flush=True)
        return dict(case=name, algo=algo, error=error)


def time_raw(args) -> float:
    import jax
    import numpy as np

    import jaxsoc.env as soc
    from bench_env import make_runner  # eval/bench_env.py

    env, _ = soc.make(args.scenario)
    steps = 100
    run = make_runner(env, args.envs, steps).lower(jax.random.key(0)).compile()
    jax.block_until_ready(run(jax.random.key(1)))
    best = np.inf
    for r in range(max(args.repeats, 3)):
        t0 = time.perf_counter()
        jax.block_until_ready(run(jax.random.key(2 + r)))
        best = min(best, time.perf_counter() - t0)
    sps = args.envs * steps / best
    print(f"  {'raw env':12s} {sps:>10,.0f} env-steps/s (random actions, load {_load()})", flush=True)
    return sps


def time_detector(args, raw) -> list:
    """Detector training throughput on `--scenario`'s world (its SOC world for soc-hybrid), `--envs`
    envs: telemetry windows gathered per second (`gather_telemetry`, one window per host and step,
    the env stepping under no defender) and windows trained on per second (one autoencoder epoch
    of minibatches of 256, and the z-score fit) over `--detector-windows` sampled windows. Each is
    the best of `--repeats` calls after a compiling one."""
    import jax
    import numpy as np

    from jaxsoc import detectors as det

    env, params = det.telemetry_world(args.scenario)  # soc-hybrid: its SOC world's telemetry
    steps, window = 64, 4

    def best(fn):
        jax.block_until_ready(fn(0))  # compiles
        times = []
        for r in range(max(args.repeats, 2)):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(r + 1))
            times.append(time.perf_counter() - t0)
        return min(times)

    gather = lambda r: det.gather_telemetry(jax.random.key(r), env, params, args.envs, steps).telemetry  # noqa: E731
    rows = [("gather telemetry (env under no defender)", args.envs * steps * params.num_hosts / best(gather))]
    stream = det.gather_telemetry(jax.random.key(99), env, params, args.envs, steps)
    windows, _ = det.sample_windows(jax.random.key(98), stream, window, args.detector_windows)
    config = det.AutoencoderConfig(window=window, features=params.telemetry_features, epochs=1,
                                   batch_size=DETECTOR_BATCH)
    train = lambda r: det.train_autoencoder(jax.random.key(r), windows, config)[1]  # noqa: E731
    rows.append((f"autoencoder training (1 epoch, batch {DETECTOR_BATCH})", args.detector_windows / best(train)))
    fit = lambda r: det.fit_zscore(windows + r * 0.0, robust=True).center  # noqa: E731
    rows.append(("z-score fit (median/MAD)", args.detector_windows / best(fit)))
    print(f"\nDetector training on {params.name}'s telemetry, {args.envs} envs, windows of {window} steps, "
          f"load {_load()}:\n\n| detector step | windows/s | raw env-steps/s |\n|---|---:|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} | {'-' if raw is None else f'{raw:,.0f}'} |")
    return rows


def main(argv=None) -> int:
    """Prints the tables; exit status 1 when a case or round failed (its row says why)."""
    args = _parse(argv)
    sys.path.insert(0, os.path.dirname(__file__))
    import jax

    dev = jax.devices()[0]
    print(f"training benchmark: {args.scenario}, {args.envs} envs, 1 seed, on {dev.device_kind} "
          f"({jax.default_backend()}), jax {jax.__version__}, {os.cpu_count()} CPU cores ({cpu_description()}), "
          f"load {_load()}")
    raw = None if args.no_raw else time_raw(args)
    rows = [try_case(name, args) for name in args.cases]
    if raw is not None and len(rows) > 2:
        raw_after = time_raw(args)
        raw = max(raw, raw_after)
    if args.detector:
        time_detector(args, raw)
    print(f"\n| case | algorithm | update | hidden | training env-steps/s | raw env-steps/s | share of raw |"
          "\n|---|---|---|---|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['case']} | {r['algo']} | error: {r['error']} | - | - | - | - |")
            continue
        share = f"{r['sps'] / raw:.1%}" if raw else "-"
        raw_txt = f"{raw:,.0f}" if raw else "-"
        print(f"| {r['case']} | {r['algo']} | {r['shape']} | {r['hidden']} | {r['sps']:,.0f} | {raw_txt} | {share} |")
    failed = any("error" in r for r in rows)
    if not args.skip_rounds:
        failed |= any("error" in r for r in time_rounds(args))
    return 1 if failed else 0


def time_rounds(args) -> list:
    """Update rounds per second: the HMARL round, then each off-policy algorithm among the cases."""
    import bench_offpolicy as bo  # eval/bench_offpolicy.py

    hidden = tuple(args.hidden)
    selected = []
    for name in args.cases:
        algo = CASES[name][0]
        if algo in bo.OFFPOLICY and algo not in selected:
            selected.append(algo)
    print(f"\nUpdate rounds: batch {args.batch}, networks {'x'.join(map(str, hidden))}, full buffer of "
          f"{args.capacity:,} (eval/bench_offpolicy.py; load = 1-min load average before -> after)")
    for algo in selected:  # what of --set reaches each round (the HMARL round is the reference's, fixed)
        taken, left = round_sets(args.sets, algo)
        if taken or left:
            print(f"  {algo}: " + "; ".join(
                ([" ".join(f"--set {t}" for t in taken)] if taken else [])
                + [f"{s.split('=')[0]} is the case's; the round's is "
                   f"{ROUND_FLAG_KEYS[s.split('=')[0].split('.', 1)[1]]}" for s in left]))
    jobs = [("HMARL round", "SAC TH + DQN AT + MADDPG RO", lambda: bo.hmarl_round(
        hidden, args.batch, args.capacity, args.round_reps, args.round_repeats))]
    jobs += [(algo, None, lambda algo=algo: bo.algorithm_round(
        algo, hidden, args.batch, args.capacity, args.rounds_scenario, args.round_reps, args.round_repeats,
        sets=round_sets(args.sets, algo)[0])) for algo in selected]
    rows = []
    for name, roles, job in jobs:
        try:
            r = job()
        except Exception as e:  # noqa: BLE001 - one broken learner must not stop the benchmark
            error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
            print(f"  {name:12s} ERROR {error}", flush=True)
            rows.append(dict(name=name, error=error))
            continue
        r = dict(r, name=name, roles=roles or r.get("roles", "-"))
        ratio = r.get("ratio_to_reference")
        vs = f", {ratio:.2f}x the reference's {bo.REFERENCE_MS:.0f} ms" if ratio is not None else ""
        print(f"  {name:12s} {r['ms']:8.2f} ms/round {r['rounds_per_s']:8.1f} rounds/s{vs}  "
              f"[compile {r['compile_s']:.0f} s, load {r['load'][0]:.1f} -> {r['load'][1]:.1f}]", flush=True)
        rows.append(r)
    print("\n| round | roles | PER | ms/round | rounds/s | speed-up over the reference (34 ms) |"
          "\n|---|---|---|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['name']} | error: {r['error']} | - | - | - | - |")
            continue
        per = "yes" if r.get("per", True) else "no"
        ratio = r.get("ratio_to_reference")
        print(f"| {r['name']} | {r['roles']} | {per} | {r['ms']:.2f} | {r['rounds_per_s']:.1f} | "
              f"{f'{ratio:.2f}x' if ratio is not None else '-'} |")
    return rows


if __name__ == "__main__":
    sys.exit(main())
