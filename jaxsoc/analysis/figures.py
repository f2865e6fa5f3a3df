"""Figures (matplotlib, Agg): every function returns `(figure, data)` where `data` holds exactly
the numbers drawn, and `save(fig, stem)` writes `<stem>.png` and `<stem>.pdf`.

Inputs:
  * learning curves: `curve_series(group, metric, window)` per method (from `metrics.jsonl`);
  * bars and per-seed scatter: `MethodResult`s (either protocol);
  * attention maps: `weights` `[decisions, heads, tokens]` (each row a softmax over tokens),
    `token_names` (len tokens), optional `decision_labels` (len decisions), e.g. what the HMARL
    explainer returns for a few coordinator decisions;
  * K-sweep: `{method label: {K: {metric: per-seed values}}}` (runs tagged by K, e.g. grouped by
    their `env.directive_period`, see `k_sweep_data`);
  * ablations: `{variant label: {metric: per-seed values}}`, the full model first (or named
    by `reference`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from jaxsoc.analysis import paper as paper_lib
from jaxsoc.analysis import protocols
from jaxsoc.analysis import runs as runs_lib
from jaxsoc.analysis import tables
from jaxsoc.analysis.intervals import finite_mean, finite_std
from jaxsoc.analysis.runs import AnalysisError, Group, MethodResult


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save(fig, stem: str | Path, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150) -> list[Path]:
    """Writes the figure as `<stem>.<fmt>` for each format, closes it, returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    _plt().close(fig)
    return paths


def _grid(n: int, width: float = 4.0, height: float = 3.0, ncols: int | None = None, sharey: bool = False):
    """`n` panels of `width` x `height` inches, `ncols` (default up to 3) per row; with `sharey`
    only the first column shows the y tick labels."""
    plt = _plt()
    ncols = ncols or min(n, 3)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False,
                             sharey=sharey)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _method_rows(n_panels: int, labels: Sequence[str]):
    """Per-metric panels with one row per method, labelled once on the left of each row of
    panels. Horizontal labels never overlap however long they are or however many methods there
    are (rotated tick labels under columns did both). Returns (fig, axes, y positions)."""
    fig, axes = _grid(n_panels, 3.4, 0.32 * len(labels) + 1.1, sharey=True)
    y = np.arange(len(labels))
    axes[0].set_yticks(y, labels)
    axes[0].set_ylim(len(labels) - 0.5, -0.5)  # the first method on top (shared by every panel)
    for ax in axes:
        ax.tick_params(axis="y", labelsize="small")
    return fig, axes, y


def _eng():
    from matplotlib.ticker import EngFormatter

    return EngFormatter(sep="")


def _color(i: int):
    return _plt().get_cmap("tab10")(i % 10)


# ----------------------------------------------------------------------------- learning curves
def curve_series(group: Group, key: str, window: int = protocols.WINDOW_EPISODES) -> dict:
    """One method's learning curve of metric `key`, from its runs' `metrics.jsonl`.

    Each seed's point at an update is the episode-weighted mean over the newest updates up to it
    holding >= `window` episodes (`protocols.trailing_window`; `window=1`: the update alone), so
    with the default window the last point of a seed is its value in the paper-protocol table.

    Returns `{"steps": [T] env steps per seed, "seeds": [...], "per_seed": [S, T],
    "mean": [T], "std": [T], "episodes": [S] episodes each seed logged}` (mean and population std over the seeds with a value at each step:
    `intervals.finite_mean`, `finite_std`). The steps are those of the seed that logged furthest;
    seeds logged at other steps are interpolated onto them, and are NaN beyond their own last
    logged step (an interrupted run), not extended flat.
    """
    logged, seeds, episodes = [], [], []
    for run in group.runs:
        for seed, recs in sorted(protocols.read_metrics_log(run).items()):
            steps, eps, vals = protocols.log_series(recs, key)
            logged.append((steps, protocols.trailing_window(eps, vals, window)[0]))
            seeds.append(seed)
            episodes.append(int(eps.sum()))
    # the furthest seed's steps (the first of those that reach furthest), whichever run lists it
    steps0 = max(logged, key=lambda x: x[0][-1] if x[0].size else -np.inf)[0] if logged else None
    per_seed = []
    for steps, smooth in logged:
        if steps.shape != steps0.shape or not np.array_equal(steps, steps0):
            ok = np.isfinite(smooth)
            smooth = (np.interp(steps0, steps[ok], smooth[ok], left=np.nan, right=np.nan) if ok.any()
                      else np.full(steps0.shape, np.nan))
            smooth[steps0 > steps[-1]] = np.nan  # past the seed's last logged step
        per_seed.append(smooth)
    arr = np.array(per_seed, dtype=np.float64)
    mean, std = finite_mean(arr, axis=0), finite_std(arr, axis=0)
    return {"steps": steps0, "seeds": seeds, "per_seed": arr, "mean": mean, "std": std, "episodes": episodes}


def _metric_panels(metrics: Sequence[str], series: Sequence[tuple], width: float, height: float, draw):
    """One panel per metric (titled, gridded, legend in the first) and in each one curve per
    `(label, item)` of `series`, drawn by `draw(ax, index, label, item, metric, spec)`, which returns the
    curve's data. Returns (fig, axes, {metric: {label: data}})."""
    fig, axes = _grid(len(metrics), width, height)
    data: dict = {}
    for ax, key in zip(axes, metrics):
        spec = runs_lib.metric(key)
        data[key] = {label: draw(ax, i, label, item, key, spec) for i, (label, item) in enumerate(series)}
        ax.set_title(spec.label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return fig, axes, data


def learning_curves(groups: Sequence[Group], metrics: Sequence[str] = ("return", "csr", "fpr", "mttr"),
                    window: int = protocols.WINDOW_EPISODES, title: str | None = None):
    """Per metric a panel: each method's mean over seeds (line) and ± population std (band)
    against env steps per seed. Returns (fig, {metric: {label: curve_series(...)}})."""
    if not groups:
        raise AnalysisError("no methods to plot")

    def draw(ax, i, label, g, key, spec):
        c = curve_series(g, key, window)
        x = c["steps"]
        ax.plot(x, c["mean"] * spec.scale, color=_color(i), label=label, lw=1.5)
        ax.fill_between(x, (c["mean"] - c["std"]) * spec.scale, (c["mean"] + c["std"]) * spec.scale,
                        color=_color(i), alpha=0.2, lw=0)
        return c

    fig, axes, data = _metric_panels(metrics, [(g.label, g) for g in groups], 4.6, 3.2, draw)
    for ax in axes[:len(metrics)]:
        ax.set_xlabel("env steps per seed")
        ax.xaxis.set_major_formatter(_eng())
    sub = "band: ± std over seeds"
    logged = [n for curves in data.values() for c in curves.values() for n in c["episodes"]]
    if window > 1 and logged and max(logged) < window:
        # no seed reached the window: every point is the mean since the start (as the table says it)
        sub = tables.protocol_text("paper", window, short=True) + "; " + sub
    elif window > 1:
        sub = (f"trailing mean over >= {window:,} episodes"
               + (" (all logged, where a seed logged fewer)" if min(logged, default=window) < window else "")
               + "; " + sub)
    fig.suptitle((title + "\n" if title else "") + sub, fontsize="medium")
    fig.tight_layout()
    return fig, data


# ----------------------------------------------------------------------------- bars, scatter
def _bar_or_na(ax, y: float, mean: float, std: float, **style) -> None:
    """A horizontal bar of `mean` ± `std` at row `y`, or "n/a" written there when the mean is
    undefined (no seed defines the metric, e.g. MTTR without a response): a bar of 0 would read
    as a value, for MTTR the best one."""
    if not np.isfinite(mean):
        ax.text(0, y, " n/a", va="center", ha="left", fontsize="small", color="dimgray")
        return
    ax.barh(y, mean, xerr=std if np.isfinite(std) else None, capsize=3, **style)


def metric_bars(results: Sequence[MethodResult], metrics: Sequence[str] = runs_lib.TABLE_METRICS,
                with_paper: bool | str = True, title: str | None = None):
    """Per metric a panel: a horizontal bar per method (mean over seeds) with ± population-std error bars,
    and the paper's value (diamond, its std as error bar) where the paper has the method and the
    results are on its env. `with_paper="all"` also places the paper's methods we have no
    results for, as diamonds alone (label `<name> (paper)`), in the paper's order.
    Returns (fig, {metric: {label: (mean, std)}}), paper-only entries included."""
    if not results:
        raise AnalysisError("no methods to plot")
    results = list(results)
    comparable = all(r.comparable_to_paper for r in results)
    # slots: (label, result or None, algo); paper-only methods go where the paper lists them
    slots = [(r.label, r, r.algo) for r in results]
    if with_paper == "all" and comparable:
        have = {paper_lib.paper_key(r.algo) for r in results}
        for algo in runs_lib.PAPER_METHODS:
            if algo not in have:
                at = next((i for i, sl in enumerate(slots)
                           if runs_lib.method_order(sl[2]) > runs_lib.method_order(algo)), len(slots))
                slots.insert(at, (runs_lib.display_name(algo) + " (paper)", None, algo))
    fig, axes, _ = _method_rows(len(metrics), [sl[0] for sl in slots])
    data: dict = {}
    drew_paper = False
    for ax, key in zip(axes, metrics):
        spec = runs_lib.metric(key)
        data[key] = {}
        for i, (label, r, algo) in enumerate(slots):
            if r is not None:
                st = r.stat(key)
                data[key][label] = (st.mean, st.std)
                _bar_or_na(ax, i, st.mean * spec.scale, st.std * spec.scale, color=_color(i), alpha=0.85)
            pub = paper_lib.published(algo) if (with_paper and comparable) else None
            if pub and key in pub:
                if r is None:
                    data[key][label] = pub[key]
                ax.errorbar(pub[key][0] * spec.scale, i, xerr=pub[key][1] * spec.scale, fmt="D",
                            color="black", ms=5, capsize=3)
                drew_paper = True
        ax.set_title(spec.label)
        ax.grid(axis="x", alpha=0.3)
        ax.axvline(0, color="black", lw=0.5)
    # The key goes under the title: a legend inside a panel would cover a method's row.
    key_line = "bars: mean ± std over seeds" + ("; ◆ paper (Table II)" if drew_paper else "")
    fig.suptitle((title + "\n" if title else "") + key_line, fontsize="medium")
    fig.tight_layout()
    return fig, data


def seed_scatter(results: Sequence[MethodResult], metrics: Sequence[str] = runs_lib.TABLE_METRICS,
                 with_paper: bool = True, title: str | None = None):
    """Per metric a panel: every seed's value per method (dots in a row, seeds in order), the
    mean (tick), and the paper's per-seed values where published (hollow squares).
    Returns (fig, {metric: {label: {seed: value}}})."""
    if not results:
        raise AnalysisError("no methods to plot")
    fig, axes, _ = _method_rows(len(metrics), [r.label for r in results])
    data: dict = {}
    drew_paper = False
    for ax, key in zip(axes, metrics):
        spec = runs_lib.metric(key)
        data[key] = {}
        for i, r in enumerate(results):
            vals = r.values(key)
            seeds = [s.seed for s in r.seeds]
            data[key][r.label] = dict(zip(seeds, vals.tolist()))
            n = len(vals)
            offsets = np.linspace(-0.25, 0.25, n) if n > 1 else np.zeros(1)
            ax.scatter(vals * spec.scale, i + offsets, color=_color(i), s=18, zorder=3)
            if np.isfinite(vals).any():
                ax.vlines(finite_mean(vals) * spec.scale, i - 0.3, i + 0.3, color="black", lw=1.2)
            if with_paper and r.comparable_to_paper:
                pub = paper_lib.published_per_seed(r.algo).get(key)
                if pub:
                    pv = np.array(list(pub.values()))
                    ax.scatter(pv * spec.scale, i + np.linspace(-0.25, 0.25, len(pv)), facecolors="none",
                               edgecolors="black", marker="s", s=22, zorder=2)
                    drew_paper = True
        ax.set_title(spec.label + " per seed")
        ax.grid(axis="x", alpha=0.3)
    key_line = "dots: seeds, |: their mean" + ("; □ paper's seeds" if drew_paper else "")
    fig.suptitle((title + "\n" if title else "") + key_line, fontsize="medium")
    fig.tight_layout()
    return fig, data


# ----------------------------------------------------------------------------- HMARL figures
def attention_maps(weights, token_names: Sequence[str], decision_labels: Sequence[str] | None = None,
                   head_names: Sequence[str] | None = None, title: str | None = None):
    """A heatmap per decision: rows = heads plus their mean, columns = tokens.

    `weights`: `[decisions, heads, tokens]`. Returns (fig, {"weights": array, "mean": [D, T]}).
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 3:
        raise AnalysisError(f"attention weights must be [decisions, heads, tokens], got shape {w.shape}")
    d, h, t = w.shape
    if len(token_names) != t:
        raise AnalysisError(f"{len(token_names)} token names for {t} tokens")
    if decision_labels is not None and len(decision_labels) != d:
        raise AnalysisError(f"{len(decision_labels)} decision labels for {d} decisions")
    heads = list(head_names) if head_names is not None else [f"head {i + 1}" for i in range(h)]
    if len(heads) != h:
        raise AnalysisError(f"{len(heads)} head names for {h} heads")
    mean = w.mean(axis=1)
    plt = _plt()
    fig, axes = plt.subplots(d, 1, figsize=(max(4.0, 0.45 * t + 2.0), (0.32 * (h + 1) + 0.9) * d), squeeze=False)
    vmax = float(w.max()) if w.size else 1.0
    for i, ax in enumerate(axes[:, 0]):
        img = np.vstack([w[i], mean[i][None]])
        im = ax.imshow(img, aspect="auto", cmap="viridis", vmin=0.0, vmax=vmax)
        # The colour starts at 0, so a near-uniform map is one colour, as it should read; the
        # printed weights show how near (few tokens: a segment each).
        if t <= 12:
            for (r, c), v in np.ndenumerate(img):
                ax.text(c, r, f"{v:.3f}", ha="center", va="center", fontsize="x-small",
                        color="k" if v > 0.6 * vmax else "w")
        ax.set_yticks(range(h + 1), heads + ["mean"], fontsize="small")
        ax.set_xticks(range(t), token_names, rotation=45, ha="right", fontsize="small")
        ax.set_title(decision_labels[i] if decision_labels is not None else f"decision {i + 1}", fontsize="small")
        fig.colorbar(im, ax=ax, fraction=0.025)
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return fig, {"weights": w, "mean": mean}


def attention_with_truth(examples: Sequence[Mapping], segment_names: Sequence[str],
                         campaign_names: Sequence[str], title: str | None = None):
    """Attention beside the ground truth, one panel per decision: the first row is the explainer's
    head-mean attention over segments (the directive's focus boxed), the next rows whether each
    campaign holds a live host there. `examples`: `{attention [S], focus, held [C, S], step,
    episode}` (`explain.example_decisions`), with `campaign_names` of its own where an example's
    campaigns differ (another episode's). Returns (fig, {"attention": [D, S], "held": [D, C, S]})."""
    if not examples:
        raise AnalysisError("no decisions with an attacked segment to draw")
    att = np.stack([np.asarray(e["attention"], np.float64) for e in examples])
    held = np.stack([np.asarray(e["held"], np.float64) for e in examples])
    d, s = att.shape
    c = held.shape[1]
    if len(segment_names) != s or len(campaign_names) != c:
        raise AnalysisError(f"{len(segment_names)} segment and {len(campaign_names)} campaign names "
                            f"for {s} segments and {c} campaigns")
    plt = _plt()
    # Constrained layout keeps the figure's title clear of the first panel's, which tight_layout
    # cannot do for a single short panel; the title gets its own headroom.
    fig, axes = plt.subplots(d, 2, figsize=(0.5 * s + 4.0, (0.3 * (c + 1) + 0.9) * d + 0.4), squeeze=False,
                             gridspec_kw={"width_ratios": [30, 1]}, layout="constrained")
    for i, e in enumerate(examples):
        ax = axes[i, 0]
        # The colour runs from 0 to at least twice the uniform weight 1/S, so a near-uniform map
        # looks uniform: spanning the weights' own range drew weights 0.099-0.100 from yellow to
        # purple, a sharp map that is not there. Each cell also prints its weight.
        im = ax.imshow(att[i][None], aspect="auto", cmap="viridis", vmin=0.0,
                       vmax=max(2.0 / s, float(att.max())), extent=(-0.5, s - 0.5, 0.5, -0.5))
        for j in range(s):
            ax.text(j, 0.0, f"{att[i, j]:.3f}", ha="center", va="center", fontsize="x-small", color="w")
        ax.imshow(np.ma.masked_equal(held[i], 0.0), aspect="auto", cmap="Reds", vmin=0.0, vmax=1.5,
                  extent=(-0.5, s - 0.5, c + 0.5, 0.5))
        ax.add_patch(plt.Rectangle((e["focus"] - 0.5, -0.5), 1.0, 1.0, fill=False, edgecolor="white", lw=2.0))
        ax.set_ylim(c + 0.5, -0.5)
        ax.set_yticks(range(c + 1), ["attention"] + list(e.get("campaign_names", campaign_names)), fontsize="small")
        ax.set_xticks(range(s), segment_names, rotation=45, ha="right", fontsize="small")
        ax.set_title(f"episode {e['episode']}, decision at step {e['step']}: focus "
                     f"{segment_names[e['focus']]} (boxed); red: held by the campaign", fontsize="small")
        fig.colorbar(im, cax=axes[i, 1])
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig, {"attention": att, "held": held}


def k_sweep(sweep: Mapping[str, Mapping[int, Mapping[str, Sequence[float]]]],
            metrics: Sequence[str] = ("return", "csr", "mttr", "fpr"), title: str | None = None):
    """Per metric a panel: each method's mean ± population std over seeds against K (log x).
    Returns (fig, {metric: {label: {"k": [...], "mean": [...], "std": [...]}}})."""
    if not sweep:
        raise AnalysisError("no K-sweep runs to plot")

    def draw(ax, i, label, by_k, key, spec):
        ks = sorted(by_k)
        stats = [runs_lib.Stat.of(by_k[k].get(key, [])) for k in ks]
        mean = np.array([s.mean for s in stats])
        std = np.array([s.std for s in stats])
        ax.errorbar(ks, mean * spec.scale, yerr=std * spec.scale, marker="o", capsize=3,
                    color=_color(i), label=label)
        return {"k": ks, "mean": mean, "std": std}

    fig, axes, data = _metric_panels(metrics, list(sweep.items()), 4.2, 3.0, draw)
    allk = sorted({k for v in sweep.values() for k in v})
    for ax in axes[:len(metrics)]:
        ax.set_xscale("log")
        ax.set_xticks(allk, [str(k) for k in allk])
        ax.set_xticks([], minor=True)  # a log axis labels its minor ticks (6 x 10^0) otherwise
        ax.set_xlabel("K (coordinator period, env steps)")
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return fig, data


def k_sweep_data(results: Sequence[MethodResult], groups: Sequence[Group],
                 key: str = "directive_period", default: int = 5) -> dict:
    """`{algo display name: {K: {metric: per-seed values}}}` from results of runs tagged by K
    (their `env.<key>`; runs without it have K = `default`). `groups[i]` made `results[i]`."""
    out: dict = {}
    for r, g in zip(results, groups):
        k = int(g.env.get(key, default))
        name = runs_lib.display_name(r.algo)
        out.setdefault(name, {})[k] = {m: r.values(m).tolist() for m in runs_lib.EVAL_METRICS}
    return out


def ablation_chart(variants: Mapping[str, Mapping[str, Sequence[float]]],
                   metrics: Sequence[str] = ("return", "csr", "mttr", "fpr"), reference: str | None = None,
                   title: str | None = None):
    """Per metric a panel of horizontal bars (mean ± population std over seeds) per variant; a
    dashed line marks the reference variant (default: the first). Returns (fig, {metric:
    {variant: (mean, std)}})."""
    if not variants:
        raise AnalysisError("no ablation variants to plot")
    labels = list(variants)
    reference = reference or labels[0]
    if reference not in variants:
        raise AnalysisError(f"reference variant {reference!r} is not among {labels}")
    fig, axes = _grid(len(metrics), 4.0, 0.45 * len(labels) + 1.2)
    data: dict = {}
    y = np.arange(len(labels))
    for ax, key in zip(axes, metrics):
        spec = runs_lib.metric(key)
        stats = [runs_lib.Stat.of(variants[v].get(key, [])) for v in labels]
        mean = np.array([s.mean for s in stats])
        std = np.array([s.std for s in stats])
        data[key] = {v: (m, s) for v, m, s in zip(labels, mean, std)}
        for i, v in enumerate(labels):
            _bar_or_na(ax, y[i], mean[i] * spec.scale, std[i] * spec.scale,
                       color="tab:blue" if v == reference else "tab:gray")
        ref = data[key][reference][0]
        if np.isfinite(ref):
            ax.axvline(ref * spec.scale, color="black", ls="--", lw=0.8)
        ax.set_yticks(y, labels, fontsize="small")
        ax.invert_yaxis()
        ax.set_title(spec.label)
        ax.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return fig, data
