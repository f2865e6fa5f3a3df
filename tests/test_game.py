"""Tests for jaxsoc.game: the zero-sum meta-game solver, exploitability, best responses and PSRO.

References: equilibria worked by hand, and SciPy's HiGHS linear-programming solver (scipy comes with
jax) on random games. Compile budget: every distinct payoff shape is one solver program (~1 s on 2
cores), so the games below share a few shapes.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

from jaxsoc.game import psro, toy
from jaxsoc.game.metagame import best_response, exploitability, solve_zero_sum

# Accuracy promised by the solver (metagame's docstring): the certificate `gap` and the value error
# relative to the payoff range. The simplex runs in float64, so what is left is the float32
# rounding of the returned strategies (~1e-7 of the range).
TOL = 1e-6


def lp_reference(a):
    """(value, row strategy, col strategy) of the zero-sum game `a` by two SciPy LPs (float64)."""
    a = np.asarray(a, np.float64)
    m, n = a.shape

    def maximin(b):  # max v s.t. x^T b >= v, x a distribution; variables [x, v]
        k, l = b.shape
        res = linprog(np.r_[np.zeros(k), -1.0], A_ub=np.c_[-b.T, np.ones(l)], b_ub=np.zeros(l),
                      A_eq=np.r_[np.ones(k), 0.0][None], b_eq=[1.0],
                      bounds=[(0, None)] * k + [(None, None)], method="highs")
        assert res.status == 0, res.message
        return -res.fun, res.x[:k]

    value, x = maximin(a)
    neg_value, y = maximin(-a.T)
    assert abs(value + neg_value) < 1e-9  # the minimax theorem, as a check on the reference
    return value, x, y


def assert_equilibrium(sol, payoff, value, x=None, y=None):
    payoff = np.asarray(payoff, np.float64)
    scale = max(np.ptp(payoff), 1.0)
    assert bool(sol.converged)
    assert float(sol.gap) <= TOL * scale
    assert abs(float(sol.value) - value) <= TOL * scale
    for got, want in ((sol.row_strategy, x), (sol.col_strategy, y)):
        got = np.asarray(got, np.float64)
        assert got.min() >= 0.0 and abs(got.sum() - 1.0) <= 1e-6
        if want is not None:
            np.testing.assert_allclose(got, want, atol=TOL)
    # The certificate must be the pair's exploitability, independently recomputed.
    x_, y_ = np.asarray(sol.row_strategy, np.float64), np.asarray(sol.col_strategy, np.float64)
    assert abs(((payoff @ y_).max() - (x_ @ payoff).min()) - float(sol.gap)) <= 1e-6 * scale


# ---------------------------------------------------------------------------------------------
# The solver on games with known equilibria (shapes 1x1, 2x2, 3x3, 2x3)
# ---------------------------------------------------------------------------------------------


def test_matching_pennies():
    sol = solve_zero_sum(jnp.asarray([[1.0, -1.0], [-1.0, 1.0]]))
    assert_equilibrium(sol, [[1, -1], [-1, 1]], 0.0, [0.5, 0.5], [0.5, 0.5])


def test_three_by_three_games():
    """Rock-paper-scissors, a pure saddle point, strictly dominated strategies, constant payoffs."""
    rps = toy.rock_paper_scissors()
    np.testing.assert_array_equal(rps, toy.cyclic_game(3))
    assert_equilibrium(solve_zero_sum(rps), rps, 0.0, [1 / 3] * 3, [1 / 3] * 3)

    # Row 1 strictly dominates rows 0 and 2; against it, column 1 is the only best reply.
    saddle = jnp.asarray([[3.0, 1.0, 4.0], [5.0, 2.0, 6.0], [0.0, 1.0, 2.0]])
    assert_equilibrium(solve_zero_sum(saddle), saddle, 2.0, [0, 1, 0], [0, 1, 0])

    # Row 2 is dominated by row 0, column 2 by column 0; what is left is [[3, -1], [-1, 3]].
    dominated = jnp.asarray([[3.0, -1.0, 5.0], [-1.0, 3.0, 4.0], [-2.0, -2.0, 0.0]])
    assert_equilibrium(solve_zero_sum(dominated), dominated, 1.0, [0.5, 0.5, 0], [0.5, 0.5, 0])

    constant = jnp.full((3, 3), 2.5)  # every pair is an equilibrium; any distribution will do
    sol = solve_zero_sum(constant)
    assert_equilibrium(sol, constant, 2.5)
    assert float(sol.gap) == 0.0


def test_one_by_one_and_non_square():
    assert_equilibrium(solve_zero_sum(jnp.asarray([[-7.0]])), [[-7.0]], -7.0, [1.0], [1.0])
    # max_p min(4p, 4 - 4p, 3) = 2 at p = 1/2; the column player never plays the constant 3.
    wide = jnp.asarray([[4.0, 0.0, 3.0], [0.0, 4.0, 3.0]])
    assert_equilibrium(solve_zero_sum(wide), wide, 2.0, [0.5, 0.5], [0.5, 0.5, 0.0])
    # Integer payoffs are accepted (cast to float); results are float32.
    sol = solve_zero_sum(np.asarray([[4, 0, 3], [0, 4, 3]]))
    assert sol.value.dtype == jnp.float32 and abs(float(sol.value) - 2.0) <= TOL


# ---------------------------------------------------------------------------------------------
# The solver against SciPy (shape 7x4), masks, and under jit/vmap
# ---------------------------------------------------------------------------------------------


def random_games(seed, count=6, shape=(7, 4)):
    rng = np.random.default_rng(seed)
    games = [rng.standard_normal(shape) for _ in range(count - 2)]
    games.append(rng.integers(-1, 2, shape))  # degenerate: many ties
    base = rng.integers(-2, 3, (3, 2))  # duplicated strategies, as in a PSRO population
    games.append(base[rng.integers(0, 3, shape[0])][:, rng.integers(0, 2, shape[1])])
    return np.stack(games).astype(np.float32)


def test_matches_scipy_on_random_games():
    for a in random_games(0):
        value, _, _ = lp_reference(a)
        sol = solve_zero_sum(a)
        assert_equilibrium(sol, a, value)  # value within TOL x range, certified gap <= TOL x range
        # Phase 1 solves a perturbed programme; phase 2 removes the perturbation, so even a
        # shift of 0.1 (not 1e-6) leaves the answer exact (without phase 2: gaps ~1e-2 here).
        assert_equilibrium(solve_zero_sum(a, perturbation=0.1), a, value)


def test_masks_solve_the_subgame():
    """Masked rows/columns take no part: the padded game's solution is the sub-game's."""
    rng = np.random.default_rng(1)
    sub = rng.standard_normal((5, 3)).astype(np.float32)
    padded = np.full((7, 4), 1e6, np.float32)  # huge filler that must be ignored
    padded[:5, :3] = sub
    row_mask = np.arange(7) < 5
    col_mask = np.arange(4) < 3
    sol = solve_zero_sum(padded, row_mask, col_mask)
    value, _, _ = lp_reference(sub)
    assert bool(sol.converged) and abs(float(sol.value) - value) <= TOL * np.ptp(sub)
    assert np.all(np.asarray(sol.row_strategy)[5:] == 0) and np.all(np.asarray(sol.col_strategy)[3:] == 0)
    gap = exploitability(sub, sol.row_strategy[:5], sol.col_strategy[:3])
    assert float(gap) <= TOL * np.ptp(sub)
    # The masked exploitability ignores the filler too.
    masked = exploitability(padded, sol.row_strategy, sol.col_strategy, row_mask, col_mask)
    assert abs(float(masked) - float(gap)) <= 1e-6


def test_jit_and_vmap():
    """Under a caller's trace the solver runs in the trace's precision (float32 here): still exact
    up to float32 rounding on generic games."""
    games = random_games(2)[:4]  # the generic (normal) ones
    sols = jax.jit(jax.vmap(solve_zero_sum))(games)
    for k, a in enumerate(games):
        value, _, _ = lp_reference(a)
        scale = np.ptp(a)
        assert bool(sols.converged[k])
        assert abs(float(sols.value[k]) - value) <= 1e-5 * scale
        assert float(sols.gap[k]) <= 1e-5 * scale


# ---------------------------------------------------------------------------------------------
# Exploitability and best responses, worked by hand
# ---------------------------------------------------------------------------------------------


def test_exploitability_by_hand():
    rps = toy.rock_paper_scissors()
    # x = (1/2, 1/2, 0) against uniform y: A y = 0, so the row gains 0 - 0; x^T A = (1/2, -1/2, 0),
    # so the column gains 0 - (-1/2) = 1/2 by playing paper. NashConv = 1/2.
    x, y = jnp.asarray([0.5, 0.5, 0.0]), jnp.full((3,), 1 / 3)
    assert abs(float(exploitability(rps, x, y)) - 0.5) < 1e-6
    # Both play rock: each would switch to paper and win 1: NashConv = 1 + 1.
    rock = jnp.asarray([1.0, 0.0, 0.0])
    assert abs(float(exploitability(rps, rock, rock)) - 2.0) < 1e-6
    assert abs(float(exploitability(rps, y, y))) < 1e-6


def test_best_response_by_hand():
    rps = toy.rock_paper_scissors()
    half = jnp.asarray([0.5, 0.5, 0.0])  # half rock, half paper
    action, value = best_response(rps, half, "row")  # A y = (-1/2, 1/2, 0): paper
    assert int(action) == 1 and abs(float(value) - 0.5) < 1e-6
    action, value = best_response(rps, half, "col")  # x^T A = (1/2, -1/2, 0): paper, row gets -1/2
    assert int(action) == 1 and abs(float(value) + 0.5) < 1e-6
    action, _ = best_response(rps, half, "row", mask=jnp.asarray([True, False, True]))  # no paper
    assert int(action) == 2  # scissors (0) beats rock (-1/2)


# ---------------------------------------------------------------------------------------------
# Bad input: one-line ValueErrors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payoff, match", [
    (np.asarray([[1.0, np.nan], [0.0, 1.0]]), "non-finite"),
    (np.asarray([[1.0, np.inf]]), "non-finite"),
    (np.zeros((0, 3)), "at least one row"),
    (np.zeros((3,)), "2-D"),
    (np.zeros((2, 2, 2)), "2-D"),
    (np.asarray([["a", "b"]]), "real numbers"),
])
def test_bad_payoff_raises(payoff, match):
    with pytest.raises(ValueError, match=match) as info:
        solve_zero_sum(payoff)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=match):
        exploitability(payoff, np.ones(1), np.ones(1))


def test_bad_strategies_and_arguments_raise():
    rps = toy.rock_paper_scissors()
    u = np.full(3, 1 / 3)
    for bad, match in ((np.asarray([0.5, 0.6, -0.1]), "not a probability distribution"),
                       (np.asarray([0.5, 0.5, 0.5]), "not a probability distribution"),
                       (np.asarray([np.nan, 0.5, 0.5]), "non-finite"),
                       (np.asarray([0.5, 0.5]), "shape")):
        with pytest.raises(ValueError, match=match):
            exploitability(rps, bad, u)
        with pytest.raises(ValueError, match=match):
            exploitability(rps, u, bad)
        with pytest.raises(ValueError, match=match):
            best_response(rps, bad, "row")
    with pytest.raises(ValueError, match="player"):
        best_response(rps, u, "blue")
    with pytest.raises(ValueError, match="row_mask leaves no row"):
        solve_zero_sum(rps, row_mask=np.zeros(3, bool))
    with pytest.raises(ValueError, match="col_mask must have shape"):
        solve_zero_sum(rps, col_mask=np.ones(2, bool))


# ---------------------------------------------------------------------------------------------
# PSRO on a toy game with exact best responses
# ---------------------------------------------------------------------------------------------

PSRO_SIZE, PSRO_ITERATIONS = 12, 15
PSRO_TOL = 1e-5  # exact exploitability of the Nash meta-strategy by the last iteration


@pytest.fixture(scope="module")
def psro_game():
    payoff = toy.random_zero_sum(jax.random.key(0), PSRO_SIZE, PSRO_SIZE)
    return payoff, toy.matrix_game(payoff)


def run_toy(game, seed, meta="nash"):
    k_row, k_col, k_run = jax.random.split(jax.random.key(seed), 3)
    x0, y0 = toy.random_mixed(k_row, PSRO_SIZE), toy.random_mixed(k_col, PSRO_SIZE)
    return psro.run_psro(game, x0, y0, k_run, iterations=PSRO_ITERATIONS, meta_solver=meta)


def test_psro_reaches_equilibrium(psro_game):
    payoff, game = psro_game
    result = run_toy(game, seed=1)
    h = result.history
    assert len(h["exploitability"]) == PSRO_ITERATIONS
    # An exact oracle and the exact meta-solver: the meta-strategy is an equilibrium of the full
    # game once the populations hold its support (here from iteration 9 of 15; 12 actions).
    assert h["exploitability"][-1] <= PSRO_TOL and result.final_exploitability <= PSRO_TOL
    assert h["exploitability"][0] > 0.1  # ... and it was not one at the start
    # With exact responses, the fresh responses' gain is the exact exploitability.
    np.testing.assert_allclose(h["br_gain"], h["exact"], atol=1e-5)
    # The meta-game value is the game's (solved padded to PSRO's capacity, sharing its program).
    cap = PSRO_ITERATIONS + 1
    padded = jnp.zeros((cap, cap)).at[:PSRO_SIZE, :PSRO_SIZE].set(payoff)
    mask = jnp.arange(cap) < PSRO_SIZE
    value = float(solve_zero_sum(padded, mask, mask).value)
    assert abs(h["meta_value"][-1] - value) <= 1e-5
    # The incrementally grown matrix is the all-pairings matrix of the final populations.
    eval_key = jax.random.split(jax.random.split(jax.random.key(1), 3)[2])[0]
    full = psro.payoff_matrix(game.payoff, eval_key, result.row_population, result.col_population)
    np.testing.assert_allclose(np.asarray(result.payoffs), np.asarray(full), atol=1e-6)

def test_psro_is_deterministic_per_seed(psro_game):
    """With noisy pairing evaluations (as RL policies' payoffs would be), the run key decides
    everything: the same key gives the same run, bit for bit; another key another run."""
    payoff, exact_game = psro_game
    noisy = toy.matrix_game(payoff, noise=0.1)
    x0, y0 = toy.random_mixed(jax.random.key(5), PSRO_SIZE), toy.random_mixed(jax.random.key(6), PSRO_SIZE)

    def run(seed):
        return psro.run_psro(noisy, x0, y0, jax.random.key(seed), iterations=PSRO_ITERATIONS)

    first, again, other = run(1), run(1), run(2)
    for k in ("exploitability", "meta_value", "br_gain"):
        np.testing.assert_array_equal(first.history[k], again.history[k])
    np.testing.assert_array_equal(np.asarray(first.payoffs), np.asarray(again.payoffs))
    np.testing.assert_array_equal(np.asarray(first.row_population.policies),
                                  np.asarray(again.row_population.policies))
    assert not np.array_equal(np.asarray(first.payoffs), np.asarray(other.payoffs))
    # The noise reached the meta-game, independently per pairing.
    exact = psro.payoff_matrix(exact_game.payoff, jax.random.key(0), first.row_population, first.col_population)
    residual = (np.asarray(first.payoffs) - np.asarray(exact))[:PSRO_ITERATIONS + 1, :PSRO_ITERATIONS + 1]
    assert 0.07 < residual.std() < 0.13


def test_psro_meta_solvers_and_estimates(psro_game):
    _, game = psro_game
    nash = run_toy(game, seed=1).history["exploitability"]
    fictitious = run_toy(game, seed=1, meta="uniform").history["exploitability"]
    selfplay = run_toy(game, seed=1, meta="last").history["exploitability"]
    # Same start; fictitious play and self-play are still far from an equilibrium at the end.
    assert nash[0] == fictitious[0] == selfplay[0]
    assert fictitious[-1] > 100 * PSRO_TOL and selfplay[-1] > 100 * PSRO_TOL
    # Without an exact exploitability the loop reports the best-response gain instead.
    estimated = run_toy(game._replace(exploitability=None), seed=1).history
    assert np.all(np.isnan(estimated["exact"]))
    np.testing.assert_allclose(estimated["exploitability"], nash, atol=1e-5)


def test_psro_bad_arguments(psro_game):
    _, game = psro_game
    x0 = jnp.full((PSRO_SIZE,), 1 / PSRO_SIZE)
    with pytest.raises(ValueError, match="unknown meta_solver"):
        psro.run_psro(game, x0, x0, jax.random.key(0), iterations=2, meta_solver="alpharank")
    with pytest.raises(ValueError, match="iterations must be a positive integer, got 0"):
        psro.run_psro(game, x0, x0, jax.random.key(0), iterations=0)
    with pytest.raises(ValueError, match="iterations must be a positive integer, got 2.5"):  # was a TypeError
        psro.run_psro(game, x0, x0, jax.random.key(0), iterations=2.5)
    with pytest.raises(ValueError, match=r"key must be one key \(jax.random.key\(0\)\), got float32 of shape \(3,\)"):
        psro.run_psro(game, x0, x0, jnp.zeros(3), iterations=2)
    # a raw jax.random.PRNGKey is that key's data: the same run as the typed key
    raw = psro.run_psro(game, x0, x0, jax.random.PRNGKey(0), iterations=2)
    typed = psro.run_psro(game, x0, x0, jax.random.wrap_key_data(jax.random.PRNGKey(0)), iterations=2)
    np.testing.assert_array_equal(raw.payoffs, typed.payoffs)
    with pytest.raises(ValueError, match=r"keys must be a \[S\] array of keys"):
        psro.run_psro_batch(game, x0[None], x0[None], jax.random.key(0), iterations=2)
    with pytest.raises(ValueError, match="max_pivots must be a positive integer, got 0"):  # NaN strategies before
        solve_zero_sum(toy.rock_paper_scissors(), max_pivots=0)
    with pytest.raises(ValueError, match="noise must be a finite, non-negative standard deviation, got inf"):
        toy.matrix_game(toy.rock_paper_scissors(), noise=float("inf"))
    with pytest.raises(ValueError, match="capacity"):
        psro.run_psro(game, x0, x0, jax.random.key(0), iterations=3, capacity=3)
    with pytest.raises(ValueError, match="population is full"):
        psro.add(psro.population(x0, 1), x0)
