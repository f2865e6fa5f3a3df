#!/usr/bin/env python
"""How good are the anomaly detectors of jaxsoc.detectors on held-out episodes?

    python eval/detector_quality.py                                 # soc-v2, ~2 min on 2 CPU cores
    python eval/detector_quality.py --out results/dq --envs 512 --steps 128 --epochs 10
    python eval/detector_quality.py --scenario soc-strategic        # its campaigns' own stealth

Gathers per-host telemetry from `--envs` vmapped envs under a scripted policy (no defender by
default) for `--steps` steps, twice: a training stream and a held-out stream (other keys). From
the training stream it samples unlabelled windows at the contamination attacks happen to give,
trains the autoencoder, fits the z-score baselines (mean/std and median/MAD) and, if PyOD is
installed, an IsolationForest as a reference, and calibrates each detector's alarm threshold to
`--target-fpr` on another unlabelled sample. On the held-out stream it measures, per detector:
ROC-AUC, PR-AUC, the detection rate at 1 % false alarms, ROC-AUC per attack stage and per stealth
level, the calibrated threshold's realised false-alarm and detection rates and the time from
compromise to first alarm; then retrains the autoencoder and the z-score detectors on windows
composed with each `--contamination` share of attacked windows.

Stealth: single-campaign presets run each env at one of `--stealth-levels` (round robin);
presets with competing campaigns (soc-strategic) draw each campaign's stealth themselves and are
reported in four stealth bins. `--stealth-damping` sets how much stealth dims a compromised
host's telemetry drift (docs/detectors.md); 0 is the env's own telemetry model, in which stealth
does not touch telemetry.

Writes into --out: table.md, table.json, and (unless --no-figures) roc.png, auc_by_stealth.png,
auc_by_contamination.png, first_alarm.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxsoc import cli  # noqa: E402
from jaxsoc.names import repeated  # noqa: E402

POSITIVE = {"envs": 1, "steps": 1, "window": 1, "train_windows": 256, "epochs": 1}


def build_parser():
    p = cli.Parser(prog="eval/detector_quality.py", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="soc-v2", help="a preset or a scenario .yaml (soc-v2)")
    p.add_argument("--policy", default="no-defender",
                   help="the scripted defender while telemetry is gathered (no-defender)")
    p.add_argument("--envs", type=cli.parse_int, default=128, metavar="N",
                   help="envs per stream, training and held-out (128)")
    p.add_argument("--steps", type=cli.parse_int, default=64, metavar="N", help="steps per stream (64)")
    p.add_argument("--window", type=cli.parse_int, default=4, metavar="W", help="steps per window (4)")
    p.add_argument("--stealth-levels", default="0,0.3,0.6,0.9", metavar="LIST",
                   help="per-env attacker stealth, round robin (single-campaign presets; 0,0.3,0.6,0.9)")
    p.add_argument("--stealth-damping", type=float, default=0.8, metavar="D",
                   help="drift x (1 - D x stealth); 0 = the env's telemetry model (0.8)")
    p.add_argument("--train-windows", type=cli.parse_int, default=32768, metavar="M",
                   help="unlabelled training windows per detector (32768)")
    p.add_argument("--epochs", type=cli.parse_int, default=5, metavar="N", help="autoencoder epochs (5)")
    p.add_argument("--contamination", default="0,0.05,0.2", metavar="LIST",
                   help="attacked shares of the training windows to retrain on (0,0.05,0.2)")
    p.add_argument("--target-fpr", type=float, default=0.01, metavar="R",
                   help="false-alarm rate the thresholds are calibrated to, in (0, 1) (0.01)")
    p.add_argument("--pyod-windows", type=cli.parse_int, default=100000, metavar="N",
                   help="held-out windows the PyOD reference scores, a random subset (100000; 0 skips it)")
    p.add_argument("--seed", type=cli.parse_seed, default=0)
    p.add_argument("--out", default="results/detector-quality", metavar="DIR",
                   help="output folder (results/detector-quality)")
    p.add_argument("--no-figures", action="store_true", help="write the tables only")
    p.add_argument("--force", action="store_true", help="overwrite the tables and figures of an earlier run in --out")
    return p


# The files a run writes into --out (the figures by `figures`).
TABLES = ("table.md", "table.json")
FIGURES = ("roc.png", "auc_by_stealth.png", "auc_by_contamination.png", "first_alarm.png")


def parse_fractions(p, flag: str, text: str, closed_top: bool = True) -> list:
    try:
        values = [float(x) for x in cli.parse_list(text)]
    except ValueError:
        p.error(f"{flag} takes numbers separated by commas, got {text!r}")
    if not values:
        p.error(f"{flag} needs at least one value")
    for v in values:
        if not (0.0 <= v <= 1.0) or (not closed_top and v == 1.0):
            p.error(f"{flag} values must lie in [0, 1{']' if closed_top else ')'}, got {v}")
    twice = repeated(values)
    if twice:  # one table row per value: a second would measure the same thing again
        p.error(f"{flag} gives {', '.join(f'{v:g}' for v in twice)} twice, in {text!r}")
    return values


def check_args(p, args):
    for name, low in POSITIVE.items():
        if getattr(args, name) < low:
            p.error(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(args, name)}")
    if args.pyod_windows < 0:
        p.error(f"--pyod-windows must be >= 0, got {args.pyod_windows}")
    if args.window > args.steps:
        p.error(f"--window {args.window} is longer than --steps {args.steps}")
    if not (0.0 < args.target_fpr < 1.0):
        p.error(f"--target-fpr is a rate and must lie strictly between 0 and 1, got {args.target_fpr}")
    if not (0.0 <= args.stealth_damping <= 1.0):
        p.error(f"--stealth-damping must lie in [0, 1], got {args.stealth_damping}")
    args.levels = parse_fractions(p, "--stealth-levels", args.stealth_levels)
    args.shares = parse_fractions(p, "--contamination", args.contamination, closed_top=False)
    problem = cli.folder_problem(args.out)
    if problem is not None:
        p.error(problem)
    # An earlier run's figures count with --no-figures too: left beside new tables they would
    # read as theirs (--force removes them then).
    earlier = [name for name in TABLES + FIGURES if (Path(args.out) / name).exists()]
    if earlier and not args.force:
        p.error(f"{args.out} already holds {', '.join(earlier)}; --force overwrites them")


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    check_args(p, args)

    import numpy as np
    import jax
    import jax.numpy as jnp
    import jaxsoc.env as soc
    from jaxsoc import detectors as det, run_log

    try:
        # soc-hybrid's detectors read its SOC world's telemetry (as eval/train_detector.py).
        env, params = det.telemetry_world(args.scenario)
    except ValueError as e:
        p.error(str(e))
    if args.policy not in soc.POLICIES:
        p.error(f"unknown --policy {args.policy!r}; known: {', '.join(sorted(soc.POLICIES))}")
    policy = soc.POLICIES[args.policy]
    out = Path(args.out)  # made when the results are written (cli.folder_problem checked it can be)

    W, target = args.window, args.target_fpr
    root = jax.random.key(args.seed)
    keys = {name: jax.random.fold_in(root, i) for i, name in enumerate(
        ["train", "heldout", "sample", "calib", "ae", "contam"])}
    per_env = None if params.multi_campaign else jnp.asarray(np.resize(np.asarray(args.levels, np.float32), args.envs))
    timings = {}

    def tick(name, start):
        timings[name] = round(time.time() - start, 1)
        print(f"  {name}: {timings[name]} s", flush=True)

    print(f"# {params.name}: {args.envs} envs x {args.steps} steps per stream, policy {args.policy}, "
          f"window {W}", flush=True)
    if per_env is None:
        print("note: the preset draws each campaign's stealth itself; --stealth-levels is not used", flush=True)
    t0 = start = time.time()
    gather = dict(num_envs=args.envs, num_steps=args.steps, policy=policy, stealth=per_env,
                  stealth_damping=args.stealth_damping)
    train = det.gather_telemetry(keys["train"], env, params, **gather)
    jax.block_until_ready(train)
    tick("gather training stream (compile included)", start)
    start = time.time()
    held = det.gather_telemetry(keys["heldout"], env, params, **gather)
    jax.block_until_ready(held)
    tick("gather held-out stream", start)

    train_valid = np.asarray(det.window_valid(train, W))
    natural = float(np.asarray(train.compromised)[train_valid].mean())
    windows, _ = det.sample_windows(keys["sample"], train, W, args.train_windows)
    calib, _ = det.sample_windows(keys["calib"], train, W, args.train_windows)

    valid = np.asarray(det.window_valid(held, W))
    y = np.asarray(held.compromised)[valid]
    stage = np.asarray(held.stage)[valid]
    stealth = np.asarray(held.stealth)[valid]
    if y.all() or not y.any():
        p.error("the held-out stream has no attacked (or no clean) window: gather more --envs or --steps")
    if natural == 0 and max(args.shares) > 0:  # the contamination sweep samples attacked windows
        p.error(f"the training stream has no attacked window to give --contamination {max(args.shares):g}: "
                "gather more --envs or --steps, or give --contamination 0")
    if natural == 1:
        p.error("the training stream has no clean window: gather more --envs, or fewer --steps")

    def stealth_groups(values):
        """(name, mask) per stealth level (per-env levels) or per quarter of [0, 1] (campaigns)."""
        if per_env is not None:
            return [(f"{v:g}", np.isclose(values, v)) for v in args.levels]
        edges = [0.0, 0.25, 0.5, 0.75, 1.0]
        return [(f"{a:.2f}-{b:.2f}", (values >= a) & ((values < b) | (b == 1.0)))
                for a, b in zip(edges, edges[1:])]

    groups = stealth_groups(stealth)
    stages = {str(k): stage == k for k in range(1, 5)}

    def evaluate(name, scores_full, threshold, train_share):
        """Metrics of full held-out scores `[T, N, H]` (masked to valid windows here)."""
        s = np.asarray(scores_full)[valid]
        row = {"detector": name, "train_contamination": train_share, **overall(s)}
        row["auc_by_stage"] = det.roc_auc_subsets(s, y, stages)
        row["auc_by_stealth"] = det.roc_auc_subsets(s, y, dict(groups))
        row["dr_by_stealth"] = det.detection_rate_subsets(s, y, dict(groups), 0.01)
        if threshold is not None:
            alarms = np.asarray(scores_full) > threshold
            row["threshold"] = float(threshold)
            row["calibrated_fpr"] = float(np.mean(s[~y] > threshold))
            row["calibrated_dr"] = float(np.mean(s[y] > threshold))
            delays = det.first_alarm_delays(alarms & valid, held.compromised, held.episode)
            caught = delays[np.isfinite(delays)]
            row["incidents"] = int(delays.size)
            row["incidents_alarmed"] = float(caught.size / max(delays.size, 1))
            row["median_steps_to_alarm"] = float(np.median(caught)) if caught.size else None
            row["mean_steps_to_alarm"] = float(np.mean(caught)) if caught.size else None
            row["_delays"] = caught
        return row

    def overall(s):
        return {"roc_auc": det.roc_auc(s, y), "pr_auc": det.average_precision(s, y),
                "dr_at_1pct": det.detection_rate_at_fpr(s, y, 0.01)}

    print(f"training windows: {args.train_windows} unlabelled, {natural:.1%} of the stream's windows "
          f"attacked; held-out: {valid.sum()} windows, {y.mean():.1%} attacked", flush=True)
    config = det.AutoencoderConfig(window=W, features=params.telemetry_features, epochs=args.epochs)
    rows, contam_rows, curves = [], [], {}

    start = time.time()
    ae, losses = det.train_autoencoder(keys["ae"], windows, config)
    jax.block_until_ready(losses)
    tick("train the autoencoder (compile included)", start)
    detectors = [("autoencoder", ae, det.autoencoder_scores),
                 ("z-score (mean/std)", det.fit_zscore(windows), det.zscore_scores),
                 ("z-score (median/MAD)", det.fit_zscore(windows, robust=True), det.zscore_scores)]
    start = time.time()
    for name, d, fn in detectors:
        threshold = det.calibrate_threshold(fn(d, calib), target)
        full = det.sliding_scores(fn, d, held.telemetry, W)
        row = evaluate(name, full, threshold, "natural")
        curves[name] = det.roc_curve(np.asarray(full)[valid], y)
        rows.append(row)
    tick("score and measure", start)

    start = time.time()
    try:
        from pyod.models.iforest import IForest
    except ImportError:
        IForest = None
        print("note: PyOD is not installed; its reference row is skipped (pip install pyod)", flush=True)
    if IForest is not None and args.pyod_windows > 0:
        # A reference from a maintained library, on flattened windows; scored on a random subset
        # of held-out windows (an IsolationForest on every window would dominate the run time).
        rng = np.random.default_rng(args.seed)
        flat_idx = np.flatnonzero(valid)
        pick = np.sort(rng.choice(flat_idx, size=min(args.pyod_windows, flat_idx.size), replace=False))
        t, e, h = np.unravel_index(pick, valid.shape)
        def rows_of(w):  # [M, W, F] -> [M, W * F], PyOD's layout
            return np.asarray(w).reshape(w.shape[0], -1)

        def picked(a):  # [T, N, H] -> the subset, [pyod_windows]
            return np.asarray(a).reshape(-1)[pick]

        model = IForest(random_state=args.seed, n_jobs=1)
        model.fit(rows_of(windows))
        s_sub = model.decision_function(rows_of(det.windows_at(np.asarray(held.telemetry), t, e, h, W)))
        y_sub, stage_sub, stealth_sub = picked(held.compromised), picked(held.stage), picked(held.stealth)
        threshold = det.calibrate_threshold(model.decision_function(rows_of(calib)), target)
        row = {"detector": f"IsolationForest (PyOD, reference; {pick.size} held-out windows)",
               "train_contamination": "natural", "roc_auc": det.roc_auc(s_sub, y_sub),
               "pr_auc": det.average_precision(s_sub, y_sub),
               "dr_at_1pct": det.detection_rate_at_fpr(s_sub, y_sub, 0.01),
               "calibrated_fpr": float(np.mean(s_sub[~y_sub] > threshold)),
               "calibrated_dr": float(np.mean(s_sub[y_sub] > threshold)), "threshold": float(threshold)}

        row["auc_by_stage"] = det.roc_auc_subsets(s_sub, y_sub, {str(k): stage_sub == k for k in range(1, 5)})
        row["auc_by_stealth"] = det.roc_auc_subsets(s_sub, y_sub, dict(stealth_groups(stealth_sub)))
        curves[row["detector"]] = det.roc_curve(s_sub, y_sub)
        rows.append(row)
        tick("PyOD IsolationForest reference", start)

    start = time.time()
    for share in args.shares:
        wins, _ = det.sample_windows(keys["contam"], train, W, args.train_windows, attacked_share=share)
        ae_c, _ = det.train_autoencoder(keys["ae"], wins, config)
        for name, d, fn in [("autoencoder", ae_c, det.autoencoder_scores),
                            ("z-score (mean/std)", det.fit_zscore(wins), det.zscore_scores),
                            ("z-score (median/MAD)", det.fit_zscore(wins, robust=True), det.zscore_scores)]:
            s = np.asarray(det.sliding_scores(fn, d, held.telemetry, W))[valid]
            contam_rows.append({"detector": name, "train_contamination": share, **overall(s)})
    tick("contamination sweep", start)

    total = round(time.time() - t0, 1)
    settings = {k: v for k, v in vars(args).items() if k not in ("levels", "shares")}
    settings.update(scenario=params.name, natural_contamination=natural, heldout_windows=int(valid.sum()),
                    heldout_attacked=float(y.mean()), autoencoder=config.to_dict(), seconds=total,
                    jax_backend=jax.default_backend())
    md = to_markdown(rows, contam_rows, groups, settings, target)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        p.error(f"cannot create --out {out}: {e.strerror}")
    (out / "table.md").write_text(md)
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    (out / "table.json").write_text(json.dumps(run_log.json_safe(
        {"settings": settings, "detectors": public, "contamination": contam_rows, "timings_s": timings}),
        indent=2, allow_nan=False) + "\n")  # an AUC with nothing to rank (NaN) is null
    written = ["table.md", "table.json"]
    if not args.no_figures:
        written += figures(out, rows, contam_rows, curves, groups, target)
    else:  # with --force: an earlier run's figures would read as this run's
        for name in FIGURES:
            (out / name).unlink(missing_ok=True)
    print()
    print(md)
    print(f"wrote {', '.join(str(out / w) for w in written)} ({total} s)")
    return 0


def fmt(v, pct=False):
    if v is None:
        return "n/a"
    return f"{100 * v:.1f} %" if pct else f"{v:.3f}"


def to_markdown(rows, contam_rows, groups, s, target) -> str:
    incidents = next((r["incidents"] for r in rows if "incidents" in r), "n/a")
    lines = [
        f"Scenario `{s['scenario']}`, policy `{s['policy']}`, {s['envs']} envs x {s['steps']} steps per "
        f"stream, windows of {s['window']} steps, stealth damping {s['stealth_damping']}, seed {s['seed']}. "
        f"Detectors trained on {s['train_windows']} unlabelled windows ({s['natural_contamination']:.1%} "
        f"of the training stream's windows attacked); held-out: {s['heldout_windows']} windows, "
        f"{s['heldout_attacked']:.1%} attacked. Thresholds calibrated to {target:.1%} false alarms on "
        f"another unlabelled sample (no contamination assumed); incidents: hosts compromised in a "
        f"finished held-out episode ({incidents}). {s['seconds']} s on {s['jax_backend']}.",
        "",
        "| detector | ROC-AUC | PR-AUC | detection at 1 % FPR | calibrated: FPR | calibrated: detection "
        "| incidents alarmed | median steps to alarm |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['detector']} | {fmt(r['roc_auc'])} | {fmt(r['pr_auc'])} | {fmt(r['dr_at_1pct'], True)} "
                     f"| {fmt(r.get('calibrated_fpr'), True)} | {fmt(r.get('calibrated_dr'), True)} "
                     f"| {fmt(r.get('incidents_alarmed'), True)} "
                     f"| {'n/a' if r.get('median_steps_to_alarm') is None else format(r['median_steps_to_alarm'], 'g')} |")
    lines += ["", "ROC-AUC per attack stage of the host (attacked windows of that stage against every clean window):", "",
              "| detector | 1 initial access | 2 execution | 3 lateral movement | 4 exfiltration |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['detector']} | " + " | ".join(fmt(r["auc_by_stage"][str(k)]) for k in range(1, 5)) + " |")
    names = [g for g, _ in groups]
    lines += ["", "ROC-AUC (detection at 1 % FPR) per stealth level of the attacking campaign:", "",
              "| detector | " + " | ".join(f"stealth {g}" for g in names) + " |", "|---" * (len(names) + 1) + "|"]
    for r in rows:
        cells = []
        for g in names:
            a = r["auc_by_stealth"].get(g)
            d = r.get("dr_by_stealth", {}).get(g)
            cells.append(fmt(a) + ("" if d is None else f" ({fmt(d, True)})"))
        lines.append(f"| {r['detector']} | " + " | ".join(cells) + " |")
    shares = sorted({c["train_contamination"] for c in contam_rows})
    lines += ["", "ROC-AUC / detection at 1 % FPR by the attacked share of the training windows:", "",
              "| detector | " + " | ".join(f"{100 * c:g} % attacked" for c in shares) + " |",
              "|---" * (len(shares) + 1) + "|"]
    for name in dict.fromkeys(c["detector"] for c in contam_rows):
        by = {c["train_contamination"]: c for c in contam_rows if c["detector"] == name}
        lines.append(f"| {name} | " + " | ".join(
            f"{fmt(by[c]['roc_auc'])} / {fmt(by[c]['dr_at_1pct'], True)}" for c in shares) + " |")
    return "\n".join(lines) + "\n"


def figures(out: Path, rows, contam_rows, curves, groups, target) -> list:
    cli.use_agg()
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, (fpr, tpr) in curves.items():
        # a million thresholds draw as a few hundred points on the log axis
        keep = np.unique(np.clip(np.searchsorted(fpr, np.geomspace(1e-5, 1, 400)), 0, fpr.size - 1))
        ax.plot(fpr[keep], tpr[keep], label=name.split(";")[0].replace(", reference", ""))
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.axvline(0.01, color="grey", lw=0.8, ls="--")
    ax.set(xscale="log", xlim=(1e-4, 1), xlabel="false-alarm rate (clean windows)",
           ylabel="detection rate (attacked windows)", title="ROC on held-out windows")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=120)
    plt.close(fig)
    written.append("roc.png")

    names = [g for g, _ in groups]
    fig, ax = plt.subplots(figsize=(5, 4))
    for r in rows:
        vals = [r["auc_by_stealth"].get(g) for g in names]
        ax.plot(names, [np.nan if v is None else v for v in vals], "o-", label=r["detector"].split(";")[0])
    ax.axhline(0.5, color="k", lw=0.8, ls=":")
    ax.set(xlabel="campaign stealth", ylabel="ROC-AUC", title="Quality against stealth")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "auc_by_stealth.png", dpi=120)
    plt.close(fig)
    written.append("auc_by_stealth.png")

    fig, ax = plt.subplots(figsize=(5, 4))
    for name in dict.fromkeys(c["detector"] for c in contam_rows):
        pts = sorted((c["train_contamination"], c["roc_auc"]) for c in contam_rows if c["detector"] == name)
        ax.plot([100 * a for a, _ in pts], [b for _, b in pts], "o-", label=name)
    ax.axhline(0.5, color="k", lw=0.8, ls=":")
    ax.set(xlabel="attacked share of the training windows (%)", ylabel="ROC-AUC on held-out windows",
           title="Quality against training contamination")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "auc_by_contamination.png", dpi=120)
    plt.close(fig)
    written.append("auc_by_contamination.png")

    fig, ax = plt.subplots(figsize=(5, 4))
    for r in rows:
        if "_delays" not in r or r["incidents"] == 0:
            continue
        d = np.sort(r["_delays"])
        ax.step(np.r_[0, d], np.r_[0, np.arange(1, d.size + 1)] / r["incidents"], where="post", label=r["detector"])
    ax.set(xlabel="steps from compromise to first alarm", ylabel="share of incidents alarmed",
           title=f"Time to first alarm (threshold at {target:.0%} target FPR)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "first_alarm.png", dpi=120)
    plt.close(fig)
    written.append("first_alarm.png")
    return written


if __name__ == "__main__":
    raise SystemExit(cli.guarded(main, "eval/detector_quality.py"))
