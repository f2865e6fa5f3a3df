"""One hmarl update, top to bottom: `make_train` builds the static `Parts` of a run, and each step
below is a named function of them.

    init(key)       reset `num_envs` envs, build the coordinator, the tier-2 team, the replay
    update(state)   collect:            `rollout` env steps of all envs (`env_step`, a lax.scan):
                                        the coordinator decides where the env reads its directive
                                        (`defenders.reads_directive`), tier 2 acts every step, every
                                        transition goes into the replay, macro-transitions complete
                    coordinator_update: PPO on the macro-transitions completed in the rollout
                    learn:              `rounds` tier-2 rounds through `offpolicy.learn_rounds`
                                        (`tier2_round`: sample, `team.team_update`, priorities)
    act(...)        one env's actions, for evaluation

All inside one jitted program per update; the engine vmaps seeds over it.
"""
from __future__ import annotations

import functools
from typing import Any, Dict, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc import buffers
from jaxsoc.algos import common
from jaxsoc.algos import hierarchy as hz
from jaxsoc.algos import offpolicy as op
from jaxsoc.algos import ppo
from jaxsoc.algos.base import Trainer, mean_episode_metrics, per_update_trainer
from jaxsoc.algos.hmarl.coordinator import Coordinator, CoordinatorState, build_coordinator
from jaxsoc.algos.hmarl.defaults import env_overrides
from jaxsoc.algos.hmarl.team import (Setup, Team, directive_env_action, directive_vector, example_transition,
                                     fixed_vector, init_team, make_setup, make_team, team_act, team_update)
from jaxsoc.env import SOCEnv
from jaxsoc.env.defenders import held_directive, reads_directive

PyTree = Any


class HMARLState(NamedTuple):
    """Train state of one seed (everything a checkpoint needs to resume bit for bit)."""

    coordinator: CoordinatorState
    agents: PyTree  # {tier-2 role: agent state}
    buffer: PyTree  # the replay (PER or uniform)
    extra_priorities: PyTree  # separate-buffer ablation: the other learners' PER trees (else None)
    env_state: PyTree
    obs: PyTree
    held: jax.Array  # [N] the directive choice in force
    pending: hz.Pending
    value: jax.Array  # [N] V(coordinator obs) of the current observation
    key: jax.Array
    env_steps: jax.Array
    grad_steps: jax.Array
    decisions: jax.Array


class StepTrace(NamedTuple):
    """What one env step leaves for the update, every field `[N]` (`[T, N]` stacked by `collect`)."""

    record: hz.Record  # the macro-transitions completed at the end of this step (valid where emit)
    metrics: Dict[str, jax.Array]  # the env's episode metrics (meaningful where done)
    done: jax.Array  # dones["__all__"]
    reward: jax.Array  # the team reward
    decided: jax.Array  # the env read a new directive this step
    held: jax.Array  # the directive choice in force


class Parts(NamedTuple):
    """The static pieces of one hmarl trainer (Python values at trace time); `make_parts`."""

    config: dict  # the `hmarl:` section
    setup: Setup
    team: Team
    coordinator: Coordinator
    env: SOCEnv  # with the run's K
    env_params: Any
    num_envs: int
    rollout: int
    rounds: int  # tier-2 rounds per update
    learning_starts: int
    capacity: int  # macro-transitions gathered per coordinator update
    slots: int  # rows per chunk of the coordinator's sparse forwards: the ~N/K deciding envs, with room

    @property
    def train_coordinator(self) -> bool:
        return bool(self.config["train_coordinator"])


def make_parts(config: dict, env: SOCEnv, env_params) -> Parts:
    """The static pieces of a run: its K, team, coordinator and sizes (tests and tools read them)."""
    c = config["hmarl"]
    cc = c["coordinator"]
    wanted = env_params.replace(**env_overrides(config))  # hmarl.k (a caller's env may not have it yet)
    if wanted.directive_period != env_params.directive_period:
        env_params, env = wanted, SOCEnv(wanted)
    setup = make_setup(config, env)
    num_envs, rollout = config["num_envs"], c["rollout"]
    steps_per_update = num_envs * rollout
    k = env_params.directive_period
    capacity = max(cc["minibatches"], int(np.ceil(cc["capacity"] * steps_per_update / k)))
    return Parts(
        config=c, setup=setup, team=make_team(config, setup), coordinator=build_coordinator(config, env_params),
        env=env, env_params=env_params, num_envs=num_envs, rollout=rollout,
        rounds=max(1, int(round(c["utd"] * steps_per_update))),
        learning_starts=max(c["learning_starts"], c["batch_size"]),
        capacity=int(np.ceil(capacity / cc["minibatches"]) * cc["minibatches"]),
        slots=int(np.ceil(1.25 * num_envs / k / 8) * 8))


def make_train(config: dict, env: SOCEnv, env_params) -> Trainer:
    parts = make_parts(config, env, env_params)
    steps_per_update = parts.num_envs * parts.rollout
    return per_update_trainer(config, steps_per_update, init=functools.partial(init, parts),
                        update=functools.partial(update, parts), act=functools.partial(act, parts),
                        policy_params=lambda s: (s.coordinator.actor_params, s.agents),
                        env_axes=env_axes)


# ------------------------------------------------------------------------ the directive
def decide(parts: Parts, actor_params, obs_c: jax.Array, key: jax.Array, greedy: bool):
    """Directive choices and log-probs `[N]` for coordinator observations `[N, obs_dim]` (index 0
    and log-prob 0 without a coordinator)."""
    if not parts.train_coordinator:
        n = obs_c.shape[0]
        return jnp.zeros((n,), jnp.int32), jnp.zeros((n,), jnp.float32)
    return parts.coordinator.decide(actor_params, obs_c, key, greedy)


def env_directive(parts: Parts, held: jax.Array) -> jax.Array:
    """The env's coordinator action for directive choices `[...]` (the fixed one without a coordinator)."""
    if parts.train_coordinator:
        return directive_env_action(parts.setup, held)
    return jnp.broadcast_to(jnp.asarray(parts.setup.fixed), held.shape + parts.setup.fixed.shape)


def held_vector(parts: Parts, held: jax.Array) -> jax.Array:
    """The directive in force as the vector tier 2 sees, `[..., D]`."""
    if parts.train_coordinator:
        return directive_vector(parts.setup, held)
    return fixed_vector(parts.setup, held.shape)


# ------------------------------------------------------------------------------ init
def init(parts: Parts, key: jax.Array) -> HMARLState:
    c = parts.config
    k_c, k_t, k_r, key = jax.random.split(key, 4)
    obs, env_state = common.batched_reset(parts.env, parts.env_params, k_r, parts.num_envs)
    cstate = parts.coordinator.init(k_c)
    agents = init_team(parts.team, k_t)
    buffer = op.init_buffer(c, example_transition(parts.setup))
    extra = None
    if not c["shared_buffer"] and c["per"]:
        extra = (buffers.priority_part(buffer), buffers.priority_part(buffer))
    value = parts.coordinator.value(cstate.critic_params, obs["coordinator"])
    zero = jnp.zeros((), jnp.int32)
    return HMARLState(cstate, agents, buffer, extra, env_state, obs, jnp.zeros((parts.num_envs,), jnp.int32),
                      hz.empty_pending(obs["coordinator"], parts.num_envs), value, key, zero, zero, zero)


# --------------------------------------------------------------------------- collect
def env_step(parts: Parts, state: HMARLState, _) -> tuple[HMARLState, StepTrace]:
    """One step of every env: decide where the env reads the directive, act, store, accumulate."""
    cc, n = parts.config["coordinator"], parts.num_envs
    cstate, obs = state.coordinator, state.obs
    key, k_c, k_a, k_s = jax.random.split(state.key, 4)
    decided = reads_directive(state.env_state.t, parts.env_params)
    if parts.train_coordinator:  # the coordinator's networks run only on the envs that decide this step
        choice, log_prob = hz.sparse_rows(lambda o, k: decide(parts, cstate.actor_params, o, k, False),
                                          obs["coordinator"], decided, parts.slots, k_c)
    else:
        choice, log_prob = decide(parts, cstate.actor_params, obs["coordinator"], k_c, False)
    held = jnp.where(decided, choice, state.held)
    pending = state.pending
    if parts.train_coordinator:
        pending = hz.start(pending, decided, obs["coordinator"], choice, log_prob, state.value)
    directive = held_vector(parts, held)
    batched_team_act = jax.vmap(team_act, in_axes=(None, None, None, 0, 0, 0, None, None))
    t2 = batched_team_act(parts.team, parts.setup, state.agents, obs, directive, jax.random.split(k_a, n), False,
                          state.env_steps)
    actions = {"coordinator": env_directive(parts, held), **t2}
    next_obs, env_state, rewards, dones, infos = common.batched_step(parts.env, parts.env_params, k_s,
                                                                    state.env_state, actions)
    reward = rewards["coordinator"]
    completes = reads_directive(env_state.t, parts.env_params)  # the next step decides (a reset env: t = 0)
    if parts.train_coordinator:
        # Values only where a macro-transition needs one: V(next obs) where the next step
        # decides (it bootstraps the macro-step ending here and opens the next one), V(final
        # obs) where a time limit cut the episode. Elsewhere they are never read.
        both = jnp.concatenate([next_obs["coordinator"], infos["final_obs"]["coordinator"]], axis=0)
        need = jnp.concatenate([completes, infos["truncated"] & cc["bootstrap_truncation"]])
        v_both = hz.sparse_rows(lambda o, _: parts.coordinator.value(cstate.critic_params, o), both, need,
                                parts.slots)
        v_next, v_final = v_both[:n], v_both[n:]
    else:
        v_next = v_final = jnp.zeros((n,), jnp.float32)
    pending, record = hz.accumulate(pending, reward, parts.config["gamma"], completes, infos["terminated"],
                                    infos["truncated"], v_next, v_final,
                                    bootstrap_truncation=cc["bootstrap_truncation"], discounting=cc["discounting"])
    item = {"obs": obs, "next_obs": infos["final_obs"], "action": t2, "directive": directive,
            "next_decision": completes, "reward": reward.astype(jnp.float32),
            "discount": infos["discount"].astype(jnp.float32)}
    state = state._replace(buffer=buffers.add(state.buffer, item), env_state=env_state, obs=next_obs, held=held,
                           pending=pending, value=v_next, key=key, env_steps=state.env_steps + n)
    return state, StepTrace(record, infos["metrics"], dones["__all__"], reward, decided, held)


def collect(parts: Parts, state: HMARLState) -> tuple[HMARLState, StepTrace]:
    """`rollout` env steps of all envs: the state after them and their `StepTrace`, `[T, N]`. The
    replay holds the new transitions; nothing is learned yet."""
    return jax.lax.scan(functools.partial(env_step, parts), state, None, length=parts.rollout)


def mark_new_items(parts: Parts, state: HMARLState, start: jax.Array):
    """Separate PER trees (`shared_buffer: false`): the other learners' trees get the rollout's
    new items too (`buffers.mark_added`), from slot `start` on. Returns the extra priorities."""
    extra = state.extra_priorities
    if extra is None:
        return None
    n = parts.rollout * parts.num_envs
    return tuple(buffers.priority_part(buffers.mark_added(buffers.with_priority_part(state.buffer, pt), start, n))
                 for pt in extra)


# ------------------------------------------------------------------------ coordinator
def coordinator_update(parts: Parts, cstate: CoordinatorState, records: hz.Record, key: jax.Array):
    """PPO on a random subset (`capacity`) of the macro-transitions completed in the rollout."""
    adv, ret = hz.macro_gae(records, parts.config["coordinator"]["gae_lambda"])
    k_g, k_u = jax.random.split(key)
    weight, (obs_g, act_g, lp_g, adv_g, ret_g) = hz.valid_first(
        k_g, records.emit, parts.capacity, records.obs, records.action, records.log_prob, adv, ret)
    adv_g = jnp.where(weight > 0, ppo.normalise_advantages(adv_g, weight), 0.0)
    batch = {"obs": obs_g, "action": act_g, "log_prob": lp_g, "advantage": adv_g, "return": ret_g,
             "weight": weight}
    cstate, info = parts.coordinator.update(cstate, batch, k_u)
    info = {f"sc/{k}": v for k, v in info.items()}
    info["sc/macro_transitions"] = jnp.sum(records.emit.astype(jnp.float32))
    info["sc/kept"] = jnp.sum(weight)
    return cstate, info


# ----------------------------------------------------------------------------- tier 2
def tier2_round(parts: Parts, coord_params, learner, buffer, key: jax.Array):
    """One tier-2 round (`offpolicy.learn_rounds`' `round_fn`): `learner = (agents, extra
    priorities)`. A shared buffer gives the three learners ONE batch and one priority per item
    (their TD errors combined by `priority_rule`); separate uniform buffers draw a batch each;
    separate PER buffers sample each learner's batch with its own tree and write its own TD errors."""
    c = parts.config
    agents, extra = learner
    batch_size = c["batch_size"]
    ks, ku = jax.random.split(key)

    def learn(batches, weights):
        return team_update(parts.team, parts.setup, parts.coordinator, coord_params, agents, batches, weights, ku)

    if c["shared_buffer"]:
        buffer, batch, w, idx = op.sample_batch(buffer, ks, batch_size)
        agents, tds, metrics = learn((batch, batch, batch), (w, w, w))
        if c["per"]:
            buffer = buffers.update_priorities(buffer, idx, buffers.combine_td_errors(list(tds), c["priority_rule"]))
        return (agents, extra), buffer, metrics
    keys = jax.random.split(ks, 3)
    if not c["per"]:  # uniform, separate: independent draws
        draws = [op.sample_batch(buffer, kj, batch_size) for kj in keys]
        agents, _, metrics = learn(tuple(d[1] for d in draws), tuple(d[2] for d in draws))
        return (agents, extra), buffer, metrics
    # separate PER: the same storage, one priority tree per learner
    trees = [buffers.with_priority_part(buffer, pt) for pt in (buffers.priority_part(buffer),) + tuple(extra)]
    draws = [op.sample_batch(b, kj, batch_size) for b, kj in zip(trees, keys)]
    agents, tds, metrics = learn(tuple(d[1] for d in draws), tuple(d[2] for d in draws))
    new = [buffers.priority_part(buffers.update_priorities(d[0], d[3], td)) for d, td in zip(draws, tds)]
    return (agents, tuple(new[1:])), buffers.with_priority_part(buffer, new[0]), metrics


def learn(parts: Parts, state: HMARLState, extra, coord_params, key: jax.Array):
    """`rounds` tier-2 rounds once the replay holds `learning_starts` items: `(agents, buffer,
    extra priorities, ready, metrics)`, the metrics averaged over the rounds (NaN when not ready)."""
    ready = buffers.can_sample(state.buffer, parts.learning_starts)
    round_fn = functools.partial(tier2_round, parts, coord_params)
    (agents, extra), buffer, metrics = op.learn_rounds(round_fn, (state.agents, extra), state.buffer, key,
                                                       parts.rounds, ready)
    return agents, buffer, extra, ready, metrics


# ----------------------------------------------------------------------------- update
def update(parts: Parts, state: HMARLState) -> tuple[HMARLState, Dict[str, jax.Array]]:
    """One `Trainer.update`: collect, the coordinator's PPO update, the tier-2 rounds."""
    start = buffers.replay_of(state.buffer).ptr
    state, trace = collect(parts, state)
    extra = mark_new_items(parts, state, start)
    key, k_coord, k_learn = jax.random.split(state.key, 3)
    cstate, value, out = state.coordinator, state.value, {}
    if parts.train_coordinator:
        cstate, info = coordinator_update(parts, cstate, trace.record, k_coord)
        out.update(info)
        value = parts.coordinator.value(cstate.critic_params, state.obs["coordinator"])  # its critic changed
    coord_params = cstate.actor_params if parts.train_coordinator else None
    agents, buffer, extra, ready, learn_metrics = learn(parts, state, extra, coord_params, k_learn)
    grad_steps = state.grad_steps + jnp.where(ready, parts.rounds, 0).astype(jnp.int32)
    out.update(mean_episode_metrics(trace.metrics, trace.done))
    out.update(learn_metrics)
    out["reward"] = trace.reward.mean()
    out["env_steps"] = state.env_steps
    out["grad_steps"] = grad_steps
    out["epsilon"] = parts.team.at.epsilon(state.env_steps)
    out["buffer_size"] = buffer.size
    new = state._replace(coordinator=cstate, agents=agents, buffer=buffer, extra_priorities=extra, value=value,
                         key=key, grad_steps=grad_steps, decisions=state.decisions + jnp.sum(trace.decided).astype(jnp.int32))
    return new, out


# ------------------------------------------------------------------------------- act
def act(parts: Parts, policy_params, key: jax.Array, obs, env_state, greedy: bool):
    """One env (`Trainer.act`). The coordinator's choice is offered every step (the env reads it
    on its schedule); the tier-2 roles are conditioned on the directive in force this step: the
    new choice where the env reads it, else the one the env holds. Reads of `env_state`: the
    schedule and the held directive only (`base.Trainer.act`)."""
    coord_params, agents = policy_params
    kc, kt = jax.random.split(key)
    choice = decide(parts, coord_params, obs["coordinator"][None], kc, greedy)[0][0]
    reads = reads_directive(env_state.t, parts.env_params)
    held = held_directive(env_state, parts.env_params)
    if parts.setup.discrete_env:
        directive = held_vector(parts, jnp.where(reads, choice, held))
    else:  # v1: the env holds the directive vector itself
        directive = jnp.where(reads, held_vector(parts, choice), held)
    t2 = team_act(parts.team, parts.setup, agents, obs, directive, kt, greedy, None)
    return {"coordinator": env_directive(parts, choice), **t2}


def env_axes(state: HMARLState) -> HMARLState:
    """`Trainer.env_axes`: the env-axis leaves are env state, observations, held, pending, value."""
    return HMARLState(coordinator=None, agents=None, buffer=None, extra_priorities=None, env_state=0, obs=0,
                      held=0, pending=0, value=0, key=None, env_steps=None, grad_steps=None, decisions=None)
