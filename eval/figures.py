#!/usr/bin/env python
"""Figures from run folders: learning curves with seed bands, metric bars, per-seed scatter.

    python eval/figures.py runs/ --out figures/
    python eval/figures.py results/hmarl-soc-v1/runs --out figs --protocol paper --window 1
"""
from __future__ import annotations

import argparse
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
Figures already in --out are not overwritten unless --force; every figure is drawn before any is
written, so a run that fails (no checkpoint, no evaluation with --no-evaluate, an empty log)
leaves none behind. --metrics takes the metrics the tables know (eval/table.py) and any other
the runs log.
The HMARL figures (attention maps, K-sweep, ablations) come from eval/reproduce.py or from
jaxsoc.analysis.figures directly (docs/evaluation.md).
"""


FORMATS = ("png", "pdf")  # what jaxsoc.analysis.figures.save writes by default


def build_parser():
    p = cli.Parser(prog="eval/figures.py", description="Draw learning curves, bars and per-seed scatter.",
                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_run_arguments(p, window_help="training episodes per curve point and per paper-protocol value (2000)",
                          metrics_help="metrics (default: return,mttd,mttr,fpr,csr; curves: return,csr,fpr,mttr; "
                          "a world without them, e.g. retail: return and its own metrics)")
    p.add_argument("--out", metavar="DIR", default="figures", help="output folder (figures)")
    p.add_argument("--force", action="store_true", help="overwrite figures already in --out")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # (--window also sets the curves, so here it goes with every protocol)
    window, episodes = cli.check_run_arguments(parser, args)
    evaluate = args.protocol != "paper" and not args.no_evaluate
    problem = cli.folder_problem(args.out)
    if problem:
        parser.error(problem)

    def work() -> int:
        cli.use_agg()
        from jaxsoc.analysis import figures, protocols, runs, tables

        groups = cli.read_methods(args.runs)
        if args.metrics:
            tables.check_metrics(args.metrics, groups)
        sections: dict = {}
        for g in groups:
            env = g.env
            s = g.scenario + ("_" + "_".join(f"{k}-{v}" for k, v in sorted(env.items())) if env else "")
            sections.setdefault(s, []).append(g)
        protos = ("paper", "ours") if args.protocol == "both" else (args.protocol,)
        out = Path(args.out)
        stems = [f"curves_{s}" for s in sections] + [f"{kind}_{s}_{p}" for s in sections for p in protos
                                                      for kind in ("bars", "seeds")]
        existing = [f"{stem}.{fmt}" for stem in stems for fmt in FORMATS if (out / f"{stem}.{fmt}").exists()]
        if existing and not args.force:
            raise runs.AnalysisError(f"{out} already holds {', '.join(existing)} "
                                     "(--force overwrites them, or choose another --out)")
        # A run that cannot be evaluated (its env included) is refused before the first evaluation
        # is run and written into a run folder, and every log is read (curves, paper protocol)
        # before it too.
        if evaluate:
            protocols.check_ours(groups, episodes)
        # Every number is computed and every figure drawn before any is written: a failure leaves
        # no partial set of figures behind.
        curves, drawn = {}, []
        try:
            for s, gs in sections.items():
                # A SOC world's curves, or another world's own metrics (those its runs log).
                names = {k for g in gs for run in g.runs for k in protocols.world_metrics(
                    run, [r for rs in protocols.read_metrics_log(run).values() for r in rs])}
                curves[s], _ = figures.learning_curves(
                    gs, args.metrics or runs.default_metrics(names, ("return", "csr", "fpr", "mttr")), window, title=s)
            results = protocols.results_by_section(sections, protos, window, episodes, evaluate=evaluate,
                                                   metrics=args.metrics)
            for s in sections:  # per section, as before: its curves, then bars and seeds per protocol
                drawn.append((curves.pop(s), f"curves_{s}"))
                for protocol in protos:
                    res = results[s, protocol]
                    metrics = args.metrics or runs.default_metrics({k for r in res for x in r.seeds for k in x.values},
                                                                   runs.TABLE_METRICS)
                    title = f"{s}: {protocol} protocol"
                    if protocol == "ours" and tables.evaluated_policy(res) != "greedy policy":
                        title += f" ({tables.evaluated_policy(res)})"
                    for r in res:  # as the table's notes: how these numbers were made
                        for note in r.notes:
                            print(f"note: {r.label} ({protocol}): {note}", file=sys.stderr)
                    fig, _ = figures.metric_bars(res, metrics, "all" if protocol == "paper" else True, title=title)
                    drawn.append((fig, f"bars_{s}_{protocol}"))
                    fig, _ = figures.seed_scatter(res, metrics, title=title)
                    drawn.append((fig, f"seeds_{s}_{protocol}"))
        except BaseException:
            import matplotlib.pyplot as plt

            for fig in [*curves.values(), *(fig for fig, _ in drawn)]:
                plt.close(fig)
            raise
        written = []
        for fig, stem in drawn:
            written += figures.save(fig, out / stem, FORMATS)
        for path in written:
            print(f"wrote {path}")
        return 0

    return cli.guarded(work, parser.prog)

if __name__ == "__main__":
    sys.exit(main())
