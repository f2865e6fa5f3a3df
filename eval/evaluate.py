#!/usr/bin/env python
"""Greedy evaluation of trained (or scripted) policies on held-out episodes.

    python eval/evaluate.py runs/<name>                      # newest checkpoint, 1000 episodes per seed
    python eval/evaluate.py runs/a runs/b --episodes 256 --update 300
    python eval/evaluate.py --algo rule-soar --scenario hmarl-soc-v1 --seeds 42,123,456,789,1024
    python eval/evaluate.py --algo detector-alone --scenario soc-hybrid --seeds 0-9 --episodes 500 \
        --out runs/detector-alone          # then: eval/paired.py runs/detector-alone runs/<name>
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxsoc import cli  # noqa: E402  (light: no JAX import)

EPILOG = """\
What it does: rebuilds the run's policy from its newest checkpoint (or --update), runs it with
greedy actions on held-out episodes (a key stream that neither training nor the engine's periodic
evaluation uses; the same episodes for every method with the same seed numbers), one batch of
parallel envs per seed, each env's first episode counted, and prints per seed and mean +- std
over seeds (population std, as the paper): reward (episode return), MTTD, MTTR, FPR, CSR,
exfiltration rate, hosts compromised (a world without these, e.g. retail, banking or cage4-like:
the return and then its own metrics, as evaluation.json holds them). Metrics follow the
scenario's definitions (v1: as the paper; v2: NaN-undefined MTTD/MTTR are skipped and counted,
shown as n=...).

A run folder is evaluated on the env and seeds it was trained with: --set and --seeds apply to
--algo only and are refused with run folders.

Writes <run>/evaluation.json (per-seed means, stds, counts) and <run>/evaluation.npz
(per-episode values); an up-to-date evaluation is reused unless --force. Scripted policies
(random, constant, no-defender, rule-soar) need no checkpoint: evaluate a run folder of theirs,
or none at all with --algo/--scenario, and --out DIR writes that evaluation's two files into DIR
(made if missing; an existing evaluation there is replaced only with --force) to pair runs with it
(eval/paired.py DIR runs/<name>: the same seeds and --episodes play the same held-out episodes).
"""


def build_parser():
    p = cli.Parser(prog="eval/evaluate.py", description="Evaluate policies greedily on held-out episodes.",
                   epilog=EPILOG, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", metavar="RUN_DIR",
                   help="run folders (runs/<name>), or folders holding them")
    p.add_argument("--episodes", type=cli.parse_positive_int, default=1000, metavar="N",
                   help="episodes per seed (1000)")
    p.add_argument("--update", type=cli.parse_non_negative_int, metavar="U",
                   help="checkpoint to load (default: newest); learners' run folders only")
    p.add_argument("--batch", type=cli.parse_positive_int, metavar="B",
                   help="parallel envs per batch (default: all episodes at once); results depend on it")
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of greedy ones")
    p.add_argument("--algo", help="a scripted policy to evaluate without a run folder (with --scenario)")
    p.add_argument("--scenario", help="with --algo: the env preset; with a scripted run: evaluate it on this "
                   "scenario instead (learners are refused)")
    p.add_argument("--seeds", type=cli.parse_seeds, metavar="LIST",
                   help="with --algo: seeds, e.g. 42,123,456 or 0-4 (default 0); a run folder's "
                   "seeds are its own")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="env.KEY=VALUE",
                   help="with --algo: env overrides, e.g. --set env.hosts_per_segment=8; refused with "
                   "run folders (a run is evaluated on the env it was trained on)")
    p.add_argument("--force", action="store_true", help="re-evaluate even if evaluation.json is up to date")
    p.add_argument("--no-write", action="store_true", help="print only; write nothing into the run folder")
    p.add_argument("--json", action="store_true", help="print the evaluation records as JSON instead of tables")
    p.add_argument("--out", metavar="DIR", help="with --algo: write evaluation.json/.npz into DIR (for eval/paired.py)")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.runs) == bool(args.algo):
        parser.error("give run folders, or --algo and --scenario (not both)")
    if args.algo and not args.scenario:
        parser.error("--algo needs --scenario")
    if args.out is not None:
        out = Path(args.out)
        if not args.algo:
            parser.error("--out applies with --algo: a run folder's evaluation is written into the run folder")
        if args.no_write:
            parser.error("--out and --no-write contradict each other: give one")
        problem = cli.folder_problem(out)
        if problem is not None:
            parser.error(f"--out: {problem}")
        if (out / "evaluation.json").exists() and not args.force:
            parser.error(f"{out / 'evaluation.json'} exists: --force replaces it, or choose another --out")
    if args.algo and args.update is not None:
        parser.error("--update applies to a learner's run folder: --algo evaluates a scripted "
                     "policy, which reads no checkpoint")
    if args.runs and (args.sets or args.seeds):
        # A run's policy was trained on its own env and seeds; silently ignoring the flag would
        # report numbers the user did not ask for.
        flag = "--set" if args.sets else "--seeds"
        parser.error(f"{flag} only applies with --algo: a run folder is evaluated on its own "
                     "env and seeds (a scripted run may change scenario with --scenario)")

    def work() -> int:
        from jaxsoc import config as config_lib
        from jaxsoc.analysis import protocols, runs, tables
        from jaxsoc.analysis.runs import AnalysisError

        records = []
        if args.algo:
            env = config_lib.parse_sets(args.sets)
            if set(env) - {"env"}:
                raise AnalysisError("--set only takes env.* overrides here")
            rec = protocols.evaluate_policy(args.algo, args.scenario, args.seeds or (0,), args.episodes,
                                            env.get("env", {}), not args.stochastic, args.batch)
            head = f"{runs.display_name(args.algo)} on {args.scenario}"
            if args.out is not None:
                Path(args.out).mkdir(parents=True, exist_ok=True)
                protocols.write_evaluation(args.out, rec, rec["per_episode"])
                head += f" (written to {Path(args.out) / protocols.EVALUATION_FILE})"
            records.append((head, args.scenario, env.get("env", {}), rec))
        else:
            found = runs.find_runs(args.runs)  # run folders, or folders holding them
            for run in found:  # every run refused now, not after the ones before it are evaluated
                protocols.check_evaluation(run.path, update=args.update, scenario=args.scenario, episodes=args.episodes,
                                           greedy=not args.stochastic, batch=args.batch, reuse=not args.force)
            evaluated = []
            for run in found:
                # Written after every run is evaluated: a checkpoint found damaged only when its
                # arrays are read (the checks above read metadata) leaves no folder half done.
                rec = protocols.evaluate_run(run.path, args.episodes, update=args.update, greedy=not args.stochastic,
                                             batch=args.batch, scenario=args.scenario, write=False,
                                             reuse=not args.force)
                evaluated.append((run, rec))
            if not args.no_write:
                protocols.write_evaluations([(run.path, rec) for run, rec in evaluated])
            for run, rec in evaluated:
                where = args.scenario or run.scenario
                ck = rec.get("checkpoint_update")
                head = f"{run.path}: {runs.display_name(run.algo)} on {where}" + (
                    f", checkpoint {ck}" if ck is not None else " (scripted, no checkpoint needed)")
                if rec.get("reused"):
                    head += " (cached evaluation.json; --force to redo)"
                records.append((head, where, run.env, rec))
        for head, scenario, env, rec in records:
            if args.json:
                print(json.dumps({k: v for k, v in rec.items() if k != "per_episode"}, indent=1))
                continue
            # A SOC world's columns, or another world's own metrics (retail, banking, cage4-like).
            metrics = runs.default_metrics({k for entry in rec["seeds"].values() for k in entry["metrics"]})
            result = protocols.result_from_evaluation(rec, head, scenario, env, metrics)
            mode = "greedy" if not args.stochastic else "stochastic"
            print(f"\n{head}\n{mode}, {args.episodes} held-out episodes per seed, {rec['seconds']:.1f} s\n")
            print(tables.per_seed_markdown(result, metrics))
        return 0

    return cli.guarded(work, parser.prog)


if __name__ == "__main__":
    sys.exit(main())
