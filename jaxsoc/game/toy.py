"""Normal-form zero-sum games as PSRO test beds: policies are mixed strategies, oracles are exact.

    game = toy.matrix_game(toy.random_zero_sum(jax.random.key(0), 20, 20))
    x0, y0 = toy.random_mixed(jax.random.key(1), 20), toy.random_mixed(jax.random.key(2), 20)
    result = psro.run_psro(game, x0, y0, jax.random.key(3), iterations=20)

A row policy is a distribution over the rows of the payoff matrix `[num_row]`, a column policy one
over its columns `[num_col]`. The payoff of a pairing is x^T A y; the oracle's response to a
population mixture is the pure best response (one-hot) to the mixed strategy that mixture plays
(the meta-weights times the members, `[capacity] @ [capacity, n]`); the exact exploitability of a
meta-strategy pair is `metagame.exploitability` of the two mixtures in the full matrix. Each
`matrix_game` call builds and jits its own functions: build a game once and reuse it, so that
PSRO's programs compile once (`psro.payoff_matrix` caches on the payoff function's identity).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsoc.game import metagame
from jaxsoc.game.psro import Population, ZeroSumGame

__all__ = ["matrix_game", "mixture", "random_zero_sum", "random_mixed", "rock_paper_scissors", "cyclic_game"]


def mixture(pop: Population, meta: jax.Array) -> jax.Array:
    """The mixed strategy `[n]` that playing member i with probability meta[i] amounts to."""
    return meta.astype(pop.policies.dtype) @ pop.policies


def matrix_game(payoff, noise: float = 0.0) -> ZeroSumGame:
    """PSRO's view of the zero-sum game `payoff` [num_row, num_col] (row maximises).

    noise: standard deviation of Gaussian noise added to each evaluated pairing, a stand-in for
    Monte-Carlo estimates of RL policies' payoffs (0: exact expectations). The oracles and the
    exploitability stay exact.
    """
    metagame.check_payoff(payoff)
    if not 0.0 <= noise < float("inf"):  # NaN and inf too: every pairing would evaluate to them
        raise ValueError(f"noise must be a finite, non-negative standard deviation, got {noise}")
    a = jnp.asarray(payoff, jnp.float32)

    def pair_payoff(key, x, y):
        exact = x @ a @ y
        return exact + noise * jax.random.normal(key) if noise > 0 else exact

    @jax.jit
    def row_oracle(key, col_pop, col_meta):
        del key
        action, _ = metagame.best_response(a, mixture(col_pop, col_meta), "row")
        return jax.nn.one_hot(action, a.shape[0], dtype=jnp.float32)

    @jax.jit
    def col_oracle(key, row_pop, row_meta):
        del key
        action, _ = metagame.best_response(a, mixture(row_pop, row_meta), "col")
        return jax.nn.one_hot(action, a.shape[1], dtype=jnp.float32)

    @jax.jit
    def exploitability(row_pop, row_meta, col_pop, col_meta):
        return metagame.exploitability(a, mixture(row_pop, row_meta), mixture(col_pop, col_meta))

    return ZeroSumGame(pair_payoff, row_oracle, col_oracle, exploitability)


def random_zero_sum(key, num_row: int, num_col: int) -> jax.Array:
    """Standard-normal payoffs [num_row, num_col]: a generic game (unique equilibrium, ~half support)."""
    return jax.random.normal(key, (num_row, num_col))


def random_mixed(key, n: int) -> jax.Array:
    """A mixed strategy [n] uniform on the simplex (Dirichlet(1)): a random initial policy.

    Normalised exponentials are exactly Dirichlet(1) and compile in a fraction of the time of
    `jax.random.dirichlet`'s gamma sampler.
    """
    e = jax.random.exponential(key, (n,))
    return e / jnp.sum(e)


def cyclic_game(n: int) -> jax.Array:
    """Rock-paper-scissors on n (odd) actions [n, n]: action i beats the (n - 1) / 2 actions before
    it (cyclically) and loses to the rest; n = 3 is `rock_paper_scissors`. Value 0, the unique
    equilibrium is uniform, and PSRO needs all n actions to reach it."""
    if n < 3 or n % 2 == 0:
        raise ValueError(f"cyclic_game needs an odd n >= 3, got {n}")
    d = (jnp.arange(n)[:, None] - jnp.arange(n)[None, :]) % n  # how far i is ahead of j
    return jnp.where(d == 0, 0.0, jnp.where(d <= (n - 1) // 2, 1.0, -1.0))


def rock_paper_scissors() -> jax.Array:
    """[3, 3] rows/columns rock, paper, scissors; the row's payoff."""
    return jnp.asarray([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
