"""Does the HMARL explainer explain? Its attention against the ground truth on held-out episodes.

    python eval/explain.py runs/<hmarl run>                 # 512 held-out episodes per seed
    python eval/explain.py runs/a runs/b --episodes 1024 --examples 6

For every seed of each run: the mean attention weight a segment gets when it is the directive's
focus, attacked (by the loud / the quiet campaign), or clean, against uniform 1/S, and how often
the top-attention segment is attacked against chance (jaxsoc/analysis/explain.py). Prints a
markdown table (one row per seed, then the mean over seeds) and writes
<run>/explain_attention.{png,pdf}: a few decisions of seed 0, attention beside the ground truth.
The held-out episodes are those of eval/evaluate.py (the same key stream).
"""
from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="HMARL run folders (discrete directives: soc-v2, soc-strategic)")
    ap.add_argument("--episodes", type=int, default=512, help="held-out episodes (parallel envs) per seed")
    ap.add_argument("--examples", type=int, default=4, help="decisions drawn beside the ground truth")
    args = ap.parse_args()
    if args.episodes < 1 or args.examples < 1:
        ap.error("--episodes and --examples must be positive")
    for run in args.runs:
        if not Path(run).is_dir():
            ap.error(f"{run}: no such run folder")

    import jax
    import numpy as np

    import jaxsoc.env as soc
    from jaxsoc import algos, engine
    from jaxsoc.analysis import explain
    from jaxsoc.analysis import figures as figs
    from jaxsoc.analysis import protocols

    loaded_runs = []
    for run in args.runs:  # every check before any work
        try:
            loaded = engine.load(run, policy_only=True)  # params only: not the replay buffers
        except (FileNotFoundError, ValueError) as e:
            ap.error(f"{run}: {e}")
        module = algos.family_module(loaded.config["algo"])
        if not hasattr(module, "attention_weights"):
            ap.error(f"{run}: algorithm {loaded.config['algo']!r} has no attention explainer")
        env, env_params = soc.make(loaded.config["scenario"], **loaded.config["env"])
        if not env_params.fix_d6_directive:
            ap.error(f"{run}: {env_params.name!r} has no discrete directive, so a focus is not a segment")
        loaded_runs.append((run, loaded, module, env, env_params))

    rows = {}
    for run, loaded, module, env, env_params in loaded_runs:
        config = loaded.config
        params = jax.vmap(loaded.trainer.policy_params)(loaded.state)
        num_seeds = int(jax.tree.leaves(params)[0].shape[0])
        per_seed = []
        for i in range(num_seeds):
            seed_params = jax.tree.map(lambda x: x[i], params)
            records = explain.decision_records(
                env, env_params, loaded.trainer.act, seed_params,
                lambda pp, obs: module.attention_weights(pp, obs, config, env_params)[0],
                protocols.heldout_key(config["seed"] + i), args.episodes)
            stats = explain.attention_statistics(records)
            rows[f"{Path(run).name} seed {config['seed'] + i}"] = stats
            per_seed.append(stats)
            if i == 0:
                examples = explain.example_decisions(records, args.examples)
                names = [f"campaign {c} (stealth {s:.2f})" for c, s in enumerate(records["stealth"][0, 0])]
                fig, _ = figs.attention_with_truth(examples, env_params.segment_names, names,
                                                   title=f"{Path(run).name}, seed {config['seed']}: explainer "
                                                   "attention beside the ground truth")
                written = figs.save(fig, Path(run) / "explain_attention")
        rows[f"{Path(run).name} mean over {num_seeds} seeds"] = {
            k: float(np.nanmean([s[k] for s in per_seed])) for k in per_seed[0]}
        print(f"# {run}: {args.episodes} held-out episodes per seed; figure: {', '.join(map(str, written))}")
    print()
    print(explain.to_markdown(rows))


if __name__ == "__main__":
    main()
