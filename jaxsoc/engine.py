"""The training engine: runs a resolved config's `Trainer` in compiled chunks, over seeds and devices.

    from jaxsoc import config, engine
    result = engine.run(config.resolve(flags={"algo": "rule-soar", "num_envs": 256}))

What `run` does, in order (every check comes before any training work or file write):
  1. builds the env (`jaxsoc.env.make(scenario, **env)`) and the trainer (`jaxsoc.algos`);
  2. prepares `runs/<name>/` (refusing to overwrite without `overwrite=True`) or, on resume,
     checks the saved config and the newest checkpoint against this one;
  3. vmaps `init`/`update` over seeds: seed i uses `PRNGKey(seed + i)`, so `num_seeds=N` gives
     the same numbers as N one-seed runs with seeds seed..seed+N-1. The state is
     `[num_seeds, ...]` on every leaf;
  4. compiles `chunk(state) = lax.scan(update, state, length=run.chunk_updates)` once (plus one
     shorter chunk for a remainder), with the state donated, and between chunks, on the host:
     appends per-update, per-seed lines to `metrics.jsonl`, evaluates every `eval.every_chunks`
     chunks (into `eval.jsonl`), checkpoints every `run.checkpoint_every` updates (at the next
     chunk end) and at the end, and updates a tqdm bar (env steps/s over all seeds, return, CSR).

Devices: `devices=D` lays the state over a 1-D `jax.sharding.Mesh` of D local devices with
`NamedSharding`s: the seed axis when `num_seeds % D == 0`, else the env axis of the leaves that
`Trainer.env_axes` names (others replicated). The compiled program is the same maths; XLA adds
the cross-device reductions, so results equal a one-device run up to float summation order.

Several hosts (not tested here): start every host with `jax.distributed.initialize()` (before
anything else touches JAX), use the same config on all, and build the mesh over `jax.devices()`
instead of `jax.local_devices()`; orbax checkpoints are multi-host aware (every host calls
save/restore); logs should then be written by process 0 only, and metrics gathered with
`jax.experimental.multihost_utils.process_allgather`. This module does the one-host case.

Resume (`resume=<run dir>`): the saved checkpoint must come from the same algorithm and the same
training-relevant config (`jaxsoc.config.training_hash`); the full state (params, optimiser,
env states, RNG keys, buffers) is restored and the same compiled chunks continue, so an
interrupted-then-resumed run equals an uninterrupted one bit for bit (with the same
`run.chunk_updates`). Log lines written after the checkpoint are dropped.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import jaxsoc
from jaxsoc import algos, config as config_lib, run_log
from jaxsoc.checkpoints import CheckpointError, Checkpoints
from jaxsoc.config import ConfigError
from jaxsoc.evaluation import make_evaluator

MESH_AXIS = "devices"
# fold_in constant that separates the evaluation key stream from the training one.
_EVAL_STREAM = 0x5EED_E7A1


@dataclasses.dataclass
class RunResult:
    """What `run` returns.

    Attributes:
      run_dir: the run folder.
      state: the final train state, `[num_seeds, ...]` on every leaf.
      updates: updates done in total (equal to `trainer.num_updates` unless stopped early).
      config: the resolved config the run used.
      trainer: the `Trainer`.
    """

    run_dir: Path
    state: Any
    updates: int
    config: dict
    trainer: Any


# ----------------------------------------------------------------------------- seeds
def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """`[num_seeds, 2]` uint32 keys: seed i is `PRNGKey(seed + i)`."""
    return jax.vmap(jax.random.PRNGKey)(jnp.arange(seed, seed + num_seeds, dtype=jnp.uint32))


def eval_keys(seed: int, num_seeds: int) -> jax.Array:
    """`[num_seeds, 2]` keys for held-out evaluation episodes, a stream the trainer never draws
    from (fixed per seed, so successive evaluations compare policies on the same episodes)."""
    return jax.vmap(lambda k: jax.random.fold_in(k, _EVAL_STREAM))(seed_keys(seed, num_seeds))


# ----------------------------------------------------------------------------- sharding
def make_mesh(devices: int) -> Mesh:
    """A 1-D mesh over the first `devices` local devices; ConfigError if there are fewer."""
    local = jax.local_devices()
    if devices > len(local):
        raise ConfigError(
            f"devices={devices} but only {len(local)} local device(s) are visible "
            f"({', '.join(str(d) for d in local)})"
        )
    return Mesh(np.array(local[:devices]), (MESH_AXIS,))


def state_shardings(abstract_state: Any, trainer, mesh: Mesh, num_seeds: int) -> tuple[Any, str]:
    """`NamedSharding`s for a `[num_seeds, ...]` state, and what is sharded ("seeds"/"envs"/"none").

    Seeds are split over devices when they divide evenly (no communication at all); otherwise the
    env axis of the leaves named by `trainer.env_axes`, the rest replicated.
    """
    devices = mesh.devices.size
    if devices > 1 and num_seeds % devices and trainer.env_axes is None:
        raise ConfigError(
            f"algorithm {trainer.name or 'this one'!r} does not declare Trainer.env_axes, so it can use "
            f"{devices} devices only with num_seeds a multiple of {devices} (got {num_seeds})"
        )
    replicated = NamedSharding(mesh, PartitionSpec())
    if devices == 1:
        return jax.tree.map(lambda _: replicated, abstract_state), "none"
    if num_seeds % devices == 0:
        by_seed = NamedSharding(mesh, PartitionSpec(MESH_AXIS))
        return jax.tree.map(lambda _: by_seed, abstract_state), "seeds"
    one_seed = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), abstract_state)
    axes = trainer.env_axes(one_seed)
    is_axis = lambda x: x is None or isinstance(x, int)  # noqa: E731

    def shard(path, leaf, axis):
        if axis is None:
            return replicated
        dim = axis + 1  # after the seed axis
        if leaf.ndim <= dim or leaf.shape[dim] % devices:
            raise ConfigError(
                f"state leaf {jax.tree_util.keystr(path)} of shape {leaf.shape}: env axis {axis} "
                f"cannot be split over {devices} devices"
            )
        return NamedSharding(mesh, PartitionSpec(*([None] * dim), MESH_AXIS))

    def subtree(axis, sub):
        return jax.tree_util.tree_map_with_path(lambda p, leaf: shard(p, leaf, axis), sub)

    try:
        shardings = jax.tree.map(subtree, axes, abstract_state, is_leaf=is_axis)
    except ValueError as e:
        raise ConfigError(f"Trainer.env_axes of {trainer.name!r} does not fit its state: {e}") from None
    return shardings, "envs"


# ----------------------------------------------------------------------------- program
@dataclasses.dataclass
class Program:
    """The compiled pieces of a run, all over `[num_seeds, ...]` states laid out by `shardings`."""

    init: Callable[[jax.Array], Any]
    chunk: Callable[[int], Callable[[Any], tuple[Any, dict]]]
    evaluate: Callable[[Any, jax.Array], dict] | None
    abstract_state: Any
    shardings: Any
    layout: str


def build_program(trainer, cfg: dict, mesh: Mesh, env, env_params) -> Program:
    """vmaps the trainer over seeds and jits init, chunks and evaluation with the state's layout."""
    num_seeds = cfg["num_seeds"]
    keys = seed_keys(cfg["seed"], num_seeds)
    vinit = jax.vmap(trainer.init)
    vupdate = jax.vmap(trainer.update)
    abstract = jax.eval_shape(vinit, keys)
    shardings, layout = state_shardings(abstract, trainer, mesh, num_seeds)
    abstract = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )
    replicated = NamedSharding(mesh, PartitionSpec())
    init = jax.jit(vinit, out_shardings=shardings)

    chunks: dict[int, Callable] = {}

    def chunk(length: int):
        if length not in chunks:

            def run_chunk(state):
                return jax.lax.scan(lambda s, _: vupdate(s), state, None, length=length)

            chunks[length] = jax.jit(
                run_chunk,
                in_shardings=(shardings,),
                out_shardings=(shardings, replicated),
                donate_argnums=0,
            )
        return chunks[length]

    evaluate = None
    if cfg["eval"]["every_chunks"] > 0:
        rollout = make_evaluator(
            env, env_params, trainer.act, cfg["eval"]["episodes"], cfg["eval"]["greedy"]
        )
        evaluate = jax.jit(
            jax.vmap(lambda state, key: rollout(trainer.policy_params(state), key)),
            in_shardings=(shardings, replicated),
            out_shardings=replicated,
        )
    return Program(init, chunk, evaluate, abstract, shardings, layout)


# ----------------------------------------------------------------------------- run folder
def _looks_like_run(path: Path) -> bool:
    names = {p.name for p in path.iterdir()}
    return not names or bool(names & {"config.yaml", "metrics.jsonl", "checkpoints"})


def _prepare_new_dir(run_dir: Path, overwrite: bool) -> None:
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        if not overwrite:
            raise ConfigError(
                f"run folder {run_dir} already exists: pass --overwrite to replace it, "
                f"or --resume {run_dir} to continue it"
            )
        if not run_dir.is_dir() or not _looks_like_run(run_dir):
            raise ConfigError(f"{run_dir} is not a run folder; refusing to delete it")


def _open_checkpoint(
    run_dir: Path, cfg: dict, update: int | None = None, doing: str = "resume"
) -> tuple[Checkpoints, int, dict]:
    """Opens checkpoint `update` (default: the newest) of a run folder; ConfigError or
    CheckpointError unless it exists and was written by `cfg`'s algorithm and training config."""
    if not run_dir.is_dir():
        raise ConfigError(f"cannot {doing}: run folder {run_dir} does not exist")
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(f"cannot {doing}: {run_dir} has no config.yaml (not a run folder?)")
    if not (run_dir / "checkpoints").is_dir():
        raise CheckpointError(f"cannot {doing}: {run_dir} has no checkpoints")
    ckpts = Checkpoints(run_dir / "checkpoints", keep=cfg["run"]["keep_checkpoints"], create=False)
    try:
        steps = ckpts.steps()
        if not steps:
            raise CheckpointError(f"cannot {doing}: {run_dir}/checkpoints holds no complete checkpoint")
        if update is None:
            update = max(steps)
        elif update not in steps:
            raise CheckpointError(f"cannot {doing}: no checkpoint at update {update} (have {sorted(steps)})")
        meta = ckpts.read_meta(update)
        if meta.get("algo") != cfg["algo"]:
            raise CheckpointError(
                f"cannot {doing}: {run_dir} was trained with algorithm {meta.get('algo')!r}, "
                f"not {cfg['algo']!r}"
            )
        if meta.get("config_hash") != config_lib.training_hash(cfg):
            saved = config_lib.load_yaml(saved_path)
            try:
                diff = "; ".join(config_lib.training_diff(saved, cfg)[:5])
            except (ValueError, KeyError):  # a saved config this version cannot read
                diff = ""
            raise CheckpointError(
                f"cannot {doing}: {run_dir} was trained with a different config"
                + (f" ({diff})" if diff else " (its config.yaml was edited?)")
            )
        if meta.get("jaxsoc_version") != jaxsoc.__version__:
            warnings.warn(
                f"resuming a checkpoint written by jaxsoc {meta.get('jaxsoc_version')} "
                f"with jaxsoc {jaxsoc.__version__}"
            )
    except BaseException:
        ckpts.close()
        raise
    return ckpts, update, meta


# ----------------------------------------------------------------------------- run
def checkpoint_meta(cfg: dict, update: int, steps_per_update: int, wall: float) -> dict:
    """The JSON saved with checkpoint `update` of a run of `cfg` (see `jaxsoc.checkpoints`): what
    `resume` and `load` check a checkpoint against (algorithm, scenario, training config, version)."""
    return {
        "algo": cfg["algo"],
        "scenario": cfg["scenario"],
        "config_hash": config_lib.training_hash(cfg),
        "jaxsoc_version": jaxsoc.__version__,
        "update": update,
        "env_steps": update * steps_per_update,
        "num_seeds": cfg["num_seeds"],
        "wall_time": wall,
    }


def _records(metrics: dict, first_update: int, cfg: dict, steps_per_update: int, wall: float):
    """One JSON-safe record per (update, seed) of a chunk's `[length, num_seeds]` metrics."""
    length = next(iter(metrics.values())).shape[0]
    for i in range(length):
        update = first_update + i + 1
        for s in range(cfg["num_seeds"]):
            yield {
                "update": update,
                "seed": cfg["seed"] + s,
                "env_steps": update * steps_per_update,
                "time": round(wall, 3),
                "metrics": {k: run_log.json_safe(v[i, s]) for k, v in metrics.items()},
            }


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def run(
    cfg: dict,
    *,
    resume: str | os.PathLike | None = None,
    overwrite: bool = False,
    make_env: Callable | None = None,
    on_chunk: Callable[[int, Any], None] | None = None,
) -> RunResult:
    """Trains `cfg` (a config from `jaxsoc.config.resolve`); see the module docstring.

    Args:
      cfg: the resolved config.
      resume: a run folder to continue from its newest checkpoint.
      overwrite: replace an existing run folder (never needed with `resume`).
      make_env: `(scenario, **overrides) -> (env, env_params)`; default `jaxsoc.env.make`.
      on_chunk: called as `on_chunk(updates_done, state)` after each chunk's host work
        (after its checkpoint); raising there stops the run like an interrupt.

    Returns:
      A `RunResult` with the final state.
    """
    # A custom `make_env` knows its own scenarios (and refuses unknown ones itself).
    cfg = config_lib.validate(copy.deepcopy(cfg), scenarios=[cfg["scenario"]] if make_env else None)
    if resume is not None:
        run_dir = Path(resume)
        cfg["run"]["dir"], cfg["run"]["name"] = str(run_dir.parent), run_dir.name
        ckpts, start, meta = _open_checkpoint(run_dir, cfg)
    else:
        if cfg["run"]["name"] is None:
            raise ConfigError("run.name is not set (use jaxsoc.config.resolve)")
        run_dir = Path(cfg["run"]["dir"]) / cfg["run"]["name"]
        _prepare_new_dir(run_dir, overwrite)
        ckpts, start, meta = None, 0, {}

    try:
        trainer, program, writer_class = _build(cfg, make_env, start)
        # All checks passed: only now touch the run folder.
        if resume is not None:
            state = ckpts.restore(start, program.abstract_state)
            for name in ("metrics.jsonl", "eval.jsonl"):
                run_log.truncate_jsonl(run_dir / name, start)
        else:
            if run_dir.exists():
                shutil.rmtree(run_dir) if run_dir.is_dir() else run_dir.unlink()
            run_dir.mkdir(parents=True)
            config_lib.save(cfg, run_dir / "config.yaml")
            ckpts = Checkpoints(run_dir / "checkpoints", keep=cfg["run"]["keep_checkpoints"])
            state = program.init(seed_keys(cfg["seed"], cfg["num_seeds"]))
    except BaseException:
        if ckpts is not None:
            ckpts.close()  # stop orbax's background threads
        raise
    writer = writer_class(str(run_dir / "tensorboard")) if writer_class is not None else None

    return _drive(cfg, run_dir, trainer, program, ckpts, writer, state, start, meta, on_chunk)


def load(
    run_dir: str | os.PathLike,
    update: int | None = None,
    *,
    devices: int = 1,
    make_env: Callable | None = None,
) -> RunResult:
    """A saved run's config, trainer and train state at checkpoint `update` (default: newest).

    For evaluation and analysis, e.g. seed 0's policy:

        loaded = engine.load("runs/myrun")
        params = jax.tree.map(lambda x: x[0], loaded.trainer.policy_params(loaded.state))
        ... evaluation.evaluate(env, env_params, loaded.trainer.act, params, key, 256)

    The state is laid out for `devices` local devices (orbax reshards on restore), whatever the
    run was trained on.
    """
    run_dir = Path(run_dir)
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(f"cannot load: {run_dir} has no config.yaml (not a run folder?)")
    saved = config_lib.load_yaml(saved_path)
    cfg = config_lib.resolve(
        flags={"devices": devices}, saved=saved, scenarios=[saved.get("scenario")] if make_env else None
    )
    ckpts, update, _ = _open_checkpoint(run_dir, cfg, update, doing="load")
    try:
        trainer, program, _ = _build(cfg, make_env, update)
        state = ckpts.restore(update, program.abstract_state)
    finally:
        ckpts.close()
    return RunResult(run_dir, state, update, cfg, trainer)


def _build(cfg: dict, make_env: Callable | None, start: int):
    """The env, trainer and compiled program of `cfg`; ConfigError for what cannot run."""
    mesh = make_mesh(cfg["devices"])
    if make_env is None:
        import jaxsoc.env as soc

        make_env = soc.make
    try:
        env, env_params = make_env(cfg["scenario"], **cfg["env"])
    except (ValueError, TypeError) as e:
        raise ConfigError(f"env {cfg['scenario']!r}: {e}") from None
    trainer = algos.make_train(cfg, env, env_params)
    if trainer.num_updates < 1:
        raise ConfigError(
            f"total_steps={cfg['total_steps']} is less than one update "
            f"({trainer.env_steps_per_update} env steps)"
        )
    if start > trainer.num_updates:
        raise CheckpointError(f"checkpoint at update {start} is past this run's {trainer.num_updates}")
    program = build_program(trainer, cfg, mesh, env, env_params)
    writer_class = run_log.tensorboard_writer_class(cfg["run"]["tensorboard"])
    if writer_class is None and cfg["run"]["tensorboard"] is True:
        raise ConfigError("run.tensorboard is true but neither tensorboardX nor torch is installed")
    return trainer, program, writer_class


def _drive(cfg, run_dir, trainer, program, ckpts, writer, state, start, meta, on_chunk) -> RunResult:
    """The host loop over compiled chunks (logging, evaluation, checkpoints, progress)."""
    from tqdm.auto import tqdm

    steps_per_update = trainer.env_steps_per_update
    num_updates = trainer.num_updates
    chunk_updates = cfg["run"]["chunk_updates"]
    every_ckpt = cfg["run"]["checkpoint_every"]
    every_eval = cfg["eval"]["every_chunks"]
    keys_eval = eval_keys(cfg["seed"], cfg["num_seeds"])
    wall_offset = float(meta.get("wall_time", 0.0))
    t0 = time.perf_counter()
    update = start
    bar = tqdm(
        total=num_updates * steps_per_update,
        initial=start * steps_per_update,
        unit="step",
        unit_scale=True,
        desc=cfg["run"]["name"] + (
            f" [{program.layout} over {cfg['devices']} devices]" if cfg["devices"] > 1 else ""
        ),
        disable=not cfg["run"]["progress"],
        dynamic_ncols=True,
    )

    try:
        while update < num_updates:
            length = min(chunk_updates, num_updates - update)
            t_chunk = time.perf_counter()
            state, metrics = program.chunk(length)(state)
            metrics = jax.device_get(metrics)  # waits for the chunk
            chunk_seconds = time.perf_counter() - t_chunk
            previous, update = update, update + length
            wall = wall_offset + time.perf_counter() - t0
            run_log.append_jsonl(
                run_dir / "metrics.jsonl", _records(metrics, previous, cfg, steps_per_update, wall)
            )
            if writer is not None:
                for name, values in metrics.items():
                    writer.add_scalar(f"train/{name}", _nanmean(values[-1]), update * steps_per_update)

            chunks_done = -(-update // chunk_updates)
            if program.evaluate is not None and (chunks_done % every_eval == 0 or update == num_updates):
                results = jax.device_get(program.evaluate(state, keys_eval))
                _log_eval(run_dir, results, update, cfg, steps_per_update, wall, writer)

            if update == num_updates or (every_ckpt and update // every_ckpt > previous // every_ckpt):
                ckpts.save(update, state, checkpoint_meta(cfg, update, steps_per_update, wall))

            sps = length * steps_per_update * cfg["num_seeds"] / max(chunk_seconds, 1e-9)
            postfix = {"sps": f"{sps:,.0f}"}
            for name in ("return", "csr"):
                if name in metrics:
                    postfix[name] = f"{_nanmean(metrics[name][-1]):.3g}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(length * steps_per_update)
            if on_chunk is not None:
                on_chunk(update, state)
    finally:
        bar.close()
        ckpts.wait()
        ckpts.close()
        if writer is not None:
            writer.close()
    return RunResult(run_dir, state, update, cfg, trainer)


def _log_eval(run_dir, results, update, cfg, steps_per_update, wall, writer) -> None:
    """Writes per-seed means of an evaluation's `[num_seeds, episodes]` results to eval.jsonl."""
    completed = np.asarray(results.pop("completed"))
    records = []
    for s in range(cfg["num_seeds"]):
        records.append(
            {
                "update": update,
                "seed": cfg["seed"] + s,
                "env_steps": update * steps_per_update,
                "time": round(wall, 3),
                "episodes": int(completed[s].sum()),
                "metrics": {k: run_log.json_safe(_nanmean(v[s])) for k, v in results.items()},
            }
        )
    run_log.append_jsonl(run_dir / "eval.jsonl", records)
    if writer is not None:
        for name, values in results.items():
            writer.add_scalar(f"eval/{name}", _nanmean(values), update * steps_per_update)
