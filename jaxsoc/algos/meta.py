"""Meta-learning across scenarios: Reptile over the SOC team of PPO (family "meta", section `meta:`).

    make_train(config, env, env_params) -> Trainer        # see jaxsoc.algos.base

A *task* is one scenario: the env's `EnvParams` with some numeric fields (attacker stealth and
speed, alert rates, segment values, ...) drawn uniformly from ranges (`meta.tasks`). Topology
sizes are static fields (they fix array shapes), so tasks vary only the traced leaves, and every
task of an outer step runs in the SAME compiled program, `vmap`ped over tasks.

One outer step (one `update` of the Trainer), from the meta-parameters `theta` (actor + critic):

    draw M tasks  p_1..p_M ~ U(meta.tasks)                         (inside JAX, from the state's key)
    theta_i = k PPO updates of theta on task p_i                   (PPO's own update, `lax.scan`)
    theta  <- theta + eps * (mean_i theta_i - theta)               (batched Reptile, Nichol et al. 2018)

with `eps = outer_lr`, decayed linearly to 0 over the run when `anneal_outer_lr`. The inner loop
is exactly `ppo.build_trainer`'s update (rollout, GAE, clipped surrogate, Adam per network, SGD
over minibatches), built once per task with that task's parameters and started from `theta` with
a fresh Adam state and fresh envs: nothing of PPO is re-implemented here.

Why Reptile and not first-order MAML: FOMAML's meta-gradient is the loss gradient at the adapted
parameters on a fresh query batch, i.e. one more rollout and a gradient taken outside PPO's
update; its inner optimiser must be plain SGD for the first-order argument to hold. Reptile needs
only the adapted parameters, so the inner loop can be PPO unchanged (Adam, gradient clipping,
minibatches, value clipping), and for k >= 2 it optimises the same two terms as FOMAML to leading
order (expected loss, and gradient agreement between minibatches of a task; Nichol et al. 2018,
section 5). With k = 1 Reptile reduces to joint training on the task mixture.

The config section is PPO's (`ppo.DEFAULTS`, same meaning: the inner updates) plus the keys in
`META_DEFAULTS`. `policy`/`critic` `auto` mean MAPPO's (per-role actors, world critic); set
`meta.critic: local` for an IPPO team. `num_envs` envs per task; env steps per outer step are
`tasks_per_step * inner_updates * num_envs * rollout`.

Also here, for the adaptation study (`eval/meta_adapt.py`, docs/meta.md):
  * `TaskMixture`: the env with a task drawn per env at reset (and kept by that env), so PLAIN PPO
    trains on the same task distribution (`mixture_trainer`: the non-meta team);
  * `adaptation_curve`: k PPO updates from given parameters (or from scratch) on one task, with
    the greedy return after chosen numbers of updates.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from flax import struct

from jaxsoc.algos import onpolicy, ppo
from jaxsoc.names import suggest
from jaxsoc.algos.base import Trainer
from jaxsoc.config import ConfigError
from jaxsoc.algos.common import with_world_state
from jaxsoc.env.params import inert_fields
from jaxsoc.env.params import validate as validate_scenario
from jaxsoc.evaluation import make_evaluator

# What the meta learner adds to PPO's section (the inner updates' hyper-parameters).
META_DEFAULTS = {
    "inner_updates": 4,          # k: PPO updates per task per outer step
    "tasks_per_step": 4,         # M: tasks drawn (and adapted to, vmapped) per outer step
    "outer_lr": 1.0,             # Reptile's eps (1: theta becomes the mean adapted parameters)
    "anneal_outer_lr": True,     # decay eps linearly to 0 over the run (Nichol et al. 2018)
    # [field, low, high]: numeric EnvParams fields drawn uniformly per task (a tuple field draws
    # each entry). Defaults: a quieter-or-louder, faster-or-slower attacker and a noisier queue.
    "tasks": [["stealth", 0.4, 0.95], ["p_lateral", 0.2, 0.6], ["p_exfiltration", 0.15, 0.45],
              ["fp_alert_rate", 0.1, 0.6]],
}
DEFAULTS = {**copy.deepcopy(ppo.DEFAULTS), "lr": 1.0e-3, **META_DEFAULTS}
POSITIVE = ppo.POSITIVE + ("inner_updates", "tasks_per_step", "outer_lr")
Range = Tuple[str, float, float]


# ----------------------------------------------------------------------------- tasks
def parse_ranges(spec: Sequence[Sequence[Any]]) -> Tuple[Range, ...]:
    """`[[field, low, high], ...]` -> a tuple of `(field, float low, float high)`; ValueError when an
    entry is not a name and two finite numbers with low <= high, or a field repeats."""
    out, seen = [], set()
    for entry in spec:
        if not isinstance(entry, (list, tuple)) or len(entry) != 3 or not isinstance(entry[0], str):
            raise ConfigError(f"meta.tasks entries are [field, low, high], got {entry!r}")
        name, low, high = entry
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in (low, high)):
            raise ConfigError(f"meta.tasks: {name} needs two finite numbers, got {low!r}, {high!r}")
        if low > high:
            raise ConfigError(f"meta.tasks: {name} range [{low}, {high}] has low > high")
        if name in seen:
            raise ConfigError(f"meta.tasks names {name} twice")
        seen.add(name)
        out.append((name, float(low), float(high)))
    return tuple(out)


def check_ranges(params: Any, ranges: Sequence[Range]) -> None:
    """ValueError unless each range names a numeric (traced, float) field of `params` and, for
    `EnvParams`, both ends make a valid scenario. Static fields (sizes, switches) fix shapes and
    code paths, so they cannot differ between tasks of one compiled program."""
    fields = {f.name: f for f in dataclasses.fields(params)}
    for name, low, high in ranges:
        if name not in fields:
            raise ConfigError(f"meta.tasks: {name!r} is not a field of {type(params).__name__}{suggest(name, fields)} "
                              "(meta.tasks ranges this world's own numeric fields)")
        if not fields[name].metadata.get("pytree_node", True):
            raise ConfigError(f"meta.tasks: {name} is static (it fixes shapes or code paths); only numeric "
                             "fields can vary between tasks")
        value = getattr(params, name)
        items = value if isinstance(value, tuple) else (value,)
        if not items or not all(isinstance(v, float) for v in items):
            raise ConfigError(f"meta.tasks: {name} = {value!r} is not a float field (counts cannot be drawn)")
        if hasattr(params, "hosts_per_segment"):  # EnvParams: both ends must be a valid scenario
            inert = inert_fields(params)
            if name in inert:  # every task would be the same world
                raise ConfigError(f"meta.tasks ranges {name}, which this scenario does not read ({inert[name]}): "
                                  "leave it out of meta.tasks (its tasks would not differ along it)")
            for end in (low, high):
                try:
                    validate_scenario(params.replace(**{name: tuple(end for _ in items) if isinstance(value, tuple) else end}))
                except ValueError as e:
                    raise ConfigError(f"meta.tasks: {name} = {end} is not a valid scenario: {e}") from None


def sample_tasks(key: jax.Array, params: Any, ranges: Sequence[Range], num: Optional[int] = None) -> Any:
    """`params` with each ranged field drawn uniformly in `[low, high]` (each entry of a tuple field
    on its own); every leaf gets a leading `[num]` task axis (none when `num` is None), so the
    result `vmap`s over tasks with `in_axes=0`. Deterministic per key; fields not ranged keep their
    values. Static fields are untouched (they are not leaves)."""
    shape = () if num is None else (num,)
    batch = jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), shape + jnp.shape(x)), params)
    drawn = {}
    for (name, low, high), k in zip(ranges, jax.random.split(key, max(len(ranges), 1))):
        value = getattr(params, name)
        if isinstance(value, tuple):
            u = jax.random.uniform(k, shape + (len(value),), minval=low, maxval=high)
            drawn[name] = tuple(u[..., i] for i in range(len(value)))
        else:
            drawn[name] = jax.random.uniform(k, shape, minval=low, maxval=high)
    return batch.replace(**drawn)


# ----------------------------------------------------------------------------- the outer step
def reptile_step(theta: Any, adapted: Any, eps: jax.Array) -> Any:
    """Batched Reptile: `theta + eps * (mean_i adapted_i - theta)`; `adapted` has theta's leaves
    with a leading `[M]` task axis."""
    return jax.tree.map(lambda t, a: t + eps * (jnp.mean(a, axis=0) - t), theta, adapted)


def outer_step(theta: Any, tasks: Any, keys: jax.Array, adapt, eps: jax.Array):
    """One meta step: `adapt(theta, task, key) -> (theta_k, aux)` on each of the `[M]` tasks
    (vmapped; `tasks` leaves and `keys` have a leading `[M]` axis), then `reptile_step`.
    Returns `(new_theta, aux [M, ...])`."""
    adapted, aux = jax.vmap(adapt, in_axes=(None, 0, 0))(theta, tasks, keys)
    return reptile_step(theta, adapted, eps), aux


# ----------------------------------------------------------------------------- inner loop
def inner_config(config: dict, updates: int) -> dict:
    """The PPO config of the inner loop: `config["meta"]`'s PPO keys, `updates` updates of
    `num_envs` envs, no learning-rate annealing across an adaptation."""
    s = config["meta"]
    section = {k: s[k] for k in ppo.DEFAULTS}
    section["anneal_lr"] = False
    # `policy`/`critic` auto: MAPPO's switches (ppo.VARIANTS), whatever the outer algorithm's name.
    return {"algo": "mappo", "num_envs": config["num_envs"], "ppo": section,
            "total_steps": updates * config["num_envs"] * s["rollout"]}


def make_adapt(config: dict, env, updates: int):
    """`adapt(theta, task_params, key) -> (theta_k, metrics {name: [updates]})`: `updates` PPO updates
    of `theta` (None: PPO's own initialisation from `key`) on fresh envs of the task, fresh Adam."""
    cfg = inner_config(config, updates)

    def adapt(theta, task_params, key):
        # Built per call: the rollout closes over the (traced) task parameters.
        trainer = ppo.build_trainer(cfg, env, task_params, family="ppo", loss_cfg=None)
        state = trainer.init(key)
        if theta is not None:  # PPO's initial Adam state does not depend on the parameter values
            state = state._replace(params=theta)
        state, metrics = jax.lax.scan(lambda s, _: trainer.update(s), state, None, length=updates)
        return state.params, metrics

    return adapt


def summarise_inner(metrics: Dict[str, jax.Array]) -> Dict[str, jax.Array]:
    """Inner-loop metrics `[M, k]` -> scalars: means over tasks and updates (episode metrics over
    the updates that ended episodes), `episodes` summed, and `return_first` / `return_last`: the
    mean episode return in each task's first and last inner update (before / after adapting)."""
    out = {name: jnp.nanmean(v.astype(jnp.float32)) for name, v in metrics.items() if name != "env_steps"}
    out["episodes"] = metrics["episodes"].sum().astype(jnp.int32)
    if "return" in metrics:
        out["return_first"] = jnp.nanmean(metrics["return"][:, 0])
        out["return_last"] = jnp.nanmean(metrics["return"][:, -1])
    return out


class MetaState(NamedTuple):
    """Train state of one seed: the meta-parameters and the outer loop's counters (no env state
    persists between outer steps: each draws new tasks and resets their envs)."""

    params: Any            # theta: {"actor": ..., "critic": ...}
    key: jax.Array
    env_steps: jax.Array   # int32 []
    updates: jax.Array     # int32 [] outer steps taken


def validate(config: dict) -> None:
    """PPO's checks on the inner section, and the task ranges (names, bounds) before tracing."""
    ppo.check_section(config, "meta")
    if config["meta"]["anneal_lr"]:  # `inner_config` turns it off: an adaptation is a few fresh updates
        raise ConfigError("meta.anneal_lr is not read: each adaptation's inner updates keep meta.lr "
                          "(meta.anneal_outer_lr anneals the outer step)")
    try:
        parse_ranges(config["meta"]["tasks"])
    except ValueError as e:
        raise ConfigError(str(e)) from None


def make_train(config: dict, env, env_params) -> Trainer:
    s = config["meta"]
    ranges = parse_ranges(s["tasks"])
    check_ranges(env_params, ranges)
    k, m = s["inner_updates"], s["tasks_per_step"]
    steps_per_update = m * k * config["num_envs"] * s["rollout"]
    num_updates = config["total_steps"] // steps_per_update
    adapt = make_adapt(config, env, k)
    # The team on the base scenario: its init gives theta's structure, its act is the meta-policy's.
    base = ppo.build_trainer(inner_config(config, 1), env, env_params, family="ppo", loss_cfg=None)

    def init(key):
        k_theta, key = jax.random.split(key)
        return MetaState(base.init(k_theta).params, key, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def update(state: MetaState):
        key, k_tasks, k_inner = jax.random.split(state.key, 3)
        tasks = sample_tasks(k_tasks, env_params, ranges, m)
        eps = jnp.float32(s["outer_lr"])
        if s["anneal_outer_lr"]:
            eps = eps * (1.0 - state.updates.astype(jnp.float32) / max(num_updates, 1))
        params, inner = outer_step(state.params, tasks, jax.random.split(k_inner, m), adapt, eps)
        env_steps = state.env_steps + steps_per_update
        metrics = summarise_inner(inner)
        metrics.update(outer_lr=eps, env_steps=env_steps)
        return MetaState(params, key, env_steps, state.updates + 1), metrics

    return Trainer(init=init, update=update, num_updates=num_updates, env_steps_per_update=steps_per_update,
                   act=base.act, policy_params=lambda st: st.params["actor"], name=config["algo"])


# ----------------------------------------------------------------------------- the non-meta team
@struct.dataclass
class MixtureState:
    """The wrapped env's state and the task this env runs (drawn at its first reset)."""

    inner: Any
    task: Any

    @property
    def t(self):  # the step counter PPO's rollout reads for the coordinator's schedule
        return self.inner.t


class TaskMixture:
    """`env` where every env instance draws its own task from `ranges` at reset and keeps it for
    its whole life (through the env's auto-resets): a batch of `N` envs is a mixture of `N` tasks,
    so plain PPO (`mixture_trainer`) learns the task distribution without meta-learning. Spaces
    and agents are `env`'s; `params` passed to the methods are the base scenario."""

    def __init__(self, env, ranges: Sequence[Range]):
        self.env, self.ranges = env, tuple(ranges)
        self.default_params = env.default_params
        self.agents, self.num_agents = env.agents, env.num_agents
        self.world_state_size = getattr(env, "world_state_size", 0)

    def action_space(self, agent):
        return self.env.action_space(agent)

    def observation_space(self, agent):
        return self.env.observation_space(agent)

    def reset(self, key, params):
        k_task, k_reset = jax.random.split(key)
        task = sample_tasks(k_task, params, self.ranges)
        obs, state = self.env.reset(k_reset, task)
        return obs, MixtureState(state, task)

    def step(self, key, state: MixtureState, actions, params):
        obs, inner, rewards, dones, infos = self.env.step(key, state.inner, actions, state.task)
        return obs, MixtureState(inner, state.task), rewards, dones, infos

    def get_avail_actions(self, state: MixtureState, params):
        return self.env.get_avail_actions(state.inner, state.task)

    def get_world_state(self, state: MixtureState, params):
        return self.env.get_world_state(state.inner, state.task)


def mixture_trainer(config: dict, env, env_params) -> Trainer:
    """Plain PPO (the meta section's PPO keys, `config["total_steps"]`) on `TaskMixture(env)`:
    the non-meta team trained on the same task distribution. Its `act` expects mixture states;
    take its `policy_params` and act on a plain env with the meta trainer's `act`."""
    s = config["meta"]
    ranges = parse_ranges(s["tasks"])
    check_ranges(env_params, ranges)
    cfg = inner_config(config, 1)
    cfg["total_steps"] = config["total_steps"]
    if ppo.resolve_variant(cfg["algo"], cfg["ppo"])[1] in onpolicy.WORLD_CRITICS:
        # Wrap the world-state env inside the mixture (build_trainer would rebuild a bare SOCEnv).
        env, env_params = with_world_state(env), env_params.replace(with_world_state=True)
    return ppo.build_trainer(cfg, TaskMixture(env, ranges), env_params, family="ppo", loss_cfg=None)


# ----------------------------------------------------------------------------- adaptation
def adaptation_curve(config: dict, env, theta: Any, task_params: Any, key: jax.Array,
                     points: Sequence[int], episodes: int, greedy: bool = True) -> Dict[str, jax.Array]:
    """Few-update adaptation on one task: PPO updates of `theta` (None: from scratch, PPO's own
    initialisation) with the meta section's PPO keys, and an evaluation of `episodes` fresh episodes
    (greedy by default) after each number of updates in `points` (sorted, from 0).

    Returns the evaluator's per-episode metrics stacked over points: `{name: [P, episodes]}`.
    Pure: jit or vmap it over tasks (`task_params` leaves) and keys.
    """
    points = tuple(int(p) for p in points)
    if not points or list(points) != sorted(set(points)) or points[0] < 0:
        raise ValueError(f"points must be increasing and non-negative, got {points}")
    cfg = inner_config(config, max(points[-1], 1))
    trainer = ppo.build_trainer(cfg, env, task_params, family="ppo", loss_cfg=None)
    evaluator = make_evaluator(env, task_params, trainer.act, episodes, greedy)
    k_init, k_eval = jax.random.split(key)
    state = trainer.init(k_init)
    if theta is not None:
        state = state._replace(params=theta)
    segments = jnp.diff(jnp.asarray((0,) + points, jnp.int32))  # updates before each evaluation

    def segment(state, x):
        # One compiled update and one evaluator for every point: a loop of traced length, then an
        # evaluation (unrolling a scan per segment compiled PPO's update once per point).
        length, k = x
        state = jax.lax.fori_loop(0, length, lambda _, s: trainer.update(s)[0], state)
        return state, evaluator(trainer.policy_params(state), k)

    return jax.lax.scan(segment, state, (segments, jax.random.split(k_eval, len(points))))[1]
