"""Training throughput: env-steps/s of whole training updates (rollout + learning) per algorithm,
next to the raw env-steps/s of the same scenario and env count, measured in the same run.

    python eval/bench_train.py                          # every case, 4096 envs, soc-v2
    python eval/bench_train.py --cases mappo ippo --envs 1024 --scenario hmarl-soc-v1
    python eval/bench_train.py --set ppo.epochs=4       # any config override, for every case

A case is an algorithm name and config overrides (`CASES` below; add a line for a new learner).
Each is timed through exactly what `train/run.py` runs: `jaxsoc.engine.build_program` (the seed
vmap and the jitted `lax.scan` chunk of `update`s), one seed, after a warm-up chunk; the number
is the best of `--repeats` chunks. "raw" steps the same envs with uniformly random actions
(`eval/bench_env.py`'s runner). Machines are noisy and shared: the load average is printed with
each row; compare numbers from one run only.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

# name -> (algorithm, config overrides as `--set` strings). Hyper-parameters are each algorithm's
# configs/<algo>.yaml (the paper's 2 x 256 ReLU networks for PPO); off-policy learners add theirs.
CASES: dict[str, tuple[str, list[str]]] = {
    "mappo": ("mappo", []),
    "ippo": ("ippo", []),
    "single-drl": ("single-drl", []),
    "iac": ("iac", []),
    "maac": ("maac", []),
    # the same MAPPO with three hidden layers of 256 (networks.DEFAULT_HIDDEN), for comparison
    "mappo-3x256": ("mappo", ["ppo.hidden_sizes=[256, 256, 256]"]),
}


def _parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), metavar="CASE",
                    help=f"cases to time (default: all): {', '.join(CASES)}")
    ap.add_argument("--envs", type=int, default=4096, help="parallel envs (one seed)")
    ap.add_argument("--scenario", default="soc-v2")
    ap.add_argument("--updates", type=int, default=0,
                    help="updates per timed chunk (default: enough for ~2M env steps, at least 2)")
    ap.add_argument("--repeats", type=int, default=2, help="timed chunks per case (best is kept)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="config override applied to every case (e.g. ppo.epochs=4)")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw env measurement")
    return ap.parse_args(argv)


def _load() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def time_case(name: str, args) -> dict:
    import jax

    from jaxsoc import algos, config as config_lib, engine
    import jaxsoc.env as soc

    algo, sets = CASES[name]
    family = algos.family_of(algo)
    cfg = config_lib.resolve(
        flags={"algo": algo, "scenario": args.scenario, "num_envs": args.envs, "num_seeds": 1,
               "total_steps": 10**12, "run": {"name": "bench"}},
        sets=sets + [s for s in args.sets if s.split(".")[0] in (family, "env")])
    env, env_params = soc.make(cfg["scenario"], **cfg["env"])
    trainer = algos.make_train(cfg, env, env_params)
    per_update = trainer.env_steps_per_update
    updates = args.updates or max(2, -(-2_000_000 // per_update))
    program = engine.build_program(trainer, cfg, engine.make_mesh(1), env, env_params)
    state = program.init(engine.seed_keys(cfg["seed"], 1))
    chunk = program.chunk(updates)
    t0 = time.perf_counter()
    state, _ = chunk(state)  # compiles, then runs once (warm-up)
    jax.block_until_ready(state)
    first = time.perf_counter() - t0
    best = float("inf")
    load_before = _load()
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        state, metrics = chunk(state)
        jax.block_until_ready(metrics)
        best = min(best, time.perf_counter() - t0)
    s = cfg[family]
    shape = f"T={s['rollout']}"
    if family == "ppo":
        shape += f" x{s['epochs']} ep x{s['minibatches']} mb"
    row = dict(case=name, algo=algo, envs=args.envs, scenario=args.scenario, shape=shape,
               hidden="x".join(map(str, s.get("hidden_sizes", []))) or "-",
               sps=updates * per_update / best, compile_s=max(first - best, 0.0),
               steps=updates * per_update, load=f"{load_before} -> {_load()}")
    print(f"  {name:12s} {row['sps']:>10,.0f} training env-steps/s  ({shape}, hidden {row['hidden']}, "
          f"{row['steps']:,} steps per chunk, compile ~{row['compile_s']:.0f} s, load {row['load']})", flush=True)
    return row


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


def main(argv=None) -> None:
    args = _parse(argv)
    sys.path.insert(0, os.path.dirname(__file__))
    import jax

    dev = jax.devices()[0]
    print(f"training benchmark: {args.scenario}, {args.envs} envs, 1 seed, on {dev.device_kind} "
          f"({jax.default_backend()}), jax {jax.__version__}, {os.cpu_count()} CPU cores, load {_load()}")
    raw = None if args.no_raw else time_raw(args)
    rows = [time_case(name, args) for name in args.cases]
    if raw is not None and len(rows) > 2:
        raw_after = time_raw(args)
        raw = max(raw, raw_after)
    print(f"\n| case | algorithm | update | hidden | training env-steps/s | raw env-steps/s | share of raw |"
          "\n|---|---|---|---|---:|---:|---:|")
    for r in rows:
        share = f"{r['sps'] / raw:.1%}" if raw else "-"
        raw_txt = f"{raw:,.0f}" if raw else "-"
        print(f"| {r['case']} | {r['algo']} | {r['shape']} | {r['hidden']} | {r['sps']:,.0f} | {raw_txt} | {share} |")


if __name__ == "__main__":
    main()
