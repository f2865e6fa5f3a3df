#!/usr/bin/env python
"""The demos' evidence (docs/demos.md): a trained run against the scripted heuristics and random,
on the same held-out episodes, as a markdown table and a learning-curve PNG.

    python eval/demos.py runs/demo-retail --baselines base-stock random --out docs/demos-retail --force
    python eval/demos.py runs/demo-banking --baselines least-cost round-robin random --out docs/demos-banking --force

The run is evaluated greedily (`protocols.evaluate_run`, cached in its evaluation.json); each
baseline with the run's scenario, env overrides and seeds (`protocols.evaluate_policy`), so every
policy meets the same episodes (the same held-out stream per seed). The table gives each metric
as the mean over seeds ± the std over seeds of the per-seed means; the PNG plots the run's
training cost per env step (mean ± std over seeds, the metrics.jsonl episodes) with the baselines'
held-out costs as horizontal lines. An OUT.md or OUT.png already there is refused before any
evaluation unless --force (the commands above regenerate the docs' files in place, hence --force).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from jaxsoc import cli  # noqa: E402

# The metrics each demo reports (infos["metrics"] names), first the one the table sorts by.
COLUMNS = {
    "retail": ("cost", "stockout_cost", "transfer_cost", "holding_cost", "fill_rate"),
    "banking": ("cost", "fees", "latency_ms", "sla_violations", "risk_pct", "share_internal", "share_external",
                "share_blockchain"),
}


def per_seed(rec: dict, name: str) -> np.ndarray:
    return np.asarray([s["metrics"][name]["mean"] for s in rec["seeds"].values()], np.float64)


def table(rows: list[tuple[str, dict]], columns) -> str:
    head = "| policy | " + " | ".join(columns) + " |"
    out = [head, "|---|" + "---:|" * len(columns)]
    for name, rec in rows:
        cells = []
        for c in columns:
            v = per_seed(rec, c)
            digits = 1 if abs(v.mean()) >= 10 else 3
            cells.append(f"{v.mean():.{digits}f} ± {v.std():.{digits}f}" if len(v) > 1 else f"{v.mean():.{digits}f}")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def curve(run_dir: str):
    """(env_steps [U], training cost per seed [S, U]) from metrics.jsonl (NaN where no episode ended)."""
    by_seed: dict[int, dict[int, float]] = {}
    steps: dict[int, int] = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            cost = r["metrics"].get("cost")
            by_seed.setdefault(r["seed"], {})[r["update"]] = np.nan if cost is None else cost
            steps[r["update"]] = r["env_steps"]
    updates = sorted(steps)
    return (np.asarray([steps[u] for u in updates]),
            np.asarray([[s.get(u, np.nan) for u in updates] for s in by_seed.values()]))


def main(argv=None) -> int:
    ap = cli.Parser(prog="eval/demos.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a trained run folder on retail or banking")
    ap.add_argument("--baselines", nargs="+", default=["random"], help="scripted policies to compare")
    ap.add_argument("--episodes", type=cli.parse_positive_int, default=500, help="held-out episodes per seed")
    ap.add_argument("--out", help="write OUT.md (the table) and OUT.png (the learning curve)")
    ap.add_argument("--force", action="store_true", help="overwrite an OUT.md or OUT.png already there")
    args = ap.parse_args(argv)
    if args.force and not args.out:
        ap.error("--force goes with --out: without it no file is written")
    if args.out:
        if args.out.endswith(("/", os.sep)) or os.path.isdir(args.out) or not os.path.basename(args.out):
            ap.error(f"--out names the files' stem (OUT.md and OUT.png are written), not a folder: got {args.out!r}; "
                     f"give e.g. {os.path.join(args.out.rstrip('/' + os.sep) or '.', 'demo')}")
        outputs = [args.out + suffix for suffix in (".md", ".png")]
        for path in outputs:
            problem = cli.file_problem(path)
            if problem:
                ap.error(f"--out: {problem}")
        # Refused before the evaluation (minutes), not after it: earlier evidence is kept unless asked.
        existing = [path for path in outputs if os.path.exists(path)]
        if existing and not args.force:
            ap.error(f"--out: {' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''} "
                     "(--force overwrites them, or choose another --out)")
    if len(set(args.baselines)) < len(args.baselines):
        ap.error(f"--baselines names a policy twice: {' '.join(args.baselines)}")
    return cli.guarded(lambda: report(args), ap.prog)


def report(args) -> int:
    from jaxsoc import policy
    from jaxsoc.analysis import protocols, runs

    found = runs.find_runs([args.run])
    if len(found) > 1:
        raise runs.AnalysisError(f"{args.run} holds {len(found)} runs; give one run folder")
    run = found[0]
    # Before any evaluation (which writes evaluation.json into the run): a scenario this tool has
    # no columns for, or a baseline that does not act on it, would fail only after the work.
    if run.scenario not in COLUMNS:
        raise runs.AnalysisError(f"{run.path} was trained on {run.scenario!r}; this tool reports the demos "
                                 f"{', '.join(COLUMNS)} only")
    for name in args.baselines:
        policy.build_scripted(name, run.scenario, run.env)  # AnalysisError names what is wrong
    learned = protocols.evaluate_run(run.path, args.episodes)
    seeds = [int(s) for s in learned["seeds"]]
    # A scripted run (random, base-stock, ...) learned nothing: label it as what it is.
    kind = "scripted" if policy.is_scripted(run.algo) else "trained"
    rows = [(f"{run.algo} ({kind})", learned)]
    for name in args.baselines:
        rows.append((name, protocols.evaluate_policy(name, run.scenario, seeds, args.episodes, run.env)))
    columns = COLUMNS[run.scenario]
    text = (f"{run.algo} on {run.scenario} ({len(seeds)} seeds, {learned['checkpoint_env_steps']:,} env steps "
            f"each), greedy, {args.episodes} held-out episodes per seed; mean ± std over seeds\n\n"
            + table(rows, columns))
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)  # as cli.file_problem allows
        with open(args.out + ".md", "w") as f:
            f.write(text + "\n")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps, costs = curve(str(run.path))
        fig, ax = plt.subplots(figsize=(6, 3.6))
        seen = np.isfinite(costs).any(0)  # updates before the first episode ended have none
        steps, costs = steps[seen], costs[:, seen]
        mean, std = np.nanmean(costs, 0), np.nanstd(costs, 0)
        ax.plot(steps, mean, marker="o" if len(steps) == 1 else None,  # one update: a point, not an invisible line
                label=f"{run.algo} ({'run' if kind == 'scripted' else 'training'} episodes)")
        ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
        for (name, rec), style in zip(rows[1:], ("--", ":", "-.")):
            ax.axhline(per_seed(rec, "cost").mean(), ls=style, color="k", lw=1, label=f"{name} (held-out)")
        ax.set_xlabel("env steps per seed")
        ax.set_ylabel("episode cost ($)")
        ax.set_title(f"{run.scenario}: {run.algo}, {len(seeds)} seeds (mean ± std)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.out + ".png", dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
