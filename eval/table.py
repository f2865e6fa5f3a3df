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

EPILOG = """\
Methods are found from the runs' config.yaml (algorithm, scenario, training config); runs that
differ only in their seeds are pooled into one method (a seed in several runs of a method comes
from the newest: the run whose metrics.jsonl was written last, with a note on stderr). One table per
scenario (and env overrides) and protocol:
  paper  per seed, the mean over the last 2,000 TRAINING episodes (episode-weighted over the newest
         whole updates of metrics.jsonl holding >= 2,000 episodes), then mean +- population std
         over seeds; on hmarl-soc-v1 the paper's published rows are shown next to ours
  ours   per seed, greedy policy on held-out episodes (eval/evaluate.py; runs not evaluated yet
         are evaluated now with --episodes, unless --no-evaluate)
Cells: mean +- std in display units (FPR, CSR, exfiltration in percent); (83%) = share of
episodes where the metric is defined (v2 MTTD/MTTR); [3/5 seeds] = seeds where it is defined.
Outputs with --out: table2_<scenario>_<protocol>.md/.csv/.tex (CSV in metric units).
"""


def build_parser():
    p = cli.Parser(prog="eval/table.py", description="Build Table II from run folders.", epilog=EPILOG,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_run_arguments(p, window_help="paper protocol: last N training episodes per seed (2000)")
    p.add_argument("--out", metavar="DIR", help="write md/csv/tex files here")
    p.add_argument("--formats", type=cli.parse_list, default=["md", "csv", "tex"], metavar="LIST",
                   help="md,csv,tex (default all three)")
    p.add_argument("--metrics", type=cli.parse_list, metavar="LIST",
                   help="columns (default: return,mttd,mttr,fpr,csr; ours adds exfiltrated,hosts_compromised)")
    p.add_argument("--paper", choices=("all", "matched", "none"),
                   help="published rows: all of them, only for our methods, or none "
                   "(default: all for the paper protocol, matched for ours)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> int:
        from jaxsoc.analysis import protocols, runs, tables

        groups = cli.read_methods(args.runs)
        sections: dict = {}
        for g in groups:
            sections.setdefault((g.scenario, json.dumps(g.env, sort_keys=True)), []).append(g)
        protos = ("paper", "ours") if args.protocol == "both" else (args.protocol,)
        for (scenario, env_key), gs in sections.items():
            env = json.loads(env_key)
            suffix = scenario + ("_" + "_".join(f"{k}-{v}" for k, v in sorted(env.items())) if env else "")
            for protocol in protos:
                if protocol == "paper":
                    results = [protocols.paper_protocol(g, args.window) for g in gs]
                    metrics = args.metrics or runs.TABLE_METRICS
                else:
                    results = [protocols.ours_protocol(g, args.episodes, evaluate=not args.no_evaluate)
                               for g in gs]
                    metrics = args.metrics or runs.EVAL_METRICS
                paper = args.paper or ("all" if protocol == "paper" else "matched")
                table = tables.build_table(results, protocol, metrics, paper=paper)
                print(tables.to_markdown(table))
                if args.out:
                    for path in tables.write_table(table, args.out, f"table2_{suffix}_{protocol}", args.formats):
                        print(f"wrote {path}")
                    print()
        return 0

    return cli.guarded(work)


if __name__ == "__main__":
    sys.exit(main())
