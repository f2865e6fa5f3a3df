"""Does strategy matter in a world? Scripted SOC leads on the same held-out episodes.

    python eval/strategic.py                                # soc-strategic, 4,000 held-out episodes
    python eval/strategic.py --scenario soc-v2 --episodes 2000

Every lead directs the same scripted tier 2 (jaxsoc/env/leads.py). The best fixed directive is
picked on `--search-episodes` episodes of their own, then measured on the held-out ones beside the
informed lead (the coordinator's observation only), the oracle lead (ground truth), the constant
action and Rule-SOAR, in chunks of `--search-episodes` (one compiled program for both). Prints the
markdown table of docs/strategic.md (mean ± 95 % half-width) and the margins.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from jaxsoc import cli  # noqa: E402


def margin_line(metric: str, informed, other) -> str:
    """The informed lead against `other` on `metric` (rows of `jaxsoc.analysis.leads`): the
    difference of means, and whether their intervals are apart (either way) or overlap."""
    (lo, hi), (other_lo, other_hi) = informed.interval(metric), other.interval(metric)
    gap = max(lo - other_hi, other_lo - hi)  # > 0: apart, informed's above or below the other's
    side = "above" if lo > other_hi else "below"
    return (f"{metric}: informed - {other.name} = {informed.mean[metric] - other.mean[metric]:+.3f} "
            f"(intervals {f'apart by {gap:.3f}, informed {side}' if gap > 0 else 'OVERLAP'})")


def main(argv=None) -> None:
    ap = cli.Parser(prog="eval/strategic.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="soc-strategic", help="a preset or a scenario .yaml")
    ap.add_argument("--episodes", type=cli.parse_positive_int, default=4000,
                    help="held-out episodes per lead (rounded up to a multiple of --search-episodes)")
    ap.add_argument("--search-episodes", type=cli.parse_positive_int, default=1000,
                    help="episodes per fixed directive when searching for the best one")
    ap.add_argument("--seed", type=cli.parse_seed, default=0)
    args = ap.parse_args(argv)
    for name in ("episodes", "search_episodes"):
        if getattr(args, name) < 2:
            ap.error(f"--{name.replace('_', '-')} must be at least 2 (an interval needs two episodes)")

    import jax
    import jaxsoc.env as soc
    from jaxsoc.analysis import leads as compare
    from jaxsoc.env import leads

    from jaxsoc import engine

    try:
        env, params = soc.make(args.scenario)
        leads.check_scenario(params)
    except ValueError as e:
        ap.error(str(e))
    # Each program call rolls ROWS_PER_CALL rows of --search-episodes envs at once (the held-out
    # ones in chunks of as many).
    too_many = engine.episodes_problem(env, params, args.search_episodes, compare.ROWS_PER_CALL,
                                       "--search-episodes", copies_of="rows")
    if too_many:
        ap.error(too_many)
    start = time.time()
    rows = compare.compare_leads(env, params, args.episodes, args.search_episodes, jax.random.key(args.seed))
    held_out = -(-args.episodes // args.search_episodes) * args.search_episodes
    print(f"# {params.name}: {held_out} held-out episodes per lead, best fixed directive "
          f"searched over {params.num_directives} on {args.search_episodes} episodes each "
          f"({time.time() - start:.0f} s)\n")
    print(compare.to_markdown(rows))
    fixed, informed, oracle, constant, soar = rows
    for m in ("return", "csr"):
        for other in (fixed, constant, soar):
            print(margin_line(m, informed, other))
        print(f"{m}: oracle - informed = {oracle.mean[m] - informed.mean[m]:+.3f}")


if __name__ == "__main__":
    main()
