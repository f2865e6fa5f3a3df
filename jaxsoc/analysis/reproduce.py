"""Train every method x seeds on a preset, then write Table II (both protocols) and the figures.

    plan = make_plan("hmarl-soc-v1", quick=True)       # what would run, budgets, skipped methods
    summary = execute(plan)                             # trains/evaluates, writes <out>/...

Methods: every algorithm registered when this runs (scripted baselines and learners), in table
order; Table II methods whose algorithm is not registered yet are listed as skipped. Seeds: the
paper's 42/123/456/789/1024 on `hmarl-soc-v1`, 0..4 elsewhere; contiguous seeds train in one
compiled program (`num_seeds`), others as one run each (the engine numbers seeds
`seed..seed+num_seeds-1`), so the paper's seeds are five runs that share one compilation
through the persistent cache. Budgets: learners 1.5M env steps per seed (`LEARNER_STEPS`) with
their config (`configs/<algo>.yaml`, else `configs/base.yaml`) plus `TABLE_SETS`, unless
`total_steps`/`num_envs`/`sets` say otherwise; scripted baselines get enough
steps for a 2,000-episode window after every env has finished its first episode. `quick`:
3 seeds in one program, a few updates per method, 128 evaluation episodes.

Existing run folders are reused when complete with the same training config, resumed when
interrupted, and refused (unless `overwrite`) when their config differs. A method that fails
is reported and the others go on.

When the HMARL learner is registered (`hmarl` or `hmarl-soc`), its K-sweep (`env.directive_period`)
and ablations (`ABLATIONS`, config keys of its family; unknown keys are skipped with a note) are
trained too, and, if its family module exposes `attention_weights(policy_params, obs, config,
env_params) -> (weights [decisions, heads, tokens], token_names)` (one seed's policy parameters;
`obs` the env's per-agent observation dict with a leading decisions axis; the run's config and
scenario), attention maps of a few decisions.

Output folder (default `results/<preset>[-quick]`):
    runs/<algo>-s<seed>[-<last seed>]/    the engine's run folders (+ evaluation.json/.npz)
    tables/table2_paper.{md,csv,tex}      the paper's protocol (last 2,000 training episodes)
    tables/table2_ours.{md,csv,tex}       ours (greedy, held-out episodes)
    figures/*.png|pdf                     curves, bars_*, seeds_*, (k_sweep_*, ablations_*, attention)
    timings.json, README.md               per-method wall-clock, the command, the machine, the tables
"""
from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Sequence

from jaxsoc.analysis import figures as figs
from jaxsoc.analysis import paper as paper_lib
from jaxsoc.analysis import protocols, tables
from jaxsoc.analysis import runs as runs_lib
from jaxsoc.analysis.runs import AnalysisError

PAPER_SEEDS = paper_lib.SEEDS
OTHER_SEEDS = (0, 1, 2, 3, 4)
QUICK_SEEDS = (42, 43, 44)
HMARL_NAMES = ("hmarl", "hmarl-soc")
K_VALUES = (1, 3, 5, 10, 20)  # the paper's k{1,3,10,20}_config.yaml and the default 5
QUICK_K_VALUES = (1, 5, 20)
# label -> config overrides of the HMARL family (docs/reference.md §2.5: --no-sc, --no-shared-buffer,
# both = "Flat MARL"). Keys the registered family does not have are skipped with a note.
ABLATIONS = {
    "w/o SC": {"train_coordinator": False},
    "w/o shared buffer": {"shared_buffer": False},
    "Flat MARL": {"train_coordinator": False, "shared_buffer": False},
}

# Scripted baselines: envs x rollout x updates per seed.
SCRIPTED_BUDGET = {"num_envs": 512, "updates": 16}   # 1,048,576 steps: >= 2,000 episodes after warm-up
QUICK_SCRIPTED_BUDGET = {"num_envs": 256, "updates": 14}  # ~2,300+ episodes: a real window
QUICK_LEARNER_BUDGET = {"num_envs": 64, "updates": 4}
# Learners in the full table: 1.5M env steps per seed (on hmarl-soc-v1 more than the paper's 10,000
# episodes per seed) at their config's num_envs. IQL/VDN/QMIX keep their networks and batch but
# not the reference's one update per 4 env steps (375,000 gradient steps of batch 512 per seed,
# hours on a CPU): 0.002 rounds per transition, 8 env steps per update (docs/reproduction.md).
LEARNER_STEPS = 1_500_000
TABLE_SETS = {algo: ("dqn.utd=0.002", "dqn.rollout=8") for algo in ("iql", "vdn", "qmix")}
EPISODES = 1000
QUICK_EPISODES = 128


@dataclasses.dataclass
class RunPlan:
    """One engine run: a method's seeds `seed..seed+num_seeds-1`."""

    name: str
    seed: int
    num_seeds: int


@dataclasses.dataclass
class MethodPlan:
    algo: str
    label: str
    flags: dict
    sets: list
    runs: list
    kind: str = "main"  # "main", "k-sweep" or "ablation"
    tag: object = None  # K, or the ablation label


@dataclasses.dataclass
class Plan:
    preset: str
    out: Path
    quick: bool
    seeds: tuple
    episodes: int
    window: int
    methods: list
    skipped: list  # (name, reason)
    attention: bool = False


def seed_runs(seeds: Sequence[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive seeds as (first, count), in the given order's sorted form."""
    out: list[list[int]] = []
    for s in sorted(set(int(x) for x in seeds)):
        if out and s == out[-1][0] + out[-1][1]:
            out[-1][1] += 1
        else:
            out.append([s, 1])
    return [tuple(x) for x in out]


def _run_name(algo: str, first: int, count: int, suffix: str = "") -> str:
    return f"{algo}{suffix}-s{first}" + (f"-{first + count - 1}" if count > 1 else "")


def registered_methods() -> list[str]:
    from jaxsoc import algos

    return sorted(algos.ALGORITHMS, key=lambda a: (runs_lib.method_order(a), a))


def _family(algo: str) -> str:
    from jaxsoc import algos

    return algos.family_of(algo)


def _sets_for(algo: str, sets: Sequence[str]) -> list[str]:
    """`--set`s that apply to `algo`: base keys always, family sections only to their family."""
    from jaxsoc import algos

    families = set(algos.ALGORITHMS.values())
    fam = _family(algo)
    out = []
    for s in sets:
        head = s.split("=", 1)[0].split(".", 1)[0].strip()
        if head in families and head != fam:
            continue
        out.append(s)
    return out


def make_plan(
    preset: str = "hmarl-soc-v1",
    methods: Sequence[str] | None = None,
    *,
    quick: bool = False,
    seeds: Sequence[int] | None = None,
    out: str | Path | None = None,
    total_steps: int | None = None,
    num_envs: int | None = None,
    episodes: int | None = None,
    window: int = protocols.WINDOW_EPISODES,
    sets: Sequence[str] = (),
    extras: bool = True,
) -> Plan:
    """What `execute` will do (module docstring). AnalysisError for unknown methods/presets."""
    from jaxsoc import algos

    try:
        import jaxsoc.env as soc

        known = soc.preset_names()
    except Exception:  # pragma: no cover - env not importable
        known = ()
    if known and preset not in known and not str(preset).endswith((".yaml", ".yml")):
        raise AnalysisError(f"unknown preset {preset!r}{algos.suggest(preset, known)}; known: {', '.join(known)}")
    registered = registered_methods()
    skipped = []
    if methods is None:
        chosen = list(registered)
        for algo in runs_lib.PAPER_METHODS:
            if algo not in registered and not (algo == "hmarl" and "hmarl-soc" in registered):
                skipped.append((algo, "not registered yet (its learner has not landed)"))
    else:
        chosen = []
        for m in methods:
            if m in registered:
                chosen.append(m)
            elif m in runs_lib.PLANNED_LEARNERS or m in runs_lib.DISPLAY_NAMES:
                skipped.append((m, "not registered yet (its learner has not landed)"))
            else:
                raise AnalysisError(f"unknown method {m!r}{algos.suggest(m, registered)}; registered: "
                                    + ", ".join(registered))
    if seeds is None:
        seeds = QUICK_SEEDS if quick else (PAPER_SEEDS if preset == paper_lib.SCENARIO else OTHER_SEEDS)
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise AnalysisError("no seeds")
    if out is None:
        out = Path("results") / (Path(str(preset)).stem + ("-quick" if quick else ""))
    out = Path(out)
    plans = []
    for algo in chosen:
        plans.append(_method_plan(algo, preset, seeds, quick, total_steps, num_envs, sets))
    attention = False
    hmarl = next((a for a in chosen if a in HMARL_NAMES), None)
    if hmarl and extras:
        ks = QUICK_K_VALUES if quick else K_VALUES
        default_k = _default_k(preset)
        for k in ks:
            if k == default_k:
                continue
            mp = _method_plan(hmarl, preset, seeds, quick, total_steps, num_envs,
                              list(sets) + [f"env.directive_period={k}"], suffix=f"-k{k}")
            mp.kind, mp.tag, mp.label = "k-sweep", k, f"{runs_lib.display_name(hmarl)} K={k}"
            plans.append(mp)
        fam = _family(hmarl)
        defaults = algos.default_section(hmarl)
        for label, overrides in ABLATIONS.items():
            missing = [k for k in overrides if k not in defaults]
            if missing:
                skipped.append((f"{hmarl} ablation {label!r}",
                                f"its family {fam!r} has no config key(s) {', '.join(missing)}"))
                continue
            slug = "-" + "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")
            mp = _method_plan(hmarl, preset, seeds, quick, total_steps, num_envs,
                              list(sets) + [f"{fam}.{k}={v}" for k, v in overrides.items()], suffix=slug)
            mp.kind, mp.tag, mp.label = "ablation", label, f"{runs_lib.display_name(hmarl)} {label}"
            plans.append(mp)
        attention = hasattr(algos.family_module(hmarl), "attention_weights")
    return Plan(str(preset), out, quick, seeds, episodes or (QUICK_EPISODES if quick else EPISODES),
                window, plans, skipped, attention)


def _default_k(preset: str) -> int:
    try:
        import jaxsoc.env as soc

        return int(soc.build_params(preset).directive_period)
    except Exception:  # pragma: no cover
        return 5


def _method_plan(algo, preset, seeds, quick, total_steps, num_envs, sets, suffix="") -> MethodPlan:
    flags = {"algo": algo, "scenario": preset}
    sets = list(TABLE_SETS.get(algo, ())) + list(_sets_for(algo, sets))  # the caller's --set wins
    scripted = _family(algo) == "scripted"
    if not scripted and not quick:
        flags["total_steps"] = LEARNER_STEPS
    budget = None
    if quick:
        budget = QUICK_SCRIPTED_BUDGET if scripted else QUICK_LEARNER_BUDGET
    elif scripted:
        budget = SCRIPTED_BUDGET
    if budget is not None:
        flags["num_envs"] = budget["num_envs"]
        flags["_updates"] = budget["updates"]  # resolved into total_steps once the trainer is known
    if num_envs is not None:
        flags["num_envs"] = int(num_envs)
    if total_steps is not None:
        flags["total_steps"] = int(total_steps)
        flags.pop("_updates", None)
    runs = [RunPlan(_run_name(algo, first, count, suffix), first, count) for first, count in seed_runs(seeds)]
    return MethodPlan(algo, runs_lib.display_name(algo), flags, list(sets), runs)


def _resolve(mp: MethodPlan, rp: RunPlan, run_dir: Path) -> dict:
    """The engine config of one run of a method (budgets in updates resolved to env steps)."""
    from jaxsoc import algos, config as config_lib

    flags = {k: v for k, v in mp.flags.items() if not k.startswith("_")}
    flags.update(seed=rp.seed, num_seeds=rp.num_seeds,
                 run={"name": rp.name, "dir": str(run_dir), "tensorboard": False})
    cfg = config_lib.resolve(flags=flags, sets=mp.sets)
    updates = mp.flags.get("_updates")
    if updates:
        import jaxsoc.env as soc

        env, env_params = soc.make(cfg["scenario"], **cfg["env"])
        per_update = algos.make_train(cfg, env, env_params).env_steps_per_update
        cfg = config_lib.resolve(flags={**flags, "total_steps": per_update * updates}, sets=mp.sets)
    return cfg


def _existing(path: Path, cfg: dict) -> str:
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
    update, meta = protocols._checkpoint_meta(run)
    if update is None:
        return "different"  # nothing to resume from
    per_update = (meta.get("env_steps") or 0) / max(update, 1)
    return "complete" if per_update and update >= cfg["total_steps"] // per_update else "partial"


@dataclasses.dataclass
class Summary:
    plan: Plan
    timings: dict  # label -> {"train_s", "eval_s", "runs", "cached"}
    failures: dict  # label -> message
    tables: dict  # protocol -> Table
    files: list
    notes: list


def execute(plan: Plan, *, overwrite: bool = False, progress: bool = True,
            log: Callable[[str], None] = print, command: str | None = None) -> Summary:
    """Trains, evaluates and writes everything of `plan` (module docstring)."""
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
                    cfg = _resolve(mp, rp, run_dir)
                    cfg["run"]["progress"] = progress
                    path = run_dir / rp.name
                    state = _existing(path, cfg)
                    t0 = time.perf_counter()
                    if state == "complete" and not overwrite:
                        cached += 1
                        t_train += _logged_seconds(path)
                    elif state == "partial" and not overwrite:
                        engine.run(cfg, resume=path)
                        t_train += time.perf_counter() - t0
                    elif state == "different" and not overwrite:
                        raise AnalysisError(
                            f"{path} exists with another training config (or no checkpoint): pass "
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
    summary = Summary(plan, timings, failures, {}, [], notes)
    if done_methods:
        _write_outputs(summary, done_methods, log)
    (out / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    _write_readme(summary, command)
    return summary


def _logged_seconds(path: Path) -> float:
    """Training wall-clock a run logged (its last `time`), for runs reused from an earlier call."""
    from jaxsoc import run_log

    recs, _ = run_log.read_jsonl(path / "metrics.jsonl")
    return float(recs[-1].get("time", 0.0)) if recs else 0.0


def _groups_of(plan: Plan, mps: Sequence[MethodPlan]) -> list:
    run_dir = plan.out / "runs"
    out = []
    for mp in mps:
        g = runs_lib.group_runs([runs_lib.read_run(run_dir / rp.name) for rp in mp.runs])[0]
        g.label = mp.label
        out.append(g)
    return out


def _write_outputs(summary: Summary, mps: list, log) -> None:
    plan = summary.plan
    tdir, fdir = plan.out / "tables", plan.out / "figures"
    main = [m for m in mps if m.kind == "main"]
    groups = _groups_of(plan, main)
    results = {}
    for protocol in ("paper", "ours"):
        res = []
        for g in groups:
            try:
                r = (protocols.paper_protocol(g, plan.window) if protocol == "paper"
                     else protocols.ours_protocol(g, plan.episodes, evaluate=False))
                res.append(r)
            except AnalysisError as e:
                summary.notes.append(f"{g.label} ({protocol} protocol): {e}")
                log(f"{g.label} ({protocol} protocol): {e}")
        results[protocol] = res
        if not res:
            continue
        metrics = runs_lib.TABLE_METRICS if protocol == "paper" else runs_lib.EVAL_METRICS
        table = tables.build_table(res, protocol, metrics, paper="all" if protocol == "paper" else "matched")
        summary.tables[protocol] = table
        summary.files += tables.write_table(table, tdir, f"table2_{protocol}")
        title = table.title
        fig, _ = figs.metric_bars(res, with_paper="all" if protocol == "paper" else True, title=title)
        summary.files += figs.save(fig, fdir / f"bars_{protocol}")
        summary.files += figs.save(figs.seed_scatter(res, title=title)[0], fdir / f"seeds_{protocol}")
    if groups:
        summary.files += figs.save(figs.learning_curves(groups, window=plan.window, title=plan.preset)[0],
                                   fdir / "curves")
    # HMARL extras
    sweep = [m for m in mps if m.kind == "k-sweep"]
    hmarl_main = [m for m in main if m.algo in HMARL_NAMES]
    if sweep and hmarl_main:
        k_default = _default_k(plan.preset)
        ms = hmarl_main + sweep
        gs = _groups_of(plan, ms)
        for protocol in ("ours", "paper"):
            res = [(protocols.ours_protocol(g, plan.episodes, evaluate=False) if protocol == "ours"
                    else protocols.paper_protocol(g, plan.window)) for g in gs]
            data = figs.k_sweep_data(res, gs, default=k_default)
            summary.files += figs.save(figs.k_sweep(data, title=f"K-sweep ({protocol} protocol)")[0],
                                       fdir / f"k_sweep_{protocol}")
    abl = [m for m in mps if m.kind == "ablation"]
    if abl and hmarl_main:
        ms = hmarl_main + abl
        gs = _groups_of(plan, ms)
        for protocol in ("ours", "paper"):
            variants = {}
            for m, g in zip(ms, gs):
                r = (protocols.ours_protocol(g, plan.episodes, evaluate=False) if protocol == "ours"
                     else protocols.paper_protocol(g, plan.window))
                label = "full" if m.kind == "main" else m.tag
                variants[label] = {k: r.values(k).tolist() for k in runs_lib.EVAL_METRICS}
            summary.files += figs.save(figs.ablation_chart(variants, title=f"Ablations ({protocol} protocol)")[0],
                                       fdir / f"ablations_{protocol}")
    if plan.attention and hmarl_main:
        try:
            summary.files += draw_attention(plan.out / "runs" / hmarl_main[0].runs[0].name, fdir / "attention")
        except Exception as e:  # the explainer's contract is new: report, do not lose the rest
            summary.notes.append(f"attention maps: {type(e).__name__}: {e}")


def collect_decision_obs(env, env_params, trainer, policy_params, key, decisions: int = 4, period: int = 5):
    """Observations at the first `decisions` coordinator decisions (every `period` steps) of one
    greedy episode from `key`: the env's per-agent dict with a leading decisions axis."""
    import jax

    steps = decisions * period
    k_reset, k_run = jax.random.split(key)
    obs, state = env.reset(k_reset, env_params)

    def body(carry, k):
        obs, state = carry
        k_act, k_env = jax.random.split(k)
        actions = trainer.act(policy_params, k_act, obs, state, True)
        nobs, nstate, _, _, _ = env.step(k_env, state, actions, env_params)
        return (nobs, nstate), obs

    _, trace = jax.jit(lambda k: jax.lax.scan(body, (obs, state), jax.random.split(k, steps)))(k_run)
    return jax.tree.map(lambda x: x[:: period][:decisions], trace)


def draw_attention(run_path: Path, stem: Path, decisions: int = 4, make_env: Callable | None = None) -> list:
    """Attention maps of a few decisions of seed 0 of an HMARL run (module docstring)."""
    import jax

    import jaxsoc.env as soc
    from jaxsoc import algos, engine

    loaded = engine.load(run_path, make_env=make_env)
    module = algos.family_module(loaded.config["algo"])
    env, env_params = (make_env or soc.make)(loaded.config["scenario"], **loaded.config["env"])
    params = jax.tree.map(lambda x: x[0], jax.vmap(loaded.trainer.policy_params)(loaded.state))
    period = int(getattr(env_params, "directive_period", 5))
    obs = collect_decision_obs(env, env_params, loaded.trainer, params,
                               protocols.heldout_key(loaded.config["seed"]), decisions, period)
    weights, names = module.attention_weights(params, obs, loaded.config, env_params)
    labels = [f"decision {i + 1} (step {i * period})" for i in range(decisions)]
    fig, _ = figs.attention_maps(weights, names, labels, title=f"{runs_lib.display_name(loaded.config['algo'])} "
                                 "explainer attention, seed " + str(loaded.config["seed"]))
    return figs.save(fig, stem)


def machine() -> str:
    import os

    import jax

    dev = jax.devices()
    return (f"{platform.platform()}, Python {platform.python_version()}, jax {jax.__version__} on "
            f"{len(dev)} {dev[0].platform.upper()} device(s) ({dev[0].device_kind}), {os.cpu_count()} CPU cores")


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


def _write_readme(summary: Summary, command: str | None) -> None:
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
