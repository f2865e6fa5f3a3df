"""What a finished `execute` leaves in the plan's output folder: tables, figures, timings, README.

    report.write(summary, command="python eval/reproduce.py --quick")

Output folder (default `results/<preset>[-quick]`):
    runs/<algo>-s<seed>[-<last seed>]/    the engine's run folders (written by `execute`)
    tables/table2_paper.{md,csv,tex}      the paper's protocol (last 2,000 training episodes)
    tables/table2_ours.{md,csv,tex}       ours (greedy, held-out episodes)
    figures/*.png|pdf                     curves, bars_*, seeds_*, (k_sweep_*, ablations_*, attention)
    timings.json, README.md               per-method wall-clock, the command, the machine, the tables
"""
from __future__ import annotations

import json
import platform
import time
from typing import Callable, Sequence

from jaxsoc import host
from jaxsoc.analysis import attention, protocols, tables
from jaxsoc.analysis import figures as figs
from jaxsoc.analysis import runs as runs_lib
from jaxsoc.analysis.execute import Summary
from jaxsoc.analysis.plan import HMARL, MethodPlan, Plan, default_directive_period
from jaxsoc.analysis.runs import AnalysisError


def write(summary: Summary, command: str | None = None, log: Callable[[str], None] = print) -> None:
    """Tables and figures of the methods that finished, then timings.json and README.md; fills
    `summary.tables`, `summary.files` and `summary.notes`."""
    if summary.done:
        write_outputs(summary, log)
    (summary.plan.out / "timings.json").write_text(json.dumps(summary.timings, indent=1) + "\n")
    write_readme(summary, command)


def groups_of(plan: Plan, mps: Sequence[MethodPlan]) -> list:
    """The method group of each MethodPlan's runs, labelled as the plan labels it."""
    run_dir = plan.out / "runs"
    out = []
    for mp in mps:
        g = runs_lib.group_runs([runs_lib.read_run(run_dir / rp.name) for rp in mp.runs])[0]
        g.label = mp.label
        out.append(g)
    return out


def result(group, protocol: str, plan: Plan):
    """`group`'s MethodResult under "paper" (its training logs) or "ours" (its saved evaluations)."""
    if protocol == "paper":
        return protocols.paper_protocol(group, plan.window)
    return protocols.ours_protocol(group, plan.episodes, evaluate=False)


def write_outputs(summary: Summary, log) -> None:
    """Table II (both protocols) and its figures; the HMARL K-sweep, ablations and attention."""
    plan, mps = summary.plan, summary.done
    tdir, fdir = plan.out / "tables", plan.out / "figures"
    main = [m for m in mps if m.kind == "main"]
    groups = groups_of(plan, main)
    for protocol in ("paper", "ours"):
        res = []
        for g in groups:
            try:
                res.append(result(g, protocol, plan))
            except AnalysisError as e:
                summary.notes.append(f"{g.label} ({protocol} protocol): {e}")
                log(f"{g.label} ({protocol} protocol): {e}")
        if not res:
            continue
        metrics = runs_lib.TABLE_METRICS if protocol == "paper" else runs_lib.EVAL_METRICS
        table = tables.build_table(res, protocol, metrics, paper="all" if protocol == "paper" else "matched",
                                   window=plan.window)
        summary.tables[protocol] = table
        summary.files += tables.write_table(table, tdir, f"table2_{protocol}")
        title = table.title
        fig, _ = figs.metric_bars(res, with_paper="all" if protocol == "paper" else True, title=title)
        summary.files += figs.save(fig, fdir / f"bars_{protocol}")
        summary.files += figs.save(figs.seed_scatter(res, title=title)[0], fdir / f"seeds_{protocol}")
    if groups:
        summary.files += figs.save(figs.learning_curves(groups, window=plan.window, title=plan.preset)[0],
                                   fdir / "curves")
    hmarl_main = [m for m in main if m.algo == HMARL]
    sweep = [m for m in mps if m.kind == "k-sweep"]
    if sweep and hmarl_main:
        gs = groups_of(plan, hmarl_main + sweep)
        for protocol in ("ours", "paper"):
            res = [result(g, protocol, plan) for g in gs]
            data = figs.k_sweep_data(res, gs, default=default_directive_period(plan.preset))
            summary.files += figs.save(figs.k_sweep(data, title=f"K-sweep ({protocol} protocol)")[0],
                                       fdir / f"k_sweep_{protocol}")
    abl = [m for m in mps if m.kind == "ablation"]
    if abl and hmarl_main:
        ms = hmarl_main + abl
        gs = groups_of(plan, ms)
        for protocol in ("ours", "paper"):
            variants = {}
            for m, g in zip(ms, gs):
                r = result(g, protocol, plan)
                variants["full" if m.kind == "main" else m.tag] = {k: r.values(k).tolist()
                                                                   for k in runs_lib.EVAL_METRICS}
            summary.files += figs.save(figs.ablation_chart(variants, title=f"Ablations ({protocol} protocol)")[0],
                                       fdir / f"ablations_{protocol}")
    if plan.attention and hmarl_main:
        try:
            summary.files += attention.draw_attention(plan.out / "runs" / hmarl_main[0].runs[0].name,
                                                      fdir / "attention")
        except Exception as e:  # the explainer's contract is new: report, do not lose the rest
            summary.notes.append(f"attention maps: {type(e).__name__}: {e}")


def machine() -> str:
    import os

    import jax

    dev = jax.devices()
    return (f"{platform.platform()}, Python {platform.python_version()}, jax {jax.__version__} on "
            f"{len(dev)} {dev[0].platform.upper()} device(s) ({dev[0].device_kind}), {os.cpu_count()} CPU cores: "
            f"{host.cpu_description()}")


def timings_markdown(timings: dict) -> str:
    lines = ["| Method | Runs | Train (s) | Evaluate (s) | Total (s) |", "|---|---:|---:|---:|---:|"]
    total = 0.0
    for label, t in timings.items():
        s = t["train_s"] + t["eval_s"]
        total += s
        runs = f"{t['runs']}" + (f" ({t['cached_runs']} cached)" if t.get("cached_runs") else "")
        lines.append(f"| {label} | {runs} | {t['train_s']:.1f} | {t['eval_s']:.1f} | {s:.1f} |")
    lines.append(f"| **all** | | | | {total:.1f} |")
    return "\n".join(lines) + "\n"


def write_readme(summary: Summary, command: str | None) -> None:
    plan = summary.plan
    parts = [f"# Table II on `{plan.preset}`" + (" (quick)" if plan.quick else ""), ""]
    if command:
        parts += ["```", command, "```", ""]
    parts += [f"- written {time.strftime('%Y-%m-%d %H:%M:%S')} on {machine()}",
              f"- seeds {', '.join(map(str, plan.seeds))}; {plan.episodes} held-out episodes per seed "
              f"(ours); window {plan.window:,} training episodes (paper)", ""]
    parts += ["## Wall-clock per method", "", timings_markdown(summary.timings)]
    for protocol, table in summary.tables.items():
        parts += [f"## {table.title}", "", tables.to_markdown(table, title=False)]
    if summary.failures:
        parts += ["## Failed", ""] + [f"- {k}: {v}" for k, v in summary.failures.items()] + [""]
    if summary.notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in summary.notes] + [""]
    figs_ = sorted({p.stem for p in summary.files if p.suffix == ".png"})
    if figs_:
        parts += ["## Figures", ""] + [f"![{s}](figures/{s}.png)" for s in figs_] + [""]
    (plan.out / "README.md").write_text("\n".join(parts))
