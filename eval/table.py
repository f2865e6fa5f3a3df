#!/usr/bin/env python
"""Table II from run folders: rows = methods, columns = metrics, mean +- std over seeds.

    python eval/table.py                              # every run under runs/, both protocols
    python eval/table.py results/hmarl-soc-v1/runs --protocol paper --out tables/
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxsoc import cli  # noqa: E402
from jaxsoc.analysis import tables  # noqa: E402  (light: no JAX, for the checks before any work)

EPILOG = """\
Methods are found from the runs' config.yaml (algorithm, scenario, training config); runs that
differ only in their seeds are pooled into one method (a seed in several runs of a method comes
from the newest: the run whose metrics.jsonl was written last, with a note on stderr). One table per
scenario (and env overrides) and protocol:
  paper  per seed, the mean over the last --window (2,000) TRAINING episodes (episode-weighted over
         the newest whole updates of metrics.jsonl holding >= that many), then mean +- population std
         over seeds; on hmarl-soc-v1 the paper's published rows are shown next to ours
  ours   per seed, greedy policy on held-out episodes (eval/evaluate.py; runs not evaluated yet
         are evaluated now with --episodes, unless --no-evaluate)
Cells: mean +- std in display units (FPR, CSR, exfiltration in percent); (83%) = share of
episodes where the metric is defined (v2 MTTD/MTTR); [3/5 seeds] = seeds where it is defined.
Outputs with --out: table2_<scenario>_<protocol>.md/.csv/.tex (CSV in metric units); tables
already there are not overwritten unless --force. --metrics takes the metrics the tables know
(return, mttd, mttr, fpr, csr, exfiltrated, hosts_compromised, length, alert_precision) and any
other the runs log.
"""


def build_parser():
    p = cli.Parser(prog="eval/table.py", description="Build Table II from run folders.", epilog=EPILOG,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_run_arguments(p, window_help="paper protocol: last N training episodes per seed (2000)",
                          metrics_help="columns (default: return,mttd,mttr,fpr,csr; ours adds exfiltrated,hosts_compromised; "
                          "a world without them, e.g. retail: return and its own metrics)")
    p.add_argument("--out", metavar="DIR", help="write md/csv/tex files here")
    p.add_argument("--formats", type=cli.parse_list, metavar="LIST", help="with --out: md,csv,tex (default all three)")
    p.add_argument("--paper", choices=("all", "matched", "none"),
                   help="published rows: all of them, only for our methods, or none "
                   "(default: all for the paper protocol, matched for ours)")
    p.add_argument("--force", action="store_true", help="overwrite tables already in --out")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    window, episodes = cli.check_run_arguments(parser, args)
    if args.protocol == "ours" and args.window is not None:
        parser.error("--window goes with --protocol paper or both: the ours protocol evaluates held-out episodes")
    if args.formats is not None and not args.out:
        parser.error("--formats goes with --out: without it no file is written")
    formats = ["md", "csv", "tex"] if args.formats is None else args.formats
    try:
        tables.check_formats(formats)
    except ValueError as e:
        parser.error(f"--formats: {e}")
    problem = args.out and cli.folder_problem(args.out)
    if problem:
        parser.error(problem)

    def work() -> int:
        from jaxsoc.analysis import protocols, runs

        groups = cli.read_methods(args.runs)
        if args.metrics:
            tables.check_metrics(args.metrics, groups)
        sections: dict = {}
        for g in groups:
            sections.setdefault((g.scenario, json.dumps(g.env, sort_keys=True)), []).append(g)
        protos = ("paper", "ours") if args.protocol == "both" else (args.protocol,)
        stems = {}
        for (scenario, env_key) in sections:
            env = json.loads(env_key)
            suffix = scenario + ("_" + "_".join(f"{k}-{v}" for k, v in sorted(env.items())) if env else "")
            for protocol in protos:
                stems[scenario, env_key, protocol] = f"table2_{suffix}_{protocol}"
        if args.out and not args.force:
            existing = [f"{stem}.{fmt}" for stem in stems.values() for fmt in formats
                        if (Path(args.out) / f"{stem}.{fmt}").exists()]
            if existing:
                raise runs.AnalysisError(f"{args.out} already holds {', '.join(existing)} "
                                         "(--force overwrites them, or choose another --out)")
        # Every run to evaluate is checked, and every paper-protocol table read from the logs,
        # before the first evaluation: a run that fails is refused before the others' evaluations
        # are run and written into their folders.
        if "ours" in protos and not args.no_evaluate:
            protocols.check_ours(groups, episodes)
        results = protocols.results_by_section(sections, protos, window, episodes, evaluate=not args.no_evaluate,
                                               metrics=args.metrics)
        # Every table is built before any is written: a method that fails leaves no file behind.
        built = []
        for (scenario, env_key) in sections:
            for protocol in protos:
                res = results[(scenario, env_key), protocol]
                # A SOC world's columns, or another world's own metrics (those its results hold).
                metrics = args.metrics or runs.default_metrics(
                    {k for r in res for s in r.seeds for k in s.values},
                    runs.TABLE_METRICS if protocol == "paper" else runs.EVAL_METRICS)
                paper = args.paper or ("all" if protocol == "paper" else "matched")
                table = tables.build_table(res, protocol, metrics, paper=paper,
                                           window=window)
                built.append((table, stems[scenario, env_key, protocol]))
        for table, stem in built:
            print(tables.to_markdown(table))
            if args.out:
                for path in tables.write_table(table, args.out, stem, formats):
                    print(f"wrote {path}")
                print()
        return 0

    return cli.guarded(work, parser.prog)


if __name__ == "__main__":
    sys.exit(main())
