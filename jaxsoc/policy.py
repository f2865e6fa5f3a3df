"""A trained (or scripted) policy for one's own code: `jaxsoc.load_policy("runs/x")`.

    import jax, jaxsoc
    policy = jaxsoc.load_policy("runs/mappo-soc-v2")     # newest checkpoint, the run's first seed
    env, params = policy.env, policy.env_params           # the scenario it was trained on
    obs, state = env.reset(jax.random.key(0), params)
    act = jax.jit(policy.act)
    actions = act(jax.random.key(1), obs, state)          # {agent: action} for ONE env
    obs, state, rewards, dones, infos = env.step(jax.random.key(2), state, actions, params)

`Policy.act(key, obs, state=None)` is the learner's own `Trainer.act` with the checkpoint's
parameters bound, so it picks what `eval/evaluate.py` picks (continuous actions to float rounding:
under `jax.jit` the parameters become constants, folded in their own order; `jaxsoc.xla.jit`
compiles with the engine's XLA options): greedy by default (the mode of each head; the key is
then unused by learners), sampling with `greedy=False`. It acts
for one env; `jax.vmap(policy.act)` acts for many. Learners that read the env state (the
hierarchical team reads the directive schedule and the directive the env holds; scripted
policies read the world) need `state`; `policy.reads_state` says whether it is needed, and
calling without it raises a ValueError that says so.

The same rebuilding serves `jaxsoc.analysis.protocols.evaluate_run`: `check_run` (everything that
can be refused before any JAX work) and `rebuild` (every seed's parameters together).
"""
from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from jaxsoc import xla
from jaxsoc.argtypes import is_integer, is_switch
from jaxsoc.analysis import runs as runs_lib
from jaxsoc.analysis.runs import AnalysisError, RunInfo
from jaxsoc.names import suggest


def _check_seeds(seeds, name: str) -> list[int]:
    """`seeds` (a sequence of integers; `name` the argument) as ints, or AnalysisError."""
    try:
        if isinstance(seeds, (str, bytes)):  # "01" would be read as seeds 0 and 1
            raise TypeError
        seeds = list(seeds)
    except TypeError:
        raise AnalysisError(f"{name} must be a list of integers, got {seeds!r}") from None
    if not seeds:
        raise AnalysisError(f"{name} must name at least one seed, got {seeds!r}")
    if not all(is_integer(s) for s in seeds):
        raise AnalysisError(f"{name} must be a list of integers, got {seeds!r}")
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) < len(seeds):  # two copies of one policy would pass for two seeds
        raise AnalysisError(f"{name} names a seed twice: {seeds}")
    return seeds


def _check_greedy(greedy) -> None:
    if not is_switch(greedy):  # "no" or 0.0 would otherwise be read as a truth value
        raise AnalysisError(f"greedy must be True or False, got {greedy!r}")


def is_scripted(algo: str) -> bool:
    """Whether registered algorithm `algo` is a scripted policy (no parameters, no checkpoint)."""
    from jaxsoc import algos

    return algos.ALGORITHMS.get(algo) == "scripted"


@dataclasses.dataclass(frozen=True)
class Checked:
    """A run folder that passed `check_run`: what to rebuild, on which scenario, from which checkpoint."""

    run: RunInfo
    scenario: str  # the scenario to act on (a scripted run may be moved to another)
    scripted: bool
    update: int | None  # the checkpoint to load (None: scripted, nothing to load)
    newest: int | None  # the run's newest checkpoint
    meta: dict  # the newest checkpoint's metadata


def check_run(run_dir: str | Path, *, algo: str | None = None, scenario: str | None = None,
              update: int | None = None) -> Checked:
    """Everything about a run folder that can be refused before any JAX work (AnalysisError):
    not a run folder, another algorithm than `algo`, an algorithm this checkout does not know, a
    learner asked to act on another scenario than its own, checkpoints that are missing, unreadable
    or written by another run, an `update` the run has no checkpoint at, or one asked of a scripted
    run (it reads no checkpoint: the number would be ignored)."""
    from jaxsoc import algos

    if not isinstance(run_dir, (str, os.PathLike)):
        raise AnalysisError(f"run_dir must be a run folder's path, got {run_dir!r}")
    if update is not None and not is_integer(update):
        raise AnalysisError(f"update must be an integer, got {update!r}")
    run = runs_lib.read_run(run_dir)
    if algo is not None and algo != run.algo:
        raise AnalysisError(f"{run.path} is a {run.algo!r} run, not {algo!r}")
    if run.algo not in algos.ALGORITHMS:
        raise AnalysisError(
            f"{run.path} was trained with algorithm {run.algo!r}, which this checkout does not know "
            f"(known: {', '.join(sorted(algos.ALGORITHMS))}): cannot rebuild its policy"
        )
    scripted = is_scripted(run.algo)
    target = scenario or run.scenario
    if target != run.scenario and not scripted:
        raise AnalysisError(
            f"{run.path} holds a {run.algo!r} policy trained on {run.scenario!r}; evaluating it on "
            f"{target!r} is refused (its observations and actions are laid out for the other scenario)"
        )
    steps, meta = runs_lib.checkpoint_index(run)
    newest = steps[-1] if steps else None
    if update is not None and scripted:
        raise AnalysisError(f"{run.path} is a scripted {run.algo!r} run: it reads no checkpoint, so an update "
                            f"({update}) does not apply")
    if update is not None and newest is None:
        raise AnalysisError(f"{run.path} has no checkpoints, so none at update {update}")
    if update is not None and update not in steps:
        raise AnalysisError(f"{run.path} has no checkpoint at update {update} (it has {steps})")
    if newest is None and not scripted:
        raise AnalysisError(
            f"{run.path} has no checkpoint: {run.algo!r} is a learner, so its policy exists only in a "
            "checkpoint (was the run interrupted before its first one?)"
        )
    return Checked(run, target, scripted, None if scripted else (newest if update is None else update), newest, meta)


@dataclasses.dataclass(frozen=True)
class Rebuilt:
    """A run's policy, every seed's parameters together.

    Attributes:
      config: the resolved config it acts under; env, env_params: its scenario.
      trainer: the algorithm's `Trainer` (`act`, `policy_params`).
      params: `[num_seeds, ...]` on every leaf; None for scripted policies (they have none).
      seeds: the training seed of each row of `params`.
    """

    checked: Checked
    config: dict
    env: Any
    env_params: Any
    trainer: Any
    params: Any
    seeds: list[int]


def rebuild(checked: Checked, make_env: Callable | None = None) -> Rebuilt:
    """The policy of a `check_run`-ed folder: scripted ones from the config on `checked.scenario`,
    learners from their checkpoint (`engine.load`). AnalysisError if the config cannot be built."""
    import jax

    from jaxsoc import algos, config as config_lib, engine
    from jaxsoc.config import ConfigError

    run = checked.run
    try:
        if checked.scripted:
            # No parameters to restore: rebuild the policy from the config (any scenario).
            flags = {"scenario": checked.scenario, "run": {"progress": False, "tensorboard": False}}
            # A custom `make_env` knows its own scenarios (and refuses unknown ones itself).
            cfg = config_lib.resolve(flags=flags, saved=copy.deepcopy(run.config),
                                     scenarios=[checked.scenario] if make_env else None)
            # The scenario as the config stores it (a scenario file's contents, not the file).
            env, env_params = engine.make_env_checked(cfg, make_env)
            return Rebuilt(checked, cfg, env, env_params, algos.make_train(cfg, env, env_params), None, run.seeds)
        loaded = engine.load(run.path, checked.update, make_env=make_env, policy_only=True)
        cfg = loaded.config
        env, env_params = engine.make_env_checked(cfg, make_env)
        params = xla.jit(jax.vmap(loaded.trainer.policy_params))(loaded.state)
        seeds = [cfg["seed"] + i for i in range(cfg["num_seeds"])]
        return Rebuilt(checked, cfg, env, env_params, loaded.trainer, params, seeds)
    except (ConfigError, ValueError, TypeError) as e:
        raise AnalysisError(f"cannot rebuild the policy of {run.path}: {e}") from None


# ----------------------------------------------------------------------------- one policy
@dataclasses.dataclass(frozen=True)
class Policy:
    """One seed's policy, ready to act (module docstring).

    Attributes:
      algo, scenario, config: what it is and the resolved config it acts under.
      env, env_params: the scenario it acts on (`jaxsoc.env.make(scenario, **config["env"])`; a
        scenario file's run from the contents stored in its config, `scenario_spec`).
      params: the policy parameters of one seed (`Trainer.policy_params`; `()` for scripted).
      seed: the training seed those parameters come from (None without a run).
      update: the checkpoint they were loaded from (None for scripted policies).
      greedy: whether `act` takes each head's mode (learners) instead of sampling.
      scripted: whether it is a scripted policy (no parameters; `greedy` means nothing to it).
      reads_state: whether `act` needs the env state (found by tracing it once without one).
      run: the run folder, or None.
    """

    algo: str
    scenario: str
    config: dict
    env: Any
    env_params: Any
    params: Any
    seed: int | None
    update: int | None
    greedy: bool
    scripted: bool
    reads_state: bool
    run: Path | None
    trainer_act: Callable[..., dict] = dataclasses.field(repr=False)
    # {agent: shape} of one env's observations (the env's reset), checked by `act`; None: unchecked.
    obs_shapes: dict | None = dataclasses.field(default=None, repr=False)

    def act(self, key, obs: dict, state=None) -> dict:
        """Actions `{agent: action}` for ONE env: `obs` the env's `{agent: [obs_dim]}`, `state` its
        `EnvState` (needed only when `reads_state`). Jittable and vmappable; greedy actions do
        not depend on `key`. ValueError for observations of another shape (another scenario, a
        batch without `vmap`) or a missing role: the network would fail deep in flax."""
        if self.obs_shapes is not None:  # shapes only: static under jit and vmap
            if not isinstance(obs, Mapping):
                raise ValueError(f"obs must be a dict {{agent: observation}}, got {type(obs).__name__}")
            missing = [a for a in self.obs_shapes if a not in obs]
            if missing:
                raise ValueError(f"obs lacks {', '.join(map(repr, missing))}: this policy expects "
                                 f"{', '.join(map(repr, self.obs_shapes))}")
            for agent, shape in self.obs_shapes.items():
                if tuple(np.shape(obs[agent])) != shape:
                    raise ValueError(f"obs[{agent!r}] has shape {tuple(np.shape(obs[agent]))}; this policy "
                                     f"expects {shape}")
        if state is None and self.reads_state:
            raise ValueError(
                f"the {self.algo!r} policy reads the env state (scripted policies read the world; the "
                "hierarchical team reads the directive schedule and the directive in force; learners "
                "on a world whose actions can be forbidden read its action masks): "
                "call policy.act(key, obs, state)"
            )
        return self.trainer_act(self.params, key, obs, state, self.greedy)

    def attention(self, obs: dict):
        """The coordinator explainer's attention for observations `{agent: [T, obs_dim]}`:
        `(weights [T, heads, segments], segment names)`, or None where the learner has none."""
        from jaxsoc import algos

        weights_of = getattr(algos.family_module(self.algo), "attention_weights", None)
        if weights_of is None:
            return None
        try:
            return weights_of(self.params, obs, self.config, self.env_params)
        except ValueError:  # this run's coordinator was trained without the explainer
            return None


def _reads_state(trainer, params, obs, greedy: bool) -> bool:
    """Whether `trainer.act` reads the env state: trace it (no compilation) without one, on
    observations `obs` (shapes)."""
    import jax

    try:
        jax.eval_shape(lambda k, o: trainer.act(params, k, o, None, greedy), jax.random.PRNGKey(0), obs)
    except (AttributeError, TypeError):  # what reading a field of None raises
        return True
    return False


def _policy(rebuilt: Rebuilt, row: int | None, seed: int | None, greedy: bool, run: Path | None) -> Policy:
    import jax

    params = () if rebuilt.params is None else jax.tree.map(lambda x: x[row], rebuilt.params)
    cfg = rebuilt.config
    env_params = rebuilt.env_params
    world = rebuilt.trainer.policy_env_params
    if world is not None and rebuilt.params is not None:
        env_params = world(params, env_params)  # the world this seed's policy learned with
    obs = jax.eval_shape(lambda k: rebuilt.env.reset(k, env_params)[0], jax.random.PRNGKey(0))
    return Policy(cfg["algo"], cfg["scenario"], cfg, rebuilt.env, env_params, params, seed,
                  rebuilt.checked.update, bool(greedy), rebuilt.checked.scripted,
                  _reads_state(rebuilt.trainer, params, obs, greedy), run,
                  rebuilt.trainer.act,
                  {a: tuple(x.shape) for a, x in obs.items()} if isinstance(obs, Mapping) else None)


def load_policy(run_dir: str | Path, *, seed: int | None = None, update: int | None = None,
                greedy: bool = True, make_env: Callable | None = None) -> Policy:
    """The policy of a run folder (any registered algorithm; scripted runs need no checkpoint).

    Args:
      run_dir: a folder written by `train/run.py` (`config.yaml`, `checkpoints/`).
      seed: which training seed's parameters (default: the run's first seed).
      update: which checkpoint (default: the newest).
      greedy: act with each head's mode (True, as `eval/evaluate.py`) or sample.
      make_env: `(scenario, **overrides) -> (env, env_params)`, default `jaxsoc.env.make`.

    Raises AnalysisError (a ValueError) naming the problem: not a run folder, an unknown algorithm,
    no checkpoint, a damaged checkpoint or one written by another run, a seed the run did not train.
    """
    if seed is not None and not is_integer(seed):
        raise AnalysisError(f"seed must be an integer, got {seed!r}")
    _check_greedy(greedy)
    checked = check_run(run_dir, update=update)
    return _load(checked, [checked.run.seeds[0] if seed is None else int(seed)], greedy, make_env)[0]


def load_policies(run_dir: str | Path, *, seeds: Sequence[int] | None = None, update: int | None = None,
                  greedy: bool = True, make_env: Callable | None = None) -> list[Policy]:
    """Several seeds' policies of one run, in the order of `seeds` (default: every seed it
    trained), its checkpoint read once: `load_policy` reads it per call, and for a replay-buffer
    learner that is the whole train state, every seed's buffer included. The other arguments and
    the errors are `load_policy`'s."""
    seeds = None if seeds is None else _check_seeds(seeds, "seeds")
    _check_greedy(greedy)
    checked = check_run(run_dir, update=update)
    return _load(checked, list(checked.run.seeds) if seeds is None else seeds, greedy, make_env)


def _load(checked: Checked, seeds: list, greedy: bool, make_env: Callable | None) -> list[Policy]:
    seeds, trained = [int(s) for s in seeds], checked.run.seeds
    missing = [s for s in seeds if s not in trained]
    if missing:
        raise AnalysisError(f"{checked.run.path} trained seed(s) {', '.join(map(str, trained))}, "
                            f"not seed {', '.join(map(str, missing))}")
    rebuilt = rebuild(checked, make_env)
    return [_policy(rebuilt, rebuilt.seeds.index(s), s, greedy, checked.run.path) for s in seeds]


def build_scripted(algo: str, scenario: str, env: dict | None = None,
                   make_env: Callable | None = None) -> Rebuilt:
    """A scripted policy (`jaxsoc.env.POLICIES`) on `scenario` with `env` overrides, no run folder
    needed (no parameters, no seeds). AnalysisError for a learner, an unknown name or bad overrides."""
    from jaxsoc import algos, config as config_lib, engine
    from jaxsoc.config import ConfigError

    if algo in algos.ALGORITHMS and not is_scripted(algo):
        raise AnalysisError(f"{algo!r} is a learner: use a run folder with its checkpoint instead")
    if algo not in algos.ALGORITHMS:  # named among the scenario's own policies, not every algorithm
        import jaxsoc.env as soc

        try:
            env_obj, _ = (make_env or soc.make)(scenario, **dict(env or {}))
        except (ValueError, TypeError) as e:
            raise AnalysisError(str(e)) from None
        policies = getattr(env_obj, "policies", None) or soc.POLICIES
        raise AnalysisError(f"unknown scripted policy {algo!r}{suggest(algo, policies)}; "
                            f"{scenario} has: {', '.join(sorted(policies))}")
    try:
        cfg = config_lib.resolve(
            flags={"algo": algo, "scenario": scenario, "env": dict(env or {}),
                   "run": {"progress": False, "tensorboard": False}},
            scenarios=[scenario] if make_env else None,
        )
        env_obj, env_params = engine.make_env_checked(cfg, make_env)
        trainer = algos.make_train(cfg, env_obj, env_params)
    except (ConfigError, ValueError, TypeError) as e:
        raise AnalysisError(str(e)) from None
    checked = Checked(RunInfo(Path("."), cfg), scenario, True, None, None, {})
    return Rebuilt(checked, cfg, env_obj, env_params, trainer, None, [])


def scripted_policy(algo: str, scenario: str = "soc-v2", env: dict | None = None,
                    make_env: Callable | None = None) -> Policy:
    """A scripted policy (rule-soar, random, constant, ...; see `build_scripted`) ready to act."""
    return _policy(build_scripted(algo, scenario, env, make_env), None, None, True, None)
