"""What `eval/reproduce.py` runs: every method x seeds on a preset, with its budget and config.

    plan = make_plan("hmarl-soc-v1", quick=True)       # what would run, budgets, skipped ablations
    summary = execute.execute(plan)                     # trains and evaluates (jaxsoc.analysis.execute)
    report.write(summary)                               # tables, figures, README (jaxsoc.analysis.report)

Methods: by default Table II's — the paper's six methods (`runs.PAPER_METHODS`) and the scripted
baselines (`runs.BASELINES`) that are registered — in table order; `["all"]`: every algorithm
registered when this runs (the issue learners, scripted leads, red teams, ...: hours on a CPU).
Seeds: the paper's 42/123/456/789/1024 on `hmarl-soc-v1`, 0..4 elsewhere; contiguous seeds
train in one compiled program (`num_seeds`), others as one run each (the engine numbers seeds
`seed..seed+num_seeds-1`), so the paper's seeds are five runs that share one compilation
through the persistent cache. Budgets: learners 1.5M env steps per seed (`LEARNER_STEPS`) with
their config (`configs/<algo>.yaml`, else `configs/base.yaml`), unless
`total_steps`/`num_envs`/`sets` say otherwise; scripted baselines get the fewest updates that
hold the paper window's episodes after every env's first `max_steps` steps, however long their
episodes (`scripted_updates`). `quick`:
3 seeds in one program, a few updates per method, 128 evaluation episodes.

When the HMARL learner (`HMARL`) is chosen, its K-sweep (`env.directive_period`) and ablations
(`ABLATIONS`, config keys of its family; unknown keys are skipped with a note) are planned too,
and attention maps (`jaxsoc.analysis.attention`) if its family module exposes `attention_weights`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from jaxsoc.analysis import paper as paper_lib
from jaxsoc.analysis import protocols
from jaxsoc.analysis import runs as runs_lib
from jaxsoc.analysis.runs import AnalysisError
from jaxsoc.names import suggest

PAPER_SEEDS = paper_lib.SEEDS
OTHER_SEEDS = (0, 1, 2, 3, 4)
QUICK_SEEDS = (42, 43, 44)
HMARL = "hmarl"
K_VALUES = (1, 3, 5, 10, 20)  # the paper's k{1,3,10,20}_config.yaml and the default 5
QUICK_K_VALUES = (1, 5, 20)
# label -> config overrides of the HMARL family (docs/reference.md §2.5: --no-sc, --no-shared-buffer,
# both = "Flat MARL"). Keys the registered family does not have are skipped with a note.
ABLATIONS = {
    "w/o SC": {"train_coordinator": False},
    "w/o shared buffer": {"shared_buffer": False},
    "Flat MARL": {"train_coordinator": False, "shared_buffer": False},
}

# Scripted baselines: envs x rollout x updates per seed. The full table's updates follow from the
# preset's episode limit and the window (`scripted_updates`: 9 of 128 steps at a 200-step limit).
SCRIPTED_ENVS = 512
QUICK_SCRIPTED_BUDGET = {"num_envs": 256, "updates": 14}  # ~2,300+ episodes: a real window
QUICK_LEARNER_BUDGET = {"num_envs": 64, "updates": 4}
# A quick off-policy learner learns from its first full batch: its config's warm-up (HMARL-SOC,
# SAC and MADDPG: 10,000 transitions) is longer than the quick budget (64 envs x 4 updates).
QUICK_LEARNING_STARTS = 0
# Learners in the full table: 1.5M env steps per seed (on hmarl-soc-v1 more than the paper's 10,000
# episodes per seed) at their config's num_envs and update ratio (IQL/VDN/QMIX: 0.002 rounds per
# transition, not the reference's 0.25 = 375,000 gradient steps of batch 512 per seed, hours on a
# CPU; configs/<algo>-reference.yaml keeps that ratio).
LEARNER_STEPS = 1_500_000
EPISODES = 1000
QUICK_EPISODES = 128


@dataclasses.dataclass
class RunPlan:
    """One engine run: a method's seeds `seed..seed+num_seeds-1`, in folder `runs/<name>`."""

    name: str
    seed: int
    num_seeds: int


@dataclasses.dataclass
class MethodPlan:
    """One method: its algorithm, table label, engine flags and `--set`s, and its runs.

    `flags["_updates"]`, when present, is a budget in updates that `run_config` turns into
    `total_steps` once the trainer's env steps per update are known; `flags["_window"]` asks
    `run_config` for `scripted_updates` of that window at the env's episode limit."""

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


def run_name(algo: str, first: int, count: int, suffix: str = "") -> str:
    """`<algo><suffix>-s<first>[-<last>]`, the run folder of seeds `first..first+count-1`."""
    return f"{algo}{suffix}-s{first}" + (f"-{first + count - 1}" if count > 1 else "")


def registered_methods() -> list[str]:
    """The registered algorithms that act on the SOC (the demos' heuristics act on theirs only)."""
    from jaxsoc import algos
    from jaxsoc.demos import HEURISTICS

    return sorted((a for a in algos.ALGORITHMS if a not in HEURISTICS), key=lambda a: (runs_lib.method_order(a), a))


def table_methods() -> list[str]:
    """Table II's rows that are registered: the paper's methods, then the scripted baselines."""
    registered = set(registered_methods())
    return [a for a in runs_lib.PAPER_METHODS + runs_lib.BASELINES if a in registered]


def sets_for(algo: str, sets: Sequence[str]) -> list[str]:
    """`--set`s that apply to `algo`: base keys always, family sections only to their family."""
    from jaxsoc import algos

    families = set(algos.ALGORITHMS.values())
    fam = algos.family_of(algo)
    out = []
    for s in sets:
        head = s.split("=", 1)[0].split(".", 1)[0].strip()
        if head in families and head != fam:
            continue
        out.append(s)
    return out


def scripted_updates(max_steps: int, num_envs: int, rollout: int, window: int) -> int:
    """The fewest updates of `num_envs` x `rollout` steps that give the paper protocol a
    `window`-episode window starting after each env's first `max_steps` steps, whatever the
    episodes' lengths (each ends within `max_steps`).

    `protocols.paper_protocol` calls a window that reaches into an env's first `max_steps` steps
    length-biased (only short episodes have ended there), so the window may start at update
    `s0 = ceil(max_steps / rollout)` at the earliest. Any `max_steps` consecutive steps of an env
    hold an episode's end, so updates `s0..u-1` hold at least
    `num_envs * floor((u - s0) * rollout / max_steps)` episodes: the answer is the smallest `u`
    that makes this `>= window`. E.g. 512 envs, 128-step updates, a 200-step limit, 2,000
    episodes: 2 + ceil(4 x 200 / 128) = 9 updates (589,824 env steps per seed).
    """
    if min(max_steps, num_envs, rollout, window) < 1:
        raise ValueError(f"scripted_updates needs positive numbers, got max_steps={max_steps}, "
                         f"num_envs={num_envs}, rollout={rollout}, window={window}")
    first = -(-max_steps // rollout)
    episodes_per_env = -(-window // num_envs)
    return first + -(-(episodes_per_env * max_steps) // rollout)


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
    from jaxsoc import algos, config as config_lib

    try:
        import jaxsoc.env as soc

        known = soc.preset_names()
        worlds = soc.scenario_names()
    except Exception:  # pragma: no cover - env not importable
        known = worlds = ()
    if known and preset not in known and not config_lib.is_scenario_file(preset):
        if preset in worlds:  # a scenario make builds (retail, cage4-like, ...), not a SOC preset
            raise AnalysisError(f"reproduce builds Table II on the SOC presets ({', '.join(known)}) or a scenario "
                                f".yaml; {preset!r} is another world (jaxsoc.env.make builds it), not a SOC preset")
        raise AnalysisError(f"unknown preset {preset!r}{suggest(preset, known)}; known: {', '.join(known)}")
    if int(window) < 0:
        raise AnalysisError(f"window must be >= 0 episodes (0 or 1: each update alone), got {window}")
    registered = registered_methods()
    skipped = []
    if methods is None:
        chosen = table_methods()
    elif list(methods) == ["all"]:
        chosen = list(registered)
    else:
        chosen = list(methods)
    for m in chosen:
        if m not in registered:
            raise AnalysisError(f"unknown method {m!r}{suggest(m, registered)}; registered: "
                                + ", ".join(registered) + " (or 'all' alone)")
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
        plans.append(method_plan(algo, preset, seeds, quick, total_steps, num_envs, sets, window=window))
    if list(methods or ()) == ["all"]:  # every method that acts on this preset; the others are named
        acting = []
        for mp in plans:
            why = method_problem(mp, out)
            if why is None:
                acting.append(mp)
            else:
                skipped.append((mp.algo, why))
        plans, chosen = acting, [mp.algo for mp in acting]
    for s in sets:  # a family section's --set reaches that family's methods only
        if not any(s in mp.sets for mp in plans):
            raise AnalysisError(f"--set {s} applies to none of the planned methods "
                                f"({', '.join(chosen)}): its section is another family's")
    attention = False
    if HMARL in chosen and extras:
        ks = QUICK_K_VALUES if quick else K_VALUES
        default_k = default_directive_period(preset)
        for k in ks:
            if k == default_k:
                continue
            mp = method_plan(HMARL, preset, seeds, quick, total_steps, num_envs,
                             list(sets) + [f"env.directive_period={k}"], suffix=f"-k{k}")
            mp.kind, mp.tag, mp.label = "k-sweep", k, f"{runs_lib.display_name(HMARL)} K={k}"
            plans.append(mp)
        fam = algos.family_of(HMARL)
        defaults = algos.default_section(HMARL)
        for label, overrides in ABLATIONS.items():
            missing = [k for k in overrides if k not in defaults]
            if missing:
                skipped.append((f"{HMARL} ablation {label!r}",
                                f"its family {fam!r} has no config key(s) {', '.join(missing)}"))
                continue
            slug = "-" + "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")
            mp = method_plan(HMARL, preset, seeds, quick, total_steps, num_envs,
                             list(sets) + [f"{fam}.{k}={v}" for k, v in overrides.items()], suffix=slug)
            mp.kind, mp.tag, mp.label = "ablation", label, f"{runs_lib.display_name(HMARL)} {label}"
            plans.append(mp)
        attention = hasattr(algos.family_module(HMARL), "attention_weights")
    return Plan(str(preset), out, quick, seeds, episodes or (QUICK_EPISODES if quick else EPISODES),
                window, plans, skipped, attention)


def method_problem(mp: MethodPlan, out: Path) -> str | None:
    """Why the first run of method `mp` cannot train (its config, env or trainer refuses it, e.g.
    a scripted policy of another world), or None."""
    from jaxsoc import algos, engine
    from jaxsoc.config import ConfigError

    try:
        cfg = run_config(mp, mp.runs[0], out / "runs")
        env, env_params = engine.make_env_checked(cfg, new_run=True)
        engine.check_budget(cfg, algos.make_train(cfg, env, env_params))
    except (ConfigError, ValueError, TypeError) as e:
        return str(e)
    return None


def check_runs(plan: Plan) -> None:
    """Resolves every run's config as `execute` will (`run_config`) and checks each method's
    budget against its trainer's update (`engine.check_budget`: a `--total-steps` below one
    update), so that a bad `--set`, budget or env value fails in one line (AnalysisError naming
    the method) before anything is trained or written, not method by method after the work."""
    from jaxsoc.config import ConfigError

    for mp in plan.methods:
        # The first run in full (an update's env steps are per seed: the same in every run of a
        # method), the others' configs.
        problem = method_problem(mp, plan.out)
        if problem is None:
            try:
                for rp in mp.runs[1:]:
                    run_config(mp, rp, plan.out / "runs")
            except (ConfigError, ValueError, TypeError) as e:
                problem = str(e)
        if problem is not None:
            raise AnalysisError(f"{mp.label}: {problem}")


def default_directive_period(preset: str) -> int:
    """The preset's K (`env.directive_period`): the K-sweep's default point."""
    try:
        import jaxsoc.env as soc

        return int(soc.build_params(preset).directive_period)
    except Exception:  # pragma: no cover
        return 5


def method_plan(algo, preset, seeds, quick, total_steps, num_envs, sets, suffix="",
                window: int = protocols.WINDOW_EPISODES) -> MethodPlan:
    """One method's budget, flags and runs (module docstring); `suffix` tells variants apart,
    `window` is the paper protocol's window that a scripted baseline's budget must hold."""
    from jaxsoc import algos

    flags = {"algo": algo, "scenario": preset}
    sets = list(sets_for(algo, sets))
    family = algos.family_of(algo)
    scripted = family == "scripted"
    if quick and "learning_starts" in getattr(algos.family_module(algo), "DEFAULTS", {}):
        sets = [f"{family}.learning_starts={QUICK_LEARNING_STARTS}"] + sets  # the user's --set wins
    if not scripted and not quick:
        flags["total_steps"] = LEARNER_STEPS
    if quick:
        budget = QUICK_SCRIPTED_BUDGET if scripted else QUICK_LEARNER_BUDGET
        flags["num_envs"] = budget["num_envs"]
        flags["_updates"] = budget["updates"]  # resolved into total_steps once the trainer is known
    elif scripted:
        flags["num_envs"] = SCRIPTED_ENVS
        flags["_window"] = max(int(window), 1)  # resolved into updates once the env and trainer are known
    if num_envs is not None:
        flags["num_envs"] = int(num_envs)
    if total_steps is not None:
        flags["total_steps"] = int(total_steps)
        flags.pop("_updates", None)
        flags.pop("_window", None)
    runs = [RunPlan(run_name(algo, first, count, suffix), first, count) for first, count in seed_runs(seeds)]
    return MethodPlan(algo, runs_lib.display_name(algo), flags, list(sets), runs)


def run_config(mp: MethodPlan, rp: RunPlan, run_dir: Path) -> dict:
    """The engine config of one run of a method (budgets in updates resolved to env steps)."""
    from jaxsoc import algos, config as config_lib

    flags = {k: v for k, v in mp.flags.items() if not k.startswith("_")}
    # The last checkpoint keeps only the policy: the table reads nothing else, and the learners'
    # replay buffers made the soc-v2 table's whole states ~25 GiB (HMARL-SOC 2.7 GiB a run, with
    # the K-sweep and ablations eight such runs) against ~0.8 GiB of policies. A finished run is
    # never resumed (its config says it is complete); `--set run.final_checkpoint=full` keeps all.
    flags.update(seed=rp.seed, num_seeds=rp.num_seeds,
                 run={"name": rp.name, "dir": str(run_dir), "tensorboard": False, "final_checkpoint": "policy"})
    cfg = config_lib.resolve(flags=flags, sets=mp.sets)
    updates, window = mp.flags.get("_updates"), mp.flags.get("_window")
    if updates or window:
        from jaxsoc import engine, evaluation

        env, env_params = engine.make_env_checked(cfg)
        per_update = algos.make_train(cfg, env, env_params).env_steps_per_update
        if window:
            num_envs = int(cfg["num_envs"])
            updates = scripted_updates(evaluation.episode_limit(env, env_params), num_envs,
                                       per_update // num_envs, window)
        cfg = config_lib.resolve(flags={**flags, "total_steps": per_update * updates}, sets=mp.sets)
    return cfg
