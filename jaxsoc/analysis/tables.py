"""Table II: rows = methods, columns = metrics, cells = mean ± population std over seeds.

    table = build_table(results, protocol="paper")           # results: MethodResults
    print(to_markdown(table)); write_table(table, "out/", "table2_paper")   # .md .csv .tex

Cells are `mean ± std` in display units (FPR/CSR/exfiltration in percent). A metric defined
for only part of the episodes (v2's MTTD/MTTR) shows the share of episodes behind it, `(83%)`;
a method with fewer seeds than others shows its seed count. With `paper="matched"` each of our
rows is followed by the paper's published row for that method (when the table is on the
paper's env, `hmarl-soc-v1` without overrides); `paper="all"` also lists the paper's methods we
have no run for. CSV cells are in metric units (fractions, not percent), one column per
mean/std/seed count/coverage.
"""
from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Sequence

from jaxsoc.analysis import paper as paper_lib
from jaxsoc.analysis import runs as runs_lib
from jaxsoc.analysis.runs import AnalysisError, MethodResult, Stat

PROTOCOLS = {
    "paper": "mean over the last 2,000 training episodes per seed (the paper's protocol)",
    "ours": "greedy policy on held-out episodes per seed",
}
PAPER_WINDOW = 2000  # the paper's window of training episodes (protocols.WINDOW_EPISODES)


def protocol_text(protocol: str, window: int = PAPER_WINDOW, short: bool = False,
                  policy: str = "greedy policy") -> str:
    """What a protocol's numbers are, for a title: the paper protocol's with its `window`, or
    with `short` (no seed logged `window` episodes) every logged episode; the ours protocol's
    with the `policy` its evaluations acted with (`evaluated_policy`)."""
    if protocol == "ours":
        return f"{policy} on held-out episodes per seed"
    if protocol == "paper" and short:
        return f"mean over every logged training episode per seed (fewer than the window of {window:,})"
    if protocol == "paper" and window != PAPER_WINDOW:
        return f"mean over the last {window:,} training episodes per seed (the paper's protocol uses {PAPER_WINDOW:,})"
    return PROTOCOLS.get(protocol, protocol)


def evaluated_policy(results: Sequence[MethodResult]) -> str:
    """How the ours-protocol `results` acted, for a title: "greedy policy", "stochastic policy"
    (sampled actions), or "greedy and stochastic policies (see notes)" when they differ."""
    kinds = {bool(s.info.get("greedy", True)) for r in results for s in r.seeds}
    if kinds == {False}:
        return "stochastic policy"
    return "greedy and stochastic policies (see notes)" if len(kinds) > 1 else "greedy policy"


def known_metrics(groups: Sequence[runs_lib.Group]) -> list[str]:
    """The metric names a table or figure of `groups` can fill: those with a display spec
    (`runs.METRICS`) and those the runs log (the first line of each metrics.jsonl, each
    evaluation.json); a file that cannot be read adds nothing here (the protocols report it)."""
    import json

    names = set(runs_lib.METRICS)
    for g in groups:
        for run in g.runs:
            try:
                with open(run.path / "metrics.jsonl") as f:
                    names.update(json.loads(f.readline()).get("metrics") or {})
            except (OSError, ValueError, AttributeError):
                pass
            try:
                record = json.loads((run.path / "evaluation.json").read_text())
                for entry in record["seeds"].values():
                    names.update(entry["metrics"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass
    return sorted(names)


def check_metrics(metrics: Sequence[str], groups: Sequence[runs_lib.Group]) -> None:
    """AnalysisError naming the first of `metrics` that `known_metrics(groups)` lacks, with those known."""
    known = known_metrics(groups)
    for m in metrics:
        if m not in known:
            raise AnalysisError(f"unknown metric {m!r} (known: {', '.join(known)})")


def check_formats(formats: Sequence[str]) -> None:
    """AnalysisError unless `formats` is a non-empty list of `FORMATS`."""
    if not formats:
        raise AnalysisError(f"no table format given ({', '.join(FORMATS)})")
    for fmt in formats:
        if fmt not in FORMATS:
            raise AnalysisError(f"unknown table format {fmt!r} ({', '.join(FORMATS)})")


@dataclasses.dataclass
class Row:
    label: str
    algo: str
    source: str  # "ours" or "paper"
    cells: dict  # metric -> Stat | None
    seeds: int


@dataclasses.dataclass
class Table:
    title: str
    scenario: str
    protocol: str
    metrics: tuple
    rows: list
    notes: list

    @property
    def has_paper_rows(self) -> bool:
        return any(r.source == "paper" for r in self.rows)


def build_table(
    results: Sequence[MethodResult],
    protocol: str | None = None,
    metrics: Sequence[str] = runs_lib.TABLE_METRICS,
    paper: str = "matched",
    title: str | None = None,
    window: int = PAPER_WINDOW,
) -> Table:
    """A table from methods' per-seed results (all on one scenario, under one protocol).

    `paper`: "matched", "all" or "none" (module docstring); `window`: the training episodes per
    seed the paper-protocol results were taken over (for the title). AnalysisError for no
    results, mixed scenarios or protocols, or a method without any seed.
    """
    if paper not in ("matched", "all", "none"):
        raise AnalysisError(f"paper must be 'matched', 'all' or 'none', got {paper!r}")
    results = list(results)
    if not results:
        raise AnalysisError("no methods to tabulate")
    scenarios = sorted({r.scenario for r in results})
    if len(scenarios) > 1:
        raise AnalysisError(f"one table per scenario: got {', '.join(scenarios)}")
    protocols = sorted({r.protocol for r in results})
    if len(protocols) > 1 or (protocol and protocols[0] != protocol):
        raise AnalysisError(f"one table per protocol: got {', '.join(protocols)}")
    protocol = protocols[0]
    for r in results:
        if not r.seeds:
            raise AnalysisError(f"{r.label} on {r.scenario} has no seed results")
    comparable = all(r.comparable_to_paper for r in results)
    rows: list[Row] = []
    notes: list[str] = []
    done_paper = set()
    for r in sorted(results, key=lambda r: (runs_lib.method_order(r.algo), r.label)):
        rows.append(Row(r.label, r.algo, "ours", {m: r.stat(m) for m in metrics}, len(r.seeds)))
        for n in r.notes:
            notes.append(f"{r.label}: {n}")
        if paper != "none" and comparable:
            row = paper_row(r.algo, metrics)
            key = paper_lib.paper_key(r.algo)
            if row is not None and key not in done_paper:
                rows.append(row)
                done_paper.add(key)
    if paper == "all" and comparable:
        for algo in runs_lib.PAPER_METHODS:
            if algo not in done_paper:
                row = paper_row(algo, metrics)
                # place it in the paper's order among the rows
                at = next((i for i, x in enumerate(rows)
                           if runs_lib.method_order(x.algo) > runs_lib.method_order(algo)), len(rows))
                rows.insert(at, row)
    scenario = scenarios[0]
    env = results[0].env
    if title is None:
        where = scenario + (" (" + ", ".join(f"{k}={v}" for k, v in sorted(env.items())) + ")" if env else "")
        # the window each seed's numbers came from (paper_protocol's info): all of the log if short
        used = [s.info.get("window_episodes") for r in results for s in r.seeds]
        short = protocol == "paper" and all(isinstance(n, int) and n < window for n in used)
        title = f"Table II on {where}: {protocol_text(protocol, window, short, evaluated_policy(results))}"
    if any(x.source == "paper" for x in rows):
        notes.insert(0, "paper: the published Table II (docs/reference.md §3.1): last 2,000 of 10,000 training "
                        "episodes, mean ± population std over seeds 42/123/456/789/1024")
    return Table(title, scenario, protocol, tuple(metrics), rows, notes)


def paper_row(algo: str, metrics: Sequence[str]) -> Row | None:
    pub = paper_lib.published(algo)
    if pub is None:
        return None
    cells = {m: (Stat(pub[m][0], pub[m][1], len(paper_lib.SEEDS), len(paper_lib.SEEDS)) if m in pub else None)
             for m in metrics}
    return Row(runs_lib.display_name(paper_lib.paper_key(algo)), algo, "paper", cells, len(paper_lib.SEEDS))


# ----------------------------------------------------------------------------- rendering
def cell_text(stat: Stat | None, key: str, pm: str = "±", pct: str = "%") -> str:
    if stat is None:
        return "–"
    if stat.n == 0:
        return "n/a"
    spec = runs_lib.metric(key)
    text = f"{spec.fmt(stat.mean)} {pm} {spec.fmt(stat.std).lstrip('+')}"
    if stat.coverage < 1.0:
        share = 100 * stat.coverage
        share = f"{share:.0f}" if share < 99.5 else (f"{share:.1f}" if share < 99.95 else ">99.9")
        text += f" ({share}{pct})"
    if stat.n < stat.n_total:
        text += f" [{stat.n}/{stat.n_total} seeds]"
    return text


def _columns(table: Table) -> list[str]:
    cols = ["Method"] + (["Source"] if table.has_paper_rows else []) + ["Seeds"]
    return cols + [runs_lib.metric(m).label for m in table.metrics]


def _row_cells(table: Table, row: Row, pm="±", pct="%") -> list[str]:
    cells = [row.label] + ([row.source] if table.has_paper_rows else []) + [str(row.seeds)]
    return cells + [cell_text(row.cells.get(m), m, pm, pct) for m in table.metrics]


def to_markdown(table: Table, title: bool = True, notes: bool = True) -> str:
    cols = _columns(table)
    lines = []
    if title:
        lines += [f"**{table.title}**", ""]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" if i == 0 or (i == 1 and table.has_paper_rows) else "---:"
                                for i in range(len(cols))) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(_row_cells(table, row)) + " |")
    if notes and table.notes:
        lines.append("")
        lines += [f"- {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["method", "algo", "source", "scenario", "protocol", "seeds"]
    for m in table.metrics:
        head += [f"{m}_mean", f"{m}_std", f"{m}_n", f"{m}_coverage"]
    w.writerow(head)
    for row in table.rows:
        line = [row.label, row.algo, row.source, table.scenario, table.protocol, row.seeds]
        for m in table.metrics:
            s = row.cells.get(m)
            if s is None or s.n == 0:
                line += ["", "", 0 if s is not None else "", ""]
            else:
                line += [f"{s.mean:.6g}", f"{s.std:.6g}", s.n, f"{s.coverage:.4g}"]
        w.writerow(line)
    return buf.getvalue()


_TEX_ESCAPES = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
                "~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}"}


def _tex(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(c, c) for c in text).replace("–", "--")


def to_latex(table: Table) -> str:
    cols = _columns(table)
    align = "l" + ("l" if table.has_paper_rows else "") + "r" * (len(cols) - 1 - table.has_paper_rows)
    lines = [
        "% " + table.title,
        r"\begin{tabular}{" + align + "}",
        r"\toprule",
        " & ".join(_tex(c) for c in cols) + r" \\",
        r"\midrule",
    ]
    for row in table.rows:
        cells = [_tex(c).replace(r"\textbackslash{}pm", r"$\pm$")
                 for c in _row_cells(table, row, pm="\\pm", pct="%")]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


FORMATS = {"md": to_markdown, "csv": to_csv, "tex": to_latex}


def write_table(table: Table, out_dir: str | Path, stem: str,
                formats: Sequence[str] = ("md", "csv", "tex")) -> list[Path]:
    """Writes `<out_dir>/<stem>.<fmt>` for each format; returns the paths."""
    check_formats(formats)  # before anything is made
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        path.write_text(FORMATS[fmt](table))
        paths.append(path)
    return paths


def per_seed_markdown(result: MethodResult, metrics: Sequence[str] = runs_lib.EVAL_METRICS) -> str:
    """One row per seed and a `mean ± std` row: what `eval/evaluate.py` prints."""
    cols = ["Seed", "Episodes"] + [runs_lib.metric(m).label for m in metrics]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|"]
    for s in result.seeds:
        cells = [str(s.seed), str(s.episodes)]
        for m in metrics:
            v = s.values.get(m, float("nan"))
            text = runs_lib.metric(m).fmt(v)
            if s.episodes and s.counts.get(m, s.episodes) < s.episodes:
                text += f" (n={s.counts[m]})"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| **mean ± std** | " + str(sum(s.episodes for s in result.seeds)) + " | "
                 + " | ".join(cell_text(result.stat(m), m) for m in metrics) + " |")
    return "\n".join(lines) + "\n"
