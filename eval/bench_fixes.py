"""What each soc-v2 fix costs in time: hmarl-soc-v1, soc-v2 and soc-v2 with one fix off at a time,
compiled side by side in one process and timed in turn.

    python eval/bench_fixes.py                                  # every fix, 4,096 envs, 6 rounds
    python eval/bench_fixes.py --fixes fix_d2_alert_origin fix_d10_resample_network --rounds 12

Each program is `bench_env.py`'s: reset + `steps` steps with uniformly random actions and auto-reset
on, one `lax.scan` over `jax.vmap(env.step)`. A round times every program once, in the same order,
so the machine's slow spells fall on all of them; printed per program: env-steps/s (best and median
round) and the ratio to hmarl-soc-v1 (best to best, median to median). XLA's flop count is a poor
guide to these costs (docs/benchmarks.md): this times them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import jaxsoc.env as soc  # noqa: E402
from jaxsoc import cli  # noqa: E402
from jaxsoc.names import repeated  # noqa: E402
from jaxsoc.host import cpu_description  # noqa: E402
from bench_env import make_runner  # noqa: E402
from jaxsoc.env.params import SWITCHES  # noqa: E402

# Fixes whose switch changes nothing on soc-v2's step (structural ones, or metrics only).
NO_STEP_COST = ("fix_d11_no_padding", "fix_d12_truncation", "fix_d26_detection_stage", "fix_d9_metrics")


def programs(fixes):
    """`[(label, preset, overrides)]`: v1, soc-v2, then soc-v2 without each fix in `fixes`."""
    unknown = [f for f in fixes if f not in SWITCHES]
    if unknown:
        raise SystemExit(f"bench_fixes: unknown fix {unknown[0]!r} (one of {', '.join(SWITCHES)})")
    return ([("hmarl-soc-v1", "hmarl-soc-v1", {}), ("soc-v2", "soc-v2", {})]
            + [(f"soc-v2 without {SWITCHES[f][0]}", "soc-v2", {f: False}) for f in fixes])


def time_in_turn(compiled, rounds):
    """`{label: [seconds per round]}`, every program timed once per round, in order."""
    for c in compiled.values():
        jax.block_until_ready(c(jax.random.key(1)))  # warm up
    seconds = {label: [] for label in compiled}
    for r in range(rounds):
        for label, c in compiled.items():
            t0 = time.perf_counter()
            jax.block_until_ready(c(jax.random.key(2 + r)))
            seconds[label].append(time.perf_counter() - t0)
    return seconds


def main(argv=None):
    ap = cli.Parser(prog="eval/bench_fixes.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixes", nargs="+", default=[f for f in SWITCHES if f not in NO_STEP_COST],
                    choices=list(SWITCHES), metavar="FIX",
                    help="switches to turn off one at a time (names from jaxsoc.env.params.SWITCHES)")
    ap.add_argument("--envs", type=cli.parse_positive_int, default=4096)
    ap.add_argument("--steps", type=cli.parse_positive_int, default=50, help="env steps per timed call")
    ap.add_argument("--rounds", type=cli.parse_positive_int, default=6)
    ap.add_argument("--with-obs", action="store_true", help="compute every observation (bench_env.py --with-obs)")
    args = ap.parse_args(argv)
    twice = repeated(args.fixes)
    if twice:  # one program per fix, labelled by it: a second would replace the first
        ap.error(f"--fixes names {', '.join(twice)} twice")
    plan = programs(args.fixes)
    print(f"compiling {len(plan)} programs ({args.envs} envs x {args.steps} steps, "
          f"{'observations computed' if args.with_obs else 'rewards only'}) on "
          f"{jax.devices()[0].device_kind}, {os.cpu_count()} CPU cores ({cpu_description()})", flush=True)
    compiled = {}
    for label, preset, over in plan:
        env, _ = soc.make(preset, **over)
        compiled[label] = make_runner(env, args.envs, args.steps, with_obs=args.with_obs).lower(
            jax.random.key(0)).compile()
    seconds = time_in_turn(compiled, args.rounds)
    steps = args.envs * args.steps
    v1 = seconds["hmarl-soc-v1"]
    print("\n| program | env-steps/s, best | median | best / v1 | median / v1 |")
    print("|---|---:|---:|---:|---:|")
    for label, s in seconds.items():
        print(f"| {label} | {steps / min(s):,.0f} | {steps / np.median(s):,.0f} | "
              f"{min(v1) / min(s):.3f} | {np.median(v1) / np.median(s):.3f} |")


if __name__ == "__main__":
    main()
