"""Few-update adaptation on held-out scenarios: a Reptile meta-init against scratch and plain PPO.

    python eval/meta_adapt.py                                   # soc-v2, small budgets (minutes)
    python eval/meta_adapt.py --scenario configs/scenarios/soc-v2-small.yaml --train-steps 2e6 \\
        --k 10 --seeds 3 --heldout 8 --set meta.tasks='[[stealth, 0.3, 0.95]]'

Three teams, `--seeds` seeds each, all with the `meta:` section's PPO keys (configs over
`jaxsoc.algos.meta.DEFAULTS`, `--set meta.key=value`):
  * meta:    Reptile (`--algo reptile`), `--train-steps` env steps of meta-training per seed;
  * mixture: plain PPO on the task mixture (`meta.TaskMixture`: every env its own task), the same
             env steps: the non-meta team;
  * scratch: PPO's own initialisation, no training.
Then each team adapts with `--k` PPO updates on each of `--heldout` tasks drawn from the same ranges
with a key no training run used (fresh envs, fresh Adam), and is evaluated greedily on `--episodes`
fresh episodes after 0, 1, 5 and k updates. A cell is the mean over (seed, task) pairs of the mean
episode return, ± the 95 % t half-width over those pairs. Prints a markdown table (docs/meta.md).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from jaxsoc import cli  # noqa: E402

def main(argv=None) -> None:
    ap = cli.Parser(prog="eval/meta_adapt.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="soc-v2", help="a preset or a scenario .yaml")
    ap.add_argument("--num-envs", type=cli.parse_positive_int, default=64,
                    help="envs per task (training and adaptation)")
    ap.add_argument("--train-steps", type=cli.parse_env_steps, default=1_000_000,
                    help="env steps of training per seed (meta and mixture); at least one Reptile update "
                         "(tasks_per_step x inner_updates x --num-envs x rollout: 32,768 by default)")
    ap.add_argument("--k", type=cli.parse_positive_int, default=10, help="PPO updates of adaptation")
    ap.add_argument("--seeds", type=cli.parse_positive_int, default=2)
    ap.add_argument("--heldout", type=cli.parse_positive_int, default=8, help="held-out tasks")
    ap.add_argument("--episodes", type=cli.parse_positive_int, default=64, help="greedy evaluation episodes per point")
    ap.add_argument("--seed", type=cli.parse_seed, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (meta.*, env.*)")
    args = ap.parse_args(argv)
    problem = cli.set_keys_problem(args.set, ("meta.", "env."))
    if problem:
        ap.error(problem)

    import jax
    import numpy as np

    from jaxsoc import config as config_lib, engine
    from jaxsoc.algos import meta
    from jaxsoc.analysis.intervals import finite_mean, mean_half_width, mean_interval

    try:
        cfg = config_lib.resolve(flags={"algo": "reptile", "scenario": args.scenario, "num_envs": args.num_envs,
                                        "total_steps": int(args.train_steps), "seed": args.seed}, sets=args.set)
        env, params = engine.make_env_checked(cfg)
        ranges = meta.parse_ranges(cfg["meta"]["tasks"])
        meta.check_ranges(params, ranges)
        trainers = {"meta": meta.make_train(cfg, env, params), "mixture": meta.mixture_trainer(cfg, env, params)}
    except ValueError as e:
        ap.error(str(e))
    # Fewer steps than one Reptile update trained the meta team not at all (0 updates: it was
    # scratch under another name) after minutes of compiling; the mixture's update is shorter.
    s = cfg["meta"]
    one_update = trainers["meta"].env_steps_per_update
    if args.train_steps < one_update:
        ap.error(f"--train-steps {args.train_steps:,} is less than one Reptile update: {s['tasks_per_step']} tasks x "
                 f"{s['inner_updates']} inner updates x {args.num_envs} envs x rollout {s['rollout']} = "
                 f"{one_update:,} env steps per seed, the minimum")
    points = tuple(sorted({0, 1, min(5, args.k), args.k}))
    seeds = jax.random.split(jax.random.key(args.seed), args.seeds)
    print(f"# {params.name}: tasks {[list(r) for r in ranges]}; {args.num_envs} envs per task, "
          f"rollout {s['rollout']}, lr {s['lr']}, Reptile k={s['inner_updates']} M={s['tasks_per_step']} "
          f"eps={s['outer_lr']}{' annealed' if s['anneal_outer_lr'] else ''}")

    teams = {}
    for name, trainer in trainers.items():
        start = time.time()
        state, metrics = jax.jit(jax.vmap(trainer.train))(seeds)
        teams[name] = jax.block_until_ready(state.params)
        ret = np.asarray(metrics["return"])
        tail = max(1, ret.shape[1] // 10)
        last = finite_mean(ret[:, -tail:])  # NaN where no episode ended in those updates
        print(f"# {name}: {trainer.num_updates} updates x {trainer.env_steps_per_update} env steps, "
              f"{time.time() - start:.0f} s; training return (last 10 % of updates) "
              + (f"{last:+.2f}" if np.isfinite(last) else "- (no episode ended in them)"))
    # Scratch: PPO's own initialisation per seed (what meta-training starts from), no training.
    teams["scratch"] = jax.jit(jax.vmap(meta.make_train(cfg, env, params).init))(seeds).params

    # Held-out tasks: the same ranges, a key derived apart from every training key.
    tasks = meta.sample_tasks(jax.random.fold_in(jax.random.key(args.seed), 10_007), params, ranges, args.heldout)
    keys = jax.random.split(jax.random.fold_in(jax.random.key(args.seed), 20_011), args.seeds * args.heldout)
    keys = keys.reshape((args.seeds, args.heldout) + keys.shape[1:])

    def curve(theta, task, key):  # [P, episodes] greedy returns
        return meta.adaptation_curve(cfg, env, theta, task, key, points, args.episodes)["return"]

    # One program for every team: [seeds] parameters x [tasks] held-out tasks.
    adapt_all = jax.jit(jax.vmap(jax.vmap(curve, in_axes=(None, 0, 0)), in_axes=(0, None, 0)))

    rows, per_seed = {}, {}
    for name, theta in teams.items():
        start = time.time()
        ret = adapt_all(theta, tasks, keys)
        ret = np.asarray(ret)  # [seeds, tasks, P, episodes]
        per_pair = np.nanmean(ret, axis=-1).reshape(-1, len(points))  # [seeds * tasks, P]
        half = mean_half_width(per_pair)
        rows[name] = (per_pair.mean(axis=0), half)
        per_seed[name] = np.nanmean(ret, axis=(1, 3))  # [seeds, P]: the seed is the independent unit
        print(f"# adapting {name}: {time.time() - start:.0f} s")

    print()
    print("| init | " + " | ".join(f"return after {p}" for p in points) + " |")
    print("|---|" + "---|" * len(points))
    for name, (mean, half) in rows.items():
        print(f"| {name} | " + " | ".join(f"{m:+.2f} ± {h:.2f}" for m, h in zip(mean, half)) + " |")
    print(f"\n{args.seeds} seeds x {args.heldout} held-out tasks = {args.seeds * args.heldout} pairs per cell; "
          f"{args.episodes} greedy episodes per pair and point")
    # Paired by seed (each init adapted on the same tasks with the same keys): the difference of
    # the seed's means over its tasks, with the 95 % t interval over seeds.
    print("\n| difference, paired by seed | " + " | ".join(f"after {p}" for p in points) + " |")
    print("|---|" + "---|" * len(points))
    for a, b in (("meta", "mixture"), ("meta", "scratch"), ("mixture", "scratch")):
        d = per_seed[a] - per_seed[b]
        cells = []
        for j in range(len(points)):
            ci = mean_interval(d[:, j])
            cells.append(f"{ci['mean']:+.2f} [{ci['low']:+.2f}, {ci['high']:+.2f}]")
        print(f"| {a} - {b} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
