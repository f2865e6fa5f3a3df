#!/usr/bin/env python
"""A hyper-parameter grid x seeds, vectorised where the shapes agree (jaxsoc/sweep.py).

    python train/sweep.py --algo mappo --scenario soc-v2 --grid ppo.lr=1e-4,3e-4,1e-3 \\
        --num-seeds 5 --total-steps 5e5 --name lr-sweep

Writes runs/<name>/sweep.json (every point's per-seed held-out return and CSR, the ranking),
sweep.md (the ranked table) and sweep.png (return with 95 % intervals), once every point is done.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxsoc import cli  # noqa: E402


def build_parser():
    import argparse

    p = cli.Parser(prog="train/sweep.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...", required=True,
                   help="numeric values of one config key (repeatable: the grid is their product), "
                   "e.g. --grid ppo.lr=1e-4,3e-4,1e-3 --grid ppo.ent_coef=0,0.01")
    p.add_argument("--algo", help="a registered learner (default configs/base.yaml's)")
    p.add_argument("--scenario", help="env preset, e.g. soc-v2")
    p.add_argument("--num-envs", type=cli.parse_int, metavar="N", help="parallel envs per seed and point")
    p.add_argument("--num-seeds", type=cli.parse_int, metavar="N", help="seeds per point (default 5)")
    p.add_argument("--seed", type=cli.parse_int, metavar="S", help="first seed")
    p.add_argument("--total-steps", type=cli.parse_int, metavar="N", help="env steps per seed and point")
    p.add_argument("--episodes", type=cli.parse_int, metavar="N", default=256,
                   help="held-out episodes per seed and point (default 256)")
    p.add_argument("--stochastic", action="store_true",
                   help="play the held-out episodes sampling each policy's actions instead of greedy ones "
                        "(as eval/evaluate.py --stochastic)")
    p.add_argument("--config", metavar="FILE", help="YAML config composed over configs/base.yaml")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key for every point")
    p.add_argument("--name", required=True, help="output folder name under run.dir (runs/)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    return p


def main(argv=None, make_env=None, scenarios=None) -> int:
    """The command; `make_env`/`scenarios` let a caller sweep its own env (as `engine.run`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from jaxsoc import sweep
    from jaxsoc.config import ConfigError

    flags = {"algo": args.algo, "scenario": args.scenario, "num_envs": args.num_envs,
             "num_seeds": args.num_seeds if args.num_seeds is not None else 5, "seed": args.seed,
             "total_steps": args.total_steps, "run": {"name": args.name}}
    try:
        grid = sweep.parse_grid(args.grid)
        plan = sweep.make_plan(flags, args.sets, grid, args.config, args.episodes, scenarios=scenarios,
                               greedy=not args.stochastic)
        sweep.check_programs(plan, make_env)
        cfg = plan.groups[0].config
        out = Path(cfg["run"]["dir"]) / args.name
        if out.exists() and not args.overwrite:
            raise ConfigError(f"{out} already exists: pass --overwrite to replace it")
        others = sorted(set(os.listdir(out)) - set(sweep.OUTPUT_FILES)) if out.is_dir() else []
        if others:  # a run folder, or anything else: --overwrite replaces a sweep's files only
            raise ConfigError(f"{out} is not a sweep's folder (it holds {', '.join(others[:3])}"
                              f"{', ...' if len(others) > 3 else ''}); refusing to replace it: choose another --name")
        problem = cli.folder_problem(out)  # found now, not after every point has trained
        if problem is not None:
            raise ConfigError(problem)
        points = sum(len(g.points) for g in plan.groups)
        print(f"sweep: {points} point(s) x {len(plan.seeds)} seed(s) of {plan.algo} on {cfg['scenario']} "
              f"in {len(plan.groups)} program(s); vectorised keys: "
              f"{', '.join(plan.groups[0].traced) or 'none'} -> {out}", file=sys.stderr, flush=True)
        rows = sweep.run(plan, out, make_env, on_group=lambda i, g, c, s: print(
            f"program {i + 1}/{len(plan.groups)}: {len(g.points)} point(s) x {len(plan.seeds)} seed(s), "
            f"compiled in {c:.1f} s, trained and evaluated in {s:.1f} s", file=sys.stderr, flush=True),
            progress=True)
    except ConfigError as e:
        cli.print_error(parser.prog, str(e))
        return 2
    best = rows[0]
    print(f"best: {best['point']} return {sweep.mean_text(best['return'])}; "
          f"table {out / sweep.TABLE_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
