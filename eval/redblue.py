#!/usr/bin/env python
"""Red vs blue evidence on soc-v2-redblue (docs/redblue.md): exploitability and campaigns.

    python eval/redblue.py                                  # 5 seeds, the budgets below
    python eval/redblue.py --seeds 2 --blue-steps 2e5 --red-steps 1e5 --hosts-per-segment 8
    python eval/redblue.py --blue-run runs/<a redblue run>   # attack that run's SOC team instead

1. Blue (the SOC team, PPO with the world critic: MAPPO) is trained only against the scripted
   attacker (red advancing every step, which is the scripted campaign exactly). With --blue-run
   DIR no blue is trained: the "blue" rows are the SOC team of that finished run folder (a
   `redblue` run's blue team or a scripted SOC policy run, on soc-v2-redblue with this run's env
   overrides; its first seed's newest checkpoint, greedy: `redblue.blue_run`), the same team for
   every seed.
2. A red best response is trained by PPO against that blue, frozen; another against the scripted
   Rule-SOAR team.
3. Every pairing is evaluated on the same held-out episodes (greedy actions, each env's first
   episode): the SOC team's return, exfiltration, containment, hosts compromised, and the campaign's
   timeline (steps spent in each phase, first step in each, red's action mix).
Exploitability of blue = its return against the scripted attacker minus its return against the
best response (how much an adaptive attacker takes away). All seeds run in one vmapped program per
stage. Prints markdown tables and writes them, with the raw numbers, to --out (JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxsoc.env as soc  # noqa: E402
from jaxsoc import cli, config as C, run_log  # noqa: E402
from jaxsoc.algos import redblue  # noqa: E402
from jaxsoc.env.attacker import red_action_names  # noqa: E402
from jaxsoc.env.params import NUM_PHASES, PHASE_NAMES  # noqa: E402
from jaxsoc.analysis.intervals import finite_mean, mean_half_width  # noqa: E402


def parse(argv=None):
    """(parser, args): the command line, refused (one line, `ap.error`) before any JAX work."""
    ap = cli.Parser(prog="eval/redblue.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=cli.parse_positive_int, default=5)
    ap.add_argument("--seed", type=cli.parse_seed, default=0)
    ap.add_argument("--num-envs", type=cli.parse_positive_int, default=64)
    ap.add_argument("--blue-steps", type=cli.parse_env_steps, default=None,
                    help="env steps per seed for blue vs scripted (500,000; not with --blue-run)")
    ap.add_argument("--red-steps", type=cli.parse_env_steps, default=300_000,
                    help="env steps per seed for each red best response")
    ap.add_argument("--episodes", type=cli.parse_positive_int, default=256,
                    help="held-out episodes per seed and pairing")
    ap.add_argument("--hosts-per-segment", type=cli.parse_positive_int, default=None)
    ap.add_argument("--quiet-anywhere", action="store_true",
                    help="red_quiet_anywhere=True: red may go quiet without a foothold (never attack)")
    ap.add_argument("--blue-run", default=None,
                    help="a finished run folder whose SOC team is the blue attacked (no blue is trained)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="redblue.KEY=VALUE")
    ap.add_argument("--out", default="runs/redblue-evidence.json")
    ap.add_argument("--force", action="store_true", help="overwrite an existing --out")
    args = ap.parse_args(argv)
    if args.blue_run is not None and args.blue_steps is not None:
        ap.error("--blue-steps trains a blue; with --blue-run none is trained")
    if args.blue_steps is None:
        args.blue_steps = 500_000
    problem = cli.file_problem(args.out)
    if problem is None and os.path.exists(args.out) and not args.force:
        problem = f"{args.out} exists; --force overwrites it"
    if problem is not None:
        ap.error(problem)
    return ap, args


def main(argv=None):
    ap, args = parse(argv)
    env_over = {} if args.hosts_per_segment is None else {"hosts_per_segment": args.hosts_per_segment}
    if args.quiet_anywhere:
        env_over["red_quiet_anywhere"] = True
    try:
        redblue.check_tool_sets(args.sets)
        cfg = C.resolve(flags={"algo": "redblue", "scenario": "soc-v2-redblue", "num_envs": args.num_envs,
                               "total_steps": int(args.blue_steps)}, sets=args.sets)
        redblue.check_budgets(cfg["num_envs"] * cfg["redblue"]["rollout"],
                                   {"--red-steps": args.red_steps, **({} if args.blue_run else {"--blue-steps": args.blue_steps})})
        if args.blue_run is not None:
            redblue.check_blue_run(args.blue_run, "soc-v2-redblue", env_over)
        env, p = soc.make("soc-v2-redblue", **env_over)
    except (ValueError, C.ConfigError) as e:
        ap.error(str(e))
    seeds = jax.random.split(jax.random.key(args.seed), args.seeds)
    k_blue, k_red, k_red_s, k_eval = [jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(seeds) for i in range(4)]
    blue_policy = redblue.side_policy(env, cfg, "blue")
    red_policy = redblue.side_policy(env, cfg, "red")
    learned_blue = redblue.learned(env, p, blue_policy, greedy=True)
    learned_red = redblue.learned(env, p, red_policy, greedy=True)
    rule_soar = redblue.scripted_blue("rule-soar")
    timings = {}

    def timed(name, fn, *xs):
        t0 = time.time()
        out = jax.block_until_ready(fn(*xs))
        timings[name] = round(time.time() - t0, 1)
        print(f"[{name}] {timings[name]} s (compile + run)", flush=True)
        return out

    # 1. Blue against the scripted attacker only, or the SOC team of a run folder. Blue is an
    #    Opponent either way: (params, key, obs, state, env params) -> SOC actions; its params
    #    are per seed ([S, ...]) for the trained team, None for the run's (one team, no params).
    if args.blue_run is None:
        blue_tr = redblue.side_trainer(cfg, env, p, "blue", redblue.scripted_red)
        blue_state, blue_m = timed("train blue vs scripted", jax.jit(jax.vmap(blue_tr.train)), k_blue)
        blue_params = blue_state.params["actor"]
        blue_act = learned_blue
        opp_blue = redblue.learned(env, p, blue_policy)  # red trains against blue's sampled policy
        blue_name = "MAPPO blue (trained vs scripted)"
    else:
        blue_m = {"return": np.zeros((args.seeds, 0))}  # nothing trained here
        blue_params = jnp.zeros((args.seeds,))  # a per-seed placeholder the run's team ignores
        blue_act = opp_blue = redblue.blue_run(args.blue_run)  # greedy, as the run is evaluated
        blue_name = f"SOC team of {os.path.basename(os.path.normpath(args.blue_run))}"

    # 2. Red best responses (PPO) to the frozen blue and to Rule-SOAR.
    red_cfg = dict(cfg, total_steps=int(args.red_steps))

    def br_to_blue(key, bp):
        return redblue.side_trainer(red_cfg, env, p, "red", opp_blue, bp).train(key)

    red_state, red_m = timed("train red BR vs blue", jax.jit(jax.vmap(br_to_blue)), k_red, blue_params)
    red_s_tr = redblue.side_trainer(red_cfg, env, p, "red", rule_soar)
    red_s_state, _ = timed("train red BR vs rule-soar", jax.jit(jax.vmap(red_s_tr.train)), k_red_s)

    # 3. Evaluate every pairing on the same held-out episodes.
    scripted_red = lambda k, o, s: {"red": jnp.int32(1)}  # noqa: E731  RED_ADVANCE

    def pair(blue_kind, red_kind):
        def run(key, bp, rp):
            bf = ((lambda k, o, s: blue_act(bp, k, o, s, p)) if blue_kind == "blue"
                  else (lambda k, o, s: rule_soar(None, k, o, s, p)))
            rf = scripted_red if red_kind == "scripted" else (lambda k, o, s: learned_red(rp, k, o, s, p))
            return redblue.play(env, p, bf, rf, key, args.episodes)
        return jax.jit(jax.vmap(run))

    rp_blue, rp_soar = red_state.params["actor"], red_s_state.params["actor"]
    res = {
        (blue_name, "scripted campaign"): timed("eval blue/scripted", pair("blue", "scripted"), k_eval, blue_params, rp_blue),
        (blue_name, "red BR to it"): timed("eval blue/BR", pair("blue", "br"), k_eval, blue_params, rp_blue),
        ("Rule-SOAR", "scripted campaign"): timed("eval soar/scripted", pair("soar", "scripted"), k_eval, blue_params, rp_soar),
        ("Rule-SOAR", "red BR to it"): timed("eval soar/BR", pair("soar", "br"), k_eval, blue_params, rp_soar),
    }
    summary = {}
    for (b, r), out in res.items():
        per_seed = {k: np.asarray(v).mean(axis=1) for k, v in out.items() if k != "first_step"}
        fs = np.asarray(out["first_step"]).astype(float)  # [seeds, N, 5], -1: never
        per_seed["reached"] = (fs >= 0).mean(axis=1)
        per_seed["first_step"] = finite_mean(np.where(fs >= 0, fs, np.nan), axis=1)  # [seeds, 5]
        summary[f"{b} | {r}"] = {k: v.tolist() for k, v in per_seed.items()}

    def ms(x):
        x = np.asarray(x, float)
        return f"{np.nanmean(x):+.2f} ± {np.nanstd(x):.2f}" if x.ndim == 1 else ""

    lines = ["Cells: mean ± sd over seeds (ddof 0).", "",
             "| SOC team | attacker | return | exfiltrated | CSR | hosts compromised |", "|---|---|---:|---:|---:|---:|"]
    for key, v in summary.items():
        b, r = key.split(" | ")
        lines.append(f"| {b} | {r} | {ms(v['return'])} | {np.mean(v['exfiltrated']):.3f} | {np.mean(v['csr']):.3f} | "
                     f"{np.mean(v['hosts_compromised']):.2f} |")
    drop = {}
    for b in (blue_name, "Rule-SOAR"):
        d = np.asarray(summary[f"{b} | scripted campaign"]["return"]) - np.asarray(summary[f"{b} | red BR to it"]["return"])
        drop[b] = d.tolist()
        half = mean_half_width(d)
        lines.append(f"\nExploitability ({b}): return vs scripted - return vs its red BR = "
                     f"{d.mean():+.2f} (sd {d.std():.2f}, ddof 0) over {len(d)} seeds, 95 % t interval "
                     f"[{d.mean() - half:+.2f}, {d.mean() + half:+.2f}] "
                     f"(per seed {np.round(d, 2).tolist()})")
    names = red_action_names(p)
    lines += ["", "| SOC team | attacker | " + " | ".join(f"steps in {n}" for n in PHASE_NAMES)
              + " | " + " | ".join(f"first step in {n} (reached)" for n in PHASE_NAMES[1:]) + " | red actions |",
              "|---|---|" + "---:|" * (2 * NUM_PHASES - 1) + "---|"]
    for key, v in summary.items():
        b, r = key.split(" | ")
        steps = np.mean(v["phase_steps"], axis=0)
        first = finite_mean(v["first_step"], axis=0)
        reached = np.mean(np.asarray(v["reached"]), axis=0)
        acts = np.mean(v["actions"], axis=0)
        mix = ", ".join(f"{n} {a / acts.sum():.0%}" for n, a in zip(names, acts) if a / acts.sum() >= 0.005)
        lines.append(f"| {b} | {r} | " + " | ".join(f"{x:.1f}" for x in steps) + " | "
                     + " | ".join(f"{first[k]:.1f} ({reached[k]:.0%})" for k in range(1, NUM_PHASES)) + f" | {mix} |")
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(run_log.json_safe({"args": vars(args), "timings_s": timings, "summary": summary,
                                     "exploitability": drop, "table": text,
                                     "blue_train_return": np.asarray(blue_m["return"]).tolist(),
                                     "red_br_train_reward": np.asarray(red_m["reward"]).tolist()}),
                  f, allow_nan=False)  # a phase never reached has no first step: null, not NaN


if __name__ == "__main__":
    sys.exit(cli.guarded(main, "eval/redblue.py"))
