#!/usr/bin/env python
"""Greedy evaluation of a `detector: online` hybrid run with the detector it learned.

    python train/run.py --algo hybrid --name hy-online --set hybrid.detector=online
    python eval/evaluate.py runs/hy-online --episodes 500        # with the scenario's frozen detector
    python eval/hybrid_online.py runs/hy-online --episodes 500   # with each seed's own learned detector

`eval/evaluate.py` plays a run's policy on the scenario as configured, so an online run's team is
scored there with the scenario's frozen detector. Here each seed's team plays with the detector
its own training program learned (`HybridTrainState.detector`: its centre, scale, autoencoder and
threshold), on the same held-out episodes as eval/evaluate.py (`heldout_key(seed)`, one batch of
`--episodes` envs). Prints a markdown table (per seed and mean +- population std over seeds) and
writes `<run>/evaluation_learned_detector.json`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxsoc import cli  # noqa: E402

METRICS = ("return", "recall", "fpr", "mttd", "csr", "exfiltrated", "false_alarms", "investigations", "auto_locks")


def build_parser():
    p = cli.Parser(prog="eval/hybrid_online.py", description=__doc__,
                   formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN_DIR", help="a run of --algo hybrid with hybrid.detector=online")
    p.add_argument("--episodes", type=cli.parse_int, default=500, metavar="N", help="held-out episodes per seed (500)")
    p.add_argument("--update", type=cli.parse_int, metavar="U", help="checkpoint (default: newest)")
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.episodes < 1:
        p.error(f"--episodes must be positive, got {args.episodes}")
    from jaxsoc import config as config_lib

    saved = Path(args.run) / "config.yaml"
    if not saved.is_file():
        p.error(f"{args.run} has no config.yaml (not a run folder?)")
    cfg = config_lib.load_yaml(saved)
    if cfg.get("algo") != "hybrid" or cfg.get("hybrid", {}).get("detector") != "online":
        p.error(f"{args.run} is not a hybrid run with hybrid.detector=online")

    import jax
    import numpy as np

    import jaxsoc.env as soc
    from jaxsoc import engine
    from jaxsoc.algos.hybrid import online_detector
    from jaxsoc.analysis.protocols import evaluate_episodes

    loaded = engine.load(args.run, args.update)
    c = loaded.config["hybrid"]
    env, env_params = soc.make(loaded.config["scenario"], **loaded.config["env"])
    to_detector = online_detector(c["online_kind"], env_params.window, env_params.features)
    policy = jax.jit(jax.vmap(loaded.trainer.policy_params))(loaded.state)
    seeds = [loaded.config["seed"] + i for i in range(loaded.config["num_seeds"])]
    rows = {}
    for i, seed in enumerate(seeds):  # a handful of seeds, each its own env params: one program each
        learned = jax.tree.map(lambda x: x[i], loaded.state.detector)
        params = env_params.replace(detector=to_detector(learned), threshold=learned.threshold)
        out = evaluate_episodes(env, params, loaded.trainer, [seed], args.episodes,
                                jax.tree.map(lambda x: x[i:i + 1], policy), True, None)
        rows[seed] = {k: float(np.nanmean(out[k][0])) for k in METRICS}
        rows[seed]["threshold"] = float(learned.threshold)
    keys = ("threshold",) + METRICS
    print(f"{args.run}: greedy, {args.episodes} held-out episodes per seed, each seed's learned "
          f"{c['online_kind']} detector\n")
    print("| seed | " + " | ".join(keys) + " |\n|---|" + "---:|" * len(keys))
    for seed, r in rows.items():
        print(f"| {seed} | " + " | ".join(f"{r[k]:.3g}" for k in keys) + " |")
    mean = {k: np.mean([r[k] for r in rows.values()]) for k in keys}
    std = {k: np.std([r[k] for r in rows.values()]) for k in keys}
    print("| mean ± std | " + " | ".join(f"{mean[k]:.3g} ± {std[k]:.2g}" for k in keys) + " |")
    record = {"run": str(args.run), "episodes": args.episodes, "checkpoint_update": loaded.updates,
              "seeds": {str(s): r for s, r in rows.items()}}
    (Path(args.run) / "evaluation_learned_detector.json").write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
