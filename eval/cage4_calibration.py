"""Calibration of the CAGE-4-like scenario: scripted blue, per-episode statistics.

    python eval/cage4_calibration.py                       # 1,000 episodes x 500 steps per policy
    python eval/cage4_calibration.py --episodes 200 --policies monitor random restore

For each policy (jaxsoc/env/cage4/baselines.py) it plays the same `--episodes` full episodes
(one key each from `--seed`, batches of `--batch` envs, one `lax.scan` over the episode each) and
prints mean ± std over episodes of the team return, the mean number of hosts in defended zones
where red holds a session per phase, Impact attempts and successes, true and false alerts (event
bits raised by red / only by green), green failures, red's sessions by exploit and by phishing,
Restores and invalid actions; the markdown table of docs/cage4.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from jaxsoc import cli  # noqa: E402
from jaxsoc.env import cage4  # noqa: E402
from jaxsoc.env.cage4.baselines import BASELINES  # noqa: E402

COLUMNS = ("return", "red_hosts_phase1", "red_hosts_phase2", "red_hosts_phase3", "impact_attempts", "impacts",
           "true_alerts", "false_alerts", "local_fails", "access_fails", "exploits", "phishing", "restores", "invalid")


def play(env, params, policy, keys):
    """`{metric: [batch]}` at the end of one full episode under `policy` per key of `keys` `[batch]`."""
    pol = BASELINES[policy]

    def one(key):
        k0, k1 = jax.random.split(key)
        obs, s = env.reset(k0, params)

        def body(c, k):
            obs, s = c
            ka, ks = jax.random.split(k)
            a = pol(ka, obs, env.get_avail_actions(s, params))
            obs, s, _, _, _ = env.step_env(ks, s, a, params)
            return (obs, s), None

        (_, s), _ = jax.lax.scan(body, (obs, s), jax.random.split(k1, params.max_steps))
        return cage4.episode_metrics(s, params)

    return jax.jit(jax.vmap(one))(keys)


def main(argv=None):
    ap = cli.Parser(prog="eval/cage4_calibration.py", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=cli.parse_positive_int, default=1000)
    ap.add_argument("--batch", type=cli.parse_positive_int, default=500)
    ap.add_argument("--policies", nargs="+", default=list(BASELINES), choices=list(BASELINES))
    ap.add_argument("--seed", type=cli.parse_seed, default=0)
    args = ap.parse_args(argv)
    twice = sorted({p for p in args.policies if args.policies.count(p) > 1})
    if twice:  # one table column per policy: a second run of one would overwrite the first
        ap.error(f"--policies names {', '.join(twice)} twice")
    env, params = cage4.make()
    # One key per episode, the same for every policy and whatever --batch cuts them into: episode
    # j of a policy starts from the same network and draws as episode j of another (paired), and
    # one policy run alone gives its column of the full table.
    keys = jax.random.split(jax.random.key(args.seed), args.episodes)
    rows = {}
    for policy in args.policies:
        t0 = time.perf_counter()
        out = []
        for b in range(0, args.episodes, args.batch):
            out.append(jax.tree.map(np.asarray, play(env, params, policy, keys[b:b + args.batch])))
        rows[policy] = {k: np.concatenate([o[k] for o in out]) for k in COLUMNS}
        print(f"{policy}: {args.episodes} episodes in {time.perf_counter() - t0:.0f} s", flush=True)
    print("\n| metric (per episode, mean ± std) | " + " | ".join(rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for k in COLUMNS:
        print(f"| {k} | " + " | ".join(f"{v[k].mean():,.1f} ± {v[k].std():,.1f}" for v in rows.values()) + " |")


if __name__ == "__main__":
    main()
