"""One step of a replay trace as a picture: `draw_frame(fig, trace, step)`.

The frame is a function of the trace's header (segment names, status names, the directive's kind)
and one step record (`jaxsoc.replay.trace`), nothing else: the same step draws the same pixels,
and every number on it is read from the step. Panels:

  * host map: one row per segment, one cell per host, coloured by status (clean, compromised by
    stage, detected, isolated); high-value segments marked;
  * hosts per segment: the status counts, as a SOC groups them (clean, compromised, detected,
    isolated);
  * per segment, 0..1: the threat hunter's intensity and the response orchestrator's
    isolate/remediate (/release) levels as the agents ask for them ((a + 1) / 2, before the
    directive's boosts), and, where the
    learner has an explainer (hmarl), the coordinator's attention (mean over heads) for the
    decision in force;
  * alert queue by segment (true and benign alerts), the step's reward as its weighted terms, and
    the directive in force.
"""
from __future__ import annotations

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

# Status colours, in STATUS_NAMES order: calm to alarming for the stages, cool for what the SOC did.
STATUS_COLORS = ("#dfeedd", "#ffe08a", "#f9a65a", "#e2504c", "#8b0000", "#4f8fd6", "#6a3d9a", "#a6a6a6")
PADDING_COLOR = "#ffffff"
FIGSIZE = (12.8, 7.2)  # inches; 1280 x 720 at the animation's default dpi of 100

# The counts table's columns: clean, compromised (any stage, not yet known), detected, isolated
# compromised hosts, isolated clean hosts (blind isolations), each in its map colour (compromised:
# the colour of the segment's most advanced stage).
GROUPS = (("clean", (0,)), ("compromised", (1, 2, 3, 4)), ("detected", (5,)), ("isolated", (6,)),
          ("isolated clean", (7,)))
GROUP_COLORS = (STATUS_COLORS[0], STATUS_COLORS[3], STATUS_COLORS[5], STATUS_COLORS[6], STATUS_COLORS[7])
_DARK_GROUPS = (2, 3)  # white text on these (and on the late stages, below)

TERM_LABELS = {"false_positive": "false pos."}  # short enough for the panel's margin

_CMAP = mcolors.ListedColormap((PADDING_COLOR,) + STATUS_COLORS)
_NORM = mcolors.BoundaryNorm(np.arange(-1.5, len(STATUS_COLORS)), _CMAP.N)


def segment_labels(trace: dict) -> list[str]:
    """Segment names, high-value ones marked `(HV)`."""
    return [f"{n} (HV)" if hv else n for n, hv in zip(trace["segments"], trace["high_value"])]


def draw_host_map(ax, trace: dict, grid) -> None:
    """A `[S, Hmax]` status grid on `ax`: a row per segment, a cell per host, in STATUS_COLORS."""
    # Columns past the largest segment are the env's padding of the host axis (soc-strategic's
    # 20-host segments are stored 24 wide): not hosts, so not drawn.
    grid = np.asarray(grid)[:, :max(trace["hosts_per_segment"])]
    s = grid.shape[0]
    ax.imshow(grid, cmap=_CMAP, norm=_NORM, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(s), segment_labels(trace), fontsize=10)
    ax.set_xlabel("host")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # Cell borders as two line collections (minor ticks would cost a tick object per host).
    if grid.shape[1] <= 60:
        ax.vlines(np.arange(0.5, grid.shape[1] - 1), -0.5, s - 0.5, colors="white", linewidth=0.6)
    ax.hlines(np.arange(0.5, s - 1), -0.5, grid.shape[1] - 0.5, colors="white", linewidth=1.5)


def status_legend(fig, trace: dict) -> None:
    """The status colours' legend along the bottom of `fig`."""
    fig.legend(handles=[Patch(color=col, label=n) for col, n in zip(STATUS_COLORS, trace["status_names"])],
               loc="lower center", ncol=len(STATUS_COLORS), fontsize=9, frameon=False, bbox_to_anchor=(0.5, 0.0))


def status_table(trace: dict, step: dict) -> tuple[list[str], np.ndarray]:
    """`(column names, [S, len(GROUPS)] counts)`: the step's status counts summed into `GROUPS`."""
    names = trace["status_names"]
    table = np.stack([sum(np.asarray(step["counts"][names[i]]) for i in codes) for _, codes in GROUPS], axis=1)
    return [g for g, _ in GROUPS], table.astype(int)


def segment_levels(trace: dict, step: dict) -> tuple[list[str], np.ndarray]:
    """The actions panel's columns and `[S, k]` values in 0..1: `action_levels`, plus the
    coordinator's attention (mean over heads) where the step has one."""
    cols, levels = action_levels(trace, step["actions"])
    att = step.get("attention")
    if att is None:
        return cols, levels
    weights = np.asarray(att["weights"], dtype=float).mean(axis=0)
    return cols + ["attention"], np.concatenate([levels, weights[:, None]], axis=1)


def worst_stage(trace: dict, step: dict, row: int) -> int:
    """The most advanced stage (1..4) among segment `row`'s undetected compromised hosts (1 if none):
    the counts table colours its "compromised" cell with it, as the map colours those hosts."""
    names = trace["status_names"]
    present = [code for code in GROUPS[1][1] if step["counts"][names[code]][row]]
    return max(present, default=GROUPS[1][1][0])


def action_levels(trace: dict, actions: dict) -> tuple[list[str], np.ndarray]:
    """The per-segment tier-2 action levels asked for, `(names, [S, k])` in 0..1 ((a + 1) / 2, before
    the directive's boosts): hunt intensity (threat_hunter[:S]), isolate (response[:S]), remediate
    (response[S:2S]) and, where the response has 3S entries, release (response[2S:3S])."""
    s = len(trace["segments"])
    hunt = np.asarray(actions["threat_hunter"], dtype=float)
    resp = np.asarray(actions["response_orchestrator"], dtype=float)
    cols = [("hunt", hunt[:s]), ("isolate", resp[:s]), ("remediate", resp[s:2 * s])]
    if resp.size == 3 * s:
        cols.append(("release", resp[2 * s:3 * s]))
    levels = (np.clip(np.stack([c for _, c in cols], axis=1), -1.0, 1.0) + 1.0) / 2.0
    return [n for n, _ in cols], levels


def reward_parts(trace: dict, step: dict) -> tuple[list[str], np.ndarray]:
    """`(term names, weight x term)`: the parts whose sum is the step's reward."""
    keys = list(step["reward_terms"])
    w = trace["reward_weights"]
    return keys, np.array([w[k] * (step["reward_terms"][k] or 0.0) for k in keys])


def directive_text(trace: dict, step: dict) -> str:
    """The directive in force, on short lines, and whether the env read it this step."""
    d = step["directive"]
    read = "read this step" if d["read"] else "held"
    if trace["directive"]["kind"] == "discrete":
        return f"directive ({read}):\nfocus {d['focus']}\nposture {d['posture']}"
    v = d["vector"]
    return f"directive ({read}):\nd0 {v[0]:+.2f}  d1 {v[1]:+.2f}\nd4 {v[4]:+.2f} (d2, d3, d5-d7 inert)"


def title(trace: dict, step: dict, episode: int | None = None) -> str:
    """The frame's title: who, which step, the attacker's phase, the triage action, the return so
    far and, on an episode's last step, how it ended."""
    ep = "" if episode is None else f"episode {episode} · "
    triage = step["actions"]["alert_triage"]
    triage = triage[0] if isinstance(triage, list) else triage
    name = trace["triage_names"][triage] if isinstance(triage, int) and 0 <= triage < 4 else str(triage)
    end = f" · {step['outcome'].upper()}" if step.get("outcome") else ""
    return (f"{trace['algo']} on {trace['scenario']} · {ep}step {step['t']}/{trace['max_steps']} · "
            f"attacker: {trace['phase_names'][step['phase']]} · triage: {name} · "
            f"return so far {step['return']:+.2f}{end}")


def draw_frame(fig, trace: dict, step: dict, episode: int | None = None) -> dict:
    """Clears `fig` and draws `step` of `trace` on it (module docstring). Returns the axes by
    panel name ("map", "counts", "actions", "queue", "reward", "coordinator")."""
    fig.clear()
    s = len(trace["segments"])
    grid = np.asarray(step["hosts"])
    gs = fig.add_gridspec(2, 3, width_ratios=(4.8, 2.3, 2.3), height_ratios=(3.0, 1.35),
                          left=0.12, right=0.985, top=0.9, bottom=0.15, wspace=0.3, hspace=0.55)
    ax = {"map": fig.add_subplot(gs[0, 0])}
    ax["counts"] = fig.add_subplot(gs[0, 1], sharey=ax["map"])
    ax["actions"] = fig.add_subplot(gs[0, 2], sharey=ax["map"])
    ax["queue"] = fig.add_subplot(gs[1, 0])
    ax["reward"] = fig.add_subplot(gs[1, 1])
    ax["coordinator"] = fig.add_subplot(gs[1, 2])
    fig.suptitle(title(trace, step, episode), fontsize=12)

    draw_host_map(ax["map"], trace, grid)
    ax["map"].set_title("hosts", fontsize=11, loc="left")

    # Hosts per segment: the status counts, grouped as a SOC reads them.
    groups, table = status_table(trace, step)
    c = ax["counts"]
    c.imshow(np.zeros_like(table), cmap=mcolors.ListedColormap(["#ffffff"]), aspect="auto")
    for (row, col), v in np.ndenumerate(table):
        color = GROUP_COLORS[col] if col != 1 else STATUS_COLORS[worst_stage(trace, step, row)]
        c.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, color=color if v else "#ffffff"))
        c.text(col, row, str(v), ha="center", va="center", fontsize=10,
               color="white" if v and (col in _DARK_GROUPS or (col == 1 and worst_stage(trace, step, row) >= 3))
               else "#222222")
    c.set_xticks(range(len(groups)), groups, rotation=30, ha="right", fontsize=9)
    c.tick_params(labelleft=False, length=0)
    c.set_title("hosts per segment", fontsize=11, loc="left")

    # Tier-2 actions per segment, and the coordinator's attention where it has one.
    cols, levels = segment_levels(trace, step)
    a = ax["actions"]
    a.imshow(levels, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for (row, col), v in np.ndenumerate(levels):
        a.text(col, row, f"{v:.2f}", ha="center", va="center", fontsize=8,
               color="white" if v > 0.6 else "#222222")
    a.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=9)
    a.tick_params(labelleft=False)
    a.set_title("per segment (0..1)", fontsize=11, loc="left")

    # Alert queue by segment.
    q = ax["queue"]
    true = np.asarray(step["queue"]["true_by_segment"], dtype=float)
    total = np.asarray(step["queue"]["by_segment"], dtype=float)
    q.bar(range(s), true, color="#e2504c", label="true")
    q.bar(range(s), total - true, bottom=true, color="#bdbdbd", label="benign")
    q.set_xticks(range(s), trace["segments"], fontsize=9, rotation=0 if s <= 6 else 30,
                 ha="center" if s <= 6 else "right")
    q.set_title(f"alert queue: {step['queue']['length']} queued, {step['queue']['true']} true",
                fontsize=11, loc="left")
    q.set_ylim(0, max(float(total.max()), 1.0) * 1.2)
    q.yaxis.set_major_locator(MaxNLocator(integer=True))
    q.legend(fontsize=8, ncol=2, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False, borderaxespad=0.2)

    # The step's reward as the weighted sum of its terms.
    r = ax["reward"]
    keys, vals = reward_parts(trace, step)
    r.barh(range(len(vals)), vals, color=["#4f8fd6" if v >= 0 else "#e2504c" for v in vals])
    r.set_yticks(range(len(vals)), [TERM_LABELS.get(k, k) for k in keys], fontsize=9)
    r.axvline(0, color="#555555", linewidth=0.8)
    bound = max(float(np.abs(vals).max()), 0.5)
    r.set_xlim(-bound * 1.15, bound * 1.15)
    r.invert_yaxis()
    r.set_title(f"reward {step['reward']:+.2f} = sum of", fontsize=11, loc="left")

    # Coordinator: the directive in force, and which decision the attention column shows.
    k = ax["coordinator"]
    k.axis("off")
    k.set_title("coordinator", fontsize=11, loc="left")
    att = step.get("attention")
    text = directive_text(trace, step)
    if att is not None:
        text += f"\n\nattention: the decision\nof step {att['decided_at']}"
    k.text(0.0, 0.95, text, transform=k.transAxes, fontsize=9.5, va="top", linespacing=1.4)

    status_legend(fig, trace)
    return ax
