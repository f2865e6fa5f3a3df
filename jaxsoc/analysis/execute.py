"""Running a `Plan` (jaxsoc.analysis.plan): train every run, evaluate every method, time both.

    summary = execute(plan)      # runs in <plan.out>/runs/<run name>/ (+ evaluation.json/.npz)

Existing run folders are reused when complete with the same training config, resumed when
interrupted, and refused (unless `overwrite`) when their config differs. A method that fails
is reported in `Summary.failures` and the others go on. Tables, figures and the README are
written from the summary by `jaxsoc.analysis.report`.
"""
from __future__ import annotations

import dataclasses
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

from jaxsoc.analysis import protocols
from jaxsoc.analysis import runs as runs_lib
from jaxsoc.analysis.plan import MethodPlan, Plan, run_config
from jaxsoc.analysis.runs import AnalysisError


@dataclasses.dataclass
class Summary:
    """What `execute` did: the methods that finished (`done`) and, filled by `report.write`,
    the tables and files written."""

    plan: Plan
    timings: dict  # label -> {"algo", "kind", "train_s", "eval_s", "runs", "cached_runs", "seeds", ...}
    failures: dict  # label -> message
    tables: dict  # protocol -> Table
    files: list
    notes: list
    done: list = dataclasses.field(default_factory=list)  # MethodPlans trained and evaluated


def run_state(path: Path, cfg: dict) -> str:
    """'new', 'complete', 'partial' or 'different' for a run folder and the config it should have."""
    from jaxsoc import config as config_lib

    if not path.exists():
        return "new"
    try:
        run = runs_lib.read_run(path)
        same = config_lib.training_hash(run.config) == config_lib.training_hash(cfg)
    except Exception:
        return "different"
    if not same:
        return "different"
    update, meta = runs_lib.checkpoint_meta(run)
    if update is None:
        return "partial"  # stopped before its first checkpoint: resuming starts it over
    per_update = (meta.get("env_steps") or 0) / max(update, 1)
    return "complete" if per_update and update >= cfg["total_steps"] // per_update else "partial"


def execute(plan: Plan, *, overwrite: bool = False, progress: bool = True,
            log: Callable[[str], None] = print) -> Summary:
    """Trains and evaluates every method of `plan` (module docstring)."""
    from tqdm.auto import tqdm

    from jaxsoc import engine

    out = plan.out
    run_dir = out / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    timings: dict = {}
    failures: dict = {}
    notes = [f"skipped {name}: {why}" for name, why in plan.skipped]
    for n in notes:
        log(n)
    done_methods: list[MethodPlan] = []
    total_runs = sum(len(m.runs) for m in plan.methods)
    bar = tqdm(total=total_runs, desc="reproduce", unit="run", disable=not progress, position=0,
               dynamic_ncols=True)
    try:
        for mp in plan.methods:
            t_train = 0.0
            cached = runs_done = 0
            try:
                for rp in mp.runs:
                    bar.set_postfix_str(rp.name)
                    cfg = run_config(mp, rp, run_dir)
                    cfg["run"]["progress"] = progress
                    path = run_dir / rp.name
                    state = run_state(path, cfg)
                    t0 = time.perf_counter()
                    if state == "complete" and not overwrite:
                        cached += 1
                        t_train += logged_seconds(path)
                    elif state == "partial" and not overwrite:
                        engine.run(cfg, resume=path)
                        t_train += time.perf_counter() - t0
                    elif state == "different" and not overwrite:
                        raise AnalysisError(
                            f"{path} exists with another training config: pass "
                            "--overwrite to retrain it, or choose another --out"
                        )
                    else:
                        engine.run(cfg, overwrite=overwrite or state != "new")
                        t_train += time.perf_counter() - t0
                    bar.update(1)
                    runs_done += 1
                group = runs_lib.group_runs([runs_lib.read_run(run_dir / rp.name) for rp in mp.runs])[0]
                evals: list = []
                protocols.ours_protocol(group, plan.episodes, on_run=lambda run, rec: evals.append(rec))
                # as recorded when each evaluation ran (a reused one keeps its original time)
                t_eval = sum(float(rec.get("seconds", 0.0)) for rec in evals)
                timings[mp.label] = {"algo": mp.algo, "kind": mp.kind, "train_s": round(t_train, 1),
                                     "eval_s": round(t_eval, 1), "runs": len(mp.runs), "cached_runs": cached,
                                     "seeds": list(plan.seeds)}
                done_methods.append(mp)
                reused = sum(bool(rec.get("reused")) for rec in evals)
                timings[mp.label]["reused_evaluations"] = reused
                log(f"{mp.label}: train {t_train:.1f} s" + (f" ({cached} cached)" if cached else "")
                    + f", evaluate {t_eval:.1f} s" + (f" ({reused} cached)" if reused else ""))
            except KeyboardInterrupt:
                raise
            except Exception as e:  # one method failing must not lose the others
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                if not isinstance(e, (AnalysisError, ValueError)):
                    msg = f"{type(e).__name__}: {msg}"
                    traceback.print_exc(file=sys.stderr)
                failures[mp.label] = msg
                log(f"{mp.label}: FAILED: {msg}")
                bar.update(len(mp.runs) - runs_done)
    finally:
        bar.close()
    return Summary(plan, timings, failures, {}, [], notes, done_methods)


def logged_seconds(path: Path) -> float:
    """Training wall-clock a run logged (its last `time`), for runs reused from an earlier call."""
    from jaxsoc import run_log

    recs, _ = run_log.read_jsonl(path / "metrics.jsonl")
    return float(recs[-1].get("time", 0.0)) if recs else 0.0
