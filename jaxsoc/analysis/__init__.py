"""Evaluation, Table II and figures over run folders (the library behind eval/*.py).

    from jaxsoc.analysis import runs, protocols, tables, figures
    groups = runs.group_runs(runs.find_runs(["results/hmarl-soc-v1/runs"]))
    paper = [protocols.paper_protocol(g) for g in groups]        # last 2,000 training episodes
    ours = [protocols.ours_protocol(g, episodes=1000) for g in groups]   # greedy, held-out
    print(tables.to_markdown(tables.build_table(paper, paper="all")))
    figures.save(figures.metric_bars(ours)[0], "out/bars_ours")

Modules: `runs` (run folders -> methods, per-seed result types, metric display specs), `paper`
(the published Table II as data), `protocols` (the paper's protocol from logs; ours by greedy
held-out evaluation), `tables` (markdown/CSV/LaTeX), `figures` (matplotlib); for
eval/reproduce.py, `plan` (what to run), `execute` (training and evaluating it), `report` (its
tables, figures and README) and `attention` (the HMARL explainer's maps). See docs/evaluation.md.
"""
from jaxsoc.analysis.runs import AnalysisError  # noqa: F401
