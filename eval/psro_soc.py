#!/usr/bin/env python
"""PSRO on the SOC game (soc-v2-redblue) and the PSRO blue mixture's exploitability (docs/redblue.md (b)).

    python eval/psro_soc.py                         # 5 seeds, 3 iterations, the budgets below
    python eval/psro_soc.py --seeds 2 --iterations 2 --blue-steps 4096 --red-steps 4096 \\
        --final-red-steps 8192 --episodes 8 --eval-episodes 16 --hosts-per-segment 8 --num-envs 32

1. PSRO (`jaxsoc.game.psro.run_psro_batch` on `jaxsoc.game.socgame.SOCGame`, all seeds in one
   vmapped program per stage): populations of blue teams (MAPPO actors) and red attackers (PPO),
   each starting from one freshly initialised network; every pairing evaluated on --episodes
   held-out greedy episodes (payoff = the SOC team's mean return); the meta-game solved exactly
   (`metagame.solve_zero_sum`); PPO best responses against the opponent's meta-strategy mixture (a
   member drawn per env at each episode reset), warm-started from the side's previous response
   (--no-warm-start: fresh). Exploitability per iteration: the fresh responses' gain over the
   meta-game value (blue's + red's).
2. Evidence (b): a red best response trained from scratch (--final-red-steps, as eval/redblue.py's
   red) against the final blue meta-strategy mixture; the mixture (a member drawn per episode)
   evaluated on --eval-episodes held-out greedy episodes against the scripted campaign and
   against that red. Exploitability = return vs scripted - return vs the red BR, paired by seed
   (eval/redblue.py's measure), and the red BR's gain over the meta-game value.
3. Evidence (a), the baseline arm (--no-baseline: skipped), in the same run and on the same
   seeds: a blue team (MAPPO, from scratch) trained only against the scripted campaign (red
   advancing every step) for the PSRO blue chain's total env steps (--iterations x --blue-steps,
   one straight run), then a red best response from scratch against it by the same program and
   budget as 2. (its key stream too: the same red program over a one-member population), both
   evaluated on 2.'s held-out episodes. Exploitability of each blue as above, and the paired
   difference of the two (PSRO minus script-trained) per seed.
Prints the per-iteration table and the evidence table; writes them with the raw numbers to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

# Compile-bound on a shared 2-core CPU: the older fusion emitters and LLVM level 1 compile these
# programs faster at nearly the same run speed (as tests/conftest.py). A user's own flags are kept.
for flag in ("--xla_cpu_use_fusion_emitters=false", "--xla_backend_optimization_level=1"):
    if flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxsoc.env as soc  # noqa: E402
from jaxsoc import cli, config as C, run_log  # noqa: E402
from jaxsoc.algos import redblue  # noqa: E402
from jaxsoc.env.attacker import RED_ADVANCE  # noqa: E402
from jaxsoc.game import psro, socgame  # noqa: E402
from jaxsoc.analysis.intervals import mean_half_width  # noqa: E402


def parse(argv=None):
    ap = cli.Parser(prog="eval/psro_soc.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=cli.parse_positive_int, default=5)
    ap.add_argument("--seed", type=cli.parse_seed, default=0)
    ap.add_argument("--iterations", type=cli.parse_positive_int, default=3, help="PSRO iterations (responses per side)")
    ap.add_argument("--num-envs", type=cli.parse_positive_int, default=64)
    ap.add_argument("--blue-steps", type=cli.parse_env_steps, default=150_000,
                    help="env steps per seed of each blue response")
    ap.add_argument("--red-steps", type=cli.parse_env_steps, default=100_000,
                    help="env steps per seed of each red response")
    ap.add_argument("--final-red-steps", type=cli.parse_env_steps, default=300_000,
                    help="env steps per seed of the red BR to the final blue mixture; a multiple of --red-steps "
                         "(the red program runs that many times, each warm-started from the last)")
    ap.add_argument("--episodes", type=cli.parse_positive_int, default=64,
                    help="held-out episodes per seed and pairing (meta-game)")
    ap.add_argument("--eval-episodes", type=cli.parse_positive_int, default=256,
                    help="held-out episodes per seed, evidence (b)")
    ap.add_argument("--hosts-per-segment", type=cli.parse_positive_int, default=None)
    ap.add_argument("--no-warm-start", action="store_true", help="every response starts from fresh networks")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip evidence (a): the blue trained only against the scripted campaign and its red BR")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="redblue.KEY=VALUE")
    ap.add_argument("--out", default="runs/psro-soc.json")
    ap.add_argument("--force", action="store_true", help="overwrite an existing --out")
    ap.add_argument("--compile-cache", default="runs/.xla_cache",
                    help="JAX's persistent compilation cache (a rerun skips the compiles); 'none' for none")
    args = ap.parse_args(argv)
    # The baseline's blue is one straight run of the PSRO blue chain's total steps (when it runs).
    if not args.no_baseline and args.iterations * args.blue_steps > cli.MAX_ENV_STEPS:
        ap.error(f"the baseline blue's --iterations x --blue-steps = {args.iterations * args.blue_steps:,} env steps "
                 f"is more than the {cli.MAX_ENV_STEPS:,} per seed the int32 step counters hold: lower them or pass --no-baseline")
    if args.final_red_steps % args.red_steps:
        ap.error(f"--final-red-steps ({args.final_red_steps}) must be a positive multiple of --red-steps "
                 f"({args.red_steps})")
    problem = cli.file_problem(args.out)
    if problem is None and os.path.exists(args.out) and not args.force:
        problem = f"{args.out} exists; --force overwrites it"
    if problem is None and args.compile_cache != "none":
        problem = cli.folder_problem(args.compile_cache)
    if problem is not None:
        ap.error(problem)
    return ap, args


def mixture_evaluation(env, p, game: socgame.SOCGame, episodes: int):
    """`jit(vmap over seeds)` of `(key, blue policies [cap, ...], blue meta [cap], red actor) ->
    play outputs [2, episodes]`: the blue mixture (a member per episode) against the scripted
    campaign (row 0) and the learned red (row 1), on the same episodes (one program for both)."""
    def run(key, blue_policies, blue_meta, red_actor):
        k_member, k_play = jax.random.split(key)
        _, blue_args = redblue.mixture_play_args(k_member, redblue.Mixture(blue_policies, blue_meta), episodes)

        def blue_fn(k, o, s, actor):
            return game.greedy["blue"](actor, k, o, s, p)

        def against(scripted):
            def red_fn(k, o, s):
                learned = game.greedy["red"](red_actor, k, o, s, p)["red"]
                return {"red": jnp.where(scripted, jnp.int32(RED_ADVANCE), learned)}
            return redblue.play(env, p, blue_fn, red_fn, k_play, episodes, blue_args=blue_args)

        return jax.vmap(against)(jnp.asarray([True, False]))

    return jax.jit(jax.vmap(run))


PSRO_ROW = "PSRO blue mixture"
BASELINE_ROW = "MAPPO blue trained vs the script only"
ATTACKERS = ("scripted campaign", "red BR to it")  # mixture_evaluation's rows 0 and 1
METRICS = ("return", "exfiltrated", "csr", "hosts_compromised")


def evidence_rows(arms: dict) -> dict:
    """Per arm (name -> `mixture_evaluation` outputs, each `[S, 2, episodes]`): per attacker the
    per-seed means of `METRICS` (lists [S]), and `exploitability` [S] = the mean return against
    the scripted campaign minus against the red BR, paired by seed; per attacker also
    `red_action_share` [S, A]: red's choices (`actions [S, 2, episodes, A]`, counted) as shares."""
    table = {}
    for arm, out in arms.items():
        means = {m: np.asarray(out[m], float).mean(axis=2) for m in METRICS}  # [S, 2]
        table[arm] = {name: {m: means[m][:, j].tolist() for m in METRICS} for j, name in enumerate(ATTACKERS)}
        # red's action shares per seed [S, A] (which campaign each red played; counts over alive steps)
        acts = np.asarray(out["actions"], float).sum(axis=2)  # [S, 2, A]
        shares = acts / np.maximum(acts.sum(axis=-1, keepdims=True), 1.0)
        for j, name in enumerate(ATTACKERS):
            table[arm][name]["red_action_share"] = shares[:, j].tolist()
        table[arm]["exploitability"] = (means["return"][:, 0] - means["return"][:, 1]).tolist()
    return table


def red_best_response(game: socgame.SOCGame, keys, blue_pop: psro.Population, blue_meta, repeats: int):
    """S red best responses from scratch to the blue mixtures (`blue_pop` leaves [S, capacity, ...],
    `blue_meta` [S, capacity]; keys [S]): the red program run `repeats` times, each warm-started
    from the last (call i's keys fold i into `keys`). Returns (params {actor, critic} leaves
    [S, ...], per call the mean reward per update, np [S, updates])."""
    params, rewards = None, []
    for i in range(repeats):
        k = jax.vmap(lambda x, i=i: jax.random.fold_in(x, i))(keys)
        params, m = game.best_response("red", k, blue_pop, blue_meta, start=params)
        rewards.append(np.asarray(m["reward"]))
    return jax.block_until_ready(params), rewards


def single_member(actors, capacity: int):
    """(population, meta [S, capacity]): one blue team per seed (`actors` leaves [S, ...]) as a
    population of that capacity, all weight on it, so the mixture's programs play it alone."""
    pop = jax.vmap(lambda a: psro.population(a, capacity))(actors)
    meta = jnp.zeros(pop.size.shape + (capacity,)).at[:, 0].set(1.0)
    return pop, meta


def main(argv=None):
    ap, args = parse(argv)
    env_over = {} if args.hosts_per_segment is None else {"hosts_per_segment": args.hosts_per_segment}
    try:
        redblue.check_tool_sets(args.sets)
        env, p = soc.make("soc-v2-redblue", **env_over)
        cfg = C.resolve(flags={"algo": "redblue", "scenario": "soc-v2-redblue", "num_envs": args.num_envs,
                               "total_steps": int(args.blue_steps)}, sets=args.sets)
        per_update = cfg["num_envs"] * cfg["redblue"]["rollout"]
        redblue.check_budgets(per_update, {"--blue-steps": args.blue_steps, "--red-steps": args.red_steps})
        # The baseline blue trains as many updates as the PSRO blue chain: each response's budget
        # is whole updates, so the chain's total is rounded per response, not over the sum.
        chain_steps = args.iterations * (args.blue_steps // per_update) * per_update
        game = socgame.SOCGame(cfg, env, p, blue_steps=args.blue_steps, red_steps=args.red_steps,
                               episodes=args.episodes, warm_start=not args.no_warm_start)
    except (ValueError, C.ConfigError) as e:
        ap.error(str(e))
    if args.compile_cache != "none":  # after the checks: a refused command changes nothing
        jax.config.update("jax_compilation_cache_dir", os.path.abspath(args.compile_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    start = time.time()
    seeds = jax.random.split(jax.random.key(args.seed), args.seeds)
    # k_base (evidence (a)'s blue) is a fifth stream, so the PSRO run's keys are those of a run without it.
    k_init, k_psro, k_br, k_eval, k_base = [jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(seeds) for i in range(5)]
    timings = {}

    def log(rec):
        t = rec["iteration"][0]
        timings[f"psro iteration {t}"] = round(rec["seconds"][0], 1)
        g = np.asarray(rec["br_gain"])
        print(f"[psro {t}] {rec['seconds'][0]:.0f} s; meta value {[round(x, 2) for x in rec['meta_value']]}; "
              f"blue gain {[round(x, 2) for x in rec['row_gain']]}; red gain {[round(x, 2) for x in rec['col_gain']]}; "
              f"exploitability {g.mean():+.2f} ± {g.std():.2f}", flush=True)

    # 1. PSRO.
    zs, trained = game.zero_sum()
    blue0, red0 = game.initial(k_init)
    result = psro.run_psro_batch(zs, blue0, red0, k_psro, iterations=args.iterations, log=log)
    timings["psro"] = round(time.time() - start, 1)
    print(f"[psro] {timings['psro']} s in all (compiles included)", flush=True)

    # 2. A red best response to the final blue mixture, from scratch (the red program, run
    #    final/red steps times, each warm-started from the last).
    t0 = time.time()
    blue_pop, blue_meta = result.row_population, result.row_meta
    repeats = int(args.final_red_steps / args.red_steps)
    params, red_metrics = red_best_response(game, k_br, blue_pop, blue_meta, repeats)
    timings["red BR to the blue mixture"] = round(time.time() - t0, 1)
    t0 = time.time()
    evaluate = mixture_evaluation(env, p, game, args.eval_episodes)
    out = evaluate(k_eval, blue_pop.policies, blue_meta, params["actor"])
    out = {k: np.asarray(v) for k, v in out.items()}  # [S, 2, episodes, ...]
    timings["evaluation"] = round(time.time() - t0, 1)

    # 3. Evidence (a) on the same seeds: blue trained only against the script, for the PSRO blue
    #    chain's total steps; then the same red BR program and evaluation as 2., the blue as a
    #    one-member population (the same shapes, so 2.'s compiled programs are reused).
    base = None
    if not args.no_baseline:
        t0 = time.time()
        blue_cfg = dict(cfg, total_steps=chain_steps)
        blue_tr = redblue.side_trainer(blue_cfg, env, p, "blue", redblue.scripted_red)
        blue_state, blue_m = jax.block_until_ready(jax.jit(jax.vmap(blue_tr.train))(k_base))
        timings["baseline: blue vs scripted"] = round(time.time() - t0, 1)
        t0 = time.time()
        one_pop, one_meta = single_member(blue_state.params["actor"], blue_meta.shape[1])
        base_params, base_red_metrics = red_best_response(game, k_br, one_pop, one_meta, repeats)
        timings["baseline: red BR to it"] = round(time.time() - t0, 1)
        t0 = time.time()
        base_out = evaluate(k_eval, one_pop.policies, one_meta, base_params["actor"])
        base = {"out": {k: np.asarray(v) for k, v in base_out.items()},
                "blue_train_return": np.asarray(blue_m["return"]), "red_reward": base_red_metrics}
        timings["baseline: evaluation"] = round(time.time() - t0, 1)
    timings["total"] = round(time.time() - start, 1)

    h = result.history
    # "a ± b": the mean over seeds ± their spread (numpy's std, ddof 0), not an interval; the
    # intervals are the "[low, high]" columns (jaxsoc.analysis.intervals).
    lines = ["Cells: mean ± sd over seeds (ddof 0); [low, high]: 95 % t interval of the mean.", "",
             "| iteration | population (each side) | meta-game value | blue BR gain | red BR gain | exploitability (sum) |",
             "|---:|---:|---:|---:|---:|---:|"]

    def ms(x):
        x = np.asarray(x, float)
        return f"{x.mean():+.2f} ± {x.std():.2f}"

    def ci(x):
        """The mean's two-sided 95 % Student t interval over seeds (sample std)."""
        x = np.asarray(x, float)
        half = mean_half_width(x)
        return f"[{x.mean() - half:+.2f}, {x.mean() + half:+.2f}]"

    for t in range(len(h["iteration"])):
        lines.append(f"| {t} | {int(h['row_size'][t][0])} | {ms(h['meta_value'][t])} | {ms(h['row_gain'][t])} | "
                     f"{ms(h['col_gain'][t])} | {ms(h['br_gain'][t])} |")
    final_value = np.einsum("sr,src,sc->s", np.asarray(result.row_meta), np.asarray(result.payoffs),
                            np.asarray(result.col_meta))
    arms = {PSRO_ROW: out}
    if base is not None:
        arms[BASELINE_ROW] = base["out"]
    evidence = evidence_rows(arms)
    rows = ["", "| SOC team | attacker | return | exfiltrated | CSR | hosts compromised |", "|---|---|---:|---:|---:|---:|"]
    for arm, ev in evidence.items():
        for name in ATTACKERS:
            e = ev[name]
            rows.append(f"| {arm} | {name} | {ms(e['return'])} | {np.mean(e['exfiltrated']):.3f} | "
                        f"{np.mean(e['csr']):.3f} | {np.mean(e['hosts_compromised']):.2f} |")
    rows += ["", f"| SOC team | exploitability: return vs scripted - vs its red BR ({args.seeds} seeds) | 95 % t interval | per seed |",
             "|---|---:|---:|---|"]
    for arm, ev in evidence.items():
        rows.append(f"| {arm} | {ms(ev['exploitability'])} | {ci(ev['exploitability'])} | "
                    f"{', '.join(f'{x:.2f}' for x in ev['exploitability'])} |")
    ret = np.asarray(out["return"]).mean(axis=2)  # [S, 2]
    drop = np.asarray(evidence[PSRO_ROW]["exploitability"])
    diff = None
    if base is not None:
        diff = drop - np.asarray(evidence[BASELINE_ROW]["exploitability"])
        rows.append(f"\nExploitability, PSRO minus script-trained (paired by seed): {ms(diff)}, 95 % t interval {ci(diff)} "
                    f"(per seed {[round(float(x), 2) for x in diff]})")
    gain = final_value - ret[:, 1]
    rows.append(f"Red BR's gain over the final meta-game value ({ms(final_value)}): {ms(gain)} "
                f"(per seed {[round(float(x), 2) for x in gain]})")
    meta = [[round(float(x), 2) for x in m] for m in np.asarray(blue_meta)]
    rows.append(f"Final blue meta-strategies (per seed, over members 0..{args.iterations}): {meta}")
    rows.append(f"Final red meta-strategies: {[[round(float(x), 2) for x in m] for m in np.asarray(result.col_meta)]}")
    rows.append("\n| stage | wall clock (s, compiles included) |\n|---|---:|")
    rows += [f"| {k} | {v} |" for k, v in timings.items()]
    text = "\n".join(lines + rows)
    print(text)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    record = {"args": vars(args), "timings_s": timings, "table": text,
              "history": {k: np.asarray(v).tolist() for k, v in h.items()},
              "payoffs": np.asarray(result.payoffs).tolist(), "blue_meta": np.asarray(blue_meta).tolist(),
              "red_meta": np.asarray(result.col_meta).tolist(), "final_value": final_value.tolist(),
              "mixture_return": ret.tolist(), "exploitability": drop.tolist(), "br_gain_over_value": gain.tolist(),
              "evidence": evidence,
              "responses_train_return": [{"side": t["side"], "call": t["call"],
                                          "return": np.asarray(t["metrics"]["return"]).tolist()} for t in trained],
              "final_red_reward": [r.tolist() for r in red_metrics]}
    if base is not None:
        record["baseline"] = {"blue_steps": chain_steps,
                              "blue_train_return": base["blue_train_return"].tolist(),
                              "final_red_reward": [r.tolist() for r in base["red_reward"]]}
        record["exploitability_difference"] = diff.tolist()
    with open(args.out, "w") as f:
        json.dump(run_log.json_safe(record), f, allow_nan=False)  # NaN (e.g. the SOC game's exact gap): null


if __name__ == "__main__":
    sys.exit(cli.guarded(main, "eval/psro_soc.py"))
