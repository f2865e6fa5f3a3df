"""The training engine: runs a resolved config's `Trainer` in compiled chunks, over seeds and devices.

    from jaxsoc import config, engine
    result = engine.run(config.resolve(flags={"algo": "rule-soar", "num_envs": 256}))

What `run` does, in order (every check comes before any training work or file write):
  1. checks the run folder: a new run's `runs/<name>/` must not exist (unless `overwrite=True`
     and it is a run) and its place must take new folders (a real write, undone: nothing is
     left, and the folder itself is made only after the first chunk); a resumed run's saved
     config must have this algorithm and training config, and its folder must be writable;
  2. builds the env (`jaxsoc.env.make(scenario, **env)`) and the trainer (`jaxsoc.algos`) and,
     on resume, reads the newest checkpoint after checking its metadata against this config;
  3. vmaps `init`/`update` over seeds: seed i uses `PRNGKey(seed + i)`, so `num_seeds=N` gives
     the same numbers as N one-seed runs with seeds seed..seed+N-1. The state is
     `[num_seeds, ...]` on every leaf;
  4. compiles one chunk program `chunk(state, n)`: `n` updates (`lax.while_loop`), `n` at most
     `run.chunk_updates`, so a shorter last chunk runs the same program; the state is donated.
     Between chunks, on the host:
     appends per-update, per-seed lines to `metrics.jsonl`, evaluates every `eval.every_chunks`
     chunks (into `eval.jsonl`), checkpoints every `run.checkpoint_every` updates (at the next
     chunk end) and at the end (with `run.final_checkpoint: policy` the last holds only the
     leaves the policy reads, `policy_part`), and updates a tqdm bar (env steps/s over all seeds,
     return, CSR).

Devices: `devices=D` lays the state over a 1-D `jax.sharding.Mesh` of D local devices with
`NamedSharding`s: the seed axis when `num_seeds % D == 0`, else the env axis of the leaves that
`Trainer.env_axes` names (others replicated). The compiled program is the same maths; XLA adds
the cross-device reductions, so results equal a one-device run up to float summation order.

Several processes (hosts; `jaxsoc.distributed`): after `distributed.initialize` every process
calls `run` with the same config; the mesh spans every process's devices (`devices` must be their
global count), each process computes its own shards, the per-update metrics and evaluations come
back replicated, process 0 alone writes the run folder, and every process saves and restores its
shards of each checkpoint (orbax), so a resumed group continues as one. Seeds sharded over
processes equal a one-device run bit for bit (tests/test_distributed.py).

Resume (`resume=<run dir>`): the saved checkpoint must come from the same algorithm and the same
training-relevant config (`jaxsoc.config.training_hash`); the full state (params, optimiser,
env states, RNG keys, buffers) is restored and the same compiled chunks continue, so an
interrupted-then-resumed run equals an uninterrupted one bit for bit (with the same
`run.chunk_updates`). Log lines written after the checkpoint are dropped.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import shutil
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import jaxsoc
from jaxsoc import algos, cli, config as config_lib, distributed, run_lock, run_log, xla
from jaxsoc.algos import offpolicy
from jaxsoc.analysis.intervals import finite_mean
from jaxsoc.argtypes import is_integer, is_switch
from jaxsoc.checkpoints import CheckpointError, Checkpoints, UnreadableCheckpoint, space_warning
from jaxsoc.config import ConfigError
from jaxsoc.evaluation import make_evaluator
from jaxsoc.memory import machine_bytes, tree_bytes
from jaxsoc.progress import Progress

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
    """A 1-D mesh over the first `devices` local devices; ConfigError if there are fewer. In a
    multi-process run, over every device of every process (`devices` must be their count)."""
    if jax.process_count() > 1:
        every = jax.devices()
        if devices != len(every):
            raise ConfigError(
                f"a run of {jax.process_count()} processes shards over all their {len(every)} devices: "
                f"devices must be {len(every)} (got {devices})"
            )
        return Mesh(np.array(every), (MESH_AXIS,))
    local = jax.local_devices()
    if devices > len(local):
        raise ConfigError(
            f"devices={devices} but only {len(local)} local device(s) are visible "
            f"({', '.join(str(d) for d in local)})"
        )
    return Mesh(np.array(local[:devices]), (MESH_AXIS,))


def check_device_layout(trainer, devices: int, num_seeds: int) -> None:
    """ConfigError when `devices` cannot share the run: seeds that do not divide over them need the
    trainer's env axes (`Trainer.env_axes`) to shard envs instead. `--print-config` asks it too."""
    if devices > 1 and num_seeds % devices and trainer.env_axes is None:
        raise ConfigError(
            f"algorithm {trainer.name or 'this one'!r} does not declare Trainer.env_axes, so it can use "
            f"{devices} devices only with num_seeds a multiple of {devices} (got {num_seeds})"
        )


def state_shardings(abstract_state: Any, trainer, mesh: Mesh, num_seeds: int) -> tuple[Any, str]:
    """`NamedSharding`s for a `[num_seeds, ...]` state, and what is sharded ("seeds"/"envs"/"none").

    Seeds are split over devices when they divide evenly (no communication at all); otherwise the
    env axis of the leaves named by `trainer.env_axes`, the rest replicated.
    """
    devices = mesh.devices.size
    check_device_layout(trainer, devices, num_seeds)
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
    chunk: Callable[[int], Callable[[Any, Any], tuple[Any, dict]]]
    evaluate: Callable[[Any, jax.Array], dict] | None
    abstract_state: Any
    shardings: Any
    layout: str
    # Bytes of one evaluation episode's env (its observations and state): the evaluation holds
    # `eval.episodes` of them per seed at once (0 without evaluation).
    eval_episode_bytes: int = 0


def build_program(trainer, cfg: dict, mesh: Mesh, env, env_params,
                  on_update: Callable[[], None] | None = None) -> Program:
    """vmaps the trainer over seeds and jits init, chunks and evaluation with the state's layout.

    `on_update`: a host function the chunks call after every update (`jax.debug.callback`, no
    operands, so it never changes the numbers), e.g. `Progress.tick`; None adds nothing."""
    num_seeds = cfg["num_seeds"]
    keys = jax.eval_shape(lambda: seed_keys(cfg["seed"], num_seeds))  # shapes only: nothing is allocated
    vinit = jax.vmap(trainer.init)
    # Jitted so that its trace is cached: the metrics' shapes (`eval_shape` below) and the chunk
    # program then trace the update once between them, not twice (~5 s for HMARL-SOC on this
    # CPU); inside the chunk's jit the inner one is inlined, so the compiled program is the same.
    vupdate = jax.jit(jax.vmap(trainer.update))
    abstract = jax.eval_shape(vinit, keys)
    shardings, layout = state_shardings(abstract, trainer, mesh, num_seeds)
    abstract = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )
    replicated = NamedSharding(mesh, PartitionSpec())
    init = xla.jit(vinit, out_shardings=shardings)

    chunks: dict[int, Callable] = {}

    def chunk(max_length: int):
        """`run_chunk(state, n) -> (state, metrics)`: `n` (an int32 scalar, 1..max_length) updates;
        metrics `[max_length, num_seeds, ...]`, of which the first `n` rows are the updates'.

        The update count is an argument, not a shape, so a run's shorter last chunk (updates
        left < `run.chunk_updates`) is the same program: compiling a second one cost ~25 s of a
        300-s quick-start run (docs/onpolicy.md). A while loop over the same update gives the
        same numbers as the `lax.scan` it replaces (tests/test_engine.py)."""
        if max_length not in chunks:
            # Traced here, not when the program is built: loading a run for evaluation never
            # builds a chunk, and tracing an update took ~10 s of HMARL-SOC's 40-s evaluation.
            abstract_metrics = jax.eval_shape(vupdate, abstract)[1]

            def body(carry):
                i, s, rows = carry
                s, metrics = vupdate(s)
                if on_update is not None:
                    jax.debug.callback(on_update)
                rows = jax.tree.map(lambda r, m: r.at[i].set(m), rows, metrics)
                return i + 1, s, rows

            def run_chunk(state, n):
                rows = jax.tree.map(lambda m: jnp.zeros((max_length, *m.shape), m.dtype), abstract_metrics)
                _, state, rows = jax.lax.while_loop(lambda c: c[0] < n, body, (jnp.int32(0), state, rows))
                return state, rows

            chunks[max_length] = xla.jit(
                run_chunk,
                in_shardings=(shardings, replicated),
                out_shardings=(shardings, replicated),
                donate_argnums=0,
            )
        return chunks[max_length]

    evaluate, episode_bytes = None, 0
    if cfg["eval"]["every_chunks"] > 0:
        # Traced, not run: ~0.04 s for soc-v2, so a huge eval.episodes is refused before compiling.
        episode_bytes = tree_bytes(jax.eval_shape(env.reset, jax.random.PRNGKey(0), env_params))
        world = trainer.policy_env_params

        def rollout(state, key):
            # The world the policy acts in, as every later evaluation plays it (the hybrid's
            # online detector is the run's own: `Trainer.policy_env_params`).
            params = trainer.policy_params(state)
            p = env_params if world is None else world(params, env_params)
            return make_evaluator(env, p, trainer.act, cfg["eval"]["episodes"], cfg["eval"]["greedy"])(params, key)

        evaluate = xla.jit(
            jax.vmap(rollout),
            in_shardings=(shardings, replicated),
            out_shardings=replicated,
        )
    return Program(init, chunk, evaluate, abstract, shardings, layout, episode_bytes)


def chunk_length(start: int, num_updates: int, chunk_updates: int) -> int:
    """The most updates one chunk of a run from update `start` runs: `run.chunk_updates`, or
    the updates left when fewer."""
    return min(chunk_updates, num_updates - start)


@dataclasses.dataclass
class Compiled:
    """A run's programs, compiled ahead of time: `chunk(state, n) -> (state, metrics)` for
    `n` <= `max_length` updates (`Program.chunk`; None when no update is left) and
    `evaluate(state, keys)` (None without evaluation)."""

    chunk: Callable
    evaluate: Callable | None

    def run_chunk(self, state, n: int):
        """`n` updates from `state`: the new state and, on the host (so this waits for the
        chunk), the metrics of those `n` updates, `[n, num_seeds, ...]`."""
        state, metrics = self.chunk(state, np.int32(n))
        return state, jax.tree.map(lambda m: m[:n], jax.device_get(metrics))


def compile_program(program: Program, cfg: dict, max_length: int) -> Compiled:
    """Compiles the chunk (and the evaluation) before the run touches its folder, so a size no
    program can hold fails first; ConfigError when a size overflows what the program counts or
    when it needs more memory than a device has (a state or an evaluation that cannot fit even
    spread over every device is refused before compiling: `_check_memory_bound`)."""
    _check_memory_bound(program, cfg)
    keys = jax.ShapeDtypeStruct((cfg["num_seeds"], 2), jnp.uint32)
    count = jax.ShapeDtypeStruct((), jnp.int32)
    try:
        # A resumed run with no update left (max_length 0) only evaluates.
        chunk = program.chunk(max_length).lower(program.abstract_state, count).compile() if max_length else None
        evaluate = (program.evaluate.lower(program.abstract_state, keys).compile()
                    if program.evaluate is not None else None)
    except OverflowError as e:
        raise ConfigError(
            f"a size of this run overflows what its program can count ({str(e).splitlines()[0][:160]}): "
            "lower num_envs, num_seeds or total_steps"
        ) from None
    check_memory(chunk, evaluate, cfg)
    return Compiled(chunk, evaluate)


def _device_memory():
    """One of this process's devices (another's cannot be asked) and the bytes it holds (CPU: the
    machine's RAM; None when it cannot say)."""
    device = jax.local_devices()[0]
    limit = (device.memory_stats() or {}).get("bytes_limit")
    if limit is None and device.platform == "cpu":
        limit = machine_bytes()
    return device, limit


def _too_big(what: str, need: int, device, limit: int, cfg: dict, about: str = "about") -> ConfigError:
    """The one-line refusal of a program (`what`: "train" or "eval") that needs `need` bytes on a
    device of `limit`, naming the sizes that decide it and so what to lower."""
    count = config_lib.format_count
    if what == "eval":
        return ConfigError(
            f"the evaluation needs {about} {_size(need)} on {device} (eval.episodes "
            f"{count(cfg['eval']['episodes'])} x {cfg['num_seeds']:,} seed(s)), which has {_size(limit)}: "
            "lower eval.episodes"
        )
    return ConfigError(
        f"this run needs {about} {_size(need)} on {device} ({count(cfg['num_envs'])} envs x "
        f"{cfg['num_seeds']:,} seed(s)), which has {_size(limit)}: lower num_envs or num_seeds"
    )


def _size(n: int) -> str:
    """Bytes for a message: 1,178.9 GiB, 3.8 MiB below a tenth of a GiB, 7.443e+294 GiB for a typo's."""
    if n < 2**30 // 10:
        return f"{n / 2**20:,.1f} MiB"
    return f"{n / 2**30:,.1f} GiB" if n < 2**30 * 10**12 else f"{n / 2**30:.4g} GiB"


def episodes_problem(env, env_params, episodes: int, copies: int = 1, flag: str = "--episodes",
                     copies_of: str = "seeds") -> str | None:
    """For a tool that rolls `episodes` x `copies` envs at once (an evaluation over seeds, the
    explainer, the leads' search, a sweep's points x seeds): a one-line refusal when their env
    states alone cannot fit in one device's memory (a bound from below, traced not run: a huge
    `flag` failed after the work, or aborted XLA), naming `flag` to lower; None when they may fit
    or the device cannot say."""
    device, limit = _device_memory()
    need = int(episodes) * int(copies) * tree_bytes(jax.eval_shape(env.reset, jax.random.PRNGKey(0), env_params))
    if not limit or need <= limit:
        return None
    return (f"{flag} {config_lib.format_count(int(episodes))}" + (f" x {copies:,} {copies_of}" if copies > 1 else "")
            + f" needs at least {_size(need)} of env states on {device}, which has {_size(limit)}: lower {flag}")


def _check_memory_bound(program: Program, cfg: dict) -> None:
    """ConfigError, before anything is compiled, when what a program must hold at once cannot fit
    even split evenly over every device: the train state (`[num_seeds, ...]`), or the envs of one
    evaluation (`eval.episodes` x seeds episodes, each `Program.eval_episode_bytes`). A bound
    from below: `check_memory` checks XLA's full estimate once compiled."""
    device, limit = _device_memory()
    if not limit:
        return
    devices = max(cfg["devices"], 1)
    state = -(-tree_bytes(program.abstract_state) // devices)
    if state > limit:
        raise _too_big("train", state, device, limit, cfg, "at least")
    if program.evaluate is not None:
        envs = -(-cfg["num_seeds"] * cfg["eval"]["episodes"] * program.eval_episode_bytes // devices)
        if envs > limit:
            raise _too_big("eval", envs, device, limit, cfg, "at least")


def check_memory(chunk, evaluate, cfg: dict) -> None:
    """ConfigError when a compiled program (`chunk`, `evaluate`: executables or None) needs more
    memory than one device has (XLA's own estimate: arguments + outputs + temporaries - donated
    buffers), naming what to lower: num_envs or num_seeds for the chunk, eval.episodes for the
    evaluation (when the chunk fits)."""
    device, limit = _device_memory()
    if not limit:
        return
    for what, exe in (("train", chunk), ("eval", evaluate)):
        m = exe.memory_analysis() if exe is not None else None
        if m is None:
            continue
        need = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
        if need > limit:
            raise _too_big(what, need, device, limit, cfg)


# ----------------------------------------------------------------------------- run folder
def _looks_like_run(path: Path) -> bool:
    names = {p.name for p in path.iterdir()}
    return not names or bool(names & {"config.yaml", "metrics.jsonl", "checkpoints"})


def _prepare_new_dir(run_dir: Path, overwrite: bool) -> None:
    """ConfigError unless a new run can be written to `run_dir`: a folder that exists (not empty)
    only with `overwrite` and only if it looks like a run; nothing else that exists (a file); and
    a place that takes new folders (`cli.folder_problem`: one is made and removed at once, so the
    check leaves nothing, and the run's own folder is still made only after its first chunk)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} exists and is a file, not a run folder: choose another run.name "
                          "(--name) or run.dir")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"run folder {run_dir} already exists: pass --overwrite to replace it, "
                f"or --resume {run_dir} to continue it"
            )
        if not _looks_like_run(run_dir):
            raise ConfigError(f"{run_dir} is not a run folder; refusing to delete it")
    _refuse_unwritable(run_dir)
    if overwrite and run_dir.is_dir() and distributed.is_primary():
        run_lock.check_free(run_dir)  # not the folder of a run that still trains


def _refuse_unwritable(run_dir: Path) -> None:
    """ConfigError when files cannot be written into `run_dir` (made if missing), found by a real
    write that leaves nothing (`cli.folder_problem`): at the start, not when the run first saves."""
    problem = cli.folder_problem(run_dir)
    if problem is not None:
        raise ConfigError(f"{problem} (the run folder, run.dir/run.name)")


def _check_logs(run_dir: Path) -> None:
    """ConfigError for a run log a resume cannot cut back to its checkpoint (a damaged line that is
    not the torn last one): found before anything is compiled or set aside, not after."""
    for name in ("metrics.jsonl", "eval.jsonl"):
        if not (run_dir / name).is_file():
            continue
        try:
            records, _ = run_log.read_jsonl(run_dir / name)
            bad = next((i for i, r in enumerate(records, 1) if not isinstance(r, dict)), None)
            if bad is not None:
                raise ValueError(f"{run_dir / name}:{bad} is not a log record (a JSON object)")
        except ValueError as e:
            raise ConfigError(f"cannot resume: {e} (repair or delete that line; the checkpoints "
                              "do not depend on it)") from None


def _create_run_dir(run_dir: Path, cfg: dict, overwrite: bool) -> tuple[Checkpoints, run_lock.RunLock | None]:
    """Makes a new run's folder (replacing one `_prepare_new_dir` allowed to replace) with its
    config.yaml, and returns its checkpoints and the folder's lock (`run_lock`). In a group,
    process 0 makes and locks it and the others wait. ConfigError when another process has made
    the folder since this run started (two starts of one name), or trains in the one to replace."""
    lock = None
    if distributed.is_primary():
        if run_dir.exists():
            if not overwrite and (not run_dir.is_dir() or any(run_dir.iterdir())):
                raise ConfigError(f"{run_dir} was made by another process while this run trained its first "
                                  "chunk: nothing of this run is written (choose another --name)")
            if run_dir.is_dir():
                run_lock.check_free(run_dir)
            shutil.rmtree(run_dir) if run_dir.is_dir() else run_dir.unlink()
        run_dir.mkdir(parents=True)
        lock = run_lock.acquire(run_dir)
        config_lib.save(cfg, run_dir / "config.yaml")
    distributed.barrier("jaxsoc run folder")
    return Checkpoints(run_dir / "checkpoints", keep=cfg["run"]["keep_checkpoints"]), lock


def _check_run_folder(run_dir: Path, cfg: dict, doing: str) -> None:
    """ConfigError/CheckpointError for a folder that is not a run, or (`doing` "resume") one of
    another algorithm or training config, or unwritable. Files only: no collective of a group
    (orbax's checkpoint manager has them), so a group can agree on the outcome first."""
    if not run_dir.is_dir():
        raise ConfigError(f"cannot {doing}: run folder {run_dir} does not exist")
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"cannot {doing}: {run_dir} has no config.yaml (not a run folder?)")
    if doing == "resume":
        check_resumed_config(run_dir, cfg)
        _refuse_unwritable(run_dir)


def _open_checkpoints(run_dir: Path, cfg: dict, update: int | None, doing: str,
                      checked: bool = False) -> tuple[Checkpoints, int | None]:
    """The checkpoints of a run folder and the update to read (`update`, default the newest;
    None when a run to resume has none yet). ConfigError/CheckpointError for a folder that is not
    a run (`_check_run_folder`, unless `checked`), a missing `update`, or nothing to load."""
    if not checked:
        _check_run_folder(run_dir, cfg, doing)
    ckpts = Checkpoints(run_dir / "checkpoints", keep=cfg["run"]["keep_checkpoints"], create=False)
    try:
        steps = ckpts.steps() if (run_dir / "checkpoints").is_dir() else []
        if update is not None and update not in steps:
            raise CheckpointError(f"cannot {doing}: no checkpoint at update {update} (have {sorted(steps)})")
        if not steps and doing != "resume":
            raise CheckpointError(f"cannot {doing}: {run_dir} holds no complete checkpoint")
    except BaseException:
        ckpts.close()
        raise
    return ckpts, (update if update is not None else max(steps, default=None))


def check_resume(run_dir: Path, cfg: dict, from_update: int | None = None) -> None:
    """What a resume of `run_dir` with `cfg` refuses before anything is built (`--print-config`
    checks it): not a run folder, another algorithm or training config, an unwritable folder, no
    checkpoint at `from_update`."""
    _open_checkpoints(run_dir, cfg, from_update, "resume")[0].close()


def _check_meta(meta: dict, run_dir: Path, cfg: dict, doing: str) -> None:
    """CheckpointError unless a checkpoint's metadata comes from `cfg`'s algorithm and training
    config (a warning for another jaxsoc version)."""
    if meta.get("algo") != cfg["algo"]:
        raise CheckpointError(
            f"cannot {doing}: {run_dir} was trained with algorithm {meta.get('algo')!r}, not {cfg['algo']!r}"
        )
    if meta.get("config_hash") != config_lib.training_hash(cfg):
        _refuse_config_change(run_dir, cfg, doing)
    if meta.get("jaxsoc_version") != jaxsoc.__version__:
        warnings.warn(
            f"resuming a checkpoint written by jaxsoc {meta.get('jaxsoc_version')} with jaxsoc {jaxsoc.__version__}"
        )


def check_resumed_config(run_dir: Path, cfg: dict) -> None:
    """CheckpointError when `cfg` is not the config `run_dir` was trained with (its config.yaml):
    another algorithm, or another training-relevant key (`config.training_hash`). Checked before
    anything else about the resume, so that e.g. a changed num_envs is named as such rather than
    as the problem it makes (total_steps less than one update); the checkpoint's own metadata is
    checked again when it is read (`_check_meta`)."""
    saved = config_lib.load_yaml(run_dir / "config.yaml")
    if saved.get("algo") != cfg["algo"]:
        raise CheckpointError(
            f"cannot resume: {run_dir} was trained with algorithm {saved.get('algo')!r}, not {cfg['algo']!r}"
        )
    try:
        same = config_lib.training_hash(config_lib.with_added_keys(saved)) == config_lib.training_hash(cfg)
    except (ValueError, KeyError, TypeError):  # a saved config this version cannot read: the checkpoint decides
        return
    if not same:
        _refuse_config_change(run_dir, cfg, "resume")


def _refuse_config_change(run_dir: Path, cfg: dict, doing: str) -> None:
    saved = config_lib.load_yaml(run_dir / "config.yaml")
    try:
        diff = "; ".join(config_lib.training_diff(saved, cfg)[:5])
    except (ValueError, KeyError):  # a saved config this version cannot read
        diff = ""
    raise CheckpointError(
        f"cannot {doing}: {run_dir} was trained with a different config"
        + (f" ({diff})" if diff else " (its config.yaml was edited?)")
    )


def restore_state(ckpts: Checkpoints, update: int, abstract_state, env_params,
                  wanted: list[bool] | None = None, saved_only_wanted: bool = False) -> Any:
    """Checkpoint `update`'s train state laid out as `abstract_state`. A SOC env state saved in the
    host layout before the host axis was padded (its arrays have those shapes) is read in that
    layout and converted exactly (`jaxsoc.env.layout`), whole. `wanted`, `saved_only_wanted`:
    `Checkpoints.restore`'s (the leaves not wanted come back as None)."""
    from jaxsoc.env import layout

    old = layout.unpadded(abstract_state, env_params)
    if old is not None:
        def shapes(tree):
            return sorted(tuple(a.shape) for a in jax.tree.leaves(tree))

        saved = ckpts.saved_shapes(update)
        if saved is not None and saved != shapes(abstract_state) and saved == shapes(old):
            shardings = jax.tree.map(lambda a: a.sharding, abstract_state)
            return jax.device_put(layout.padded(ckpts.restore(update, old), env_params), shardings)
    stripped = offpolicy.without_masks(abstract_state)
    if stripped is not None:  # an off-policy run saved before its buffer kept next-state masks
        saved = ckpts.saved_shapes(update)
        leaves = jax.tree_util.tree_flatten_with_path(abstract_state)[0]
        kept = [not offpolicy.is_mask_path(p) for p, _ in leaves]
        if saved is not None and saved == sorted(tuple(a.shape) for a, k in zip(jax.tree.leaves(abstract_state), kept)
                                               if k) and len(saved) < len(kept):
            old_wanted = None if wanted is None else [w for w, k in zip(wanted, kept) if k]
            return offpolicy.with_legal_masks(ckpts.restore(update, stripped, old_wanted, saved_only_wanted),
                                              abstract_state, wanted)
    return ckpts.restore(update, abstract_state, wanted, saved_only_wanted)


def policy_leaves(trainer, abstract_state) -> list[bool]:
    """One flag per leaf of a train state `[num_seeds, ...]` (`jax.tree.leaves` order): whether
    `trainer.policy_params` reads it, from the function's trace (no data is touched)."""
    jaxpr = jax.make_jaxpr(jax.vmap(trainer.policy_params))(abstract_state).jaxpr
    read = {id(v) for eqn in jaxpr.eqns for v in eqn.invars} | {id(v) for v in jaxpr.outvars}
    return [id(v) in read for v in jaxpr.invars]


def policy_part(state, wanted: list[bool]):
    """`state` with every leaf not `wanted` (`policy_leaves`) set to None: what a checkpoint of
    `run.final_checkpoint: policy` holds."""
    leaves, treedef = jax.tree.flatten(state)
    return treedef.unflatten([x if w else None for x, w in zip(leaves, wanted)])


def _restore_checked(ckpts: Checkpoints, update: int, run_dir: Path, cfg: dict, abstract_state, doing: str,
                     env_params, wanted: list[bool] | None) -> tuple[Any, dict]:
    """Checkpoint `update`'s (state, meta) after checking its metadata against `cfg` and that it
    holds what `doing` needs (a policy-only checkpoint cannot be resumed or loaded whole)."""
    meta = ckpts.read_meta(update)
    _check_meta(meta, run_dir, cfg, doing)
    policy_only = meta.get("contents", "full") == "policy"  # checkpoints before the key are full
    if policy_only and wanted is None:
        what = "the policy only (its run had run.final_checkpoint: policy)"
        if doing != "resume":
            raise CheckpointError(f"cannot {doing}: checkpoint {update} of {run_dir} holds {what}: load it "
                                  "with policy_only=True, as eval/evaluate.py, load_policy and eval/explain.py do")
        full = [u for u in ckpts.steps() if u < update]  # only a run's last checkpoint is ever partial
        how = (f"; its newest full one is update {max(full)}: python train/run.py --resume {run_dir} "
               f"--from-update {max(full)}" if full else "; it has no full checkpoint to continue from")
        raise CheckpointError(f"cannot {doing}: checkpoint {update} of {run_dir} holds {what}, not the "
                              f"train state to continue from{how}")
    return restore_state(ckpts, update, abstract_state, env_params, wanted, policy_only), meta


def _read_checkpoint(ckpts: Checkpoints, update: int, run_dir: Path, cfg: dict, abstract_state,
                     doing: str, env_params=None, wanted: list[bool] | None = None) -> tuple[Any, dict]:
    """Checkpoint `update`'s (state, meta) after checking it belongs to `cfg`. A checkpoint that
    cannot be read is reported with the newest older one that can, which is never used unless
    asked for (`from_update`)."""
    try:
        return _restore_checked(ckpts, update, run_dir, cfg, abstract_state, doing, env_params, wanted)
    except UnreadableCheckpoint:
        pass  # reported below, outside the handler, without orbax's low-level message
    good = None
    for older in sorted((u for u in ckpts.steps() if u < update), reverse=True):
        try:
            _restore_checked(ckpts, older, run_dir, cfg, abstract_state, doing, env_params, wanted)
        except CheckpointError:
            continue
        good = older
        break
    where = f"cannot {doing}: checkpoint {update} of {run_dir} cannot be read (damaged or incomplete files)"
    if good is None:
        raise CheckpointError(where + "; no older checkpoint is readable either")
    how = (f"python train/run.py --resume {run_dir} --from-update {good} (which sets the newer ones aside)"
           if doing == "resume" else f"update={good} (the eval tools' --update {good})")
    raise CheckpointError(where + f"; the newest readable one is {good}: use it with {how}")


# ----------------------------------------------------------------------------- run
def checkpoint_meta(cfg: dict, update: int, steps_per_update: int, wall: float, contents: str = "full") -> dict:
    """The JSON saved with checkpoint `update` of a run of `cfg` (see `jaxsoc.checkpoints`): what
    `resume` and `load` check a checkpoint against (algorithm, scenario, training config, version),
    and its `contents`: "full" (the train state) or "policy" (`policy_part` of it)."""
    return {
        "contents": contents,
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


def run(
    cfg: dict,
    *,
    resume: str | os.PathLike | None = None,
    from_update: int | None = None,
    overwrite: bool = False,
    make_env: Callable | None = None,
    on_chunk: Callable[[int, Any], None] | None = None,
) -> RunResult:
    """Trains `cfg` (a config from `jaxsoc.config.resolve`); see the module docstring.

    Args:
      cfg: the resolved config.
      resume: a run folder to continue from its newest checkpoint (from update 0 when it has
        none yet: a run stopped before its first checkpoint starts over). `cfg` must have the
        algorithm and training config of its config.yaml (checked first); its run.dir and
        run.name are replaced by this folder's.
      from_update: with `resume`, continue from this checkpoint instead of the newest; the
        newer ones are set aside (`Checkpoints.set_aside_after`), never deleted.
      overwrite: replace an existing run folder (never needed with `resume`).
      make_env: `(scenario, **overrides) -> (env, env_params)`; default `jaxsoc.env.make`.
      on_chunk: called as `on_chunk(updates_done, state)` after each chunk's host work
        (after its checkpoint); raising there stops the run like an interrupt.

    Returns:
      A `RunResult` with the final state.
    """
    t0 = time.perf_counter()
    if on_chunk is not None and not callable(on_chunk):  # else a TypeError after the first chunk, its folder made
        raise ConfigError(f"on_chunk must be a function (updates_done, state) or None, got {on_chunk!r}")
    # A custom `make_env` knows its own scenarios (and refuses unknown ones itself).
    cfg = config_lib.validate(copy.deepcopy(cfg), scenarios=[cfg.get("scenario")] if make_env else None)
    if from_update is not None and resume is None:
        raise ConfigError("from_update (--from-update) continues a run: give the run folder to resume")
    ckpts, start, lock = None, 0, None
    try:
        if resume is not None:
            run_dir = Path(resume)
            # The run keeps its folder, wherever its config.yaml says it started (train/run.py
            # refuses --name and run.dir with --resume); "." is named by its resolved path.
            named = run_dir if run_dir.name else run_dir.resolve()
            cfg["run"]["dir"], cfg["run"]["name"] = str(named.parent), named.name
            if distributed.is_primary() and run_dir.is_dir() and (run_dir / "config.yaml").is_file():
                # Before its checkpoints are read: a process still training there prunes them.
                lock = run_lock.acquire(run_dir)
            _check_run_folder(run_dir, cfg, "resume")
            if distributed.is_primary():
                _check_logs(run_dir)
        else:
            if cfg["run"]["name"] is None:
                raise ConfigError("run.name is not set (use jaxsoc.config.resolve)")
            run_dir = Path(cfg["run"]["dir"]) / cfg["run"]["name"]
            _prepare_new_dir(run_dir, overwrite)
    except BaseException:
        # Before any collective: a group's other processes stop too, where they waited in
        # orbax's barriers for minutes, then aborted in C++.
        distributed.agree("run folder", None)
        if lock is not None:
            lock.release()
        raise
    # Past here a refusal is the same on every process (the same config: agreed in train/run.py).
    try:
        distributed.agree("run folder", "ready")
        if resume is not None:
            ckpts, start = _open_checkpoints(run_dir, cfg, from_update, "resume", checked=True)
            start = start or 0  # no checkpoint yet: from the start
        env, env_params, trainer = _make_trainer(cfg, make_env, start, new_run=resume is None)
        open_sinks = run_log.scalar_sinks(cfg)
        progress = Progress(cfg, trainer.env_steps_per_update, trainer.num_updates, start,
                            enabled=distributed.is_primary())
        on_update = progress.tick if progress.wanted else None  # the same program on every process
        program = build_program(trainer, cfg, make_mesh(cfg["devices"]), env, env_params, on_update)
        meta: dict = {}
        if start:
            state, meta = _read_checkpoint(ckpts, start, run_dir, cfg, program.abstract_state, "resume",
                                           env_params)
            if from_update is not None:
                if distributed.is_primary():
                    for path in ckpts.set_aside_after(start):
                        progress.note(f"set aside checkpoint {path.name} of {run_dir} in {path.parent}")
                distributed.barrier("jaxsoc set aside")
                if not distributed.is_primary():
                    ckpts.reopen()  # process 0 moved checkpoints this manager had listed
        elif resume is not None:  # its config was checked against config.yaml by _open_checkpoints
            progress.note(f"{run_dir} has no checkpoint yet: it starts over from update 0 with its config")
        changed = config_lib.scenario_file_note(cfg) if resume is not None else None
        if changed is not None:  # it continues as trained, from its stored contents (config.py)
            progress.note(changed)
        progress.announce(run_dir)
        length = chunk_length(start, trainer.num_updates, cfg["run"]["chunk_updates"])
        if length:
            parts = ", ".join(["init"] * (not start) + [f"chunk of {length} update{'s' * (length > 1)}"]
                              + ["evaluation"] * (program.evaluate is not None))
            with progress.compiling(parts):
                compiled = compile_program(program, cfg, length)
                if not start:  # host keys: every process passes the same, replicated input
                    state = program.init(np.asarray(seed_keys(cfg["seed"], cfg["num_seeds"])))
        else:  # a finished run resumed: nothing to compile, run or log (its final state is returned)
            compiled = None
            progress.note(f"{run_dir} finished at update {start} of {trainer.num_updates}: nothing left to train")
        if resume is not None and distributed.is_primary():
            for name in ("metrics.jsonl", "eval.jsonl"):
                run_log.truncate_jsonl(run_dir / name, start)
        if distributed.is_primary():
            every = cfg["run"]["checkpoint_every"]
            n = trainer.num_updates  # saves at each multiple of `every` passed, and at the end
            saves = (n // every - start // every + (n % every > 0)) if every else 1
            saves -= cfg["run"]["final_checkpoint"] == "policy"  # the last holds a few MiB at most
            space = space_warning(run_dir, program.abstract_state, min(saves, cfg["run"]["keep_checkpoints"] + 1)) if saves else None
            if space is not None:
                progress.note(space)
    except BaseException:
        if ckpts is not None:
            ckpts.close()  # stop orbax's background threads
        if lock is not None:
            lock.release()
        raise
    # A new run's folder is made when its first chunk is done: a start that fails leaves nothing.
    return _drive(cfg, run_dir, trainer, program, compiled, ckpts, open_sinks, progress, state, start,
                  meta, on_chunk, t0, lock, overwrite)


def load(
    run_dir: str | os.PathLike,
    update: int | None = None,
    *,
    devices: int = 1,
    make_env: Callable | None = None,
    policy_only: bool = False,
) -> RunResult:
    """A saved run's config, trainer and train state at checkpoint `update` (default: newest).

    `policy_only`: read only the leaves `trainer.policy_params` needs (`policy_leaves`); the
    others are None in the returned state. For a replay-buffer learner that skips the buffers,
    nearly all of the checkpoint (a 5-seed soc-hybrid run: 7.8 GiB of state, its policies a few
    MiB).

    For evaluation and analysis, e.g. seed 0's policy:

        loaded = engine.load("runs/myrun")
        params = jax.tree.map(lambda x: x[0], loaded.trainer.policy_params(loaded.state))
        ... evaluation.evaluate(env, env_params, loaded.trainer.act, params, key, 256)

    The state is laid out for `devices` local devices (orbax reshards on restore), whatever the
    run was trained on.
    """
    if not isinstance(run_dir, (str, os.PathLike)):
        raise ConfigError(f"cannot load: run_dir must be a run folder's path, got {run_dir!r}")
    # 15.0 or "15" would otherwise be reported as a damaged or missing checkpoint, True as update 1.
    if update is not None and not is_integer(update):
        raise ConfigError(f"cannot load: update must be an integer, got {update!r}")
    if not is_switch(policy_only):  # "no" would otherwise mean policy-only
        raise ConfigError(f"cannot load: policy_only must be True or False, got {policy_only!r}")
    run_dir = Path(run_dir)
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(f"cannot load: {run_dir} has no config.yaml (not a run folder?)")
    saved = config_lib.load_yaml(saved_path)
    cfg = config_lib.resolve(
        flags={"devices": devices}, saved=saved, scenarios=[saved.get("scenario")] if make_env else None
    )
    ckpts, update = _open_checkpoints(run_dir, cfg, update, "load")
    try:
        try:
            env, env_params, trainer = _make_trainer(cfg, make_env, update, new_run=False)
        except ConfigError:
            # What an edited config.yaml makes impossible (e.g. more num_envs: the checkpoint lies past
            # the run's last update) is named as the edit when the checkpoint says it was trained otherwise.
            try:
                meta = ckpts.read_meta(update)
            except CheckpointError:
                meta = None
            if meta is not None:
                _check_meta(meta, run_dir, cfg, "load")
            raise
        program = build_program(trainer, cfg, make_mesh(cfg["devices"]), env, env_params)
        wanted = policy_leaves(trainer, program.abstract_state) if policy_only else None
        state, _ = _read_checkpoint(ckpts, update, run_dir, cfg, program.abstract_state, "load", env_params, wanted)
    finally:
        ckpts.close()
    return RunResult(run_dir, state, update, cfg, trainer)


def make_env_checked(cfg: dict, make_env: Callable | None = None, *, new_run: bool = False):
    """`cfg`'s env and env params (`make_env(scenario, **env)`, default `jaxsoc.env.make`), or a
    ConfigError naming the scenario: builds the params only (nothing is traced or compiled), so
    `train/run.py --print-config` checks the env settings a run would refuse. A config that
    stores its scenario file's contents (`scenario_spec`) is built from them, not from the file,
    unless a `make_env` of the caller's own is given (it gets the scenario as named). The
    algorithm's own env keys (`algos.env_overrides`: hmarl.k) are applied over `cfg["env"]`.

    `new_run`: refuse an override the scenario never reads (`jaxsoc.env.params.InertOverride`), as
    `make` does; otherwise (a saved run rebuilt to resume, evaluate or explain it, which may predate
    that refusal) such a key is left out, which builds the same world."""
    import jaxsoc.env as soc
    from jaxsoc.env.params import InertOverride, scenario_params

    spec = cfg.get(config_lib.SCENARIO_SPEC)
    overrides = {**cfg["env"], **algos.env_overrides(cfg)}  # e.g. hmarl.k: the K it trains at
    while True:
        try:
            if make_env is None and spec is not None:
                params = scenario_params(spec, **overrides)
                return soc.SOCEnv(params), params
            return (make_env or soc.make)(cfg["scenario"], **overrides)
        except InertOverride as e:
            if new_run or e.key not in overrides:
                raise ConfigError(f"env {cfg['scenario']!r}: {e}") from None
            overrides.pop(e.key)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"env {cfg['scenario']!r}: {e}") from None


def _update_terms(cfg: dict, per_update: int) -> str:
    """What makes one update of `per_update` env steps, and what to change: 'num_envs 8 x
    scripted.rollout 128; raise total_steps to at least 1,024, or lower num_envs or scripted.rollout'."""
    fmt = config_lib.format_count
    num_envs = cfg["num_envs"]
    section = cfg.get(algos.family_of(cfg["algo"]))
    rollout = section.get("rollout") if isinstance(section, dict) else None
    key = f"{algos.family_of(cfg['algo'])}.rollout"
    if is_integer(rollout) and num_envs * rollout == per_update:
        terms, knobs = f"num_envs {fmt(num_envs)} x {key} {fmt(rollout)}", f"num_envs or {key}"
    elif per_update % num_envs == 0:  # a family whose update is more than envs x rollout (meta: x tasks x inner)
        terms, knobs = f"num_envs {fmt(num_envs)} x {fmt(per_update // num_envs)} steps per env", "num_envs"
    else:
        terms, knobs = f"num_envs {fmt(num_envs)} and the {cfg['algo']} settings", "num_envs"
    return f"{terms}; raise total_steps to at least {fmt(per_update)}, or lower {knobs}"


def _make_trainer(cfg: dict, make_env: Callable | None, start: int, new_run: bool):
    """The env, its params and the trainer of `cfg`; ConfigError for what cannot run, checked
    before anything is compiled or written."""
    env, env_params = make_env_checked(cfg, make_env, new_run=new_run)
    trainer = algos.make_train(cfg, env, env_params)
    check_budget(cfg, trainer)
    if start > trainer.num_updates:
        raise CheckpointError(f"checkpoint at update {start} is past this run's {trainer.num_updates}")
    return env, env_params, trainer


def check_budget(cfg: dict, trainer) -> None:
    """ConfigError unless `cfg`'s total_steps makes at least one update of `trainer` and its
    env-step counts fit the int32 counters (one update, and the whole run per seed)."""
    per_update = trainer.env_steps_per_update
    if per_update > cli.MAX_ENV_STEPS:
        raise ConfigError(
            f"one update is {config_lib.format_count(per_update)} env steps per seed (num_envs x rollout), "
            f"more than the {cli.MAX_ENV_STEPS:,} the int32 step counters hold: lower num_envs"
        )
    if trainer.num_updates < 1:
        raise ConfigError(f"total_steps={config_lib.format_count(cfg['total_steps'])} is less than one update "
                          f"({config_lib.format_count(per_update)} env steps per seed: {_update_terms(cfg, per_update)})")
    if trainer.num_updates * per_update > cli.MAX_ENV_STEPS:
        raise ConfigError(
            f"total_steps={config_lib.format_count(cfg['total_steps'])} is more than the {cli.MAX_ENV_STEPS:,} env "
            "steps per seed the int32 step counters hold: lower total_steps (or run more seeds)"
        )


def _drive(cfg, run_dir, trainer, program, compiled, ckpts, open_sinks, progress, state, start, meta,
           on_chunk, t0, lock, overwrite) -> RunResult:
    """The host loop over compiled chunks (logging, evaluation, checkpoints, progress). A new run
    (`ckpts` None) makes its folder when its first chunk is done."""
    steps_per_update = trainer.env_steps_per_update
    num_updates = trainer.num_updates
    chunk_updates = cfg["run"]["chunk_updates"]
    every_ckpt = cfg["run"]["checkpoint_every"]
    every_eval = cfg["eval"]["every_chunks"]
    keys_eval = np.asarray(eval_keys(cfg["seed"], cfg["num_seeds"]))
    wall_offset = float(meta.get("wall_time", 0.0))
    update = start
    primary = distributed.is_primary()  # writes the folder's logs; every process checkpoints
    if not primary:
        open_sinks = lambda *_: run_log.ScalarSinks()  # noqa: E731 - logs nothing
    # A resumed run with updates left logs from the update after its checkpoint (a new run opens
    # its sinks with its folder, after its first chunk; a finished one opens none).
    sinks = open_sinks(run_dir, start * steps_per_update + 1) if ckpts is not None and start < num_updates else None

    progress.open_bar()
    try:
        while update < num_updates:
            length = min(chunk_updates, num_updates - update)
            state, metrics = compiled.run_chunk(state, length)
            previous, update = update, update + length
            wall = wall_offset + time.perf_counter() - t0
            if ckpts is None:
                ckpts, lock = _create_run_dir(run_dir, cfg, overwrite)
                sinks = open_sinks(run_dir)
            if primary:
                run_log.append_jsonl(
                    run_dir / "metrics.jsonl", _records(metrics, previous, cfg, steps_per_update, wall)
                )
            for i in range(length):  # one point per update, the mean over seeds
                sinks.log((previous + i + 1) * steps_per_update,
                          {f"train/{name}": finite_mean(values[i]) for name, values in metrics.items()})

            chunks_done = -(-update // chunk_updates)
            if compiled.evaluate is not None and (chunks_done % every_eval == 0 or update == num_updates):
                results = jax.device_get(compiled.evaluate(state, keys_eval))
                if primary:
                    _log_eval(run_dir, results, update, cfg, steps_per_update, wall, sinks)

            if update == num_updates or (every_ckpt and update // every_ckpt > previous // every_ckpt):
                with interrupts_deferred():  # a Ctrl-C here stops the run after this save, not inside it
                    if update == num_updates and cfg["run"]["final_checkpoint"] == "policy":
                        ckpts.save(update, policy_part(state, policy_leaves(trainer, program.abstract_state)),
                                   checkpoint_meta(cfg, update, steps_per_update, wall, "policy"))
                    else:
                        ckpts.save(update, state, checkpoint_meta(cfg, update, steps_per_update, wall))

            # The chunk's latest update in which an episode ended ("-" when none did: with long
            # episodes most updates have no episode metrics, and "nan" read as a fault).
            latest = {name: [m for m in map(finite_mean, metrics[name]) if np.isfinite(m)][-1:]
                      for name in ("return", "csr") if name in metrics}
            progress.chunk_done(update, {name: f"{m[0]:.3g}" if m else "-" for name, m in latest.items()})
            if on_chunk is not None:
                on_chunk(update, state)
    finally:
        progress.close()
        if ckpts is not None:
            with interrupts_deferred():  # the checkpoint being written is finished first
                ckpts.wait()
            ckpts.close()
        if sinks is not None:
            sinks.close()
        if lock is not None:
            lock.release()
    return RunResult(run_dir, state, update, cfg, trainer)


@contextlib.contextmanager
def interrupts_deferred():
    """Holds a Ctrl-C (SIGINT) that arrives inside the block until the block is done, then raises
    it (KeyboardInterrupt): a checkpoint save cut in the middle left an orbax temporary folder and
    no checkpoint, so the resume started from the one before (or from update 0). Only where
    Python's default handler is installed (the main thread of a process that takes Ctrl-C);
    elsewhere, e.g. a process started with SIGINT ignored, nothing changes."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    caught = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if caught:
        raise KeyboardInterrupt


def _log_eval(run_dir, results, update, cfg, steps_per_update, wall, sinks) -> None:
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
                "metrics": {k: run_log.json_safe(finite_mean(v[s])) for k, v in results.items()},
            }
        )
    run_log.append_jsonl(run_dir / "eval.jsonl", records)
    sinks.log(update * steps_per_update, {f"eval/{name}": finite_mean(values) for name, values in results.items()})
