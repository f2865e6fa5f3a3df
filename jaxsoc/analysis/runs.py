"""Run folders, methods and per-seed results: the data every table and figure is built from.

A *run* is a folder written by `jaxsoc.engine.run` (`config.yaml`, `metrics.jsonl`,
`checkpoints/`). Runs are found by walking the given paths (`find_runs`) and grouped into
*methods* (`group_runs`): runs with the same scenario, algorithm and training config apart from
the seeds are one method, and their seeds are pooled (so five one-seed runs and one five-seed run
are the same thing). Nothing here needs the algorithm to be registered in this checkout: a run's
`config.yaml` says everything needed to read its logs.

A protocol (`jaxsoc.analysis.protocols`) turns a method into a `MethodResult`: one `SeedResult`
(a value per metric) per seed. Tables and figures only ever see `MethodResult`s.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from jaxsoc.analysis import paper


class AnalysisError(ValueError):
    """Input that evaluation, tables or figures cannot use; the message names the problem."""


# ----------------------------------------------------------------------------- methods
# Registry name -> the name tables and figures print. Others appear under their registry name.
DISPLAY_NAMES = {
    "rule-soar": "Rule-SOAR",
    "single-drl": "Single-DRL",
    "iql": "IQL",
    "mappo": "MAPPO",
    "qmix": "QMIX",
    "hmarl": "HMARL-SOC",
    "hmarl-soc": "HMARL-SOC",
    "constant": "Constant (all-zero)",
    "no-defender": "No defender",
    "random": "Random",
}
# Table II's methods in the paper's order, then the reference baselines we add (docs/reference.md §4 D24).
PAPER_METHODS = ("rule-soar", "single-drl", "iql", "mappo", "qmix", "hmarl")
BASELINES = ("constant", "no-defender", "random")


def display_name(algo: str) -> str:
    return DISPLAY_NAMES.get(algo, algo)


def method_order(algo: str) -> tuple:
    """Sort key: the paper's methods in its order, then other learners by name, then baselines."""
    algo = paper.ALIASES.get(algo, algo)
    if algo in PAPER_METHODS:
        return (0, PAPER_METHODS.index(algo), "")
    if algo in BASELINES:
        return (2, BASELINES.index(algo), "")
    return (1, 0, algo)


# ----------------------------------------------------------------------------- metrics
@dataclasses.dataclass(frozen=True)
class Metric:
    """How a metric (a key of the env's `infos["metrics"]`) is shown: `label`, and values are
    multiplied by `scale` (1 or 100 for percent) and printed with `decimals` (and a sign)."""

    key: str
    label: str
    scale: float = 1.0
    decimals: int = 1
    signed: bool = False

    def fmt(self, value: float) -> str:
        if value is None or not math.isfinite(value):
            return "n/a"
        v = value * self.scale
        if round(v, self.decimals) == 0:
            v = 0.0  # no "-0.0"
        return f"{v:+.{self.decimals}f}" if self.signed else f"{v:.{self.decimals}f}"


METRICS = {
    m.key: m
    for m in (
        Metric("return", "Reward", 1.0, 1, signed=True),
        Metric("mttd", "MTTD", 1.0, 1),
        Metric("mttr", "MTTR", 1.0, 1),
        Metric("fpr", "FPR %", 100.0, 2),
        Metric("csr", "CSR %", 100.0, 1),
        Metric("exfiltrated", "Exfil %", 100.0, 1),
        Metric("hosts_compromised", "Hosts compromised", 1.0, 2),
        Metric("length", "Length", 1.0, 1),
        Metric("alert_precision", "Alert precision %", 100.0, 1),
    )
}
# Table II's five columns, and what evaluation reports (+ exfiltration and hosts compromised, which a defence must also keep low).
TABLE_METRICS = ("return", "mttd", "mttr", "fpr", "csr")
EVAL_METRICS = TABLE_METRICS + ("exfiltrated", "hosts_compromised")


def default_metrics(names: Iterable[str], soc: Sequence[str] = EVAL_METRICS) -> tuple[str, ...]:
    """The metrics a tool shows when none are asked for, given the metric `names` a world's
    evaluations or logs hold: `soc` (a SOC world's defaults) when `names` hold any of them besides
    the return, or nothing but the return is known; otherwise (retail, banking, cage4-like) the
    world's own metrics, the return first and the rest sorted, so they are not shown as SOC
    columns of n/a."""
    names = set(names)
    if not names - {"return"} or names & (set(soc) - {"return"}):
        return tuple(soc)
    return ("return",) * ("return" in names) + tuple(sorted(names - {"return"}))


def metric(key: str) -> Metric:
    """The display spec of `key` (a plain one for metrics without a spec)."""
    return METRICS.get(key, Metric(key, key, 1.0, 3))


# ----------------------------------------------------------------------------- runs
@dataclasses.dataclass
class RunInfo:
    """One run folder and its saved config.

    `superseded`: seeds of this run that a newer run of the same method provides instead
    (`group_runs`); `seeds` leaves them out, so every reader of a run skips them.
    """

    path: Path
    config: dict
    superseded: frozenset = frozenset()

    @property
    def algo(self) -> str:
        return str(self.config["algo"])

    @property
    def scenario(self) -> str:
        return str(self.config["scenario"])

    @property
    def seeds(self) -> list[int]:
        first = int(self.config.get("seed", 0))
        every = range(first, first + int(self.config.get("num_seeds", 1)))
        return [s for s in every if s not in self.superseded]

    @property
    def written(self) -> float:
        """When the run last wrote its log (else its config): what "newest" means between runs."""
        stamps = [p.stat().st_mtime for p in (self.path / "metrics.jsonl", self.path / "config.yaml") if p.is_file()]
        return max(stamps, default=0.0)

    @property
    def env(self) -> dict:
        return dict(self.config.get("env") or {})


def read_evaluation_record(path: str | Path, *, episodes: bool = True) -> dict:
    """The record of an `evaluation.json` (eval/evaluate.py), checked for what the tables, figures
    and eval/paired.py read: a `request` mapping and a `seeds` mapping of seed numbers, each with a
    `metrics` mapping whose entries hold a `mean` (a finite number or null) and, with `episodes` (the
    tables count them; eval/paired.py does not), an integer `episodes`. AnalysisError naming the
    file otherwise (a damaged or foreign file, not a stack trace)."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnalysisError(f"{path} cannot be read as JSON ({e})") from None
    what = "{'request': {...}, 'seeds': {seed: {'episodes': n, 'metrics': {name: {'mean': ...}}}}}"
    if not isinstance(rec, dict) or not isinstance(rec.get("request"), dict) or not isinstance(rec.get("seeds"), dict):
        raise AnalysisError(f"{path} is not an evaluation written by eval/evaluate.py (expected {what})")
    if not rec["seeds"]:
        raise AnalysisError(f"{path} holds no seeds")
    for seed, entry in rec["seeds"].items():
        if not seed.isdigit():
            raise AnalysisError(f"{path}: seed {seed!r} is not a seed number")
        metrics = entry.get("metrics") if isinstance(entry, dict) else None
        if not isinstance(metrics, dict):
            raise AnalysisError(f"{path}: seed {seed} has no 'metrics' mapping")
        for name, m in metrics.items():
            mean = m.get("mean", "missing") if isinstance(m, dict) else "missing"
            if mean is not None and (isinstance(mean, bool) or not isinstance(mean, (int, float))):
                raise AnalysisError(f"{path}: seed {seed}, metric {name!r} has no numeric 'mean'")
            # json reads NaN and Infinity, but eval/evaluate.py writes neither (null where undefined):
            # such a mean is a foreign or damaged file, and would pass into every difference
            if mean is not None and not math.isfinite(mean):
                raise AnalysisError(f"{path}: seed {seed}, metric {name!r} has a mean of {mean} "
                                    "(eval/evaluate.py writes null for an undefined metric)")
        count = entry.get("episodes")
        if episodes and (isinstance(count, bool) or not isinstance(count, int)):
            raise AnalysisError(f"{path}: seed {seed} has no integer 'episodes'")
    return rec


def read_run(path: str | Path) -> RunInfo:
    """The run in folder `path`; AnalysisError unless it holds a readable `config.yaml`."""
    from jaxsoc.config import ConfigError, load_yaml

    path = Path(path)
    if not path.exists():
        raise AnalysisError(f"{path} does not exist")
    if not path.is_dir():
        raise AnalysisError(f"{path} is not a folder (expected a run folder with config.yaml)")
    cfg_path = path / "config.yaml"
    if not cfg_path.is_file():
        raise AnalysisError(f"{path} is not a run folder: it has no config.yaml")
    try:
        cfg = load_yaml(cfg_path)
    except ConfigError as e:
        raise AnalysisError(str(e)) from None
    for key in ("algo", "scenario"):
        if key not in cfg:
            raise AnalysisError(f"{cfg_path} has no {key!r}: not a config written by train/run.py")
    return RunInfo(path, cfg)


def run_folders_below(root: Path) -> list[Path]:
    """The run folders (holding a config.yaml) below `root`, sorted, through linked folders too
    (a folder of links to runs is a way to group them; each real folder is walked once), and not
    into a run folder's own subfolders (its checkpoints hold thousands of files and no run)."""
    found, walked = [], set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in walked:  # a link back up the tree, or two links to one folder
            subfolders[:] = []
            continue
        walked.add(real)
        if Path(folder) != root and "config.yaml" in files:
            found.append(Path(folder))
            subfolders[:] = []
    return sorted(found)


def find_runs(paths: Iterable[str | Path]) -> list[RunInfo]:
    """Run folders at or below each path (a run folder, or any folder holding run folders).

    AnalysisError for a path that does not exist or holds no run folder at all.
    """
    runs: list[RunInfo] = []
    seen: set[Path] = set()
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise AnalysisError(f"{root} does not exist")
        found = [root] if (root / "config.yaml").is_file() else run_folders_below(root)
        if not found:
            raise AnalysisError(f"no run folders (with a config.yaml) under {root}")
        for path in found:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                runs.append(read_run(path))
    return runs


def checkpoint_index(run: RunInfo) -> tuple[list[int], dict]:
    """(the updates of a run's complete checkpoints, sorted; the newest one's meta), ([], {}) if
    the run has none. The checkpoints folder is opened once (orbax lists and reads it).
    AnalysisError if the checkpoints cannot be read or disagree with config.yaml."""
    from jaxsoc.checkpoints import Checkpoints
    from jaxsoc.config import ConfigError

    ck_dir = run.path / "checkpoints"
    if not ck_dir.is_dir():
        return [], {}
    ckpts = None
    try:
        ckpts = Checkpoints(ck_dir, create=False)
        steps = sorted(ckpts.steps())
        meta = ckpts.read_meta(steps[-1]) if steps else {}
    except ConfigError as e:
        raise AnalysisError(str(e)) from None
    finally:
        if ckpts is not None:
            ckpts.close()
    for key in ("algo", "scenario"):
        if key in meta and meta[key] != run.config[key]:
            raise AnalysisError(
                f"checkpoint {steps[-1]} of {run.path} was written by a run with {key} {meta[key]!r}, "
                f"but its config.yaml says {run.config[key]!r} (folder mixed up or config edited?)"
            )
    return steps, meta


def checkpoint_meta(run: RunInfo) -> tuple[int | None, dict]:
    """(newest checkpoint update, its meta), (None, {}) if the run has none (`checkpoint_index`)."""
    steps, meta = checkpoint_index(run)
    return (steps[-1] if steps else None), meta


# Config keys that do not change what a method is (seeds are pooled; run/eval/devices are how).
_NOT_METHOD = ("seed", "num_seeds", "run", "eval", "devices")


def _flatten(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))  # an empty mapping adds nothing
        else:
            out[f"{prefix}{k}"] = v
    return out


def method_config(cfg: Mapping) -> dict:
    """The part of a run config that identifies its method (flattened, dotted keys)."""
    return _flatten({k: v for k, v in cfg.items() if k not in _NOT_METHOD})


@dataclasses.dataclass
class Group:
    """The runs of one method: same scenario, algorithm and training config, pooled seeds.

    `notes` says which runs' seeds were superseded by newer runs (`group_runs`)."""

    label: str
    algo: str
    scenario: str
    runs: list[RunInfo]
    config: dict  # method_config of its runs
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return sorted(s for r in self.runs for s in r.seeds)

    @property
    def env(self) -> dict:
        return self.runs[0].env


def group_runs(runs: Sequence[RunInfo]) -> list[Group]:
    """Groups runs into methods (see the module docstring), in table order.

    Methods that would print the same name (e.g. one algorithm at two budgets, or a K-sweep) are
    labelled with the config keys that tell them apart: `HMARL-SOC (env.directive_period=10)`.

    A seed of a method found in several runs (the same command run twice) is taken from the
    newest of them, the one whose log was written last (`RunInfo.written`; ties: the later path);
    the older runs keep their other seeds, drop a run left with none, and `Group.notes` says
    what was set aside.
    """
    groups: dict[str, Group] = {}
    for run in runs:
        mc = method_config(run.config)
        key = json.dumps(mc, sort_keys=True, default=str)
        if key not in groups:
            groups[key] = Group(display_name(run.algo), run.algo, run.scenario, [], mc)
        groups[key].runs.append(run)
    out = sorted(groups.values(), key=lambda g: (g.scenario, method_order(g.algo), g.label))
    for g in out:
        owner: dict[int, RunInfo] = {}
        kept: dict[int, RunInfo] = {}  # position in g.runs -> the run, its newer seeds set aside
        for i, run in sorted(enumerate(g.runs), key=lambda ir: (ir[1].written, str(ir[1].path)), reverse=True):
            taken = {s: owner[s] for s in run.seeds if s in owner}
            if taken:
                run = dataclasses.replace(run, superseded=run.superseded | frozenset(taken))
                for newer in dict.fromkeys(r.path for r in taken.values()):
                    seeds = sorted(s for s, r in taken.items() if r.path == newer)
                    g.notes.append(
                        f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} of {g.label} on "
                        f"{g.scenario} also in {run.path}: using the newest run, {newer}"
                    )
            owner.update(dict.fromkeys(run.seeds, run))
            if run.seeds:
                kept[i] = run
        g.runs = [kept[i] for i in sorted(kept)]
    by_name: dict[tuple, list[Group]] = {}
    for g in out:
        by_name.setdefault((g.scenario, g.label), []).append(g)
    for same in by_name.values():
        if len(same) < 2:
            continue
        keys = sorted({k for g in same for k in g.config})
        differ = [k for k in keys if len({json.dumps(g.config.get(k), default=str) for g in same}) > 1]
        for g in same:
            g.label += " (" + ", ".join(f"{k}={g.config.get(k, 'default')}" for k in differ) + ")"
    return out


# ----------------------------------------------------------------------------- results
@dataclasses.dataclass
class SeedResult:
    """One seed's value of each metric under some protocol.

    Attributes:
      seed: the training seed.
      values: metric -> value (NaN when undefined for every episode of the seed).
      counts: metric -> episodes the value averages (fewer than `episodes` where the metric is
        undefined for some episodes, e.g. v2's MTTD without a compromise).
      episodes: episodes behind this seed's numbers.
      source: the run folder it came from.
      info: protocol details (window, checkpoint, ...).
    """

    seed: int
    values: dict
    counts: dict
    episodes: int
    source: Path | None = None
    info: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class MethodResult:
    """A method's per-seed results under one protocol."""

    label: str
    algo: str
    scenario: str
    protocol: str
    seeds: list[SeedResult]
    notes: list[str] = dataclasses.field(default_factory=list)
    env: dict = dataclasses.field(default_factory=dict)

    def values(self, key: str) -> np.ndarray:
        """Per-seed values of metric `key`, in seed order (NaN where undefined)."""
        return np.array([s.values.get(key, np.nan) for s in self.seeds], dtype=np.float64)

    def stat(self, key: str) -> "Stat":
        return Stat.of(self.values(key), [s.counts.get(key, 0) for s in self.seeds],
                       [s.episodes for s in self.seeds])

    @property
    def comparable_to_paper(self) -> bool:
        """Same env as the paper's Table II: `hmarl-soc-v1` without env overrides."""
        return self.scenario == paper.SCENARIO and not self.env


@dataclasses.dataclass(frozen=True)
class Stat:
    """Mean and POPULATION std (ddof 0, as the paper) over the seeds where a metric is defined.

    `n` seeds are behind it (of `n_total`); `coverage` is the share of episodes where the metric
    was defined (1.0 under v1 definitions; less for v2's MTTD/MTTR).
    """

    mean: float
    std: float
    n: int
    n_total: int
    coverage: float = 1.0

    @classmethod
    def of(cls, values, counts=None, episodes=None) -> "Stat":
        v = np.asarray(values, dtype=np.float64)
        ok = np.isfinite(v)
        n = int(ok.sum())
        mean = float(v[ok].mean()) if n else float("nan")
        std = float(v[ok].std(ddof=0)) if n else float("nan")
        coverage = 1.0
        if counts is not None and episodes is not None and sum(episodes) > 0:
            coverage = float(sum(counts)) / float(sum(episodes))
        return cls(mean, std, n, int(v.size), coverage)
