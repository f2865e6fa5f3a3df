#!/usr/bin/env python
"""Table II in one command: train every method x seeds on a preset, then tables and figures.

    python eval/reproduce.py --quick                        # minutes on a laptop CPU
    python eval/reproduce.py                                # hmarl-soc-v1, paper seeds, full budgets
    python eval/reproduce.py --preset soc-v2 --methods rule-soar,constant,mappo
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxsoc import cli  # noqa: E402

EPILOG = """\
Methods: Table II's rows by default (Rule-SOAR, Single-DRL, IQL, MAPPO, QMIX, HMARL-SOC and the
constant / no-defender / random baselines); --methods all: every registered algorithm (hours on a
CPU). If the HMARL learner is chosen, its K-sweep, ablations and attention maps are added.
Seeds: 42,123,456,789,1024 on hmarl-soc-v1 (one run each, sharing one compilation), 0-4 elsewhere
(one program); --quick: 42-44.
Budgets: learners 1.5M env steps per seed with configs/<algo>.yaml (else configs/base.yaml),
IQL/VDN/QMIX with dqn.utd=0.002 dqn.rollout=8 (--total-steps, --num-envs and --set override);
scripted baselines 512 envs x the fewest 128-step updates whose last --window episodes start after
every env's first episode limit, however long the episodes (9 updates at a 200-step limit).
--quick: scripted 256 envs x 14 updates, learners 64 envs x 4 updates, 128 evaluation episodes per seed.
Existing complete runs in --out are reused, interrupted ones resumed (so re-running after Ctrl-C
continues); runs with another config are refused unless --overwrite.

Outputs in --out (default results/<preset>[-quick]): runs/, tables/table2_{paper,ours}.{md,csv,tex},
figures/*.{png,pdf}, timings.json and README.md (command, machine, per-method wall-clock, tables).
"""


def parse_methods(text: str) -> list[str]:
    """`cli.parse_list`, neither empty (which would plan every default row) nor naming a method twice."""
    methods = cli.parse_list(text)
    if not methods:
        raise argparse.ArgumentTypeError(f"no methods in {text!r}")
    twice = sorted({m for m in methods if methods.count(m) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"{', '.join(twice)} given twice in {text!r}")
    return methods


# Config keys the plan gives every run, and the flag that sets each.
OWN_KEYS = {"run.dir": "under --out", "run.name": "named by method and seeds", "seed": "--seeds",
            "num_seeds": "--seeds", "algo": "--methods", "scenario": "--preset",
            "total_steps": "--total-steps", "num_envs": "--num-envs"}


def build_parser():
    p = cli.Parser(prog="eval/reproduce.py", description="Train every method x seeds, then Table II and figures.",
                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="hmarl-soc-v1", help="env preset (hmarl-soc-v1)")
    p.add_argument("--quick", action="store_true", help="a small version (a few minutes on a CPU)")
    p.add_argument("--methods", type=parse_methods, metavar="LIST",
                   help="e.g. rule-soar,constant,mappo, or all (default: Table II's rows)")
    p.add_argument("--seeds", type=cli.parse_seeds, metavar="LIST", help="e.g. 42,123,456 or 0-4")
    p.add_argument("--out", metavar="DIR", help="output folder (results/<preset>[-quick])")
    p.add_argument("--total-steps", type=cli.parse_positive_int, metavar="N", help="env steps per seed, every method")
    p.add_argument("--num-envs", type=cli.parse_positive_int, metavar="N", help="parallel envs per seed, every method")
    p.add_argument("--episodes", type=cli.parse_positive_int, metavar="N",
                   help="held-out episodes per seed (1000; quick 128)")
    p.add_argument("--window", type=cli.parse_positive_int, default=2000, metavar="N",
                   help="paper protocol: last N training episodes (2000)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every method (a family section only for its methods)")
    p.add_argument("--no-extras", action="store_true",
                   help="skip the HMARL K-sweep/ablations/attention (refused when hmarl is not planned)")
    p.add_argument("--overwrite", action="store_true", help="retrain runs that exist in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--compile-cache", metavar="DIR",
                   help="persistent XLA cache (default <out>/.xla_cache; 'none' to disable)")
    p.add_argument("--list", action="store_true", help="print the plan and exit")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:  # --list only prints the plan: these would be ignored
        for flag, given in (("--overwrite", args.overwrite), ("--no-progress", args.no_progress),
                            ("--compile-cache", args.compile_cache is not None)):
            if given:
                parser.error(f"{flag} does nothing with --list (it prints the plan and trains nothing)")
    if args.out is not None and cli.folder_problem(args.out):
        parser.error(f"--out: {cli.folder_problem(args.out)}")
    for item in args.sets:  # keys the plan sets per run: a --set would move or rename the runs
        key = str(item).split("=", 1)[0].strip()
        if key in OWN_KEYS:
            parser.error(f"--set {item}: eval/reproduce.py sets {key} for each run itself ({OWN_KEYS[key]})")
    if args.compile_cache not in (None, "none") and cli.folder_problem(args.compile_cache):
        parser.error(f"--compile-cache: {cli.folder_problem(args.compile_cache)}")
    given = argv if argv is not None else sys.argv[1:]
    command = "python eval/reproduce.py " + " ".join(shlex.quote(a) for a in given)

    def work() -> int:
        cli.use_agg()
        from jaxsoc.analysis import execute, plan as plan_lib, report, runs, tables

        plan = plan_lib.make_plan(args.preset, args.methods, quick=args.quick, seeds=args.seeds, out=args.out,
                                  total_steps=args.total_steps, num_envs=args.num_envs, episodes=args.episodes,
                                  window=args.window, sets=args.sets, extras=not args.no_extras)
        # The plan says which methods run (the default rows and 'all' include HMARL-SOC): only
        # then is it known whether --no-extras would be ignored.
        if args.no_extras and not any(m.algo == plan_lib.HMARL for m in plan.methods):
            raise plan_lib.AnalysisError(
                f"--no-extras does nothing here: it skips {runs.display_name(plan_lib.HMARL)}'s K-sweep, "
                f"ablations and attention maps, and {plan_lib.HMARL} is not among the planned methods "
                f"({', '.join(m.algo for m in plan.methods)})")
        problem = cli.folder_problem(plan.out)  # the default out (results/<preset>) too
        if problem:
            raise plan_lib.AnalysisError(problem)
        plan_lib.check_runs(plan)  # every run's config, before --list shows it or execute writes
        if args.list:
            print(f"preset {plan.preset}, seeds {list(plan.seeds)}, {plan.episodes} evaluation episodes, "
                  f"out {plan.out}")
            for m in plan.methods:
                flags = {k: v for k, v in m.flags.items() if k not in ("algo", "scenario")}
                names = ", ".join(r.name for r in m.runs)
                print(f"  {m.label:28s} {m.kind:8s} runs {names}  {flags} {m.sets or ''}")
            for name, why in plan.skipped:
                print(f"  skipped {name}: {why}")
            return 0
        cache = args.compile_cache or str(plan.out / ".xla_cache")
        if cache != "none":
            import jax

            jax.config.update("jax_compilation_cache_dir", str(Path(cache).resolve()))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
        summary = execute.execute(plan, overwrite=args.overwrite, progress=not args.no_progress)
        report.write(summary, command=command)
        print()
        print(report.timings_markdown(summary.timings))
        for table in summary.tables.values():
            print(tables.to_markdown(table))
        print(f"wrote {plan.out}/README.md, tables/, figures/")
        if summary.failures:
            print("failed: " + ", ".join(summary.failures), file=sys.stderr)
            return 1
        return 0

    return cli.guarded(work, parser.prog)


if __name__ == "__main__":
    sys.exit(main())
