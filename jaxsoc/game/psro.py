"""Policy-Space Response Oracles (PSRO; Lanctot et al. 2017) for two-player zero-sum games.

    from jaxsoc.game import psro, toy
    game = toy.matrix_game(payoff)                       # or any `ZeroSumGame` (interface below)
    result = psro.run_psro(game, row_init, col_init, jax.random.key(0), iterations=30)
    result.history["exploitability"]                     # [iterations] of the meta-strategy mixture
    # S seeds in step (leaves [S, ...]); its game's oracles are batched over seeds (a toy game's
    # are not: `run_psro` batches those itself), e.g. socgame.SOCGame(...).zero_sum()[0]
    batch = psro.run_psro_batch(batched_game, row0, col0, keys, iterations=3)

The loop. Each player keeps a population of policies; the empirical meta-game is the payoff
matrix of every (row member, column member) pairing. Each iteration
  1. solves the meta-game for meta-strategies (mixtures over each population): "nash" (the exact
     zero-sum solver of `metagame`), "uniform" (every member alike: with exact best responses
     this is fictitious play, Brown 1951) or "last" (the newest member only: naive self-play);
  2. asks each player's oracle for a best response to the opponent's meta-strategy mixture;
  3. measures how exploitable the meta-strategy pair is: exactly, when the game can compute a
     best-response value (`ZeroSumGame.exploitability`, e.g. a matrix game), and always as the
     fresh best responses' gain over the meta-game value (below);
  4. adds both responses to the populations and evaluates only the new row and the new column
     of the payoff matrix.
With an exact oracle and the Nash meta-solver, the meta-strategies reach an exact equilibrium of
the full game once the populations hold its support; with approximate oracles (RL training) the
best-response gain is the usual stopping signal.

Best-response gain. With meta-strategies (sigma_r, sigma_c), meta value v = sigma_r^T M sigma_c,
fresh responses r*, c*:  row_gain = u(r*, sigma_c) - v,  col_gain = v - u(sigma_r, c*),  and
br_gain = row_gain + col_gain = u(r*, sigma_c) - u(sigma_r, c*): the NashConv of the meta-strategy
pair in the full game if the responses are exact, a lower bound if they are not (it can even be
negative when an oracle returns a response worse than the meta-strategy). Both entries are
in the payoff matrix after step 4, so measuring costs no extra evaluation.

Populations have a static capacity (`Population`: every policy leaf stacked to `[capacity, ...]`,
plus the number in use), so the payoff evaluation, the meta-solve (masked) and the mixtures have
fixed shapes and compile once for the whole run, whatever the population sizes.

The game interface (`ZeroSumGame`; the row player maximises the payoff, the column minimises):
  payoff(key, row_policy, col_policy) -> []: the row's expected payoff of one pairing; pure and
    jittable, as it is vmapped over every pairing. The entry (i, j) uses the key
    fold_in(fold_in(key, i), j), so the matrix is a function of the run key and the populations,
    whether built at once or grown one row and column at a time.
  row_oracle(key, col_population, col_meta [capacity]) -> row policy: a (best) response to the
    column mixture; col_oracle(key, row_population, row_meta) likewise. Called from Python, once
    per iteration: jit them yourself, or train an RL learner inside.
  exploitability(row_population, row_meta, col_population, col_meta) -> [] (optional): the exact
    NashConv of the meta-strategy pair in the full game.
For `run_psro_batch` the oracles and `exploitability` take and return a leading seed axis (one
call answers S runs, e.g. S best responses trained in one vmapped program; jaxsoc/game/socgame.py).
"""
from __future__ import annotations

import time
from functools import partial
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.argtypes import is_integer
from jaxsoc.game import metagame

__all__ = [
    "Population", "population", "add", "member", "members_mask", "capacity_of", "ZeroSumGame", "payoff_matrix",
    "extend_payoff_matrix", "META_SOLVERS", "nash_meta", "uniform_meta", "last_meta", "PSROResult",
    "run_psro", "run_psro_batch", "seed_slice",
]


# ---------------------------------------------------------------------------------------------
# Populations
# ---------------------------------------------------------------------------------------------


class Population(NamedTuple):
    """A population of policies of one player, at a static capacity. A pytree."""

    policies: Any  # pytree; every leaf [capacity, *leaf_shape]; slots >= size hold filler
    size: jax.Array  # int32 []: members in use, the first `size` slots


def population(first_policy, capacity: int) -> Population:
    """A population of one member, `first_policy` (a pytree of arrays), with room for `capacity`."""
    if capacity < 1:
        raise ValueError(f"capacity must be at least 1, got {capacity}")
    # Empty slots repeat the first policy: valid inputs for the payoff function (a zero filler
    # might not be), and masked out everywhere else.
    stacked = jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), (capacity,) + jnp.shape(x)), first_policy)
    return Population(stacked, jnp.int32(1))


def capacity_of(pop: Population) -> int:
    """The static number of slots (the leading axis of every policy leaf)."""
    return jax.tree.leaves(pop.policies)[0].shape[0]


def add(pop: Population, policy) -> Population:
    """`pop` with `policy` in the next free slot. Jittable; raises ValueError when full (if concrete;
    under a trace a write past the capacity is dropped and the size stays at the capacity)."""
    cap = capacity_of(pop)
    if not isinstance(pop.size, jax.core.Tracer) and int(pop.size) >= cap:
        raise ValueError(f"population is full (capacity {cap}); build it with a larger capacity")
    return _add(pop, policy)


@jax.jit
def _add(pop: Population, policy) -> Population:
    policies = jax.tree.map(lambda s, x: s.at[pop.size].set(jnp.asarray(x, s.dtype)), pop.policies, policy)
    return Population(policies, jnp.minimum(pop.size + 1, capacity_of(pop)))


def member(pop: Population, i):
    """The policy in slot `i` (a pytree without the capacity axis)."""
    return jax.tree.map(lambda s: s[i], pop.policies)


def members_mask(pop: Population) -> jax.Array:
    """bool [capacity]: which slots hold members."""
    return jnp.arange(capacity_of(pop)) < pop.size


# ---------------------------------------------------------------------------------------------
# The game interface and the payoff matrix
# ---------------------------------------------------------------------------------------------


class ZeroSumGame(NamedTuple):
    """What PSRO needs of a two-player zero-sum game (see the module docstring)."""

    payoff: Callable[[jax.Array, Any, Any], jax.Array]
    row_oracle: Callable[[jax.Array, Population, jax.Array], Any]
    col_oracle: Callable[[jax.Array, Population, jax.Array], Any]
    exploitability: Optional[Callable[[Population, jax.Array, Population, jax.Array], jax.Array]] = None


def _pair_key(key, i, j):
    return jax.random.fold_in(jax.random.fold_in(key, i), j)


@partial(jax.jit, static_argnames=("payoff_fn",))
def payoff_matrix(payoff_fn, key, row_pop: Population, col_pop: Population) -> jax.Array:
    """Row payoff of every pairing [row capacity, col capacity], in one vmapped call; 0 off the members."""
    rows = jnp.arange(capacity_of(row_pop))
    cols = jnp.arange(capacity_of(col_pop))

    def entry(i, j, row_policy, col_policy):
        return payoff_fn(_pair_key(key, i, j), row_policy, col_policy)

    over_cols = jax.vmap(entry, in_axes=(None, 0, None, 0))
    matrix = jax.vmap(over_cols, in_axes=(0, None, 0, None))(rows, cols, row_pop.policies, col_pop.policies)
    valid = members_mask(row_pop)[:, None] & members_mask(col_pop)[None, :]
    return jnp.where(valid, matrix, 0.0)


@partial(jax.jit, static_argnames=("payoff_fn",))
def extend_payoff_matrix(payoff_fn, key, matrix, row_pop: Population, col_pop: Population) -> jax.Array:
    """`matrix` [R, C] with its newest row (member size-1 of row_pop) and column filled in.

    Evaluates 2 x capacity pairings in one program instead of all R x C; entry (i, j) gets the
    same key as in `payoff_matrix`, so the result equals `payoff_matrix(...)` on the new populations.
    """
    i_new, j_new = row_pop.size - 1, col_pop.size - 1
    rows = jnp.arange(capacity_of(row_pop))
    cols = jnp.arange(capacity_of(col_pop))
    new_row_policy, new_col_policy = member(row_pop, i_new), member(col_pop, j_new)
    new_row = jax.vmap(lambda j, c: payoff_fn(_pair_key(key, i_new, j), new_row_policy, c))(cols, col_pop.policies)
    new_col = jax.vmap(lambda i, r: payoff_fn(_pair_key(key, i, j_new), r, new_col_policy))(rows, row_pop.policies)
    matrix = matrix.at[i_new, :].set(new_row).at[:, j_new].set(new_col)
    valid = members_mask(row_pop)[:, None] & members_mask(col_pop)[None, :]
    return jnp.where(valid, matrix, 0.0)


# ---------------------------------------------------------------------------------------------
# Meta-solvers: (payoff [R, C], row_mask [R], col_mask [C]) -> (row_meta [R], col_meta [C])
# ---------------------------------------------------------------------------------------------


def nash_meta(payoff, row_mask, col_mask):
    """A Nash equilibrium of the masked meta-game (exact LP; `metagame.solve_zero_sum`)."""
    sol = metagame.solve_zero_sum(payoff, row_mask, col_mask)
    return sol.row_strategy, sol.col_strategy


def uniform_meta(payoff, row_mask, col_mask):
    """Every member alike: fictitious play when the oracles are exact best responses."""
    del payoff
    return row_mask / jnp.sum(row_mask), col_mask / jnp.sum(col_mask)


def last_meta(payoff, row_mask, col_mask):
    """The newest member only: naive self-play (cycles in games like rock-paper-scissors)."""
    del payoff

    def newest(mask):
        return jax.nn.one_hot(jnp.sum(mask) - 1, mask.shape[0], dtype=jnp.float32)

    return newest(row_mask), newest(col_mask)


META_SOLVERS: dict[str, Callable] = {"nash": nash_meta, "uniform": uniform_meta, "last": last_meta}


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


@jax.jit
def _gains(payoffs, row_meta, col_meta, i_new, j_new):
    """(meta value, row_gain, col_gain) []: the fresh responses' gains over the meta-game value.

    The meta-strategies put no weight on the new slots i_new / j_new, so `payoffs` (already
    extended) gives both the old meta-game value and the fresh pairings against each mixture.
    """
    value = row_meta @ payoffs @ col_meta
    return value, payoffs[i_new] @ col_meta - value, value - row_meta @ payoffs[:, j_new]


class PSROResult(NamedTuple):
    """A PSRO run: final populations, meta-game and meta-strategies, and the per-iteration history.

    From `run_psro_batch` every field has a leading seed axis `[S]` (history entries `[iterations, S]`)."""

    row_population: Population
    col_population: Population
    payoffs: jax.Array  # [row capacity, col capacity], 0 off the members
    row_meta: jax.Array  # [row capacity] final meta-strategy (over the final populations)
    col_meta: jax.Array  # [col capacity]
    final_exploitability: Any  # exact NashConv of the final meta pair; NaN without game.exploitability
    history: dict  # name -> np.ndarray [iterations run]; see run_psro


def _check_run(iterations: int, capacity: Optional[int], meta_solver) -> tuple[int, Callable]:
    if not is_integer(iterations) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    capacity = iterations + 1 if capacity is None else capacity
    if not is_integer(capacity):
        raise ValueError(f"capacity must be an integer, got {capacity!r}")
    if capacity < iterations + 1:
        raise ValueError(f"capacity {capacity} cannot hold 1 + {iterations} iterations of responses")
    if isinstance(meta_solver, str):
        if meta_solver not in META_SOLVERS:
            raise ValueError(f"unknown meta_solver {meta_solver!r}; expected one of {sorted(META_SOLVERS)}")
        meta_solver = META_SOLVERS[meta_solver]
    return capacity, meta_solver


def typed_keys(keys, ndim: int, name: str) -> jax.Array:
    """`keys` as typed keys of `ndim` axes (0: one key, 1: `[S]`); raw `jax.random.PRNGKey` data
    (uint32, one more axis of 2) is wrapped. ValueError naming `name` otherwise."""
    keys = jnp.asarray(keys)
    if not jnp.issubdtype(keys.dtype, jax.dtypes.prng_key) and keys.dtype == jnp.uint32 and keys.shape[-1:] == (2,):
        keys = jax.random.wrap_key_data(keys)
    if not jnp.issubdtype(keys.dtype, jax.dtypes.prng_key) or keys.ndim != ndim:
        wanted = "one key (jax.random.key(0))" if ndim == 0 else "a [S] array of keys (jax.random.split(key, S))"
        raise ValueError(f"{name} must be {wanted}, got {keys.dtype} of shape {keys.shape}")
    return keys


def seed_slice(tree, s: int):
    """Seed `s` of a pytree whose leaves have a leading seed axis (a `run_psro_batch` result field)."""
    return jax.tree.map(lambda x: x[s], tree)


@partial(jax.jit, static_argnames=("payoff_fn",))
def _batch_matrix(payoff_fn, keys, row_pop, col_pop):
    return jax.vmap(lambda k, r, c: payoff_matrix(payoff_fn, k, r, c))(keys, row_pop, col_pop)


@partial(jax.jit, static_argnames=("payoff_fn",))
def _batch_extend(payoff_fn, keys, matrix, row_pop, col_pop):
    return jax.vmap(lambda k, m, r, c: extend_payoff_matrix(payoff_fn, k, m, r, c))(keys, matrix, row_pop, col_pop)


@jax.jit
def _batch_add(pop: Population, policy) -> Population:
    return jax.vmap(_add)(pop, policy)


def _batch_meta(meta_solver, payoffs, row_pop, col_pop):
    """Meta-strategies `[S, capacity]` of each seed's meta-game. One seed at a time on concrete
    arrays, so the Nash solver runs its exact float64 path (under vmap it would trace in float32)."""
    metas = [meta_solver(payoffs[s], members_mask(seed_slice(row_pop, s)), members_mask(seed_slice(col_pop, s)))
             for s in range(payoffs.shape[0])]
    return jnp.stack([m[0] for m in metas]), jnp.stack([m[1] for m in metas])


def run_psro_batch(
    game: ZeroSumGame,
    row_init,
    col_init,
    keys: jax.Array,
    *,
    iterations: int,
    meta_solver: Union[str, Callable] = "nash",
    capacity: Optional[int] = None,
    tolerance: Optional[float] = None,
    log: Optional[Callable[[dict], None]] = None,
) -> PSROResult:
    """`run_psro` for S independent runs (seeds) at once, each its own game instance.

    keys: `[S]` run keys; row_init / col_init: the first policies with a leading seed axis
    (every leaf `[S, ...]`). `game.payoff` is per pairing as in `run_psro` (vmapped here over
    pairings and seeds). The oracles and `game.exploitability` are **batched over seeds**:
    `row_oracle(keys [S], col_population (leaves [S, capacity, ...], size [S]), col_meta [S, capacity])
    -> row policies (leaves [S, ...])`, so one call can train S best responses in one vmapped
    program; `exploitability(...) -> [S]`. Returns a `PSROResult` whose fields carry the seed axis;
    history entries are `[iterations run, S]`; `log` gets each iteration's record with `[S]` lists;
    `tolerance` stops once every seed's exploitability is within it.
    """
    capacity, meta_solver = _check_run(iterations, capacity, meta_solver)
    keys = typed_keys(keys, 1, "keys")
    split = jax.vmap(jax.random.split)(keys)  # [S, 2]
    eval_keys, oracle_keys = split[:, 0], split[:, 1]
    lift = jax.vmap(lambda p: population(p, capacity))
    row_pop, col_pop = lift(row_init), lift(col_init)
    payoffs = _batch_matrix(game.payoff, eval_keys, row_pop, col_pop)
    records = []
    for t in range(iterations):
        start = time.perf_counter()
        row_meta, col_meta = _batch_meta(meta_solver, payoffs, row_pop, col_pop)
        step_keys = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, t)))(oracle_keys)  # [S, 2]
        new_row = game.row_oracle(step_keys[:, 0], col_pop, col_meta)
        new_col = game.col_oracle(step_keys[:, 1], row_pop, row_meta)
        exact = (np.asarray(game.exploitability(row_pop, row_meta, col_pop, col_meta), float)
                 if game.exploitability is not None else np.full(keys.shape[0], np.nan))
        i_new, j_new = row_pop.size, col_pop.size
        if int(jnp.max(i_new)) >= capacity or int(jnp.max(j_new)) >= capacity:
            raise ValueError(f"population is full (capacity {capacity}); build it with a larger capacity")
        next_row_pop, next_col_pop = _batch_add(row_pop, new_row), _batch_add(col_pop, new_col)
        payoffs = _batch_extend(game.payoff, eval_keys, payoffs, next_row_pop, next_col_pop)
        meta_value, row_gain, col_gain = (np.asarray(x, float) for x in
                                          jax.vmap(_gains)(payoffs, row_meta, col_meta, i_new, j_new))
        record = dict(
            iteration=np.full(keys.shape[0], t), row_size=np.asarray(i_new), col_size=np.asarray(j_new),
            meta_value=meta_value, row_gain=row_gain, col_gain=col_gain, br_gain=row_gain + col_gain, exact=exact,
            exploitability=exact if game.exploitability is not None else row_gain + col_gain,
            seconds=np.full(keys.shape[0], time.perf_counter() - start),
        )
        records.append(record)
        if log is not None:
            log({k: v.tolist() for k, v in record.items()})
        row_pop, col_pop = next_row_pop, next_col_pop
        if tolerance is not None and np.all(record["exploitability"] <= tolerance):
            break

    row_meta, col_meta = _batch_meta(meta_solver, payoffs, row_pop, col_pop)
    final = (np.asarray(game.exploitability(row_pop, row_meta, col_pop, col_meta), float)
             if game.exploitability is not None else np.full(keys.shape[0], np.nan))
    history = {k: np.stack([r[k] for r in records]) for k in records[0]}
    return PSROResult(row_pop, col_pop, payoffs, row_meta, col_meta, final, history)


def run_psro(
    game: ZeroSumGame,
    row_init,
    col_init,
    key: jax.Array,
    *,
    iterations: int,
    meta_solver: Union[str, Callable] = "nash",
    capacity: Optional[int] = None,
    tolerance: Optional[float] = None,
    log: Optional[Callable[[dict], None]] = None,
) -> PSROResult:
    """Runs PSRO from one initial policy per player.

    game: a `ZeroSumGame`; row_init / col_init: the first policy of each population (pytrees);
    key: the run key (pairing evaluation and oracles draw from it, so a run is a function of it);
    iterations: best-response rounds (each adds one policy per player);
    meta_solver: "nash" | "uniform" | "last" or a callable like `nash_meta`;
    capacity: population capacity (default iterations + 1: every response is kept);
    tolerance: stop early once the iteration's exploitability (below) is <= tolerance;
    log: called with each iteration's record (a dict of floats) as it completes.

    history (np arrays, one entry per iteration run): "iteration", "row_size", "col_size" (before
    the iteration's responses are added), "meta_value" (sigma_r^T M sigma_c), "row_gain",
    "col_gain", "br_gain" (module docstring), "exact" (NaN without game.exploitability),
    "exploitability" (exact if available, else br_gain), "seconds" (wall clock of the iteration).

    One seed of `run_psro_batch`: the oracles are called on seed 0's slices and their answers
    given a seed axis of 1.
    """
    _check_run(iterations, capacity, meta_solver)
    one = partial(jax.tree.map, lambda x: jnp.asarray(x)[None])

    def batched(oracle):
        return lambda keys, pop, meta: one(oracle(keys[0], seed_slice(pop, 0), meta[0]))

    exact = None
    if game.exploitability is not None:
        def exact(rp, rm, cp, cm):
            return jnp.asarray(game.exploitability(seed_slice(rp, 0), rm[0], seed_slice(cp, 0), cm[0]))[None]

    batch_game = ZeroSumGame(game.payoff, batched(game.row_oracle), batched(game.col_oracle), exact)
    inner_log = None if log is None else (lambda rec: log({k: v[0] for k, v in rec.items()}))
    res = run_psro_batch(batch_game, one(row_init), one(col_init), typed_keys(key, 0, "key")[None], iterations=iterations,
                         meta_solver=meta_solver, capacity=capacity, tolerance=tolerance, log=inner_log)
    return PSROResult(seed_slice(res.row_population, 0), seed_slice(res.col_population, 0), res.payoffs[0],
                      res.row_meta[0], res.col_meta[0], float(res.final_exploitability[0]),
                      {k: v[:, 0] for k, v in res.history.items()})
