"""Game theory for red vs blue: zero-sum meta-games and population play.

    from jaxsoc.game import metagame, psro
    sol = metagame.solve_zero_sum(payoff)                     # exact LP (simplex), certified gap
    result = psro.run_psro(game, row_init, col_init, key, iterations=20)   # game: psro.ZeroSumGame

Modules: `metagame` (the zero-sum matrix-game solver, exploitability, best responses), `psro`
(populations, the PSRO loop and its meta-solvers: Nash, uniform = fictitious play, last = self-play),
`toy` (normal-form games as PSRO test beds with exact best responses). `eval/game_accuracy.py`
checks the solver against SciPy's HiGHS. See docs/game.md.
"""
