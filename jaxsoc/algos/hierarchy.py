"""Temporal abstraction for a coordinator that decides every K env steps: macro-transitions.

The env reads the coordinator's directive when its episode clock `t` is a multiple of K
(`EnvParams.directive_period`), so each env decides on its own schedule (episodes end at different
times). A **macro-transition** runs from one decision to the next (or to the episode's end):

    (obs at the decision, the directive actually executed, its log-probability at acting time,
     V(obs), R = sum_j gamma^j r_{t+j} over the k steps it lasted, gamma^k, the bootstrap value)

It is built online in the rollout (`Pending`, carried across updates in the train state, so a
macro-step cut by the end of a rollout is completed in the next one rather than guessed at) and
emitted at the end of the step where it completes. `macro_gae` turns the emitted records of a
rollout `[T, N]` into advantages with the semi-MDP discount gamma^k; `valid_first` gathers the
emitted records (about T*N/K of them) into a fixed-size batch for the PPO update.

Reference semantics (HMARL-SOC train_fast, docs/reference.md §2.2): undiscounted macro reward and gamma per
macro-step; `discounting="reference"` reproduces that, `"smdp"` (default) is the correct one.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Pending(NamedTuple):
    """The macro-transition in progress in each env, every field `[N, ...]`."""

    obs: Any  # coordinator observation at the decision, [N, obs_dim] (or a pytree)
    action: jax.Array  # [N] int32, the directive executed
    log_prob: jax.Array  # [N], at acting time
    value: jax.Array  # [N], V(obs) at acting time
    reward: jax.Array  # [N], discounted reward accumulated so far
    discount: jax.Array  # [N], gamma^k so far (1 at the decision)
    active: jax.Array  # [N] bool, a decision has been taken and not yet emitted


def empty_pending(obs, num_envs: int) -> Pending:
    z = jnp.zeros((num_envs,), jnp.float32)
    return Pending(jax.tree.map(jnp.zeros_like, obs), jnp.zeros((num_envs,), jnp.int32), z, z, z,
                   jnp.ones((num_envs,), jnp.float32), jnp.zeros((num_envs,), bool))


def start(pending: Pending, decide: jax.Array, obs, action, log_prob, value) -> Pending:
    """Open a new macro-transition where `decide [N]` (the env reads the directive this step)."""
    sel = lambda new, old: jnp.where(decide.reshape(decide.shape + (1,) * (new.ndim - 1)), new, old)
    return Pending(
        obs=jax.tree.map(sel, obs, pending.obs),
        action=sel(action.astype(jnp.int32), pending.action),
        log_prob=sel(log_prob, pending.log_prob),
        value=sel(value, pending.value),
        reward=jnp.where(decide, 0.0, pending.reward),
        discount=jnp.where(decide, 1.0, pending.discount),
        active=pending.active | decide,
    )


class Record(NamedTuple):
    """A completed macro-transition (valid where `emit`), every field `[N, ...]` per step."""

    obs: Any
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array  # R over the macro-step
    discount: jax.Array  # gamma^k (the reference mode: gamma)
    next_value: jax.Array  # bootstrap value of the state it ended in (0 if terminated)
    episode_end: jax.Array  # bool: the episode ended here (terminated or truncated)
    emit: jax.Array  # bool


def accumulate(pending: Pending, reward, gamma: float, completes, terminated, truncated, next_value,
               final_value, *, bootstrap_truncation: bool = True, discounting: str = "smdp"):
    """Add this step's reward; emit the macro-transitions that complete at the end of this step.

    `completes [N]`: the next step is a decision (its clock is a multiple of K) or the episode
    ended. `next_value`: V of the next observation (the next decision state); `final_value`: V of
    the terminal observation (used on truncation). Returns `(pending, Record)`.
    """
    if discounting == "smdp":
        acc_reward = pending.reward + pending.discount * reward
        acc_discount = pending.discount * gamma
    elif discounting == "reference":
        acc_reward = pending.reward + reward
        acc_discount = jnp.full_like(pending.discount, gamma)
    else:
        raise ValueError(f"unknown macro discounting {discounting!r}: 'smdp' or 'reference'")
    ended = terminated | truncated
    if bootstrap_truncation:
        boot = jnp.where(terminated, 0.0, jnp.where(truncated, final_value, next_value))
    else:
        boot = jnp.where(ended, 0.0, next_value)
    emit = completes & pending.active
    record = Record(pending.obs, pending.action, pending.log_prob, pending.value, acc_reward,
                    acc_discount, boot, ended, emit)
    pending = pending._replace(reward=acc_reward, discount=acc_discount, active=pending.active & ~completes)
    return pending, record


def macro_gae(records: Record, lam: float):
    """GAE over the macro-transitions emitted in a rollout, time-major `[T, N]`.

    delta = R + gamma^k * V(next) - V;  A = delta + gamma^k * lam * A(next macro-step), where the
    chain stops at an episode's end and at the rollout's end (the last record's successor completes
    in the next rollout: truncated lambda-return). Returns `(advantages, returns)`, `[T, N]`, zero
    where nothing was emitted.
    """
    delta = records.reward + records.discount * records.next_value - records.value

    def back(carry, x):
        next_adv, next_valid = carry
        d, disc, emit, ended = x
        adv = d + disc * lam * jnp.where(next_valid & ~ended, next_adv, 0.0)
        adv = jnp.where(emit, adv, 0.0)
        carry = (jnp.where(emit, adv, next_adv), jnp.where(emit, True, next_valid))
        return carry, adv

    n = records.emit.shape[1]
    init = (jnp.zeros((n,), jnp.float32), jnp.zeros((n,), bool))
    _, adv = jax.lax.scan(back, init, (delta, records.discount, records.emit, records.episode_end),
                          reverse=True)
    return adv, jnp.where(records.emit, adv + records.value, 0.0)


def valid_first(key: jax.Array, mask: jax.Array, capacity: int, *trees):
    """Gather up to `capacity` entries where `mask` holds, in random order, from arrays `[T, N, ...]`.

    Returns `(weights [capacity] float32, gathered trees [capacity, ...])`: weight 1 for a real
    entry, 0 for padding (when fewer than `capacity` are valid). Entries beyond `capacity` are left
    out (choose capacity >= T*N/K plus room for episode ends).
    """
    flat_mask = mask.reshape(-1)
    noise = jax.random.uniform(key, flat_mask.shape)
    order = jnp.argsort(jnp.where(flat_mask, noise, 2.0))[:capacity]
    weights = flat_mask[order].astype(jnp.float32)
    gathered = [jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:])[order], t) for t in trees]
    return weights, gathered


def sparse_rows(fn, rows, mask: jax.Array, slots: int, key: jax.Array | None = None):
    """`fn` on only the rows where `mask [R]` holds, `slots` rows at a time; zeros elsewhere.

    A coordinator deciding every K steps needs its networks on about R/K rows per env step, but a
    dense forward pays for all R: with the attention encoder that was most of the rollout's cost.
    The selected rows are gathered into chunks of `slots` (valid ones first), `fn(chunk, key_i)`
    runs on each chunk that holds any, and the results are scattered back. The loop runs
    ceil(count / slots) times (a `while_loop`: under `vmap` over seeds, the maximum over seeds), so
    the cost follows the number of decisions however they are spread over steps.

    `fn: (rows [slots, ...] pytree, key) -> pytree of [slots, ...]`; `rows`: pytree of `[R, ...]`.
    Returns the pytree of `[R, ...]`, zero where `mask` is false.
    """
    r = mask.shape[0]
    slots = max(1, min(int(slots), r))
    chunks = -(-r // slots)
    order = jnp.nonzero(mask, size=chunks * slots, fill_value=r)[0]  # selected rows, then r (padding)
    count = jnp.sum(mask.astype(jnp.int32))
    key = jax.random.key(0) if key is None else key
    first = jax.tree.map(lambda a: a[:slots], rows)
    out_shape = jax.eval_shape(fn, first, key)
    init = jax.tree.map(lambda s: jnp.zeros((r,) + s.shape[1:], s.dtype), out_shape)

    def body(i, out):
        idx = jax.lax.dynamic_slice_in_dim(order, i * slots, slots)
        chunk = jax.tree.map(lambda a: a[jnp.minimum(idx, r - 1)], rows)
        y = fn(chunk, jax.random.fold_in(key, i))
        return jax.tree.map(lambda o, v: o.at[idx].set(v, mode="drop"), out, y)

    return jax.lax.fori_loop(0, (count + slots - 1) // slots, body, init)
