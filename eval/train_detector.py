#!/usr/bin/env python
"""Train one anomaly detector on a scenario's own telemetry and save it with its threshold.

    python eval/train_detector.py --out detectors/soc-v2-zscore                    # soc-v2, z-score
    python eval/train_detector.py --kind autoencoder --out detectors/soc-v2-ae --epochs 10
    python train/run.py --algo mappo --set env.detector_scores=detectors/soc-v2-zscore   # its scores as observations

Gathers per-host telemetry from `--envs` vmapped envs under the no-defender policy for `--steps`
steps (attacks run their course, so the stream is contaminated: no labels are read), samples
`--train-windows` windows of `--window` steps, fits the detector (`--kind zscore`: median/MAD
per feature; `autoencoder`: docs/detectors.md's), calibrates its alarm threshold to `--target-fpr`
on another unlabelled sample, and saves both with `jaxsoc.detectors.save_detector` for the
scenario (so `EnvParams.detector_scores` and `soc-hybrid`'s `detector_path` can load it). Prints
the threshold and the ROC-AUC on a held-out stream. Writes nothing but `--out`, checked first:
a detector already there is replaced only with `--force`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxsoc import cli  # noqa: E402

KINDS = ("zscore", "autoencoder")


def build_parser():
    p = cli.Parser(prog="eval/train_detector.py", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="DIR", help="the detector's folder (new or empty; a detector's with --force)")
    p.add_argument("--scenario", default="soc-v2", help="a preset, a .yaml or soc-hybrid (soc-v2)")
    p.add_argument("--kind", default="zscore", help=f"one of {', '.join(KINDS)} (zscore)")
    p.add_argument("--envs", type=cli.parse_int, default=128, metavar="N", help="envs per stream (128)")
    p.add_argument("--steps", type=cli.parse_int, default=64, metavar="N", help="steps per stream (64)")
    p.add_argument("--window", type=cli.parse_int, default=4, metavar="W", help="steps per window (4)")
    p.add_argument("--train-windows", type=cli.parse_int, default=32768, metavar="M")
    p.add_argument("--epochs", type=cli.parse_int, default=5, metavar="N", help="autoencoder epochs (5)")
    p.add_argument("--target-fpr", type=float, default=0.01, metavar="R", help="false-alarm target (0.01)")
    p.add_argument("--seed", type=cli.parse_seed, default=0)
    p.add_argument("--force", action="store_true", help="replace the detector saved in --out")
    return p


def check_args(p, args) -> None:
    """One-line errors before any work: bad kind, sizes, rate."""
    if args.kind not in KINDS:
        p.error(f"--kind must be one of {', '.join(KINDS)}, got {args.kind!r}")
    for name, low in (("envs", 1), ("steps", 1), ("window", 1), ("train_windows", 256), ("epochs", 1)):
        if getattr(args, name) < low:
            p.error(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(args, name)}")
    if args.window > args.steps:
        p.error(f"--window {args.window} is longer than --steps {args.steps}")
    if not (0.0 < args.target_fpr < 1.0):
        p.error(f"--target-fpr is a rate and must lie strictly between 0 and 1, got {args.target_fpr}")
    problem = cli.folder_problem(args.out)
    if problem:
        p.error(f"--out: {problem}")


def check_out(p, out: str, force: bool) -> None:
    """Before gathering telemetry: --out must be new, empty, or (with --force) a detector's."""
    from jaxsoc.checkpoints import CheckpointError
    from jaxsoc.detectors import read_detector_meta

    path = Path(out)
    if not path.is_dir() or not any(path.iterdir()):
        return
    try:
        kind = read_detector_meta(path).get("kind")
    except CheckpointError:
        kind = None
    if kind not in KINDS:  # such as a training run's checkpoints, which save_detector never replaces
        p.error(f"--out {out} is not empty and holds no detector; give a new or empty folder")
    if not force:
        p.error(f"--out {out} holds a detector already; --force replaces it")


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    check_args(p, args)
    check_out(p, args.out, args.force)

    import jax
    import numpy as np

    from jaxsoc import detectors as det

    try:  # soc-hybrid: the telemetry is its SOC world's
        env, params = det.telemetry_world(args.scenario)
    except ValueError as e:
        p.error(str(e))
    start = time.time()
    root = jax.random.key(args.seed)
    k_train, k_held, k_sample, k_calib, k_fit = (jax.random.fold_in(root, i) for i in range(5))
    stream = det.gather_telemetry(k_train, env, params, args.envs, args.steps)
    windows, _ = det.sample_windows(k_sample, stream, args.window, args.train_windows)
    calib, _ = det.sample_windows(k_calib, stream, args.window, args.train_windows)
    if args.kind == "zscore":
        detector, score = det.fit_zscore(windows, robust=True), det.zscore_scores
    else:
        config = det.AutoencoderConfig(window=args.window, features=params.telemetry_features, epochs=args.epochs)
        detector, _ = det.train_autoencoder(k_fit, windows, config)
        score = det.autoencoder_scores
    threshold = det.calibrate_threshold(np.asarray(score(detector, calib)), args.target_fpr)
    held = det.gather_telemetry(k_held, env, params, args.envs, args.steps)
    valid = np.asarray(det.window_valid(held, args.window))
    s = np.asarray(det.sliding_scores(score, detector, held.telemetry, args.window))[valid]
    labels = np.asarray(held.compromised)[valid]
    # A short stream may hold no attacked (or no clean) window: the detector is still good to
    # save; only its ROC-AUC has nothing to rank (a report, computed before anything is saved).
    attacked = int(labels.sum())
    auc = (f"{det.roc_auc(s, labels):.3f}" if 0 < attacked < labels.size
           else f"n/a ({'none' if attacked == 0 else 'all'} attacked)")
    path = det.save_detector(args.out, detector, params, threshold, args.target_fpr)
    print(f"{args.kind} detector for {params.name}: threshold {threshold:.4g} at {args.target_fpr:g} false alarms, "
          f"held-out ROC-AUC {auc} over {valid.sum()} windows; saved to {path} in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main, "eval/train_detector.py"))
