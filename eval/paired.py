#!/usr/bin/env python
"""Paired per-seed comparison of two evaluated runs: B - A, seed by seed, with a t interval.

    python eval/evaluate.py runs/A runs/B --episodes 500      # first: greedy, the same held-out episodes
    python eval/paired.py runs/A runs/B                        # markdown table on stdout
    python eval/paired.py runs/A runs/B --metrics return,csr --level 0.9
    python eval/paired.py runs/A,runs/A-s5 runs/B,runs/B-s5    # seeds 0-4 and 5-9 of each, as 10

A side may join several run folders with commas (one config trained on more seeds in separate
runs, e.g. `--seed 0` and `--seed 5` with `--num-seeds 5`): their seeds are combined and must not
repeat, and they must have been evaluated with the same request.

Both runs must have been evaluated (`evaluation.json`) on the same seeds and the same held-out
request (episodes, batch): seed s of A and seed s of B then played the same held-out episodes,
and their difference is a paired sample. One side may act greedily and the other sample its
actions (`eval/evaluate.py --stochastic`: a policy that learned a mixed strategy, e.g. MAPPO's
per-host choices on soc-hybrid, is deployed sampling): the evaluator draws actions from keys of
their own, so the env's initial states and random stream are the same either way, as they are for
two greedy policies; a line above the table then says which side did what. The runs joined on one
side must agree on it too. Per metric: A and B as mean +- population std
over seeds (eval/evaluate.py's convention), each seed's B - A, and the mean difference with its
Student-t interval over seeds (sample std, n - 1 degrees of freedom), and in how many seeds B is
above A.

Default metrics: return, csr, exfiltrated, mttd, mttr, fpr, hosts_compromised on a SOC world; on
another (retail, banking, cage4-like), the return and then the metrics both evaluations hold.
Two evaluations of different scenarios or env overrides (the `scenario` and `env` their requests
record) are refused: their episodes are not the same. `--env-may-differ` pairs two evaluations of
one scenario under different env overrides, such as the points of HMARL-SOC's K sweep (each its own
`directive_period`): their held-out episodes start from the same keys, so seed s of A and seed s
of B still form a pair and the interval over seeds is a paired one, but the worlds differ, so the
episodes are not the same episodes (a line above the table says so). Different scenarios are
refused with it too.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Dict, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxsoc import cli  # noqa: E402
from jaxsoc.names import repeated  # noqa: E402
from jaxsoc.analysis import runs as runs_lib  # noqa: E402  (light: no JAX)
from jaxsoc.analysis.intervals import mean_interval  # noqa: E402

METRICS = ("return", "csr", "exfiltrated", "mttd", "mttr", "fpr", "hosts_compromised")
PERCENT = {"csr", "exfiltrated", "fpr"}


def build_parser():
    p = cli.Parser(prog="eval/paired.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", metavar="RUN_A", help="the baseline run folder (or several, joined by commas)")
    p.add_argument("b", metavar="RUN_B", help="the run(s) compared with it (differences are B - A)")
    p.add_argument("--metrics", type=cli.parse_list, metavar="LIST",
                   help=f"metrics to pair (default: {','.join(METRICS)} on a SOC world; on another, "
                   "return and the metrics both evaluations hold)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals (0.95)")
    p.add_argument("--env-may-differ", action="store_true",
                   help="pair two evaluations of one scenario under different env overrides (e.g. a K "
                   "sweep's directive_period): same held-out keys, not the same world")
    return p


# What makes two evaluations' episodes the same held-out episodes, seed by seed (besides the
# world, `WORLD`, checked first with its own message).
SAME_EPISODES = ("episodes", "batch", "heldout_stream")
# What the runs joined on one side must share besides: how they acted (one side is one method).
SAME_SIDE = SAME_EPISODES + ("greedy",)
# The world an evaluation played: the scenario and env overrides its request records.
WORLD = ("scenario", "env")


def acting(record: dict) -> str:
    """'acted greedily' or 'sampled its actions': how an evaluation's policy chose."""
    return "acted greedily" if record["request"].get("greedy", True) else "sampled its actions"


def world_text(record: dict) -> str:
    """`'retail'`, or `'cage4-like' with env {'max_steps': 50}`: the world of an evaluation record."""
    req = record["request"]
    return repr(req.get("scenario")) + (f" with env {req['env']}" if req.get("env") else "")


def same_world(a: dict, b: dict) -> bool:
    """Whether `a` and `b` were evaluated on the same scenario with the same env overrides."""
    return all(a["request"].get(k) == b["request"].get(k) for k in WORLD)


def check_same_world(a: dict, b: dict, what: str = "paired", env_may_differ: bool = False) -> None:
    """ValueError naming both sides when `a` and `b` were evaluated on different scenarios or env
    overrides (their held-out episodes are then not the same episodes); with `env_may_differ`,
    only different scenarios are refused."""
    if same_world(a, b):
        return
    scenario_differs = a["request"].get("scenario") != b["request"].get("scenario")
    if scenario_differs or not env_may_differ:
        hint = "" if scenario_differs or what != "paired" else (
            " (--env-may-differ pairs them by seed: the same held-out keys in two worlds)")
        raise ValueError(f"{a['run']} was evaluated on {world_text(a)} and {b['run']} on {world_text(b)}: "
                         f"evaluations of different scenarios or env overrides cannot be {what}{hint}")


def default_metrics(a: dict, b: dict) -> tuple:
    """METRICS on a SOC world; otherwise the return and the other metrics both sides hold on every seed."""
    def names(record):
        return set.intersection(*(set(entry["metrics"]) for entry in record["seeds"].values()))
    return runs_lib.default_metrics(names(a) & names(b), METRICS)


def read_evaluation(runs: str) -> dict:
    """One side's evaluation record: a run folder's evaluation.json, or several folders' (`a,b`)
    with their seeds combined (module docstring)."""
    records, paths = [], []
    if any(not run.strip() for run in runs.split(",")):
        raise ValueError(f"{runs!r} has an empty entry: give run folders separated by single commas")
    for run in runs.split(","):
        path = Path(run) / "evaluation.json"
        if not path.is_file():
            raise ValueError(f"{run!r} has no evaluation.json: run eval/evaluate.py {run} first")
        records.append(runs_lib.read_evaluation_record(path, episodes=False))
        paths.append(path)
    joined = {"run": runs, "request": records[0]["request"], "seeds": {}}
    for rec, path in zip(records, paths):
        check_same_world({"run": str(paths[0]), **records[0]}, {**rec, "run": str(path)}, "joined")
        if any(rec["request"].get(k) != joined["request"].get(k) for k in SAME_SIDE):
            raise ValueError(f"{paths[0]} and {path} were not evaluated with the same request "
                             f"({', '.join(SAME_SIDE)}): evaluate them with the same --episodes "
                             "(and --stochastic on both or neither)")
        shared = sorted(set(rec["seeds"]) & set(joined["seeds"]), key=int)
        if shared:
            raise ValueError(f"seed {shared[0]} is in more than one of {runs}: join runs of different seeds")
        joined["seeds"].update(rec["seeds"])
    return joined


def seed_means(record: dict, metric: str) -> Dict[str, float]:
    """`{seed: mean}` of one metric over the run's held-out episodes (seeds where it is defined)."""
    out = {}
    for seed, rec in record["seeds"].items():
        m = rec["metrics"].get(metric)
        if m is None:
            raise ValueError(f"{record['run']}: no metric {metric!r}; known: {', '.join(sorted(rec['metrics']))}")
        if m["mean"] is not None:
            out[seed] = float(m["mean"])
    return out


def table(a: dict, b: dict, metrics: Sequence[str], level: float, env_may_differ: bool = False) -> str:
    """The markdown table of B - A per metric (module docstring); `env_may_differ`: the two may
    have been evaluated under different env overrides of one scenario (`--env-may-differ`)."""
    check_same_world(a, b, env_may_differ=env_may_differ)
    if any(a["request"].get(k) != b["request"].get(k) for k in SAME_EPISODES) or set(a["seeds"]) != set(b["seeds"]):
        raise ValueError("the two runs were not evaluated on the same seeds and held-out episodes "
                         f"(A: seeds {sorted(a['seeds'])}, {a['request']}; B: seeds {sorted(b['seeds'])}, {b['request']})")
    pct = lambda m: 100.0 if m in PERCENT else 1.0  # noqa: E731
    lines = []
    one_world = same_world(a, b)
    if not one_world:
        lines += [f"A played {world_text(a)}, B {world_text(b)}: the same held-out keys in two worlds, "
                  "so each seed's pair shares its keys, not its episodes", ""]
    if a["request"].get("greedy", True) != b["request"].get("greedy", True):
        same = "episodes" if one_world else "keys"
        lines += [f"A {acting(a)}, B {acting(b)} (the same held-out {same}: actions have keys of their own)", ""]
    # the level as given (0.999 -> 99.9%), not rounded to a whole percent (it printed 100%)
    lines += [f"| metric | A | B | B - A per seed | B - A mean [{round(100 * level, 9):g}% t interval] | B > A |",
             "|---|---|---|---|---|---|"]
    for m in metrics:
        sa, sb = seed_means(a, m), seed_means(b, m)
        both = sorted(set(sa) & set(sb), key=int)
        if not both:  # e.g. MTTD of a policy that never detects: a row saying so, the others still paired
            lines.append(f"| {m} | n/a | n/a | no seed defines it on both sides | n/a | n/a |")
            continue
        k = pct(m)
        d = [k * (sb[s] - sa[s]) for s in both]
        ci = mean_interval(d, level)

        def pm(v):
            v = [k * x for x in v]
            mu = sum(v) / len(v)
            return f"{mu:.2f} ± {math.sqrt(sum((x - mu) ** 2 for x in v) / len(v)):.2f}"
        note = "" if len(both) == len(a["seeds"]) else f" ({len(both)} seeds)"
        # One pair has no spread to build an interval from: say so, not "[+nan, +nan]".
        interval = f"[{ci['low']:+.2f}, {ci['high']:+.2f}]" if len(d) > 1 else "[needs 2 seeds]"
        lines.append(f"| {m}{' %' if m in PERCENT else ''}{note} | {pm(list(sa.values()))} | {pm(list(sb.values()))} | "
                     f"{', '.join(f'{x:+.2f}' for x in d)} | {ci['mean']:+.2f} {interval} | "
                     f"{sum(x > 0 for x in d)} of {len(d)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if not 0.0 < args.level < 1.0:
        p.error(f"--level must lie strictly between 0 and 1, got {args.level}")
    if args.metrics is not None and not args.metrics:
        p.error("--metrics names no metric (e.g. --metrics return,csr)")
    twice = repeated(args.metrics or [])
    if twice:
        p.error(f"--metrics names {', '.join(twice)} more than once")
    # A run compared with itself is a difference of zero, seed by seed: surely a mistyped side.
    same = {Path(r).resolve() for r in args.a.split(",") if r} & {Path(r).resolve() for r in args.b.split(",") if r}
    if same:
        p.error(f"{sorted(same)[0]} is on both sides (A and B): compare two different runs")
    try:
        a, b = read_evaluation(args.a), read_evaluation(args.b)
        if args.env_may_differ and same_world(a, b):
            raise ValueError(f"--env-may-differ does nothing here: both sides were evaluated on {world_text(a)}")
        print(table(a, b, args.metrics or default_metrics(a, b), args.level, env_may_differ=args.env_may_differ))
    except ValueError as e:
        p.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main, "eval/paired.py"))
