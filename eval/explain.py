"""Does the HMARL explainer explain? Its attention against the ground truth on held-out episodes.

    python eval/explain.py runs/<hmarl run>                 # 512 held-out episodes per seed
    python eval/explain.py runs/a runs/b --episodes 1024 --examples 6

For every seed of each run: the mean attention weight a segment gets when it is the directive's
focus, attacked (by the loud / the quiet campaign), or clean, against uniform 1/S, and how often
the top-attention segment is attacked against chance (jaxsoc/analysis/explain.py). Prints a
markdown table (one row per seed, then the mean over seeds) and writes
<run>/explain_attention.{png,pdf}: the first --examples decisions of seed 0 with a segment under
attack (its first held-out episode's, then the next episode's), attention beside the ground truth.
The held-out episodes are those of eval/evaluate.py --episodes N (protocols.heldout_batch_key).
With --out DIR the figure goes to DIR/<run name>_explain_attention.{png,pdf} instead; an existing
figure is not overwritten unless --force.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxsoc import cli  # noqa: E402  (light: no JAX import)

FORMATS = ("png", "pdf")  # what jaxsoc.analysis.figures.save writes by default


def build_parser():
    ap = cli.Parser(prog="eval/explain.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="HMARL run folders (discrete directives: soc-v2, soc-strategic)")
    ap.add_argument("--episodes", type=cli.parse_positive_int, default=512,
                    help="held-out episodes (parallel envs) per seed (512)")
    ap.add_argument("--examples", type=cli.parse_positive_int, default=4, help="decisions drawn beside the ground truth (4)")
    ap.add_argument("--out", metavar="DIR", help="write the figures here as <run name>_explain_attention.* "
                    "(default: explain_attention.* in each run folder)")
    ap.add_argument("--force", action="store_true", help="overwrite an existing explain_attention figure")
    return ap


def figure_stem(run: str, out: str | None) -> Path:
    """Where a run's figure goes, without its suffix (module docstring)."""
    if out is None:
        return Path(run) / "explain_attention"
    return Path(out) / f"{Path(run).resolve().name}_explain_attention"


def row_labels(runs: list[str]) -> dict[str, str]:
    """`{run: label}` for the table's rows: a run's folder name, or the path as given where two
    folders share a name (the second's rows replaced the first's)."""
    names = [Path(run).name for run in runs]
    return {run: name if names.count(name) == 1 else run for run, name in zip(runs, names)}


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    for run in args.runs:
        if not Path(run).is_dir():
            ap.error(f"{run}: no such run folder")
    stems = [figure_stem(run, args.out) for run in args.runs]
    if len(set(stems)) < len(stems):
        ap.error("two runs would write the same figure: " + ("give each run once" if args.out is None else
                 "--out names each figure by its run folder's name, and two runs share one"))
    for folder in sorted({stem.parent for stem in stems}):
        problem = cli.folder_problem(folder)
        if problem:
            ap.error(problem)
    existing = [str(stem.with_suffix(f".{fmt}")) for stem in stems for fmt in FORMATS
                if stem.with_suffix(f".{fmt}").exists()]
    if existing and not args.force:
        ap.error(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''} "
                 "(--force overwrites, or choose another --out)")

    import jax

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
        env, env_params = engine.make_env_checked(loaded.config)  # a scenario file's stored contents
        if not env_params.fix_d6_directive:
            ap.error(f"{run}: {env_params.name!r} has no discrete directive, so a focus is not a segment")
        try:  # traced, not run: what the explainer refuses (no coordinator, attention off) before any work
            seed0 = jax.tree.map(lambda x: x[0], jax.vmap(loaded.trainer.policy_params)(loaded.state))
            obs = jax.eval_shape(lambda k: jax.vmap(env.reset, (0, None))(k, env_params)[0],
                                 jax.random.split(jax.random.key(0), 1))
            jax.eval_shape(lambda pp, o: module.attention_weights(pp, o, loaded.config, env_params)[0], seed0, obs)
        except ValueError as e:
            ap.error(f"{run}: {e}")
        too_many = engine.episodes_problem(env, env_params, args.episodes)  # one seed's episodes at once
        if too_many:
            ap.error(f"{run}: {too_many}")
        loaded_runs.append((run, loaded, module, env, env_params))

    labels = row_labels(args.runs)
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
                protocols.heldout_batch_key(config["seed"] + i), args.episodes)
            stats = explain.attention_statistics(records)
            rows[f"{labels[run]} seed {config['seed'] + i}"] = stats
            per_seed.append(stats)
            if i == 0:
                examples = explain.example_decisions(records, args.examples)
                written = []
                if examples:  # else no decision of seed 0 had a segment under attack
                    for ex in examples:  # each decision's episode has campaigns of its own stealth
                        ex["campaign_names"] = [f"campaign {c} (stealth {s:.2f})" for c, s in enumerate(ex["stealth"])]
                    names = [f"campaign {c}" for c in range(len(examples[0]["stealth"]))]
                    fig, _ = figs.attention_with_truth(examples, env_params.segment_names, names,
                                                       title=f"{Path(run).name}, seed {config['seed']}: "
                                                       "explainer attention beside the ground truth")
                    written = figs.save(fig, figure_stem(run, args.out), FORMATS)
        rows[f"{labels[run]} mean over {num_seeds} seed{'s' if num_seeds != 1 else ''}"] = explain.mean_statistics(per_seed)
        drawn = (f"figure ({len(examples)} decisions): {', '.join(map(str, written))}" if written
                 else f"no figure (no decision of seed {config['seed']} with a segment under attack)")
        print(f"# {run}: {args.episodes} held-out episodes per seed; {drawn}")
    print()
    print(explain.to_markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
