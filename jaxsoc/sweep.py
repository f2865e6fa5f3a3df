"""Vectorised hyper-parameter sweeps: a grid of numeric settings x seeds in as few compiled
programs as the shapes allow, each point evaluated on the same held-out episodes and ranked.

    python train/sweep.py --algo mappo --scenario soc-v2 --grid ppo.lr=1e-4,3e-4,1e-3 \\
        --num-seeds 5 --total-steps 5e5 --name lr-sweep

A learner family lists in `SWEEPABLE` the keys of its section that its update only computes
with (learning rates, loss coefficients, discounts): grid points that differ only there train in
ONE program, the values a vmapped `[points]` array beside the seed axis (as PureJaxRL's sweeps
do), so a grid of 8 learning rates x 5 seeds is one jitted `lax.scan` over 40 learners. Any other
key (sizes, switches, env settings) changes the program's shapes or structure: each of its value
combinations is one more program, run one after another. Every point's config is resolved and
validated with its concrete values before anything is compiled.

Evaluation: greedy (or sampling, `greedy=False`: `--stochastic`, for a learner deployed sampling
such as MAPPO on soc-hybrid), `episodes` held-out episodes per seed from `protocols.heldout_batch_key(seed)`
(the episodes of `eval/evaluate.py --episodes <episodes>`), the same for every point; points are ranked by mean return,
with a 95 % t-interval of the mean over seeds.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from jaxsoc import algos, config as config_lib, run_log, xla
from jaxsoc.analysis.intervals import finite_mean, mean_half_width
from jaxsoc.config import ConfigError

SUMMARY_FILE, TABLE_FILE, FIGURE_FILE = "sweep.json", "sweep.md", "sweep.png"
OUTPUT_FILES = (SUMMARY_FILE, TABLE_FILE, FIGURE_FILE)  # everything a sweep's folder holds


def parse_grid(items: Sequence[str]) -> dict[str, list]:
    """`["ppo.lr=1e-4,3e-4", "ppo.ent_coef=0,0.01"]` -> `{"ppo.lr": [1e-4, 3e-4], ...}`.
    ConfigError for a missing '=', an empty or repeated value list, a repeated key or a value that
    is not a finite number."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--grid {item!r} is not KEY=V1,V2,... (e.g. ppo.lr=1e-4,3e-4)")
        if key in grid:
            raise ConfigError(f"--grid names {key} twice: give all its values in one list")
        values = []
        raws = [v.strip() for v in text.split(",")]
        if any(not raw for raw in raws) and any(raws):  # "1e-4,,1e-3": a value left out by mistake
            raise ConfigError(f"--grid {key}={text}: an empty value in the list")
        for raw in raws:
            if not raw:
                continue
            try:
                value = int(raw) if raw.lstrip("+-").isdigit() else float(raw)
            except ValueError:
                raise ConfigError(f"--grid {key}: {raw!r} is not a number (sweeps take numeric values)") from None
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"--grid {key}: {raw!r} is not a finite number")
            values.append(value)
        if not values:
            raise ConfigError(f"--grid {key} has no values")
        if len(set(values)) != len(values):
            raise ConfigError(f"--grid {key} repeats a value: {text}")
        grid[key] = values
    if not grid:
        raise ConfigError("a sweep needs at least one --grid KEY=V1,V2,...")
    return grid


def sweepable_keys(algo: str) -> tuple[str, ...]:
    """The `section.key` names a family's update only computes with (its module's `SWEEPABLE`)."""
    family = algos.family_of(algo)
    module = algos.family_module(algo)
    return tuple(f"{family}.{k}" for k in getattr(module, "SWEEPABLE", ()))


@dataclasses.dataclass
class Group:
    """Grid points that share one program: `traced` keys vary inside it (`values [points, keys]`)."""

    config: dict  # the first point's resolved config (every static key is the group's)
    points: list  # [{key: value}] of the whole grid, for this group's points
    traced: tuple  # keys given to the program as vmapped arrays


@dataclasses.dataclass
class Plan:
    algo: str
    grid: dict
    groups: list
    seeds: tuple
    episodes: int
    greedy: bool = True  # how the held-out episodes are played: greedy, or sampling the policy
    base_config: dict | None = None  # the config without the grid's values (what sweep.json records)


# Keys of a train/run.py config that a sweep's program and its evaluation never read, and what does
# their work here (a --set of them was taken and then ignored).
_EVAL_UNREAD = "held-out episodes: --episodes, sampling: --stochastic; no in-training evaluation"
UNREAD = {"devices": "one device: the grid's points are the vmapped axis", "run.wandb": "no live logs",
          "run.tensorboard": "no live logs", "run.name": "--name", "run.chunk_updates": "one program per group",
          "run.checkpoint_every": "no checkpoints", "run.keep_checkpoints": "no checkpoints",
          "run.final_checkpoint": "no checkpoints", "run.progress": "its own status line"}


def make_plan(flags: dict, sets: Sequence[str], grid: dict, config_file: str | None = None,
              episodes: int = 256, scenarios: Sequence[str] | None = None, greedy: bool = True) -> Plan:
    """Resolves and validates every point's config (ConfigError for unknown keys or values the
    learner refuses) and groups the points by the keys that change the program. `scenarios`: the
    scenario names a custom `make_env` knows (as `config.resolve`)."""
    if episodes < 1:
        raise ConfigError(f"episodes must be at least 1 (got {episodes})")
    def resolve(extra):
        return config_lib.resolve(config_file, flags, list(sets) + extra, scenarios=scenarios)

    base = resolve([])
    algo = base["algo"]
    if algos.family_of(algo) == "scripted":
        raise ConfigError(f"{algo!r} is scripted: it has no hyper-parameters to sweep")
    traced_ok = set(sweepable_keys(algo))
    keys = list(grid)
    for item in sets:  # settings of a train/run.py run that the sweep's own program never reads
        key = str(item).partition("=")[0].strip()
        if key in UNREAD or key.startswith("eval."):
            raise ConfigError(f"--set {item}: the sweep does not read {key} ({UNREAD.get(key, _EVAL_UNREAD)})")
    for key in keys:
        if key in {"seed", "num_seeds"}:
            raise ConfigError(f"--grid {key}: seeds are the sweep's other axis (--num-seeds, --seed)")
        if key.startswith(("run.", "eval.")) or key in UNREAD:
            raise ConfigError(f"--grid {key}: the sweep does not read it (its points would train and rank "
                              "alike); grid the learner's or the env's keys")
        check_grid_key(key, flags, sets)
        try:  # the grid goes to `resolve` as --set items: its unknown keys are named as --grid's
            resolve([f"{key}={grid[key][0]}"])
        except ConfigError as e:
            source = "--set: "
            if not str(e).startswith(source):
                raise
            raise ConfigError(f"--grid {key}: {str(e)[len(source):]}") from None
    groups: dict[tuple, Group] = {}
    for combo in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, combo))
        cfg = resolve([f"{k}={v}" for k, v in point.items()])
        for key in point:  # a key the config does not have is refused by resolve
            value = config_value(cfg, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"--grid {key}: the config's value {value!r} is not a number")
        static = tuple((k, v) for k, v in point.items() if k not in traced_ok)
        if static not in groups:
            groups[static] = Group(cfg, [], tuple(k for k in keys if k in traced_ok))
        groups[static].points.append(point)
    seeds = tuple(range(base["seed"], base["seed"] + base["num_seeds"]))
    return Plan(algo, grid, list(groups.values()), seeds, int(episodes), bool(greedy), base)


def check_grid_key(key: str, flags: dict, sets: Sequence[str]) -> None:
    """ConfigError for a grid key that a flag or a --set also sets (the grid would silently win)."""
    if flags.get(key) is not None:
        raise ConfigError(f"--grid {key} and --{key.replace('_', '-')} both set {key}: give its values in --grid only")
    for item in sets:
        other = str(item).partition("=")[0].strip()
        if other == key or key.startswith(other + ".") or other.startswith(key + "."):
            raise ConfigError(f"--grid {key} and --set {item} both set {key}: give its values in --grid only")


def check_programs(plan: Plan, make_env=None) -> None:
    """Builds every group's env and trainer as `run_group` will (nothing compiled), so that a
    setting only they refuse (e.g. `env.max_steps=0`) is refused before the first program runs;
    ConfigError."""
    from jaxsoc import engine

    for group in plan.groups:
        cfg = group.config
        # As a run builds it (a scenario file's stored contents, the one-line refusals).
        env, env_params = engine.make_env_checked(cfg, make_env, new_run=True)
        engine.check_budget(cfg, algos.make_train(cfg, env, env_params))
        # its evaluation rolls every point's seeds' episodes at once (it failed after the training)
        too_many = engine.episodes_problem(env, env_params, plan.episodes, len(group.points) * len(plan.seeds),
                                           copies_of="(points x seeds)")
        if too_many:
            raise ConfigError(too_many)


def config_value(cfg: dict, key: str):
    """The value of dotted `key` (e.g. "ppo.lr") in a resolved config."""
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def with_values(cfg: dict, keys: Sequence[str], values) -> dict:
    """A copy of `cfg` with `keys` set to `values` (traced scalars inside the program)."""
    out = copy.deepcopy(cfg)
    for key, value in zip(keys, values):
        *path, leaf = key.split(".")
        node = out
        for part in path:
            node = node[part]
        node[leaf] = value
    return out


class UpdateTicker:
    """A status line on stderr while a group's one program runs, at most every `every_s` seconds:
    updates done of all, the env-steps/s of every learner of the group together and the time left.

    The program calls `tick()` after each update of all its learners (`jax.debug.callback`, no
    operands: the numbers are those of a program without it)."""

    def __init__(self, label: str, num_updates: int, env_steps_per_update: int, every_s: float = 10.0,
                 stream=None):
        self.label, self.num_updates, self.steps = label, num_updates, env_steps_per_update
        self.every_s, self.stream = every_s, stream if stream is not None else sys.stderr
        self.done, self.t0, self.shown = 0, None, None

    def tick(self) -> None:
        now = time.perf_counter()
        if self.t0 is None:
            self.t0 = self.shown = now
        self.done += 1
        if now - self.shown >= self.every_s or self.done == self.num_updates:
            # The clock starts at the first update's end: the updates timed are those after it.
            timed = self.done - 1
            if timed and now > self.t0:
                rate = timed * self.steps / (now - self.t0)
                left = (self.num_updates - self.done) * self.steps / rate
                speed = f"{rate:,.0f} env-steps/s (all learners), ~{left:.0f} s left"
            else:
                speed = "- env-steps/s (one update: nothing timed yet)"
            print(f"{self.label}: update {self.done}/{self.num_updates}, {speed}", file=self.stream, flush=True)
            self.shown = now


def run_group(group: Group, plan: Plan, make_env=None, progress: str | None = None,
              stream=None) -> dict[str, np.ndarray]:
    """Trains and evaluates one group: `{metric: [points, seeds, episodes]}` held-out metrics plus
    `"train_return"` `[points, seeds, updates]` (the training curve), `"compile_seconds"` and
    `"seconds"` (training and evaluation, compiled). `progress`: a label for `UpdateTicker`'s
    status lines on `stream` (stderr), or None for none."""
    import jax
    import jax.numpy as jnp

    from jaxsoc import engine
    from jaxsoc.analysis.protocols import heldout_batch_key
    from jaxsoc.evaluation import make_evaluator

    cfg = group.config
    env, env_params = engine.make_env_checked(cfg, make_env)
    reference = algos.make_train(cfg, env, env_params)  # static facts: updates, act
    ticker = None
    if progress is not None:
        learners = len(group.points) * len(plan.seeds)
        ticker = UpdateTicker(progress, reference.num_updates, learners * reference.env_steps_per_update,
                              stream=stream)
    values = jnp.asarray([[p[k] for k in group.traced] for p in group.points], jnp.float32)  # [P, K]

    def trainer_at(point_values):
        return algos.make_train(with_values(cfg, group.traced, point_values), env, env_params)

    def over_grid(fun, state_axis):
        """`fun(point_values, x)` vmapped over seeds (x's axis 0) inside points (values' axis 0)."""
        return jax.vmap(jax.vmap(fun, in_axes=(None, 0)), in_axes=(0, state_axis))

    init_all = over_grid(lambda v, key: trainer_at(v).init(key), None)          # keys shared by points
    update_all = over_grid(lambda v, s: trainer_at(v).update(s), 0)
    params_all = over_grid(lambda v, s: trainer_at(v).policy_params(s), 0)

    def train(values, keys):
        # The update loop is outside the vmaps, so the program can report each update once.
        def body(state, _):
            state, metrics = update_all(values, state)
            if ticker is not None:
                jax.debug.callback(ticker.tick)
            return state, metrics.get("return", jnp.zeros(values.shape[:1] + keys.shape[:1]))

        state, curve = jax.lax.scan(body, init_all(values, keys), None, length=reference.num_updates)
        return params_all(values, state), jnp.moveaxis(curve, 0, -1)  # [P, S, updates]

    rollout = make_evaluator(env, env_params, reference.act, plan.episodes, greedy=plan.greedy)
    train = xla.jit(train)
    evaluate = xla.jit(jax.vmap(jax.vmap(rollout, in_axes=(0, 0)), in_axes=(0, None)))
    keys = np.asarray(engine.seed_keys(plan.seeds[0], len(plan.seeds)))
    eval_keys = jnp.stack([heldout_batch_key(s) for s in plan.seeds])
    t0 = time.perf_counter()
    # The shapes from the traced (not the compiled) program: calling the compiled one, even under
    # eval_shape, runs the whole training once more.
    params_shape = jax.eval_shape(train, values, keys)[0]
    train = train.lower(values, keys).compile()
    evaluate = evaluate.lower(params_shape, eval_keys).compile()
    t1 = time.perf_counter()
    params, curve = jax.block_until_ready(train(values, keys))
    results = jax.device_get(evaluate(params, eval_keys))
    results = {k: np.asarray(v) for k, v in results.items()}
    results["train_return"] = np.asarray(curve)
    results["compile_seconds"] = np.asarray(t1 - t0)
    results["seconds"] = np.asarray(time.perf_counter() - t1)
    return results


def summarise(plan: Plan, group_results: Sequence[dict]) -> list[dict]:
    """One record per point, best mean return first: the point, per-seed held-out means, the mean
    over seeds with its 95 % t-interval half-width, and the same for CSR where the env has it."""
    rows = []
    for group, res in zip(plan.groups, group_results):
        for i, point in enumerate(group.points):
            row = {"point": point}
            for metric in ("return", "csr"):
                if metric not in res:
                    continue
                per_seed = [finite_mean(res[metric][i, s]) for s in range(len(plan.seeds))]
                finite = [v for v in per_seed if math.isfinite(v)]
                mean = float(np.mean(finite)) if finite else float("nan")
                half = mean_half_width(finite)
                row[metric] = {"seeds": per_seed, "mean": mean, "ci95": half}
            rows.append(row)
    rows.sort(key=lambda r: -r["return"]["mean"] if math.isfinite(r["return"]["mean"]) else math.inf)
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def mean_text(stat: dict) -> str:
    """`{"mean", "ci95"}` as "m ± h", or "m (1 seed: no interval)" where there is no interval."""
    half = stat["ci95"]
    if half is None or not math.isfinite(half):
        return f"{stat['mean']:.3f} (1 seed: no interval)"
    return f"{stat['mean']:.3f} ± {half:.3f}"


def to_markdown(plan: Plan, rows: Sequence[dict]) -> str:
    keys = list(plan.grid)
    head = ["rank", *keys, "return (mean ± 95 % CI)", "CSR"]
    lines = [f"| {' | '.join(head)} |", "|" + "---|" * len(head)]
    if not plan.greedy:
        lines.insert(0, f"Held-out episodes played sampling each policy's actions ({plan.episodes} per seed).\n")
    for r in rows:
        csr = r.get("csr")
        cells = [str(r["rank"]), *(f"{r['point'][k]:g}" for k in keys), mean_text(r["return"]),
                 mean_text(csr) if csr else ""]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def figure(plan: Plan, rows: Sequence[dict]):
    """Mean held-out return with its 95 % interval per point (x: the first grid key, one line per
    combination of the others; log x when every value is positive and they span 10x or more)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(plan.grid)
    first, rest = keys[0], keys[1:]
    fig, ax = plt.subplots(figsize=(6, 4))
    lines: dict[tuple, list] = {}
    for r in rows:
        lines.setdefault(tuple(r["point"][k] for k in rest), []).append(r)
    for label, members in sorted(lines.items()):
        members.sort(key=lambda r: r["point"][first])
        x = [r["point"][first] for r in members]
        ax.errorbar(x, [r["return"]["mean"] for r in members], yerr=[r["return"]["ci95"] for r in members],
                    marker="o", capsize=3, label=", ".join(f"{k}={v:g}" for k, v in zip(rest, label)) or None)
    values = plan.grid[first]
    if min(values) > 0 and max(values) >= 10 * min(values):
        ax.set_xscale("log")
    ax.set_xlabel(first)
    ax.set_ylabel(f"held-out return ({len(plan.seeds)} seeds, 95 % CI)")
    if rest:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write(out_dir: Path, plan: Plan, rows: Sequence[dict], seconds: Sequence[tuple]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"algo": plan.algo, "grid": plan.grid, "seeds": list(plan.seeds), "episodes": plan.episodes,
               "greedy": plan.greedy,
               "programs": len(plan.groups),
               "seconds": [{"compile": round(c, 2), "train_and_evaluate": round(r, 2)} for c, r in seconds],
               "base_config": plan.base_config or plan.groups[0].config, "ranking": list(rows)}
    # One seed leaves ci95 NaN (no interval); strict JSON parsers reject NaN, so it is written null.
    (out_dir / SUMMARY_FILE).write_text(json.dumps(run_log.json_safe(summary), indent=1, default=float))
    (out_dir / TABLE_FILE).write_text(to_markdown(plan, rows))
    fig = figure(plan, rows)
    fig.savefig(out_dir / FIGURE_FILE, dpi=120)


def run(plan: Plan, out_dir: Path, make_env=None, on_group=None, progress: bool = False) -> list[dict]:
    """Runs every group in turn, then writes the summary, table and figure (nothing before);
    `progress`: a status line on stderr every ~10 s while a group trains."""
    results, seconds = [], []
    for i, group in enumerate(plan.groups):
        res = run_group(group, plan, make_env, f"program {i + 1}/{len(plan.groups)}" if progress else None)
        seconds.append((float(res.pop("compile_seconds")), float(res.pop("seconds"))))
        results.append(res)
        if on_group is not None:
            on_group(i, group, *seconds[-1])
    rows = summarise(plan, results)
    write(out_dir, plan, rows, seconds)
    return rows
