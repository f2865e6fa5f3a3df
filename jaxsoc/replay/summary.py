"""The one-page summary of a replay trace: `draw_summary(trace) -> figure`.

  * timeline of the first episode: hosts compromised / detected / isolated over its steps (summed
    over segments, from the trace's counts) and the return so far;
  * the host map at its last step (how it ended);
  * the directive over its steps (v2: the focus segment, coloured by posture; v1: d0, d1, d4);
  * the threat hunter's intensity per segment over its steps, and the coordinator's attention
    (where the learner has one);
  * one line per episode: outcome, length, return, CSR, MTTD, MTTR, hosts compromised.
"""
from __future__ import annotations

import numpy as np
from matplotlib.ticker import MaxNLocator

from jaxsoc.replay.frame import (GROUP_COLORS, GROUPS, action_levels, draw_host_map, segment_labels, status_legend,
                                 status_table)

POSTURE_COLORS = ("#4f8fd6", "#f9a65a", "#e2504c")  # watch, hunt, contain
TABLE_METRICS = (("csr", "CSR", "{:.0%}"), ("mttd", "MTTD", "{:.1f}"), ("mttr", "MTTR", "{:.1f}"),
                 ("hosts_compromised", "hosts compromised", "{:.0f}"))


def step_axis(ax) -> None:
    """Label `ax`'s x axis as steps, with whole-number ticks."""
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def timeline(trace: dict, episode: dict) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """`(t [T], {group: hosts [T]} summed over segments, return so far [T])` of one episode."""
    t = np.array([st["t"] for st in episode["steps"]])
    tables = np.stack([status_table(trace, st)[1].sum(0) for st in episode["steps"]])  # [T, groups]
    ret = np.array([st["return"] for st in episode["steps"]], dtype=float)
    return t, {g: tables[:, i] for i, (g, _) in enumerate(GROUPS)}, ret


def episode_rows(trace: dict) -> list[list[str]]:
    """One row per episode: index, outcome, length, return and `TABLE_METRICS` (n/a where undefined)."""
    rows = []
    for ep in trace["episodes"]:
        cells = [str(ep["index"]), ep["outcome"], str(ep["length"]), f"{ep['return']:+.2f}"]
        for key, _, fmt in TABLE_METRICS:
            v = ep["metrics"].get(key)
            cells.append("n/a" if v is None else fmt.format(v))
        rows.append(cells)
    return rows


def draw_summary(trace: dict):
    """The summary figure of `trace` (module docstring)."""
    import matplotlib.pyplot as plt

    ep = trace["episodes"][0]
    s = len(trace["segments"])
    fig = plt.figure(figsize=(12.8, 10.0))
    gs = fig.add_gridspec(4, 2, height_ratios=(2.2, 2.4, 2.0, 1.0), left=0.12, right=0.94, top=0.93,
                          bottom=0.05, hspace=0.55, wspace=0.3)
    who = f"{trace['algo']} on {trace['scenario']}" + (f", seed {trace['seed']}" if trace.get("run") else "")
    ck = f", checkpoint {trace['checkpoint_update']}" if trace.get("checkpoint_update") is not None else ""
    mode = "scripted" if trace["scripted"] else "greedy" if trace["greedy"] else "sampled"
    fig.suptitle(f"{who}{ck}: {len(trace['episodes'])} {mode} episode(s); episode 0 in detail", fontsize=13)

    # Timeline of episode 0.
    ax = fig.add_subplot(gs[0, :])
    t, groups, ret = timeline(trace, ep)
    for i, (g, _) in enumerate(GROUPS[1:], start=1):
        ax.plot(t, groups[g], color=GROUP_COLORS[i] if g != "isolated clean" else "#777777", linewidth=2, label=g)
    step_axis(ax)
    ax.set_ylabel("hosts")
    ax.set_xlim(0.5, max(t[-1], 1) + 0.5)
    top = max(max(float(groups[g].max()) for g, _ in GROUPS[1:]), 1.0)
    ax.set_ylim(-0.02 * top, top * 1.45)  # headroom for the legend, inside the axes
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    twin = ax.twinx()
    twin.plot(t, ret, color="black", linestyle="--", linewidth=1.2, label="return so far")
    twin.set_ylabel("return so far")
    low, high = float(ret.min()), float(ret.max())
    span = max(high - low, 1.0)
    twin.set_ylim(low - 0.02 * span, low + 1.45 * span)  # the same headroom
    lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(lines, [h.get_label() for h in lines], fontsize=9, ncol=5, loc="upper left", frameon=False)
    ax.set_title(f"episode 0: {ep['outcome']} after {ep['length']} steps, return {ep['return']:+.2f}",
                 fontsize=11, loc="left")

    # The host map at the last step.
    ax = fig.add_subplot(gs[1, 0])
    draw_host_map(ax, trace, ep["steps"][-1]["hosts"])
    ax.set_title(f"hosts at step {ep['steps'][-1]['t']} (the end)", fontsize=11, loc="left")

    # The directive over time.
    ax = fig.add_subplot(gs[1, 1])
    if trace["directive"]["kind"] == "discrete":
        focus = np.array([trace["segments"].index(st["directive"]["focus"]) for st in ep["steps"]])
        posture = [trace["directive"]["postures"].index(st["directive"]["posture"]) for st in ep["steps"]]
        for k, name in enumerate(trace["directive"]["postures"]):
            mask = np.array(posture) == k
            ax.scatter(t[mask], focus[mask], s=14, color=POSTURE_COLORS[k % len(POSTURE_COLORS)], label=name)
        ax.set_yticks(range(s), segment_labels(trace), fontsize=9)
        ax.set_ylim(s - 0.5, -0.5)
        ax.legend(fontsize=9, ncol=len(trace["directive"]["postures"]), loc="lower right",
                  bbox_to_anchor=(1.0, 1.0), frameon=False, borderaxespad=0.2, handletextpad=0.1)
        ax.set_title("directive focus", fontsize=11, loc="left")  # the legend names the postures
    else:
        vec = np.array([st["directive"]["vector"] for st in ep["steps"]], dtype=float)
        for i in (0, 1, 4):
            ax.plot(t, vec[:, i], label=f"d{i}", linewidth=1.5)
        ax.set_ylim(-1.05, 1.05)
        ax.legend(fontsize=9, ncol=3, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False,
                  borderaxespad=0.2)
        ax.set_title("directive (its acting entries)", fontsize=11, loc="left")
    step_axis(ax)

    # Hunt intensity per segment over time, and the attention where there is one.
    ax = fig.add_subplot(gs[2, 0])
    hunt = np.stack([action_levels(trace, st["actions"])[1][:, 0] for st in ep["steps"]], axis=1)  # [S, T]
    im = ax.imshow(hunt, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest",
                   extent=(t[0] - 0.5, t[-1] + 0.5, s - 0.5, -0.5))
    ax.set_yticks(range(s), segment_labels(trace), fontsize=9)
    step_axis(ax)
    ax.set_title("threat hunter intensity (0..1)", fontsize=11, loc="left")
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    ax = fig.add_subplot(gs[2, 1])
    if any(st["attention"] is not None for st in ep["steps"]):
        att = np.stack([np.full(s, np.nan) if st["attention"] is None else
                        np.asarray(st["attention"]["weights"], dtype=float).mean(0) for st in ep["steps"]], axis=1)
        im = ax.imshow(att, cmap="Purples", vmin=0, vmax=1, aspect="auto", interpolation="nearest",
                       extent=(t[0] - 0.5, t[-1] + 0.5, s - 0.5, -0.5))
        ax.set_yticks(range(s), segment_labels(trace), fontsize=9)
        step_axis(ax)
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
        ax.set_title("coordinator attention over segments (mean of heads)", fontsize=11, loc="left")
    else:
        triage = np.array([st["actions"]["alert_triage"] for st in ep["steps"]]).reshape(len(t), -1)[:, 0]
        names = trace["triage_names"]
        ax.bar(range(len(names)), [int(np.sum(triage == k)) for k in range(len(names))], color="#6a3d9a")
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel("steps")
        ax.set_title("alert triage actions", fontsize=11, loc="left")

    # Every episode in one line.
    ax = fig.add_subplot(gs[3, :])
    ax.axis("off")
    head = ["episode", "outcome", "length", "return"] + [label for _, label, _ in TABLE_METRICS]
    rows = episode_rows(trace)
    shown = rows[:8] + ([["..."] + [""] * (len(head) - 1)] if len(rows) > 8 else [])
    table = ax.table(cellText=shown, colLabels=head, loc="upper center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1, 1.25)
    status_legend(fig, trace)
    return fig
