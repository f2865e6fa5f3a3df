"""The zero-sum solver's accuracy against SciPy's HiGHS, on hard game families (docs/game.md).

    python eval/game_accuracy.py                      # 20 games per family and shape, ~40 s on 2 cores
    python eval/game_accuracy.py --count 5 --shapes 10x10,30x60

For each family and shape: the largest certified gap and value error (relative to the payoff
range) of `metagame.solve_zero_sum` called on concrete arrays (the float64 path), its largest pivot
count and how many solves did not converge; then the same for the float32 path a caller's
`jit(vmap(...))` gets. Prints the markdown table of docs/game.md, then solve times. SciPy is
needed (it comes with jax); the library itself never imports it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxsoc import cli  # noqa: E402

FAMILIES = {
    "normal": lambda rng, m, n: rng.standard_normal((m, n)),
    "{-1, 0, 1}": lambda rng, m, n: rng.integers(-1, 2, (m, n)),
    "rank 3": lambda rng, m, n: rng.standard_normal((m, 3)) @ rng.standard_normal((3, n)),
    "duplicated strategies": lambda rng, m, n: _duplicated(rng, m, n),
    "90 % zeros": lambda rng, m, n: rng.standard_normal((m, n)) * (rng.random((m, n)) < 0.1),
    "normal x 1e4 + 3e5": lambda rng, m, n: rng.standard_normal((m, n)) * 1e4 + 3e5,
}


def _duplicated(rng, m, n):
    """Every row and column a copy of one of m/3 x n/3 distinct ones, as in a PSRO population."""
    base = rng.integers(-2, 3, (max(m // 3, 1), max(n // 3, 1)))
    return base[rng.integers(0, base.shape[0], m)][:, rng.integers(0, base.shape[1], n)]


def highs_value(payoff: np.ndarray) -> float:
    """The game value by SciPy's HiGHS (max v s.t. x^T A >= v, x a distribution); NaN if it fails."""
    from scipy.optimize import linprog

    m, n = payoff.shape
    res = linprog(np.r_[np.zeros(m), -1.0], A_ub=np.c_[-payoff.T, np.ones(n)], b_ub=np.zeros(n),
                  A_eq=np.r_[np.ones(m), 0.0][None], b_eq=[1.0], bounds=[(0, None)] * m + [(None, None)],
                  method="highs")
    return -res.fun if res.status == 0 else float("nan")


# The most memory a shape's games may take: `--count` payoff matrices of the shape, in float64 as
# the solver's concrete path reads them (the study's shapes take well under a megabyte).
MAX_GAMES_BYTES = 2**30


def main(argv=None) -> None:
    ap = cli.Parser(prog="eval/game_accuracy.py", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=cli.parse_positive_int, default=20, help="games per family and shape")
    ap.add_argument("--shapes", default="10x10,30x60,60x60", help="comma-separated ROWSxCOLS")
    ap.add_argument("--seed", type=cli.parse_seed, default=7)
    args = ap.parse_args(argv)
    try:
        shapes = [tuple(int(v) for v in s.lower().split("x")) for s in cli.parse_list(args.shapes)]
        assert shapes and all(len(s) == 2 and min(s) >= 1 for s in shapes)
    except (ValueError, AssertionError):
        ap.error(f"--shapes must look like 10x10,30x60, got {args.shapes!r}")
    twice = sorted({s for s in shapes if shapes.count(s) > 1})
    if twice:  # its rows would be printed twice, from other draws
        ap.error(f"--shapes names {', '.join(f'{m}x{n}' for m, n in twice)} twice")
    for m, n in shapes:
        size = args.count * m * n * 8
        if size > MAX_GAMES_BYTES:
            ap.error(f"--shapes {m}x{n}: {args.count} games of that shape would take {size / 2**30:,.1f} GiB "
                     f"in float64, more than the 1 GiB bound (lower --count or the shape)")
        if max(m, n) ** 2 * 8 > MAX_GAMES_BYTES:  # the timings below solve a square game of the larger side
            ap.error(f"--shapes {m}x{n}: the {max(m, n):,} x {max(m, n):,} game the solve times use would take "
                     f"{max(m, n) ** 2 * 8 / 2**30:,.1f} GiB in float64, more than the 1 GiB bound")

    import jax

    from jaxsoc.game import metagame

    traced = jax.jit(jax.vmap(metagame.solve_zero_sum))
    rng = np.random.default_rng(args.seed)
    print("| family | shape | float64 path: max gap / range | max value error / range | max pivots "
          "| not converged | float32 trace: max gap / range | not converged |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for family, draw in FAMILIES.items():
        for m, n in shapes:
            games = np.stack([draw(rng, m, n) for _ in range(args.count)]).astype(np.float32)
            scale = np.maximum(np.ptp(games, axis=(1, 2)), 1e-30)
            sols = [metagame.solve_zero_sum(a) for a in games]
            gaps = np.array([float(s.gap) for s in sols]) / scale
            errors = np.array([abs(float(s.value) - highs_value(a.astype(np.float64)))
                               for s, a in zip(sols, games)]) / scale
            failed = int(np.isnan(errors).sum())
            error = f"{np.nanmax(errors):.0e}" + (f" (HiGHS failed on {failed})" if failed else "")
            batch = traced(games)
            print(f"| {family} | {m}x{n} | {gaps.max():.0e} | {error} | {max(int(s.pivots) for s in sols)} "
                  f"| {sum(not bool(s.converged) for s in sols)}/{args.count} "
                  f"| {(np.asarray(batch.gap) / scale).max():.0e} "
                  f"| {int((~np.asarray(batch.converged)).sum())}/{args.count} |", flush=True)
    print()
    for k in sorted({max(s) for s in shapes} | {min(s) for s in shapes}):  # square games of the shapes' sides
        a = rng.standard_normal((k, k)).astype(np.float32)
        start = time.perf_counter()
        metagame.solve_zero_sum(a).gap.block_until_ready()
        first = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(3):
            sol = metagame.solve_zero_sum(rng.standard_normal((k, k)).astype(np.float32))
            sol.gap.block_until_ready()
        print(f"{k}x{k}: first call {first:.2f} s (compile unless cached), then "
              f"{(time.perf_counter() - start) / 3 * 1e3:.1f} ms per solve ({int(sol.pivots)} pivots)")


if __name__ == "__main__":
    main()
