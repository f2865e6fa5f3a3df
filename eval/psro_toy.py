#!/usr/bin/env python
"""PSRO on a known matrix game with exact best responses: exploitability per iteration.

    python eval/psro_toy.py                                   # random 50 x 50 game, 40 iterations
    python eval/psro_toy.py --game cyclic --size 15 --iterations 20
    python eval/psro_toy.py --meta nash --seed 3

Policies are mixed strategies of the full game (jaxsoc/game/toy.py); each player starts from a
random Dirichlet(1) mixed strategy, and each iteration adds the exact pure best response to the
opponent's meta-strategy mixture. The exploitability printed is the exact NashConv of the
meta-strategy pair in the full game (before that iteration's responses are added). With the Nash
meta-solver it reaches ~0 once the populations hold the equilibrium's support; "uniform" is
fictitious play, "last" naive self-play. Prints a markdown table (docs/game.md quotes it).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxsoc import cli  # noqa: E402
from jaxsoc.names import repeated  # noqa: E402


# The largest payoff matrix accepted: the exact solver works on it in float64 (size x size x 8
# bytes); 1 GiB (size 11,585) is far past what the toy study needs and still fits in memory.
MAX_PAYOFF_BYTES = 2**30


def main(argv=None) -> None:
    ap = cli.Parser(prog="eval/psro_toy.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--game", choices=["random", "cyclic"], default="random",
                    help="random: standard-normal payoffs; cyclic: rock-paper-scissors on --size actions")
    ap.add_argument("--size", type=cli.parse_positive_int, default=50, help="actions per player (odd for cyclic)")
    ap.add_argument("--iterations", type=cli.parse_positive_int, default=40)
    ap.add_argument("--meta", default="nash,uniform,last", help="comma-separated meta-solvers")
    ap.add_argument("--every", type=cli.parse_positive_int, default=1, help="print every N-th iteration")
    ap.add_argument("--seed", type=cli.parse_seed, default=0)
    args = ap.parse_args(argv)
    if args.size**2 * 8 > MAX_PAYOFF_BYTES:
        ap.error(f"--size {args.size:,}: the {args.size:,} x {args.size:,} payoff matrix would take "
                 f"{args.size**2 * 8 / 2**30:,.1f} GiB in the float64 solver, more than the 1 GiB bound "
                 f"(at most {math.isqrt(MAX_PAYOFF_BYTES // 8):,} actions)")
    if (args.iterations + 1) ** 2 * 8 > MAX_PAYOFF_BYTES:  # the populations' meta-game grows to that size
        ap.error(f"--iterations {args.iterations:,}: the meta-game of {args.iterations + 1:,} members per side "
                 f"would take {(args.iterations + 1) ** 2 * 8 / 2**30:,.1f} GiB in the float64 solver, more than "
                 f"the 1 GiB bound (at most {math.isqrt(MAX_PAYOFF_BYTES // 8) - 1:,} iterations)")

    import jax

    from jaxsoc.game import metagame, psro, toy

    metas = cli.parse_list(args.meta)
    if not metas:
        ap.error(f"--meta names no meta-solver; expected some of {', '.join(sorted(psro.META_SOLVERS))}")
    unknown = sorted(set(metas) - set(psro.META_SOLVERS))
    if unknown:
        ap.error(f"unknown meta-solver(s) {unknown}; expected some of {sorted(psro.META_SOLVERS)}")
    twice = repeated(metas)
    if twice:
        ap.error(f"meta-solver(s) {twice} given twice in --meta")
    k_game, k_row, k_col, k_run = jax.random.split(jax.random.key(args.seed), 4)
    try:
        payoff = (toy.random_zero_sum(k_game, args.size, args.size) if args.game == "random"
                  else toy.cyclic_game(args.size))
    except ValueError as e:
        ap.error(str(e))
    sol = metagame.solve_zero_sum(payoff)
    support = int((sol.row_strategy > 1e-6).sum()), int((sol.col_strategy > 1e-6).sum())
    game = toy.matrix_game(payoff)
    x0, y0 = toy.random_mixed(k_row, args.size), toy.random_mixed(k_col, args.size)

    curves, seconds = {}, {}
    for meta in metas:
        start = time.time()
        result = psro.run_psro(game, x0, y0, k_run, iterations=args.iterations, meta_solver=meta)
        seconds[meta] = time.time() - start
        curves[meta] = list(result.history["exploitability"]) + [result.final_exploitability]

    print(f"# PSRO, {args.game} {args.size} x {args.size} game (seed {args.seed}): value "
          f"{float(sol.value):+.4f}, equilibrium support {support[0]} rows / {support[1]} columns\n")
    print("exact exploitability (NashConv) of the meta-strategy pair; population size = iteration + 1\n")
    print("| iteration | " + " | ".join(metas) + " |")
    print("| ---: | " + " | ".join("---:" for _ in metas) + " |")
    rows = list(range(0, args.iterations + 1, args.every))
    if rows[-1] != args.iterations:
        rows.append(args.iterations)
    for t in rows:
        print(f"| {t} | " + " | ".join(f"{curves[m][t]:.2e}" for m in metas) + " |")
    print()
    for meta in metas:
        first = next((t for t, e in enumerate(curves[meta]) if e <= 1e-5), None)
        print(f"{meta}: exploitability <= 1e-5 from iteration {first if first is not None else 'never'}; "
              f"final {curves[meta][-1]:.2e}; {seconds[meta]:.1f} s (compiles included)")


if __name__ == "__main__":
    main()
