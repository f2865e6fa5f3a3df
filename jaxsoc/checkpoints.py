"""Checkpoints of the whole train state, for runs that resume bit for bit.

Layout (orbax `CheckpointManager`, current API), under `runs/<name>/checkpoints/`:

    <update>/state   the full `Trainer` state pytree, vmapped over seeds `[num_seeds, ...]`
                     (params, optimiser states, env states, RNG keys, counters, replay buffers),
                     saved with its shardings and restored straight into them
    <update>/meta    JSON: contents ("full", or "policy": only the leaves the policy reads, the
                     others None and not written; `run.final_checkpoint`), algo, scenario,
                     config_hash, jaxsoc_version, update, env_steps, num_seeds, wall_time

Saving is asynchronous: `save` returns once the arrays are copied to host memory (orbax's default
synchronous device-to-host transfer), so the caller may donate the device buffers to the next
chunk right away; files are written in the background and committed atomically (a checkpoint
that was being written when the process died is never listed).

A checkpoint that cannot be read fails in one line (`UnreadableCheckpoint`), without orbax's
background noise: see `_finish_pending_reads`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxsoc.config import ConfigError
from jaxsoc.memory import tree_bytes

# How long a failed orbax call may wait for its other reads to end before its event loop is
# closed anyway (they normally end within milliseconds of the first failure; see below).
_PENDING_READS_TIMEOUT_S = 30.0


def _finish_pending_reads() -> None:
    """Makes orbax wait for every read it started before it closes the event loop of a call that
    failed, so that a damaged checkpoint fails in one line.

    Why: orbax runs each synchronous call (`asyncio_utils.run_sync`) in a fresh event loop that it
    closes as soon as the call's coroutine returns (`_run_sync_via_new_loop`: `run_until_complete`
    then `close`). A restore reads every array concurrently (`asyncio.gather` of TensorStore
    reads, no `return_exceptions`), so the first damaged array ends the coroutine while the other
    reads are still in flight; when TensorStore finishes them on its own threads it calls
    `loop.call_soon_threadsafe` on the closed loop, and each `RuntimeError: Event loop is closed`
    went to `sys.unraisablehook`: 2 of 3 resumes of a run with truncated array files printed ~230
    lines of tracebacks after the one-line error (timing decides how many reads are pending).

    Here the same function, except that when the coroutine raises, the loop first runs until the
    tasks it left are done (their errors are collected, not printed), at most
    `_PENDING_READS_TIMEOUT_S`; a call that succeeds is unchanged. Installed once, on import;
    skipped if orbax no longer has the module or the function (the tracebacks may then come back)."""
    try:
        from orbax.checkpoint._src import asyncio_utils
    except ImportError:  # a private module: a later orbax may move it
        return

    original = getattr(asyncio_utils, "_run_sync_via_new_loop", None)
    if original is None or getattr(original, "_jaxsoc_finishes_pending", False):
        return

    def run_sync_via_new_loop(coro):
        loop = asyncio.new_event_loop()
        try:
            asyncio.set_event_loop(loop)
            try:
                return loop.run_until_complete(coro)
            except BaseException:
                _wait_for_tasks(loop)
                raise
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    run_sync_via_new_loop._jaxsoc_finishes_pending = True
    asyncio_utils._run_sync_via_new_loop = run_sync_via_new_loop


def _wait_for_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Runs `loop` until the tasks left on it are done (or `_PENDING_READS_TIMEOUT_S` passed)."""
    deadline = time.monotonic() + _PENDING_READS_TIMEOUT_S
    try:
        # A task that failed may leave tasks of its own (a nested gather): until none is left.
        while (pending := [t for t in asyncio.all_tasks(loop) if not t.done()]):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            done, _ = loop.run_until_complete(asyncio.wait(pending, timeout=left))
            for task in done:  # retrieved: asyncio would log each unretrieved error at exit
                if not task.cancelled():
                    task.exception()
    except Exception:  # never hide the call's own error behind this clean-up
        pass


_finish_pending_reads()


class _EmptyStateMerge(logging.Filter):
    """Drops orbax's warning that an OCDBT merge found nothing to merge, for the checkpoints
    whose state had no array to write, and only for those.

    Why: a scripted policy's `run.final_checkpoint: policy` keeps no leaf of the train state (the
    policy reads none), so orbax writes an empty `state` item and, in its background thread,
    warns "Skipping merge of OCDBT checkpoints: No per-process OCDBT checkpoint subdirs found"
    once per checkpoint: 20 lines of noise in `eval/reproduce.py`'s scripted rows. The checkpoint
    is complete and restores. The same warning for a state that had arrays may mean files went
    missing, so it is kept there: `Checkpoints.save` names the empty checkpoints' folders here."""

    def __init__(self):
        super().__init__()
        self.folders: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("Skipping merge of OCDBT checkpoints" in message
                    and any(folder in message for folder in self.folders))


_EMPTY_STATE_MERGE = _EmptyStateMerge()
logging.getLogger("absl").addFilter(_EMPTY_STATE_MERGE)


class CheckpointError(ConfigError):
    """A checkpoint is missing, unreadable or belongs to another run."""


class UnreadableCheckpoint(CheckpointError):
    """A checkpoint's files cannot be read (damaged, truncated, or not orbax's)."""


class Checkpoints:
    """The checkpoints of one run folder: `save`, `latest`, `read_meta`, `restore`."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3, create: bool = True):
        self.directory = Path(directory).resolve()
        self._options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=create, cleanup_tmp_directories=create
        )
        self._manager = self._open()
        # orbax binds one handler to the "state" item for a manager's life, by the first args it
        # sees: standard (saves, whole or policy-only restores) or pytree (restores that skip
        # leaves). A run's fallback past a damaged policy-only checkpoint to a full one needs both.
        self._handler = None

    def _open(self) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(self.directory, options=self._options, item_names=("state", "meta"))

    def _use(self, handler: str) -> None:
        """The manager, reopened when its "state" handler is bound to the other kind."""
        if self._handler not in (None, handler):
            self.wait()
            self._manager.close()
            self._manager = self._open()
        self._handler = handler

    def latest(self) -> int | None:
        """The newest committed update, or None."""
        return self._manager.latest_step()

    def steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, update: int, state: Any, meta: dict) -> None:
        """Starts saving `state` (any pytree of arrays; a leaf set to None is not written) and
        `meta` (JSON) as `update`, once the previous save is committed (its failure is raised
        here, as `wait` words it)."""
        self.wait()
        self._use("standard")
        if not jax.tree.leaves(state):  # orbax's temporary folder for this step, as its warning names it
            _EMPTY_STATE_MERGE.folders.add(str(self.directory / f"{update}.orbax-checkpoint-tmp") + os.sep)
        self._manager.save(
            update,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )

    def read_meta(self, update: int) -> dict:
        """The JSON metadata of checkpoint `update`; CheckpointError if unreadable."""
        try:
            return dict(self._manager.restore(update, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)
        except Exception as e:  # orbax raises many types for damaged files
            reason = _one_line(e)
        # Raised outside `except` so orbax's failed reads are not kept alive as its context.
        raise UnreadableCheckpoint(f"checkpoint {update} in {self.directory} is unreadable (metadata): {reason}")

    def saved_shapes(self, update: int) -> list[tuple] | None:
        """The shapes of checkpoint `update`'s state arrays, sorted (orbax's metadata; the order of
        its tree is not ours), or None when its metadata cannot be read."""
        try:
            tree = ocp.StandardCheckpointHandler().metadata(self.directory / str(update) / "state")
            return sorted(tuple(leaf.shape) for leaf in jax.tree.leaves(getattr(tree, "item_metadata", tree)))
        except Exception:  # a damaged checkpoint: `restore` reports it
            return None

    def restore(self, update: int, abstract_state: Any, wanted: list[bool] | None = None,
                saved_only_wanted: bool = False) -> Any:
        """Checkpoint `update`'s state, laid out as `abstract_state` (ShapeDtypeStructs with
        shardings, e.g. from `jax.eval_shape`); CheckpointError if damaged or of another shape.

        `wanted`: one flag per leaf of `abstract_state` (in `jax.tree.leaves` order); the leaves
        not wanted are not read from disk and come back as None (e.g. a learner's replay buffers
        when only its policy is needed). None: every leaf. `saved_only_wanted`: the checkpoint
        was saved with the other leaves None (`save` of a partial tree), so they are not on disk
        at all."""
        if saved_only_wanted and wanted is None:
            raise ValueError("saved_only_wanted needs the `wanted` flags the checkpoint was saved with")
        reason = None
        target = abstract_state
        if wanted is not None:
            leaves, treedef = jax.tree.flatten(abstract_state)
            target = treedef.unflatten([a if w else ocp.PLACEHOLDER for a, w in zip(leaves, wanted)])
        if saved_only_wanted:  # the saved tree has None where `target` has placeholders
            target = jax.tree.map(lambda a: None if a is ocp.PLACEHOLDER else a, target)
        self._use("standard" if wanted is None or saved_only_wanted else "pytree")
        try:
            if wanted is None or saved_only_wanted:
                args = ocp.args.StandardRestore(target)
            else:  # orbax skips PLACEHOLDER leaves, given each read leaf's restore arguments
                args = ocp.args.PyTreeRestore(item=target, restore_args=jax.tree.map(
                    lambda a: a if a is ocp.PLACEHOLDER else ocp.ArrayRestoreArgs(
                        sharding=a.sharding, global_shape=a.shape, dtype=a.dtype), target))
            state = self._manager.restore(update, args=ocp.args.Composite(state=args)).state
        except Exception as e:
            reason = _one_line(e)
        if reason is not None:
            raise UnreadableCheckpoint(
                f"checkpoint {update} in {self.directory} is unreadable or does not match this "
                f"run's train state: {reason}"
            )
        if wanted is not None:
            if not saved_only_wanted:
                leaves, treedef = jax.tree.flatten(state, is_leaf=lambda x: x is ocp.PLACEHOLDER)
                state = treedef.unflatten([None if x is ocp.PLACEHOLDER else x for x in leaves])
            leaves, treedef = jax.tree.flatten(abstract_state)
            abstract_state = treedef.unflatten([a if w else None for a, w in zip(leaves, wanted)])
        # StandardRestore trusts the stored metadata for shapes; make a mismatch an error here.
        want = jax.tree.map(lambda a: (a.shape, a.dtype), abstract_state)
        got = jax.tree.map(lambda a: (a.shape, a.dtype), state)
        if jax.tree.structure(state) != jax.tree.structure(abstract_state) or want != got:
            raise CheckpointError(
                f"checkpoint {update} in {self.directory} holds a train state of another structure"
            )
        return state

    def set_aside_after(self, update: int) -> list[Path]:
        """Moves every checkpoint newer than `update` out of the way, to
        `<run>/checkpoints-set-aside/<update>` (kept, never deleted), so the run continues from
        `update` and can save those updates again. Returns where they went."""
        moved = []
        aside = self.directory.parent / "checkpoints-set-aside"
        for step in sorted(u for u in self.steps() if u > update):
            target = aside / str(step)
            n = 1
            while target.exists():  # set aside before: keep both
                target, n = aside / f"{step}.{n}", n + 1
            aside.mkdir(exist_ok=True)
            (self.directory / str(step)).rename(target)
            moved.append(target)
        if moved:
            self.reopen()
        return moved

    def reopen(self) -> None:
        """Lists the folder's steps again (the manager lists them when opened): after
        `set_aside_after` here or, in a group, in process 0."""
        self._manager.close()
        self._manager = self._open()

    def wait(self) -> None:
        """Blocks until background saves are committed; CheckpointError (one line: where, the
        free space, the newest complete checkpoint) when one could not be written, e.g. on a full
        disk, instead of orbax's background tracebacks."""
        try:
            self._manager.wait_until_finished()
            return
        except Exception as e:  # orbax re-raises its writer threads' errors here
            reason = _one_line(e)
        try:
            free = f"{shutil.disk_usage(self.directory).free / 2**30:.1f} GiB free"
        except OSError:
            free = "free space unknown"
        latest = self.latest()
        newest = f"the newest complete one is update {latest}" if latest is not None else "none is complete"
        raise CheckpointError(f"a checkpoint could not be written to {self.directory} ({free}; {newest}): {reason}")

    def close(self) -> None:
        self._manager.close()


def space_warning(run_dir: str | os.PathLike, abstract_state: Any, copies: int) -> str | None:
    """A one-line warning when the disk holding `run_dir` has less free space than `copies`
    checkpoints of `abstract_state` (the most a run has on disk at once), else None.

    What a checkpoint takes on disk cannot be known before it is written (orbax compresses: a
    5-seed soc-hybrid state of 7.8 GiB, mostly replay buffers, wrote 1.9 GB; an empty buffer
    compresses to almost nothing), so this counts the state's size in memory: a bound, said at
    the start so that a full disk is not first met at the final checkpoint, after the training
    (then `Checkpoints.wait` stops the run with one line). Global arrays count whole: on several
    hosts sharing one disk that is what they write together."""
    need = copies * tree_bytes(abstract_state)
    folder = Path(run_dir).resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # a new run's folder is made when its first chunk is done
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    if free >= need:
        return None
    return (f"{folder} has {free / 2**30:.1f} GiB free and this run may hold {copies} checkpoint"
            f"{'s' * (copies != 1)} of {need / copies / 2**30:.1f} GiB{' each' * (copies != 1)} before compression (orbax "
            "compresses them; run.keep_checkpoints bounds how many): if the disk fills, the run stops "
            "at that checkpoint")


def _one_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".replace("\n", " ")
    return text if len(text) < 300 else text[:297] + "..."
