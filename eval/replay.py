#!/usr/bin/env python
"""Watch a policy defend: greedy episodes as a JSON trace, an animation and a one-page summary.

    python eval/replay.py runs/<name>                          # the run's first seed, newest checkpoint
    python eval/replay.py runs/<name> --seed 1 --episodes 4 --animate 2
    python eval/replay.py --algo rule-soar --scenario soc-v2   # a scripted policy, no run needed
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxsoc import cli  # noqa: E402  (light: no JAX import)

EPILOG = """\
What it writes (into --out, default RUN_DIR/replay, or replays/<algo>-<scenario>-seed<S> with --algo):
  trace.json       every step of every episode: each host's status per segment (clean, compromised
                   at stage 1-4, detected, isolated), the alert queue, the directive in force, each
                   role's action, the reward and its weighted terms, the coordinator's attention
                   where the learner has one (hmarl), and each episode's outcome and metrics
  episode_<i>.gif  one frame per step of the first --animate episodes (.mp4 where ffmpeg exists)
  summary.png      episode 0's timeline, last host map, directive, hunting and attention, and a
                   line per episode

The episodes come from a key stream of their own for the seed (jaxsoc/replay/trace.py). Learners act
greedily unless --stochastic; a run's policy acts on the scenario it was trained on.
"""


FPS_RANGE = (0.01, 100.0)  # --fps: 100 s to 10 ms a frame


def build_parser():
    p = cli.Parser(prog="eval/replay.py", description="Roll out a policy's episodes and draw them.",
                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", metavar="RUN_DIR", help="a run folder (runs/<name>)")
    p.add_argument("--algo", help="a scripted policy to replay without a run folder (with --scenario)")
    p.add_argument("--scenario", help="with --algo: the env preset or scenario YAML")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="env.KEY=VALUE",
                   help="with --algo: env overrides, e.g. --set env.hosts_per_segment=8")
    p.add_argument("--seed", type=cli.parse_seed, metavar="S",
                   help="with a run: the trained seed to load (default: its first); the episodes' key stream")
    p.add_argument("--update", type=cli.parse_int, metavar="U",
                   help="with a learner's run: the checkpoint (default: newest)")
    p.add_argument("--episodes", type=cli.parse_positive_int, default=1, metavar="N", help="episodes to roll out (1)")
    p.add_argument("--animate", type=cli.parse_non_negative_int, default=1, metavar="K",
                   help="animate the first K episodes (1; 0: none)")
    p.add_argument("--stochastic", action="store_true",
                   help="with a learner's run: sample actions instead of greedy ones")
    # None: not given, so that a flag the animation would ignore (--animate 0) can be refused
    p.add_argument("--fps", type=cli.parse_positive_float, help="animation frames (steps) per second (4)")
    p.add_argument("--format", choices=("auto", "gif", "mp4"),
                   help="animation format; auto (default): mp4 where ffmpeg exists, else gif")
    p.add_argument("--out", metavar="DIR", help="output folder (see below)")
    p.add_argument("--force", action="store_true", help="overwrite the files of an earlier replay in --out")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.run) == bool(args.algo):
        parser.error("give a run folder, or --algo and --scenario (not both)")
    if args.algo and not args.scenario:
        parser.error("--algo needs --scenario")
    if args.run and (args.scenario or args.sets):
        parser.error("--scenario and --set go with --algo; a run acts on the scenario it was trained on")
    if args.animate > args.episodes:
        parser.error(f"--animate {args.animate} is more than --episodes {args.episodes}")
    if args.algo and args.update is not None:
        parser.error("--update goes with a run folder: a scripted policy has no checkpoint")
    if args.algo and args.stochastic:
        parser.error("--stochastic goes with a learner's run: a scripted policy acts as it always does")
    for flag, value in (("--format", args.format), ("--fps", args.fps)):
        if value is not None and not args.animate:
            parser.error(f"{flag} sets the animation, and --animate 0 draws none")
    args.format = args.format or "auto"
    args.fps = args.fps or 4.0
    # A GIF frame lasts a whole number of centiseconds below 655.36 s: 0.01 fps (100 s a frame) to
    # 100 fps (10 ms) hold in both formats; beyond, PIL failed after trace.json was written.
    if not FPS_RANGE[0] <= args.fps <= FPS_RANGE[1]:
        parser.error(f"--fps must lie in [{FPS_RANGE[0]:g}, {FPS_RANGE[1]:g}] frames per second, got {args.fps:g}")
    if args.run and not Path(args.run).is_dir():  # before --out, which defaults to a folder inside it
        parser.error(f"{args.run} does not exist" if not Path(args.run).exists() else f"{args.run} is not a run folder")
    out = output_folder(args)
    problem = cli.folder_problem(out)
    if problem:
        parser.error(problem)

    def work() -> int:
        from jaxsoc.replay import animate

        fmt = animate.pick_format(args.format)
        if args.animate and not animate.can_write(fmt):
            raise cli_error("--format mp4 needs ffmpeg on PATH (use --format gif)")
        # Everything that can be refused is refused before anything is written.
        outputs = [out / "trace.json", out / "summary.png"] + [out / f"episode_{e}.{fmt}" for e in range(args.animate)]
        existing = [p.name for p in outputs if p.exists()]
        if existing and not args.force:
            raise cli_error(f"{out} already holds {', '.join(existing)} of an earlier replay "
                            "(--force overwrites them, or choose another --out)")
        policy, seed = resolve(args)
        cli.use_agg()
        import json

        import matplotlib.pyplot as plt

        from jaxsoc import run_log
        from jaxsoc.replay import summary, trace

        record = trace.record(policy, seed, args.episodes)
        if args.force:  # what --force replaces is the earlier replay: its other episodes go too
            for stale in earlier_animations(out):
                if stale not in outputs:
                    stale.unlink()
        out.mkdir(parents=True, exist_ok=True)
        (out / "trace.json").write_text(json.dumps(run_log.json_safe(record), allow_nan=False) + "\n")
        written = [out / "trace.json"]
        for e in range(args.animate):
            written.append(animate.write_animation(record, e, out / f"episode_{e}", fps=args.fps, fmt=args.format))
        fig = summary.draw_summary(record)
        fig.savefig(out / "summary.png", dpi=100)
        plt.close(fig)
        written.append(out / "summary.png")
        for ep in record["episodes"]:
            print(f"episode {ep['index']}: {ep['outcome']} after {ep['length']} steps, return {ep['return']:+.2f}")
        print("wrote " + ", ".join(str(p) for p in written))
        return 0

    return cli.guarded(work, parser.prog)


def earlier_animations(out: Path) -> list[Path]:
    """The `episode_<i>.gif|mp4` a replay wrote in `out` (none if `out` is missing)."""
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if p.is_file() and re.fullmatch(r"episode_[0-9]+\.(gif|mp4)", p.name))


def cli_error(message: str):
    from jaxsoc.analysis.runs import AnalysisError

    return AnalysisError(message)


def output_folder(args) -> Path:
    """--out, or its default (EPILOG)."""
    if args.out:
        return Path(args.out)
    if args.algo:
        return Path("replays") / f"{args.algo}-{Path(args.scenario).stem}-seed{args.seed or 0}"
    return Path(args.run) / "replay"


def resolve(args):
    """(policy, seed) of the command line; AnalysisError for what cannot be replayed."""
    policy, seed = resolve_policy(args)
    from jaxsoc.replay.trace import check_replayable

    try:
        check_replayable(policy)
    except ValueError as e:
        raise cli_error(str(e)) from None
    return policy, seed


def resolve_policy(args):
    """(policy, seed) of the command line, a run's or a scripted one."""
    import jaxsoc
    from jaxsoc import config as config_lib
    from jaxsoc.analysis import runs
    from jaxsoc.config import ConfigError
    from jaxsoc.policy import is_scripted

    if args.algo:
        try:
            env = config_lib.parse_sets(args.sets)
        except ConfigError as e:
            raise cli_error(str(e)) from None
        if set(env) - {"env"}:
            raise cli_error("--set only takes env.* overrides here")
        policy = jaxsoc.scripted_policy(args.algo, args.scenario, env.get("env", {}))
        return policy, args.seed or 0
    run = runs.read_run(args.run)
    if is_scripted(run.algo):  # its policy reads neither a checkpoint nor the greedy flag
        for flag, given in (("--update", args.update is not None), ("--stochastic", args.stochastic)):
            if given:
                raise cli_error(f"{flag} goes with a learner's run: {args.run} is a scripted {run.algo!r} run")
    policy = jaxsoc.load_policy(args.run, seed=args.seed, update=args.update, greedy=not args.stochastic)
    return policy, policy.seed


if __name__ == "__main__":
    sys.exit(main())
