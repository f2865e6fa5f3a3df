#!/usr/bin/env python
"""Train (or run a scripted baseline) on the SOC env: a thin CLI over `jaxsoc.engine.run`.

    python train/run.py --algo rule-soar --scenario soc-v2 --num-envs 4096 --total-steps 5e6
    python train/run.py --config configs/mappo.yaml --num-seeds 8 --set ppo.lr=1e-4 --devices 2
    python train/run.py --resume runs/myrun          # continue from the newest checkpoint
    python train/run.py --algo mappo --num-seeds 8 --name big --coordinator node0:9876 \
        --num-processes 2 --process-id 0             # one of a group (jaxsoc.distributed)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Importing the engine pulls in JAX; keep `--help` and flag errors instant by importing it later
# (`jaxsoc.cli` is light).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxsoc import cli  # noqa: E402

EPILOG = """\
config layers (later wins): configs/base.yaml < the algorithm family's defaults
  < the resumed run's config.yaml < --config FILE (default configs/<algo>.yaml if present)
  < the flags above < --set KEY=VALUE. configs/base.yaml lists every base key; each learner
  family's keys are the DEFAULTS of its module in jaxsoc/algos/; --print-config shows them all.

outputs: runs/<name>/config.yaml (resolved config), metrics.jsonl (one JSON line per update
  and seed), eval.jsonl (if eval.every_chunks > 0), checkpoints/<update>/, tensorboard/ (one
  point per update, if tensorboardX or torch is installed and run.tensorboard is not false; the
  [tensorboard] extra installs tensorboardX), a Weights & Biases run with --set run.wandb=PROJECT.
  The folder appears when the first chunk of updates is done: a start that fails leaves nothing.

terminal: the budget (updates x env steps per update, total_steps rounded down to whole updates),
  a status line while the programs compile, and a progress bar that moves with every update
  (env-steps/s over all seeds, time left); --set run.progress=false turns them off.

several processes (hosts; docs/engine.md "Several processes"): every process runs the same
  command with --coordinator HOST:PORT --num-processes N --process-id I (or --coordinator auto
  under SLURM / Open MPI; or JAXSOC_COORDINATOR / JAXSOC_NUM_PROCESSES / JAXSOC_PROCESS_ID) and
  --name (or --resume) on a shared filesystem; --devices defaults to every device of the group.

examples:
  python train/run.py --algo rule-soar --scenario soc-v2 --num-envs 4096 --total-steps 5e6
  python train/run.py --algo random --num-seeds 4 --set run.chunk_updates=20 --set eval.every_chunks=5
  python train/run.py --resume runs/myrun
  python train/run.py --resume runs/myrun --from-update 400   # the newest checkpoint is damaged
  python train/run.py --algo ippo --set ppo.lr=1e-4 --print-config
"""


def build_parser() -> argparse.ArgumentParser:
    p = cli.Parser(
        prog="train/run.py",
        description="Train a team of SOC defenders (or run a scripted baseline) on many parallel "
        "simulated networks, in compiled chunks, with logs, evaluation and resumable checkpoints.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--algo", help="algorithm: random, constant, no-defender, rule-soar, or a "
                   "registered learner (see jaxsoc/algos/__init__.py)")
    p.add_argument("--scenario", help="env preset, e.g. hmarl-soc-v1 or soc-v2")
    p.add_argument("--num-envs", type=cli.parse_int, metavar="N", help="parallel envs per seed")
    p.add_argument("--num-seeds", type=cli.parse_int, metavar="N",
                   help="independent seeds trained together in one compiled program")
    p.add_argument("--total-steps", type=cli.parse_int, metavar="N",
                   help="env steps per seed; scientific notation is fine (5e6)")
    p.add_argument("--seed", type=cli.parse_int, metavar="S", help="first seed (seeds S..S+num_seeds-1)")
    p.add_argument("--devices", type=cli.parse_int, metavar="D",
                   help="local devices to shard over (seeds if num_seeds divides by D, else envs); "
                   "with --coordinator, every device of the group (the default)")
    p.add_argument("--name", help="run folder name under run.dir (default <algo>-<scenario>-<YYYYMMDD>-<HHMMSS>)")
    p.add_argument("--config", metavar="FILE", help="YAML config composed over configs/base.yaml")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set ppo.lr=1e-4 --set env.max_steps=100 "
                   "(values are YAML scalars; repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its newest checkpoint (its config.yaml "
                   "is the base; another algorithm or training-relevant change is refused, and so are "
                   "--name and run.dir: the run keeps its folder)")
    p.add_argument("--from-update", type=cli.parse_int, metavar="N",
                   help="with --resume: continue from checkpoint N instead of the newest (e.g. when "
                   "the newest is damaged); the newer checkpoints are moved to "
                   "RUN_DIR/checkpoints-set-aside/, never deleted")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing run folder instead of refusing")
    p.add_argument("--coordinator", metavar="HOST:PORT",
                   help="join a multi-process run whose process 0 listens at HOST:PORT ('auto': SLURM / "
                   "Open MPI detection); default $JAXSOC_COORDINATOR, else one process")
    p.add_argument("--num-processes", type=cli.parse_int, metavar="N",
                   help="with --coordinator: processes in the group (default $JAXSOC_NUM_PROCESSES)")
    p.add_argument("--process-id", type=cli.parse_int, metavar="I",
                   help="with --coordinator: this process's rank, 0..N-1 (default $JAXSOC_PROCESS_ID)")
    p.add_argument("--join-timeout", type=cli.parse_int, metavar="S",
                   help="with --coordinator: seconds to wait for the whole group (default 120)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (YAML) and exit: no training, nothing written (the "
                   "env settings, the learner's and the budget are checked by building the env's "
                   "params and the trainer; the training program is not compiled)")
    return p


def file_stamp(path: Path):
    """(inode, modification time) of `path`, or None: whether a run wrote a folder's config.yaml."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def interrupted_message(run_dir: Path, earlier=None, group: str = "") -> str:
    """What to tell a user who stopped a run with Ctrl-C: how to continue it, if anything was
    written (a new run's folder appears when its first chunk is done). `earlier`: the
    `file_stamp` of the folder's config.yaml before a new run started (`--overwrite`), so an
    earlier run the new one had not yet replaced is not offered for resuming. `group`: a
    multi-process run's note on how its processes are started again (the resume is the group's)."""
    if earlier is not None and file_stamp(run_dir / "config.yaml") == earlier:
        return (f"interrupted before the first update was logged: nothing was written, and the earlier "
                f"run in {run_dir} is as it was")
    if not (run_dir / "config.yaml").is_file():
        return "interrupted before the first update was logged: nothing was written"
    from jaxsoc.checkpoints import Checkpoints

    ckpts = Checkpoints(run_dir / "checkpoints", create=False) if (run_dir / "checkpoints").is_dir() else None
    try:
        latest = ckpts.latest() if ckpts is not None else None
    finally:
        if ckpts is not None:
            ckpts.close()
    if latest is None:
        return (f"interrupted before the first checkpoint; start it over with its config: "
                f"python train/run.py --resume {run_dir}{group}")
    return f"interrupted; continue from update {latest} with: python train/run.py --resume {run_dir}{group}"


def refuse_resume_changes(resume: str, saved: dict, name: str | None, config_file: str | None,
                          algo: str | None, sets: list[str]) -> None:
    """ConfigError for what `--resume` cannot apply, before the layers are merged: another
    folder (--name, or run.name / run.dir from --set or from --config FILE when they name
    another folder: the run keeps its own) or another algorithm (it would be refused by the
    checkpoint; said here first, before a config section of the other algorithm's family is
    refused with a message about sections).

    Only the user's layers are looked at: the saved config.yaml holds the run.name and run.dir
    the run was started with, which differ from `resume` when the folder was moved or copied."""
    from jaxsoc import config as config_lib
    from jaxsoc.config import ConfigError

    folder = Path(resume).resolve()
    if name is not None:
        raise ConfigError("--name does not apply with --resume (the run keeps its folder)")
    sets_layer = config_lib.parse_sets(sets)
    run_sets = sets_layer.get("run")
    for key in ("name", "dir"):
        if isinstance(run_sets, dict) and key in run_sets:
            raise ConfigError(f"--set run.{key} does not apply with --resume (the run keeps its folder, {resume})")
    file_layer = config_lib.load_yaml(config_file) if config_file is not None else {}
    run_file = file_layer.get("run")
    if isinstance(run_file, dict):
        for key, here in (("name", folder.name), ("dir", folder.parent)):
            value = run_file.get(key)
            if value is not None and (str(value) != here if key == "name" else Path(str(value)).resolve() != here):
                raise ConfigError(f"{config_file} sets run.{key}: {value}, which does not apply with --resume "
                                  f"(the run keeps its folder, {resume})")
    wanted = None
    for layer in (file_layer, {"algo": algo}, sets_layer):
        if layer.get("algo") is not None:
            wanted = layer["algo"]
    if wanted is not None and wanted != saved.get("algo"):
        raise ConfigError(f"cannot resume: {resume} was trained with algorithm {saved.get('algo')!r}, not {wanted!r}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    from jaxsoc import distributed
    from jaxsoc.config import ConfigError

    try:
        launch = distributed.launch_from(args.coordinator, args.num_processes, args.process_id, args.join_timeout)
        if launch is None and args.join_timeout is not None:
            raise ConfigError("--join-timeout applies to a multi-process run: give --coordinator")
        if launch is not None and args.print_config:
            raise ConfigError("--print-config prints the config and exits: --coordinator would be ignored")
        if launch is not None and args.name is None and args.resume is None:
            raise ConfigError("a multi-process run needs --name (or --resume): every process must "
                              "write to the same run folder")
        if launch is not None:
            distributed.initialize(launch, parser.prog)  # before anything else starts JAX
            if args.devices is None:
                import jax

                args.devices = jax.device_count()
    except ConfigError as e:
        cli.print_error(parser.prog, str(e))
        return 2

    from jaxsoc import algos, config as config_lib, engine, run_log

    flags = {
        "algo": args.algo,
        "scenario": args.scenario,
        "num_envs": args.num_envs,
        "num_seeds": args.num_seeds,
        "total_steps": args.total_steps,
        "seed": args.seed,
        "devices": args.devices,
    }
    if args.name is not None:
        flags["run"] = {"name": args.name}
    cfg, earlier = None, None
    try:
        if args.resume is not None and args.overwrite:
            raise ConfigError("--resume continues a run folder; --overwrite would replace it: pick one")
        if args.from_update is not None and args.resume is None:
            raise ConfigError("--from-update N continues a run from its checkpoint N: give --resume RUN_DIR")
        saved = None
        if args.resume is not None:
            saved_path = Path(args.resume) / "config.yaml"
            if not saved_path.is_file():
                raise ConfigError(f"cannot resume: {args.resume} is not a run folder (no config.yaml)")
            saved = config_lib.load_yaml(saved_path)
            refuse_resume_changes(args.resume, saved, args.name, args.config, args.algo, args.sets)
            # The folder it continues in (the saved run.dir/run.name are where it started).
            folder = Path(args.resume) if Path(args.resume).name else Path(args.resume).resolve()  # "--resume ."
            flags["run"] = {"dir": str(folder.parent), "name": folder.name}
        cfg = config_lib.resolve(args.config, flags, args.sets, saved=saved)
        if launch is not None:  # every process the same run (another seed trained other keys)
            distributed.agree("config", config_lib.dump(cfg) + f"num_processes: {launch.num_processes}\n",
                              launch.timeout_s)
        if args.print_config:
            # What a run refuses before compiling: a resume's changed training settings, more
            # devices than there are, the env settings (params only), what the learner refuses
            # when its trainer is built (e.g. meta.tasks naming a field the env lacks), and the
            # budget (less than one update, past the int32 step counters). Building a trainer
            # builds no training program (0.0-0.13 s measured per learner).
            if args.resume is not None:
                engine.check_resume(Path(args.resume), cfg, args.from_update)
            run_log.scalar_sinks(cfg)  # the live logs' libraries (run.wandb without wandb), opening nothing
            engine.make_mesh(cfg["devices"])
            env, env_params = engine.make_env_checked(cfg, new_run=args.resume is None)
            try:
                trainer = algos.make_train(cfg, env, env_params)
            except ValueError as e:  # a family's plain ValueError is a refusal too: one line, exit 2
                raise ConfigError(str(e)) from None
            engine.check_budget(cfg, trainer)
            engine.check_device_layout(trainer, cfg["devices"], cfg["num_seeds"])
            print(config_lib.dump(cfg), end="")
            return 0
        # A new run replaces an --overwrite'n folder only when its first chunk is done.
        earlier = None if args.resume else file_stamp(Path(cfg["run"]["dir"]) / cfg["run"]["name"] / "config.yaml")
        result = engine.run(cfg, resume=args.resume, from_update=args.from_update, overwrite=args.overwrite)
    except ConfigError as e:
        if launch is not None and cfg is None:  # refused before the check: the others stop too
            distributed.agree("config", None, 0)
        cli.print_error(parser.prog, str(e))
        return 2
    except KeyboardInterrupt:
        if cfg is None:
            print("\ninterrupted", file=sys.stderr)
        else:
            run_dir = Path(args.resume or Path(cfg["run"]["dir"]) / cfg["run"]["name"])
            group = ("" if launch is None else " on every process, with the group's flags (--coordinator, "
                     "--num-processes, --process-id) as before")
            print("\n" + interrupted_message(run_dir, earlier, group), file=sys.stderr)
        return 130
    steps = result.updates * result.trainer.env_steps_per_update
    if not distributed.is_primary():
        return 0
    print(f"done: {result.run_dir} ({result.updates} update{'s' * (result.updates != 1)}, {steps:,} env steps per seed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
