"""Two-player zero-sum matrix games: an exact solver, exploitability (NashConv) and best responses.

    from jaxsoc.game import metagame
    sol = metagame.solve_zero_sum(payoff)              # payoff [num_row, num_col], the row maximises
    sol.row_strategy, sol.col_strategy, sol.value      # [num_row], [num_col], []
    sol.gap                                            # certified: exploitability of the returned pair
    metagame.exploitability(payoff, x, y)              # NashConv of any pair of mixed strategies
    a, v = metagame.best_response(payoff, y, "row")    # a pure best response and the row's payoff

Method
------
`solve_zero_sum` reduces the game to one linear programme and solves it exactly with a revised
primal/dual simplex in one `lax.while_loop` (static shapes). The payoffs are mapped affinely onto
[1, 2] (equilibria unchanged, the value maps back), so the value v' >= 1 and the column player's
programme

    maximise sum(u)  subject to  A' u <= 1,  u >= 0          (then y = u / sum(u))

starts feasible at u = 0 and is bounded. The duals of its row constraints are the row player's
strategy up to scale (LP duality is the minimax theorem), so one programme gives both strategies.

* Precision. Called on concrete arrays (a Python driver such as PSRO's, a script, a test), the
  simplex runs in float64 whatever the caller's x64 setting (a scoped `jax.enable_x64`), and the
  results come back in the payoff's float dtype (float32 unless x64 is on). Called under the
  caller's `jit`/`vmap`, it runs in the trace's precision instead (a scoped x64 does not survive
  into the caller's lowering): float32 unless x64 is on, with float32 tolerances. The float32
  solve is accurate to ~1e-6 of the payoff range on generic games but can stall on heavily
  degenerate ones (e.g. 90 % zero payoffs: `converged` False, `gap` up to ~2e-3 of the range);
  solve outside `jit`, or turn x64 on, where that matters.
* Each pivot re-inverts the basis from the original data (Gauss-Jordan with partial pivoting)
  and refines the primal and dual solutions once against it, so rounding never accumulates.
* Degeneracy. Phase 1 solves the programme with its right-hand side perturbed by a fixed
  pseudo-random ~1e-6 (1 + delta), so that pivots strictly improve (no cycling), with Dantzig's
  entering rule and Harris's two-pass ratio test (the largest pivot among the near-ties keeps the
  bases well conditioned); a pivot must also be above 1e-7 of the largest entry of its column,
  since smaller ones are rounding noise on nearly rank-deficient data (near-duplicate policies).
  Phase 2 restores the exact right-hand side and primal feasibility by dual simplex pivots (the
  duals, hence optimality, do not depend on the right-hand side). Should rounding have cost dual
  feasibility, phase 1 runs again (a few rounds at most).

A float32 tableau simplex (Bland's rule after degenerate pivots) was the first version: it broke
down (singular bases, cycling from rounding) on {-1, 0, 1} payoffs, low-rank and mostly-zero
games, which meta-games of near-duplicate policies resemble.

Accuracy
--------
Every solution carries its own certificate: `gap` = max_i (A y)_i - min_j (x^T A)_j of the
RETURNED strategies (rounding to float32 included), computed on the original payoff in the
solve's precision (float64 on concrete arrays; under a caller's jit, the trace's: float32 unless
x64 is on, and then the gap is itself only float32-accurate); the game value lies within
[value - gap, value + gap]. Measured on concrete float32 games (normal,
{-1,0,1}, rank 3, duplicated strategies, 90 % zeros, a 3e5 offset; 10 x 10 to 60 x 60, 20 each;
`python eval/game_accuracy.py`, docs/game.md): gap <= 1e-7 of the payoff range, value within
5e-7 of the range of SciPy's HiGHS, every solve converged, in at most ~1.2 (num_row + num_col)
pivots. Cost on 2 CPU cores: ~2 ms (10 x 10), ~4 ms (30 x 30), ~40 ms (60 x 60) per solve (each
pivot re-inverts the basis: O(m^3)), plus ~1-3 s to compile per payoff shape.

Degenerate inputs: a 1 x 1 game, dominated strategies, non-square games, duplicated strategies
and constant payoffs all go through the same code (a constant game returns a pure pair, an
equilibrium like any other). `row_mask`/`col_mask` (bool) leave rows/columns out of the game: they
get probability 0 and are never best responses, so a population padded to a static maximum size is
solved by one compiled program whatever its current size (jaxsoc/game/psro.py).

Validation (`ValueError`, one line) runs on concrete values only, i.e. outside `jit`: non-2-D or
empty payoffs, non-real or non-finite payoffs, masks that leave no row or column, strategies that are
not distributions (an entry below -`DIST_ATOL` or a sum off 1 by more than `DIST_ATOL`).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.argtypes import is_integer

__all__ = [
    "ZeroSumSolution", "solve_zero_sum", "exploitability", "best_response", "check_payoff",
    "check_strategy", "DIST_ATOL",
]

# A strategy passed in may be off a distribution by float32 rounding of a softmax or a product
# of weights; anything further off is a caller's mistake.
DIST_ATOL = 1e-4

# Simplex tolerances on payoffs scaled to [1, 2] (so absolute tolerances are relative ones), for
# the float64 solve and for the float32 one a caller's trace gets. A basis column entry is a pivot
# only above `pivot` and above `relative` x the largest entry of its column (row): on data that
# is nearly rank-deficient (near-duplicate policies, float32 noise) anything smaller is rounding
# noise, and pivoting on it makes the basis singular. A reduced cost below `cost` is no
# improvement; a basic value above -`feas` is feasible. `perturbation` is the phase-1 shift of the
# right-hand side: far above rounding noise, removed again in phase 2. Tuned on the game families
# of docs/game.md.
_TOLERANCES = {
    64: dict(pivot=1e-9, relative=1e-7, cost=1e-8, feas=1e-9, perturbation=1e-6),
    32: dict(pivot=1e-5, relative=1e-4, cost=1e-6, feas=1e-6, perturbation=1e-3),
}


# Phase 1 -> 2 -> 1 alternations allowed when phase 2 ends dual-infeasible (rounding in a nearly
# singular basis): a safeguard, bounded so that noise cannot keep the loop going.
_MAX_ROUNDS = 4


class ZeroSumSolution(NamedTuple):
    """An equilibrium of a zero-sum matrix game (row maximises). A pytree: vmaps and jits."""

    row_strategy: jax.Array  # [num_row] a distribution; 0 on masked rows
    col_strategy: jax.Array  # [num_col] a distribution; 0 on masked columns
    value: jax.Array  # [] the row's expected payoff x^T A y of the returned pair
    gap: jax.Array  # [] max_i (A y)_i - min_j (x^T A)_j >= 0: the returned pair's exploitability
    pivots: jax.Array  # [] int32 simplex pivots taken
    converged: jax.Array  # [] bool: the final basis is optimal (primal and dual feasible) in the
    #                       solver's own arithmetic; `gap` is the independent check


def _is_concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def check_payoff(payoff, row_mask=None, col_mask=None) -> None:
    """Raises ValueError for a payoff matrix no game can be built on (values checked if concrete)."""
    payoff = _as_array(payoff)
    shape = jnp.shape(payoff)
    if len(shape) != 2:
        raise ValueError(f"payoff must be a 2-D matrix [num_row, num_col], got shape {shape}")
    if 0 in shape:
        raise ValueError(f"payoff must have at least one row and one column, got shape {shape}")
    dtype = payoff.dtype
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise ValueError(f"payoff must hold real numbers, got dtype {dtype}")
    for name, mask, n in (("row_mask", row_mask, shape[0]), ("col_mask", col_mask, shape[1])):
        if mask is not None and jnp.shape(mask) != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {jnp.shape(mask)}")
    if not _is_concrete(payoff, row_mask, col_mask):
        return
    p = np.asarray(payoff)
    if not np.all(np.isfinite(p)):
        raise ValueError(f"payoff has {int(np.sum(~np.isfinite(p)))} non-finite entries (NaN or inf)")
    for name, mask in (("row_mask", row_mask), ("col_mask", col_mask)):
        if mask is not None and not np.any(np.asarray(mask)):
            raise ValueError(f"{name} leaves no {name[:3]} in the game")


def check_strategy(strategy, n: int, name: str = "strategy") -> None:
    """Raises ValueError unless `strategy` is a distribution `[n]` (values checked if concrete)."""
    strategy = _as_array(strategy)
    if jnp.shape(strategy) != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the payoff, got {jnp.shape(strategy)}")
    if not _is_concrete(strategy):
        return
    s = np.asarray(strategy, np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} has non-finite entries")
    if s.min() < -DIST_ATOL or abs(s.sum() - 1.0) > DIST_ATOL:
        raise ValueError(f"{name} is not a probability distribution (min {s.min():.3g}, sum {s.sum():.6g})")


def _as_array(x):
    """Lists and scalars become NumPy arrays; JAX arrays and tracers stay as they are."""
    return x if isinstance(x, (jax.Array, np.ndarray)) else np.asarray(x)


def _out_dtype(payoff):
    """The float dtype results come back in: the payoff's, at least float32 (under the caller's x64)."""
    return jnp.result_type(jnp.result_type(payoff), jnp.float32)


def _masks(shape, row_mask, col_mask):
    m, n = shape
    row_mask = jnp.ones((m,), bool) if row_mask is None else jnp.asarray(row_mask, bool)
    col_mask = jnp.ones((n,), bool) if col_mask is None else jnp.asarray(col_mask, bool)
    return row_mask, col_mask


def _bounds(a, x, y, row_mask, col_mask):
    """(upper, lower): the row's best payoff against y, the column's best (lowest) against x."""
    upper = jnp.max(jnp.where(row_mask, a @ y, -jnp.inf))
    lower = jnp.min(jnp.where(col_mask, x @ a, jnp.inf))
    return upper, lower


def _inverse(b):
    """B^-1 of `b` [m, m] by Gauss-Jordan with partial pivoting (a fori_loop, no LAPACK).

    Why not jnp.linalg.inv: under vmap it becomes one batched LAPACK factorisation, the pattern that
    deadlocks jaxlib 0.10's CPU thread pool (see `jaxsoc.networks._qr`); m is small here anyway.
    """
    m = b.shape[0]
    aug = jnp.concatenate([b, jnp.eye(m, dtype=b.dtype)], axis=1)  # [m, 2m]
    rows = jnp.arange(m)

    def step(k, aug):
        p = jnp.argmax(jnp.where(rows >= k, jnp.abs(aug[:, k]), -1.0))
        row_k, row_p = aug[k], aug[p]
        aug = aug.at[k].set(row_p).at[p].set(row_k)
        pivot = aug[k] / aug[k, k]
        factor = aug[:, k].at[k].set(0.0)
        return (aug - factor[:, None] * pivot[None, :]).at[k].set(pivot)

    return jax.lax.fori_loop(0, m, step, aug)[:, m:]


def _perturbation(m: int, size: float, dtype):
    """A fixed, generic (no linear relations in practice) vector in size * [0.5, 1] [m]."""
    i = jnp.arange(1, m + 1, dtype=dtype)
    frac = jnp.mod(jnp.sin(i * 12.9898 + 78.233) * 43758.5453, 1.0)  # a classic hash to [0, 1)
    return size * (0.5 + 0.5 * frac)


def _simplex(a, row_mask, col_mask, perturbation, max_pivots: int):
    """The LP solve in a's dtype (float64 when called from solve_zero_sum). Returns (x, y, pivots, ok)."""
    m, n = a.shape
    dtype = a.dtype
    tol = _TOLERANCES[64 if jnp.finfo(dtype).bits >= 64 else 32]
    pivot_tol, cost_tol, feas_tol = tol["pivot"], tol["cost"], tol["feas"]
    rel_tol = tol["relative"]
    valid = row_mask[:, None] & col_mask[None, :]
    lo = jnp.min(jnp.where(valid, a, jnp.inf))
    hi = jnp.max(jnp.where(valid, a, -jnp.inf))
    scale = jnp.where(hi > lo, hi - lo, 1.0)
    # A masked row becomes the constraint 0 <= 1 (its slack stays basic, its dual 0); a masked
    # column is empty with objective 0, so its reduced cost is 0 and it never enters.
    a1 = jnp.where(valid, (a - lo) / scale + 1.0, 0.0)
    full = jnp.concatenate([a1, jnp.eye(m, dtype=dtype)], axis=1)  # [m, n + m]: columns, then slacks
    cost = jnp.concatenate([col_mask.astype(dtype), jnp.zeros((m,), dtype)])  # [n + m], maximised
    ones = jnp.ones((m,), dtype)
    perturbed = ones + _perturbation(m, jnp.asarray(perturbation, dtype), dtype)

    def solve(basis, perturb):
        """Basic values (for the perturbed and the true right-hand side), duals and reduced costs
        of `basis` [m], each refined once against the original data."""
        b = full[:, basis]
        inv = _inverse(b)
        rhs = jnp.stack([ones, jnp.where(perturb, perturbed, ones)], axis=1)  # [m, 2]
        u = inv @ rhs
        u = u + inv @ (rhs - b @ u)
        u_true, u = u[:, 0], u[:, 1]
        cb = cost[basis]
        pi = cb @ inv
        pi = pi + (cb - pi @ b) @ inv
        basic = jnp.zeros((n + m,), bool).at[basis].set(True)
        reduced = jnp.where(basic, 0.0, cost - pi @ full)
        return b, inv, u, u_true, pi, reduced, basic

    def primal_pivot(b, inv, u, reduced):
        """Dantzig entering column, Harris ratio test. Returns (enter, leave, improvable, bounded)."""
        candidates = reduced > cost_tol
        enter = jnp.argmax(jnp.where(candidates, reduced, -jnp.inf))
        w = inv @ full[:, enter]
        w = w + inv @ (full[:, enter] - b @ w)
        positive = w > jnp.maximum(pivot_tol, rel_tol * jnp.max(jnp.abs(w)))
        safe_w = jnp.where(positive, w, 1.0)
        u = jnp.maximum(u, 0.0)
        # Pass 1: the longest step that keeps every basic value above -feas_tol; pass 2: among
        # the rows that block before it, the largest pivot (the best-conditioned next basis).
        theta = jnp.min(jnp.where(positive, (u + feas_tol) / safe_w, jnp.inf))
        blocking = positive & (u / safe_w <= theta)
        leave = jnp.argmax(jnp.where(blocking, w, -jnp.inf))
        return enter, leave, jnp.any(candidates), jnp.any(positive)

    def dual_pivot(inv, u, reduced, basic):
        """Most infeasible row leaves, dual Harris ratio test. Returns (enter, leave, infeasible, ok)."""
        leave = jnp.argmin(u)
        alpha = inv[leave] @ full  # [n + m] row `leave` of B^-1 [A' I]
        negative = (alpha < -jnp.maximum(pivot_tol, rel_tol * jnp.max(jnp.abs(alpha)))) & ~basic
        safe = jnp.where(negative, -alpha, 1.0)
        slack = jnp.maximum(-reduced, 0.0)  # >= 0 at a dual-feasible basis
        theta = jnp.min(jnp.where(negative, (slack + cost_tol) / safe, jnp.inf))
        eligible = negative & (slack / safe <= theta)
        enter = jnp.argmax(jnp.where(eligible, -alpha, -jnp.inf))
        return enter, leave, u[leave] < -feas_tol, jnp.any(negative)

    def cond(state):
        return state[1] < 3

    def body(state):
        basis, phase, rounds, pivots, _, _, _ = state
        b, inv, u, u_true, pi, reduced, basic = solve(basis, phase == 1)
        p_enter, p_leave, improvable, bounded = primal_pivot(b, inv, u, reduced)
        d_enter, d_leave, infeasible, restorable = dual_pivot(inv, u, reduced, basic)
        in_p1 = phase == 1
        wants = jnp.where(in_p1, improvable, infeasible)  # a pivot is due in this phase
        can = jnp.where(in_p1, bounded, restorable)  # ... and one exists (always, barring rounding)
        pivot = wants & can & (pivots < max_pivots)
        enter = jnp.where(in_p1, p_enter, d_enter)
        leave = jnp.where(in_p1, p_leave, d_leave)
        basis = jnp.where(pivot, basis.at[leave].set(enter.astype(basis.dtype)), basis)
        # Phase 1 done -> phase 2. Phase 2 done -> 3 (stop), unless rounding in a badly conditioned
        # basis cost dual feasibility (a reduced cost turned positive): then phase 1 again, a few
        # rounds at most. No pivot possible or the cap reached -> 3. The last turn never pivots,
        # so what it carries out (u, pi, optimality) belongs to the final basis.
        again = ~in_p1 & ~wants & improvable & (rounds < _MAX_ROUNDS)
        next_phase = jnp.where(pivot, phase, jnp.where(in_p1 & ~wants, 2, jnp.where(again, 1, 3)))
        optimal = ~improvable & (jnp.min(u_true) >= -feas_tol)
        rounds = rounds + again.astype(jnp.int32)
        return basis, next_phase, rounds, pivots + pivot.astype(jnp.int32), optimal, u_true, pi

    init = (n + jnp.arange(m, dtype=jnp.int32), jnp.int32(1), jnp.int32(0), jnp.int32(0), jnp.bool_(False),
            jnp.zeros((m,), dtype), jnp.zeros((m,), dtype))
    basis, _, _, pivots, ok, u, pi = jax.lax.while_loop(cond, body, init)
    y = jnp.zeros((n + m,), dtype).at[basis].set(u)[:n]
    y = jnp.where(col_mask, jnp.maximum(y, 0.0), 0.0)
    x = jnp.where(row_mask, jnp.maximum(pi, 0.0), 0.0)
    return x / jnp.sum(x), y / jnp.sum(y), pivots, ok


def solve_zero_sum(payoff, row_mask=None, col_mask=None, *, max_pivots: Optional[int] = None,
                   perturbation: Optional[float] = None) -> ZeroSumSolution:
    """Nash equilibrium and value of the zero-sum game `payoff` [num_row, num_col] (row maximises).

    row_mask [num_row], col_mask [num_col] (bool, optional): the strategies taking part.
    max_pivots: simplex pivot cap (default 10 (num_row + num_col) + 20, several times what games
      need); `converged` says whether the optimum was reached, `gap` certifies the answer anyway.
    perturbation: size of phase 1's right-hand-side shift (default 1e-6 in float64, 1e-3 in a
      float32 trace); phase 2 removes it, so the answer does not depend on it (tests/test_game.py
      checks that at 0.1). A traced argument: changing it does not recompile.
    Returns a `ZeroSumSolution` in the payoff's float dtype. Jittable and vmappable (validation is
    skipped on traced values).
    """
    payoff = _as_array(payoff)
    check_payoff(payoff, row_mask, col_mask)
    m, n = jnp.shape(payoff)
    out = _out_dtype(payoff)
    row_mask, col_mask = _masks((m, n), row_mask, col_mask)
    if max_pivots is None:
        max_pivots = 10 * (m + n) + 20
    if not (is_integer(max_pivots) and max_pivots >= 1):  # none would return NaN strategies
        raise ValueError(f"max_pivots must be a positive integer, got {max_pivots!r}")
    if _is_concrete(payoff, row_mask, col_mask):
        # The usual case (a Python driver, a test): solve in float64 whatever the caller's setting.
        with jax.enable_x64(True):
            pert = _TOLERANCES[64]["perturbation"] if perturbation is None else perturbation
            return _solve(jnp.asarray(payoff).astype(jnp.float64), row_mask, col_mask, pert, int(max_pivots), out)
    # Under the caller's jit/vmap a scoped x64 would not survive to the caller's lowering, so the
    # solve runs in the trace's precision: float32 unless x64 is on (see the module docstring).
    bits = 64 if jnp.finfo(out).bits >= 64 else 32
    pert = _TOLERANCES[bits]["perturbation"] if perturbation is None else perturbation
    return _solve(jnp.asarray(payoff).astype(out), row_mask, col_mask, pert, int(max_pivots), out)


@partial(jax.jit, static_argnames=("max_pivots", "out"))
def _solve(a, row_mask, col_mask, perturbation, max_pivots: int, out) -> ZeroSumSolution:
    """The simplex in a's dtype, then the certificate of the strategies rounded to `out`, in a's dtype."""
    x, y, pivots, ok = _simplex(a, row_mask, col_mask, perturbation, max_pivots)
    x, y = x.astype(out), y.astype(out)
    xw, yw = x.astype(a.dtype), y.astype(a.dtype)
    a0 = jnp.where(row_mask[:, None] & col_mask[None, :], a, 0.0)
    upper, lower = _bounds(a0, xw, yw, row_mask, col_mask)
    value = (xw @ a0 @ yw).astype(out)
    gap = jnp.maximum(upper - lower, 0.0).astype(out)
    return ZeroSumSolution(x, y, value, gap, pivots, ok)


def exploitability(payoff, row_strategy, col_strategy, row_mask=None, col_mask=None) -> jax.Array:
    """NashConv of a pair of mixed strategies: what both players gain, summed, by best responding.

    payoff [num_row, num_col] (row maximises), row_strategy [num_row], col_strategy [num_col];
    masks as in `solve_zero_sum` (masked strategies are not available as best responses).
    = (max_i (A y)_i - x^T A y) + (x^T A y - min_j (x^T A)_j) = max_i (A y)_i - min_j (x^T A)_j,
    zero exactly at a Nash equilibrium. Returns a float [] in the payoff's float dtype.
    """
    payoff = _as_array(payoff)
    check_payoff(payoff, row_mask, col_mask)
    m, n = jnp.shape(payoff)
    check_strategy(row_strategy, m, "row_strategy")
    check_strategy(col_strategy, n, "col_strategy")
    out = _out_dtype(payoff)
    a = jnp.asarray(payoff, out)
    row_mask, col_mask = _masks((m, n), row_mask, col_mask)
    upper, lower = _bounds(a, jnp.asarray(row_strategy, out), jnp.asarray(col_strategy, out), row_mask, col_mask)
    return upper - lower


def best_response(payoff, opponent_strategy, player: str, mask=None) -> tuple[jax.Array, jax.Array]:
    """A pure best response of `player` ("row" maximises, "col" minimises) to the other's mixture.

    payoff [num_row, num_col]; opponent_strategy: [num_col] for player "row", [num_row] for "col";
    mask: bool [num_row] (row) / [num_col] (col), the responder's strategies allowed (default all).
    Returns (action int32 [], the ROW player's expected payoff when `player` plays it []). Ties go
    to the lowest index.
    """
    if player not in ("row", "col"):
        raise ValueError(f"player must be 'row' or 'col', got {player!r}")
    payoff = _as_array(payoff)
    check_payoff(payoff, mask if player == "row" else None, mask if player == "col" else None)
    m, n = jnp.shape(payoff)
    check_strategy(opponent_strategy, n if player == "row" else m, "opponent_strategy")
    out = _out_dtype(payoff)
    a = jnp.asarray(payoff, out)
    s = jnp.asarray(opponent_strategy, out)
    values = a @ s if player == "row" else s @ a  # the row's payoff for each responder action
    score = values if player == "row" else -values
    if mask is not None:
        score = jnp.where(jnp.asarray(mask, bool), score, -jnp.inf)
    action = jnp.argmax(score).astype(jnp.int32)
    return action, values[action]
