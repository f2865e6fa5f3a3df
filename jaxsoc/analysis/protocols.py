"""The two protocols that turn a method's runs into per-seed numbers.

`paper` (the paper's Table II, docs/reference.md §1.9/§3.1): per seed, the mean of each metric over the
last 2,000 TRAINING episodes (behaviour policy, exploration on), read from `metrics.jsonl`.
The log has one line per update and seed holding the means over the episodes that ended during
that update and their number (`episodes`), so the window is whole updates: the newest updates
that together hold at least 2,000 episodes, each update's mean weighted by its episode count
(`trailing_window`). With U updates of E episodes each, the window holds between 2,000 and
2,000 + E - 1 episodes. Metrics undefined for some episodes (v2's MTTD/MTTR are NaN without a
compromise/detection) are averaged per update over the episodes where defined, so weighting by
`episodes` is then an approximation; it is exact for every `hmarl-soc-v1` metric.

`ours` (docs/reference.md §4 D24): greedy policies (`act(..., greedy=True)`) from the run's newest checkpoint
on held-out episodes: each seed s evaluates `episodes` fresh envs from `heldout_batch_key(s, 0)`
(batch b of a `--batch` evaluation from `heldout_batch_key(s, b)`), of a key stream that neither
training nor the engine's periodic evaluation draws from. The keys depend
only on the seed number, so every method is evaluated on the same env draws (common random
numbers) and a seed evaluated from a one-seed run gets the same episodes as from a five-seed one.
Each env runs from reset for the episode limit and its first episode counts (no length bias).
Results are cached in the run folder as `evaluation.json` (per-seed means, stds and counts) and
`evaluation.npz` (per-episode values, `[seeds, episodes]` per metric).
"""
from __future__ import annotations

import json
import math
import time
import zipfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from jaxsoc import xla
from jaxsoc.analysis import runs as runs_lib
from jaxsoc.analysis.runs import AnalysisError, Group, MethodResult, RunInfo, SeedResult
from jaxsoc.names import suggest

WINDOW_EPISODES = 2000
HELDOUT_STREAM = 0x0E7A_1D0E  # fold_in constant of the held-out evaluation keys
EVALUATION_FILE = "evaluation.json"
EPISODES_FILE = "evaluation.npz"
EVAL_FORMAT = 1


# ----------------------------------------------------------------------------- logs
def read_metrics_log(run: RunInfo) -> dict[int, list[dict]]:
    """`metrics.jsonl` of a run as seed -> its records sorted by update, without the seeds a
    newer run supersedes (`RunInfo.superseded`).

    AnalysisError when the log is missing, empty, or has no episode counts.
    """
    from jaxsoc import run_log

    path = run.path / "metrics.jsonl"
    if not path.is_file():
        raise AnalysisError(f"{run.path} has no metrics.jsonl (the run never finished an update?)")
    try:
        records, _ = run_log.read_jsonl(path)
    except ValueError as e:
        raise AnalysisError(str(e)) from None
    if not records:
        raise AnalysisError(f"{path} is empty: the run logged no update (interrupted before its first chunk?)")
    by_seed: dict[int, list[dict]] = {}
    for r in records:
        if int(r.get("seed", 0)) not in run.superseded:
            by_seed.setdefault(int(r.get("seed", 0)), []).append(r)
    for seed, recs in by_seed.items():
        recs.sort(key=lambda r: r.get("update", 0))
        if not any("episodes" in (r.get("metrics") or {}) for r in recs):
            raise AnalysisError(
                f"{path}: seed {seed}'s records have no 'episodes' count, so episode-weighted "
                "means cannot be formed (the algorithm's update() must report it, see jaxsoc.algos.base)"
            )
    return by_seed


def log_series(records: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(env_steps, episodes, values) of metric `key` over a seed's records; null -> NaN."""
    steps = np.array([r.get("env_steps", r.get("update", i)) for i, r in enumerate(records)], dtype=np.float64)
    eps = np.array([(r.get("metrics") or {}).get("episodes") or 0 for r in records], dtype=np.float64)
    vals = np.array(
        [np.nan if (r.get("metrics") or {}).get(key) is None else (r.get("metrics") or {})[key] for r in records],
        dtype=np.float64,
    )
    return steps, eps, vals


def trailing_window(episodes, values, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Episode-weighted means over trailing windows of whole updates.

    For every update i: the newest updates j..i that together hold at least `window` episodes
    (all of 0..i if fewer), and the mean of `values` over them weighted by `episodes`, skipping
    updates whose value is NaN. `window <= 1` means each update alone (the raw log).

    Returns:
      (means, counts, starts): the weighted mean (NaN if no weight), the episodes behind it, and
      the first update j of each window.
    """
    eps = np.asarray(episodes, dtype=np.float64)
    vals = np.asarray(values, dtype=np.float64)
    n = eps.size
    ok = np.isfinite(vals) & (eps > 0)
    w = np.where(ok, eps, 0.0)
    cum_all = np.concatenate([[0.0], np.cumsum(eps)])  # window size counts every episode
    cum_w = np.concatenate([[0.0], np.cumsum(w)])
    cum_wv = np.concatenate([[0.0], np.cumsum(np.where(ok, vals * eps, 0.0))])
    window = int(window)
    starts = np.arange(n, dtype=np.int64)  # window <= 1: each update alone (NaN without episodes)
    for i in range(n if window > 1 else 0):
        # largest j with cum_all[i+1] - cum_all[j] >= window; 0 if none
        target = cum_all[i + 1] - window
        j = int(np.searchsorted(cum_all, target, side="right")) - 1
        starts[i] = min(max(j, 0), i)
    idx = np.arange(n)
    weight = cum_w[idx + 1] - cum_w[starts]
    total = cum_wv[idx + 1] - cum_wv[starts]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(weight > 0, total / np.where(weight > 0, weight, 1.0), np.nan)
    return means, weight.astype(np.int64), starts


# What metrics.jsonl logs next to the env's episode metrics that is not one of them.
LOG_BOOKKEEPING = ("episodes", "env_steps", "reward")


def world_metrics(run: RunInfo, records: Sequence[dict] = ()) -> list[str]:
    """The env's episode metric names of a run: those its `evaluation.json` holds when it has one,
    else those of its log `records` that the run's env reports (`env_metric_names`); where that
    env cannot be built (a scenario file gone), the log's names without the bookkeeping
    (`LOG_BOOKKEEPING`) and the learner's per-role statistics (names with a "/"; others, e.g.
    value_loss, then stay)."""
    try:
        record = json.loads((run.path / EVALUATION_FILE).read_text())
        return sorted({k for entry in record["seeds"].values() for k in entry["metrics"]})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    names = {k for r in records for k in (r.get("metrics") or {})}
    own = env_metric_names(run.config)
    if own is not None:  # learner statistics (value_loss, explained_variance) were table columns
        return sorted(names & set(own))
    return sorted(k for k in names if k not in LOG_BOOKKEEPING and "/" not in k)


_ENV_METRICS: dict[str, tuple[str, ...] | None] = {}  # by the config's env: a table reads many runs of one


def env_metric_names(config: Mapping) -> tuple[str, ...] | None:
    """The episode metric names of the env a run's `config` builds (`engine.make_env_checked`:
    a stored scenario file's contents included), or None where it cannot be built."""
    from jaxsoc import engine, evaluation
    from jaxsoc.config import ConfigError, SCENARIO_SPEC

    key = json.dumps([config.get("scenario"), config.get("env"), config.get(SCENARIO_SPEC)],
                     sort_keys=True, default=str)
    if key not in _ENV_METRICS:
        try:
            _ENV_METRICS[key] = evaluation.episode_metric_names(*engine.make_env_checked(dict(config)))
        except ConfigError:
            _ENV_METRICS[key] = None
    return _ENV_METRICS[key]


def paper_protocol(group: Group, window: int = WINDOW_EPISODES,
                   metrics: Sequence[str] | None = None) -> MethodResult:
    """Per seed: the metrics' means over the last `window` training episodes (module docstring).
    Default `metrics`: `runs.default_metrics` of the run's `world_metrics` (a SOC world's
    EVAL_METRICS, another world's own)."""
    asked = tuple(metrics or ())
    seeds: list[SeedResult] = []
    notes: list[str] = []
    short: dict[int, int] = {}
    biased: list[tuple[int, int]] = []
    trained: dict[int, tuple[int, int]] = {}  # seed -> (env steps it logged, the steps it should have)
    for run in group.runs:
        by_seed = read_metrics_log(run)
        metrics = asked or runs_lib.default_metrics(world_metrics(run, [r for rs in by_seed.values() for r in rs]))
        missing = sorted(set(run.seeds) - set(by_seed))
        if missing:
            notes.append(f"{run.path}: no log lines for seed(s) {missing}")
        num_envs = int(run.config.get("num_envs", 1))
        max_steps = _max_steps(run)
        for seed in sorted(by_seed):
            recs = by_seed[seed]
            _, eps, _ = log_series(recs, "return")
            total = int(eps.sum())
            if total == 0:
                raise AnalysisError(
                    f"{run.path}/metrics.jsonl: seed {seed} logged {len(recs)} updates but no episode "
                    "ended in any of them (train longer, or the episodes outlast the run)"
                )
            values, counts = {}, {}
            start = len(recs) - 1
            for key in metrics:
                steps, eps, vals = log_series(recs, key)
                means, weights, starts = trailing_window(eps, vals, window)
                values[key], counts[key] = float(means[-1]), int(weights[-1])
                start = int(starts[-1])
            in_window = int(eps[start:].sum())
            first_steps_per_env = (float(steps[start - 1]) if start > 0 else 0.0) / max(num_envs, 1)
            info = {
                "window_updates": [int(recs[start].get("update", start)), int(recs[-1].get("update", len(recs)))],
                "window_episodes": in_window,
                "logged_episodes": total,
                "env_steps": int(steps[-1]),
            }
            seeds.append(SeedResult(seed, values, counts, in_window, run.path, info))
            # a run trains total_steps // (steps per update) whole updates, so a finished seed
            # ends less than one update short of total_steps
            per_update = float(steps[-1]) / max(int(recs[-1].get("update", len(recs))), 1)
            budget = int(run.config.get("total_steps") or 0) if "env_steps" in recs[-1] else 0
            trained[seed] = (int(steps[-1]), budget if steps[-1] + per_update <= budget else int(steps[-1]))
            if in_window < window:
                short[seed] = in_window
            if max_steps and first_steps_per_env < max_steps and not _fixed_length(recs[start:], max_steps):
                biased.append((seed, max_steps))
    # A seed of an interrupted run is pooled (its numbers are real, if earlier in training), but
    # named: short of its run's budget, or of the furthest seed of the method.
    furthest = max((due for _, due in trained.values()), default=0)
    cut = {s: done for s, (done, _) in sorted(trained.items()) if done < furthest}
    if cut:
        notes.append(f"seed{'s' if len(cut) > 1 else ''} {', '.join(map(str, cut))} stopped short (interrupted?): "
                     f"{', '.join(f'{n:,}' for n in cut.values())} env steps logged of {furthest:,}; "
                     "pooled with the others")
    if short:
        notes.append(f"seed{'s' if len(short) > 1 else ''} {', '.join(map(str, short))}: only "
                     f"{', '.join(map(str, short.values()))} episodes logged (< {window:,}); all are used")
    if biased:
        notes.append(
            f"seed{'s' if len(biased) > 1 else ''} {', '.join(str(s) for s, _ in biased)}: the window reaches "
            f"into the first {biased[0][1]} steps of each env, where only short episodes have ended "
            "(length bias): train longer"
        )
    seeds.sort(key=lambda s: s.seed)
    return MethodResult(group.label, group.algo, group.scenario, "paper", seeds, _dedupe(notes), group.env)


def _fixed_length(records: Sequence[dict], max_steps: int) -> bool:
    """Whether every episode in `records` ran the whole `max_steps` (their logged mean "length" is
    it wherever an episode ended: a world without early ends, e.g. retail), so that no window can
    be biased towards short episodes."""
    _, eps, lengths = log_series(records, "length")
    ended = eps > 0
    return bool(ended.any()) and bool(np.all(np.abs(lengths[ended] - max_steps) < 1e-6))


def _dedupe(notes):
    out = []
    for n in notes:
        if n not in out:
            out.append(n)
    return out


def _max_steps(run: RunInfo) -> int | None:
    """The run's episode limit, from its env as every rebuild makes it (`engine.make_env_checked`:
    env overrides, a scenario file's stored contents), or None if this checkout cannot build it."""
    from jaxsoc import engine, evaluation

    try:
        return evaluation.episode_limit(*engine.make_env_checked(run.config))
    except Exception:  # a scenario this checkout does not know
        return None


# ----------------------------------------------------------------------------- evaluation
def heldout_key(seed: int):
    """The held-out evaluation key of training seed `seed` (module docstring)."""
    import jax

    return jax.random.fold_in(jax.random.PRNGKey(seed), HELDOUT_STREAM)


def heldout_batch_key(seed: int, batch: int = 0):
    """The key that batch `batch` of training seed `seed`'s held-out episodes are rolled from
    (`evaluate_episodes`): `fold_in(heldout_key(seed), batch)`. Batch 0 holds every episode of an
    evaluation rolled at once (no `--batch`), so a tool that rolls `n` envs from this key with
    `make_evaluator` (or the same reset/step key splits) plays eval/evaluate.py's episodes of
    `--episodes n` (sweeps, the explainer). Returns a PRNG key (`u32[2]`)."""
    import jax

    return jax.random.fold_in(heldout_key(seed), batch)


def evaluate_episodes(
    env,
    env_params,
    trainer,
    seeds: Sequence[int],
    episodes: int,
    policy_params=None,
    greedy: bool = True,
    batch: int | None = None,
) -> dict[str, np.ndarray]:
    """Metrics of `episodes` held-out episodes per seed: `{name: f32[len(seeds), episodes]}`.

    `policy_params` is `[len(seeds), ...]` on every leaf, or None for policies that need none
    (scripted). Episodes are rolled in batches of `batch` parallel envs (default: all at once),
    batch b of seed s from `heldout_batch_key(s, b)`: results depend on `batch`.
    """
    import jax
    import jax.numpy as jnp

    from jaxsoc.evaluation import make_evaluator

    if episodes < 1:
        raise AnalysisError(f"episodes must be positive, got {episodes}")
    batch = min(int(batch or episodes), episodes)
    from jaxsoc import engine

    too_many = engine.episodes_problem(env, env_params, batch, len(seeds), "--episodes (or --batch)")
    if too_many:  # before compiling: it failed in XLA's allocation, after the compile
        raise AnalysisError(too_many)
    world = trainer.policy_env_params

    def rollout(params, key):
        # Each seed's policy acts in the world it learned with (`Trainer.policy_env_params`).
        p = env_params if world is None or policy_params is None else world(params, env_params)
        return make_evaluator(env, p, trainer.act, batch, greedy)(params, key)

    if policy_params is None:
        fn = xla.jit(jax.vmap(lambda key: rollout((), key)))
        call = lambda keys: fn(keys)  # noqa: E731
    else:
        fn = xla.jit(jax.vmap(rollout))
        call = lambda keys: fn(policy_params, keys)  # noqa: E731
    parts: list[dict] = []
    for b in range(-(-episodes // batch)):
        keys = jnp.stack([heldout_batch_key(int(s), b) for s in seeds])
        parts.append(jax.device_get(call(keys)))
    out = {k: np.concatenate([p[k] for p in parts], axis=1)[:, :episodes] for k in parts[0]}
    return out


def _summary(per_episode: dict[str, np.ndarray], seeds: Sequence[int]) -> dict:
    """Per-seed mean/std/count of each metric (NaN-aware), JSON-ready."""
    out = {}
    completed = per_episode.get("completed")
    for i, s in enumerate(seeds):
        metrics = {}
        for k, v in per_episode.items():
            if k == "completed":
                continue
            x = np.asarray(v[i], dtype=np.float64)
            ok = np.isfinite(x)
            n = int(ok.sum())
            metrics[k] = {
                "mean": float(x[ok].mean()) if n else None,
                "std": float(x[ok].std()) if n else None,
                "n": n,
            }
        done = int(np.asarray(completed[i]).sum()) if completed is not None else int(v.shape[1])
        out[str(s)] = {"episodes": done, "metrics": metrics}
    return out


def check_evaluation(run_dir: str | Path, *, update: int | None = None, scenario: str | None = None,
                     algo: str | None = None, make_env: Callable | None = None, episodes: int | None = None,
                     greedy: bool = True, batch: int | None = None, reuse: bool = True):
    """`policy.check_run` (AnalysisError for what cannot be evaluated: an `update` it lacks or
    asked of a scripted run included) plus what `evaluate_run` would otherwise find only later: a
    config.yaml that does not resolve and, given the `episodes` (and `greedy`, `batch`, `reuse`)
    of the evaluation to come, an env that cannot be built (a run saved before scenario files
    were stored whose file is gone), unless an up-to-date `evaluation.json` will be reused. Cheap
    (env params only, no compiling), so that a tool can check every run it was given before
    evaluating the first. Returns `policy.check_run`'s `Checked`."""
    from jaxsoc import config as config_lib, engine, policy
    from jaxsoc.config import ConfigError

    known = config_lib.known_scenarios() if make_env is None else None
    if scenario is not None and known is not None and not config_lib.is_scenario_file(scenario) \
            and scenario not in known:  # the user's typo, not the run's config
        raise AnalysisError(f"unknown scenario {scenario!r} to evaluate on{suggest(scenario, known)}; "
                            f"known: {', '.join(sorted(known))}")
    checked = policy.check_run(run_dir, algo=algo, scenario=scenario, update=update)
    run = checked.run
    # The config the policy will be rebuilt from (as `policy.rebuild` resolves it).
    flags = {"scenario": checked.scenario} if checked.scripted else None
    try:
        cfg = config_lib.resolve(flags=flags, saved=run.config,
                                 scenarios=[checked.scenario] if make_env else None)
    except ConfigError as e:
        raise AnalysisError(f"{run.path}/config.yaml cannot be used: {e}") from None
    if episodes is not None and not (reuse and _cached_record(run, _request(checked, episodes, greedy, batch, update))):
        try:
            engine.make_env_checked(cfg, make_env)
        except ConfigError as e:  # as `policy.rebuild` would say it, after the runs before it
            raise AnalysisError(f"cannot rebuild the policy of {run.path}: {e}") from None
    return checked


def _request(checked, episodes: int, greedy: bool, batch: int | None, update: int | None) -> dict:
    """What an evaluation of a `check_run`-ed run is asked (`evaluation.json`'s "request")."""
    return {
        "format": EVAL_FORMAT,
        "episodes": int(episodes),
        "greedy": bool(greedy),
        "batch": int(min(batch or episodes, episodes)),
        "scenario": checked.scenario,
        "env": checked.run.env,
        "checkpoint": None if checked.scripted else (update if update is not None else checked.newest),
        "heldout_stream": HELDOUT_STREAM,
    }


def _cached_record(run: RunInfo, request: dict) -> dict | None:
    """The run's `evaluation.json` record if it answers `request` and its per-episode arrays are
    there (not read: `check_evaluation` only asks whether it will be reused)."""
    path = run.path / EVALUATION_FILE
    if not path.is_file():
        return None
    try:
        cached = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not (cached and cached.get("request") == request and (run.path / EPISODES_FILE).is_file()):
        return None
    return cached


def evaluate_run(
    run_dir: str | Path,
    episodes: int = 1000,
    *,
    update: int | None = None,
    greedy: bool = True,
    batch: int | None = None,
    scenario: str | None = None,
    algo: str | None = None,
    write: bool = True,
    reuse: bool = True,
    make_env: Callable | None = None,
) -> dict:
    """Evaluates a run's policy greedily on held-out episodes (`ours`, module docstring).

    Learners need a checkpoint (the newest, or `update`); scripted policies evaluate without one.
    `scenario`/`algo`: what the caller expects the run to be (AnalysisError if it is something
    else); a scripted run may be evaluated on another scenario by passing it.

    Returns the evaluation record (also written to `<run>/evaluation.json` unless `write=False`;
    an up-to-date one is reused unless `reuse=False`) with the per-episode arrays under
    "per_episode" (not written to the JSON; see `evaluation.npz`).
    """
    from jaxsoc import policy

    checked = check_evaluation(run_dir, update=update, scenario=scenario, algo=algo, make_env=make_env)
    run = checked.run
    ck_update, meta = checked.newest, checked.meta
    request = _request(checked, episodes, greedy, batch, update)
    cached = _cached_record(run, request) if reuse else None
    if cached is not None:
        try:
            with np.load(run.path / EPISODES_FILE) as z:
                cached["per_episode"] = {k: z[k] for k in z.files}
            cached["reused"] = True
            return cached
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            pass  # a damaged evaluation.npz is as good as none: evaluate again (and rewrite both files)

    t0 = time.perf_counter()
    built = policy.rebuild(checked, make_env)
    per_episode = evaluate_episodes(built.env, built.env_params, built.trainer, built.seeds, episodes, built.params,
                                    greedy, batch)
    record = {
        "request": request,
        "run": str(run.path),
        "algo": run.algo,
        "trained_on": run.scenario,
        "checkpoint_update": ck_update if update is None else update,
        "checkpoint_env_steps": meta.get("env_steps"),
        "seeds": _summary(per_episode, built.seeds),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if write:
        write_evaluation(run.path, record, per_episode)
    record["per_episode"] = per_episode
    record["reused"] = False
    return record


def write_evaluations(evaluated: Sequence[tuple[Path, dict]]) -> None:
    """Writes each `(run folder, record)` that `evaluate_run(write=False)` returned as
    `evaluate_run` would have written it (a reused record is on disk already)."""
    for run_path, record in evaluated:
        if not record.get("reused"):
            write_evaluation(run_path, {k: v for k, v in record.items() if k not in ("per_episode", "reused")},
                             record["per_episode"])


def write_evaluation(folder: str | Path, record: dict, per_episode: dict[str, np.ndarray]) -> None:
    """`<folder>/evaluation.json` (the record without its per-episode arrays) and
    `<folder>/evaluation.npz` (those arrays, `[seeds, episodes]` each), as `eval/paired.py` and
    the tables read them."""
    from jaxsoc import run_log

    folder = Path(folder)
    record = {k: v for k, v in record.items() if k not in ("per_episode", "reused")}
    (folder / EVALUATION_FILE).write_text(json.dumps(run_log.json_safe(record), indent=1, allow_nan=False) + "\n")
    np.savez_compressed(folder / EPISODES_FILE, **per_episode)


def evaluate_policy(
    algo: str,
    scenario: str,
    seeds: Sequence[int],
    episodes: int = 1000,
    env: dict | None = None,
    greedy: bool = True,
    batch: int | None = None,
    make_env: Callable | None = None,
) -> dict:
    """Evaluates a scripted policy with no run folder at all (same keys as `evaluate_run`)."""
    from jaxsoc import policy

    built = policy.build_scripted(algo, scenario, env, make_env)
    t0 = time.perf_counter()
    per_episode = evaluate_episodes(built.env, built.env_params, built.trainer, list(seeds), episodes, None, greedy,
                                    batch)
    return {
        # the keys `evaluate_run` records, so that a run and a scripted policy evaluated on the
        # same seeds and episodes pair up (eval/paired.py)
        "request": {"format": EVAL_FORMAT, "episodes": int(episodes), "greedy": bool(greedy),
                    "batch": int(min(batch or episodes, episodes)), "scenario": scenario,
                    "env": dict(env or {}), "checkpoint": None, "heldout_stream": HELDOUT_STREAM},
        "run": None,
        "algo": algo,
        "trained_on": scenario,
        "checkpoint_update": None,
        "seeds": _summary(per_episode, list(seeds)),
        "seconds": round(time.perf_counter() - t0, 3),
        "per_episode": per_episode,
        "reused": False,
    }


def result_from_evaluation(record: dict, label: str, scenario: str, env: dict | None = None,
                           metrics: Sequence[str] | None = None) -> MethodResult:
    """A `MethodResult` ("ours") from one evaluation record. Default `metrics`:
    `runs.default_metrics` of the record's (a SOC world's EVAL_METRICS, another world's own)."""
    metrics = tuple(metrics or runs_lib.default_metrics(
        {k for entry in record["seeds"].values() for k in entry["metrics"]}))
    seeds = []
    for s, entry in record["seeds"].items():
        values = {k: (math.nan if entry["metrics"].get(k, {}).get("mean") is None else entry["metrics"][k]["mean"])
                  for k in metrics}
        counts = {k: int(entry["metrics"].get(k, {}).get("n", 0)) for k in metrics}
        info = {"checkpoint_update": record.get("checkpoint_update"),
                "greedy": (record.get("request") or {}).get("greedy", True)}
        run_path = Path(record["run"]) if record.get("run") else None
        seeds.append(SeedResult(int(s), values, counts, int(entry["episodes"]), run_path, info))
    seeds.sort(key=lambda x: x.seed)
    return MethodResult(label, record["algo"], scenario, "ours", seeds, [], dict(env or {}))


def results_by_section(sections: Mapping, protocols: Sequence[str], window: int, episodes: int,
                       evaluate: bool = True, metrics: Sequence[str] | None = None) -> dict:
    """`{(section, protocol): [MethodResult per group]}` for `sections` `{section: [Group]}` under
    each of `protocols` ("paper": the last `window` training episodes of the logs; "ours": greedy
    held-out evaluation of `episodes` per seed, new ones only if `evaluate`), protocol by protocol,
    each computing `metrics` (default: each protocol's, `runs.default_metrics`)
    (eval/table.py and eval/figures.py; `check_ours` first, so a bad run is refused before any
    evaluation is written). The new evaluations are written into their run folders once every
    result is computed: a checkpoint found damaged only when its arrays are read leaves none
    written."""
    results, pending = {}, []
    for protocol in protocols:
        for section, groups in sections.items():
            if protocol == "paper":
                results[section, protocol] = [paper_protocol(g, window, metrics) for g in groups]
            else:
                results[section, protocol] = [ours_protocol(g, episodes, metrics, evaluate=evaluate, pending=pending)
                                              for g in groups]
    write_evaluations(pending)
    return results


def check_ours(groups: Sequence[Group], episodes: int = 1000, batch: int | None = None,
               make_env: Callable | None = None) -> None:
    """Checks every run that `ours_protocol(group, episodes, batch=batch)` would evaluate as
    `check_evaluation` does (its env included, unless its evaluation is cached): a tool calls it
    before the first evaluation, so that a run that cannot be evaluated is refused before the
    others' evaluations are run and written into their folders (AnalysisError)."""
    for group in groups:
        for run in group.runs:
            check_evaluation(run.path, make_env=make_env, episodes=episodes, batch=batch)


def ours_protocol(group: Group, episodes: int = 1000, metrics: Sequence[str] | None = None,
                  evaluate: bool = True, batch: int | None = None, make_env: Callable | None = None,
                  on_run: Callable[[RunInfo, dict], None] | None = None,
                  pending: list | None = None) -> MethodResult:
    """Per seed: greedy held-out evaluation of the group's runs (evaluating where not cached).

    With `evaluate=False` only cached evaluations are used (AnalysisError if one is missing).
    `pending`: a list to append `(run folder, record)` of each new evaluation to instead of
    writing it, for a caller that writes them once all are done.
    """
    parts: list[MethodResult] = []
    records: list[dict] = []
    for run in group.runs:
        if evaluate:
            record = evaluate_run(run.path, episodes, batch=batch, make_env=make_env, write=pending is None)
            if pending is not None:
                pending.append((run.path, record))
        else:
            path = run.path / EVALUATION_FILE
            if not path.is_file():
                raise AnalysisError(f"{run.path} has not been evaluated yet (no {EVALUATION_FILE}): "
                                    f"run python eval/evaluate.py {run.path}")
            record = runs_lib.read_evaluation_record(path)
            _check_cached_world(path, record, run)
        if on_run is not None:
            on_run(run, record)
        records.append(record)
        parts.append(result_from_evaluation(record, group.label, group.scenario, group.env, metrics))
    seeds = sorted((s for p, run in zip(parts, group.runs) for s in p.seeds if s.seed not in run.superseded),
                   key=lambda s: s.seed)
    return MethodResult(group.label, group.algo, group.scenario, "ours", seeds, _cached_notes(group, records),
                        group.env)


def _check_cached_world(path: Path, record: dict, run: RunInfo) -> None:
    """AnalysisError when a cached evaluation was made on another scenario or env than the run's
    own (a scripted run evaluated with --scenario): its numbers, under that world's metric
    definitions, would sit in the table of the run's world."""
    request = record.get("request") if isinstance(record, dict) else None
    request = request if isinstance(request, dict) else {}
    asked = (request.get("scenario"), dict(request.get("env") or {}))
    if asked != (run.scenario, run.env):
        raise AnalysisError(
            f"{path} was evaluated on {_world_text(*asked)}, not on the run's {_world_text(run.scenario, run.env)}: "
            f"re-evaluate it: python eval/evaluate.py {run.path} --force")


def _world_text(scenario, env: dict) -> str:
    return repr(scenario) + (" with env " + ", ".join(f"{k}={v}" for k, v in sorted(env.items())) if env else "")


def _cached_notes(group: Group, records: Sequence[dict]) -> list[str]:
    """What a reader of the group's numbers must know about its evaluation records: those that
    sampled actions (not greedy), those from a checkpoint older than the run's newest, and runs
    evaluated on different numbers of episodes (a cached record answers whatever it was asked)."""
    notes = []
    requests = [r.get("request") if isinstance(r.get("request"), dict) else {} for r in records]
    sampled = [str(run.path) for run, q in zip(group.runs, requests) if q.get("greedy") is False]
    if sampled:
        notes.append(f"stochastic policy (sampled actions, not greedy) in {', '.join(sampled)}")
    for run, record in zip(group.runs, records):
        used = record.get("checkpoint_update")
        if used is not None:
            steps, _ = runs_lib.checkpoint_index(run)
            if steps and used != steps[-1]:
                notes.append(f"{run.path} evaluated at checkpoint {used}, not its newest ({steps[-1]})")
    episodes = [q.get("episodes") for q in requests]
    if len(set(episodes)) > 1:
        notes.append("runs evaluated on different numbers of episodes: "
                     + ", ".join(f"{run.path} {n}" for run, n in zip(group.runs, episodes)))
    return notes
