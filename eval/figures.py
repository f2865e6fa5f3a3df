#!/usr/bin/env python
"""Figures from run folders: learning curves with seed bands, metric bars, per-seed scatter.

    python eval/figures.py runs/ --out figures/
    python eval/figures.py results/hmarl-soc-v1/runs --out figs --protocol paper --window 1
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxsoc import cli  # noqa: E402

EPILOG = """\
Per scenario (and env overrides) S, into --out (PNG and PDF each):
  curves_S        per metric, each method's mean over seeds and a +- std band against env steps;
                  each point is the mean over the newest >= --window training episodes up to it
                  (2000: the last point is the paper-protocol table value; 1: raw per-update means)
  bars_S_P        per metric, mean +- std over seeds per method (paper's values as diamonds)
  seeds_S_P       per metric, every seed's value per method (paper's per-seed values as squares)
for each protocol P (paper: last training episodes; ours: greedy held-out evaluation).
Methods as in eval/table.py: runs that differ only in their seeds are pooled into one method (a
seed in several runs of a method comes from the newest: the run whose metrics.jsonl was written
last, with a note on stderr).
The HMARL figures (attention maps, K-sweep, ablations) come from eval/reproduce.py or from
jaxsoc.analysis.figures directly (docs/evaluation.md).
"""


def build_parser():
    p = cli.Parser(prog="eval/figures.py", description="Draw learning curves, bars and per-seed scatter.",
                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_run_arguments(p, window_help="training episodes per curve point and per paper-protocol value (2000)")
    p.add_argument("--out", metavar="DIR", default="figures", help="output folder (figures)")
    p.add_argument("--metrics", type=cli.parse_list, metavar="LIST",
                   help="metrics (default: return,mttd,mttr,fpr,csr; curves: return,csr,fpr,mttr)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> int:
        cli.use_agg()
        from jaxsoc.analysis import figures, protocols, runs

        groups = cli.read_methods(args.runs)
        sections: dict = {}
        for g in groups:
            sections.setdefault((g.scenario, json.dumps(g.env, sort_keys=True)), []).append(g)
        out = Path(args.out)
        written = []
        for (scenario, env_key), gs in sections.items():
            env = json.loads(env_key)
            s = scenario + ("_" + "_".join(f"{k}-{v}" for k, v in sorted(env.items())) if env else "")
            fig, _ = figures.learning_curves(gs, args.metrics or ("return", "csr", "fpr", "mttr"), args.window,
                                             title=s)
            written += figures.save(fig, out / f"curves_{s}")
            for protocol in (("paper", "ours") if args.protocol == "both" else (args.protocol,)):
                if protocol == "paper":
                    res = [protocols.paper_protocol(g, args.window) for g in gs]
                else:
                    res = [protocols.ours_protocol(g, args.episodes, evaluate=not args.no_evaluate) for g in gs]
                metrics = args.metrics or runs.TABLE_METRICS
                title = f"{s}: {protocol} protocol"
                fig, _ = figures.metric_bars(res, metrics, "all" if protocol == "paper" else True, title=title)
                written += figures.save(fig, out / f"bars_{s}_{protocol}")
                fig, _ = figures.seed_scatter(res, metrics, title=title)
                written += figures.save(fig, out / f"seeds_{s}_{protocol}")
        for path in written:
            print(f"wrote {path}")
        return 0

    return cli.guarded(work)


if __name__ == "__main__":
    sys.exit(main())
