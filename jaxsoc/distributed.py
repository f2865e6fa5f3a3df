"""Multi-process runs on `jax.distributed`: one training program over the devices of several
processes (hosts), with JAX's own coordination service and collectives (no transport of ours).

Every process runs the same command; on plain hosts give each its rank:

    python train/run.py --algo mappo --num-seeds 8 --name big --coordinator host0:9876 --num-processes 4 --process-id I

Under SLURM or Open MPI, `--coordinator auto` lets JAX read the launcher's variables
(`srun python train/run.py ... --coordinator auto`). The three settings can also come from the
environment (`JAXSOC_COORDINATOR`, `JAXSOC_NUM_PROCESSES`, `JAXSOC_PROCESS_ID`); flags win.

What the group does (`jaxsoc.engine`): one mesh over every process's devices (`devices` is then
the global count), seeds split over it when they divide, else envs; process 0 writes the run
folder (config, metrics, evaluations, TensorBoard), every process saves and restores its own
shards of each checkpoint through orbax, so `--resume` continues the whole group. The run folder
must be one path on a filesystem every host shares. On CPUs the collectives are gloo's.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import re
import sys
import threading

import jax

from jaxsoc.config import ConfigError

ENV_VARS = {"coordinator": "JAXSOC_COORDINATOR", "num_processes": "JAXSOC_NUM_PROCESSES",
            "process_id": "JAXSOC_PROCESS_ID"}
AUTO = "auto"
# How long a process waits for the whole group to join before giving up with an error (a process
# count that does not match the launch, or a coordinator nobody can reach, would otherwise hang).
DEFAULT_TIMEOUT_S = 120
# This process's join timeout (set by `initialize`): how long `agree` waits for the others, too.
_timeout_s = DEFAULT_TIMEOUT_S
# Each `agree` of a process gets the next number: every process calls them in the same order, so
# the group's store holds one fresh set of keys per check (two runs in one group check twice).
_checks = itertools.count()


@dataclasses.dataclass(frozen=True)
class Launch:
    """How this process joins a group: `coordinator` "host:port" (or "auto": SLURM / Open MPI
    detection, then the counts come from the launcher), `num_processes`, `process_id`."""

    coordinator: str
    num_processes: int | None
    process_id: int | None
    timeout_s: int = DEFAULT_TIMEOUT_S


def launch_from(coordinator: str | None = None, num_processes: int | None = None,
                process_id: int | None = None, timeout_s: int | None = None,
                environ=os.environ) -> Launch | None:
    """The `Launch` that flags (else `JAXSOC_*` variables) describe, or None for a one-process run.
    ConfigError for an incomplete or impossible description, before JAX starts."""
    def pick(name, value, cast):
        if value is not None:
            return value
        raw = environ.get(ENV_VARS[name])
        if raw in (None, ""):
            return None
        try:
            return cast(raw)
        except ValueError:
            raise ConfigError(f"{ENV_VARS[name]}={raw!r} is not a whole number") from None

    coordinator = pick("coordinator", coordinator, str)
    num_processes = pick("num_processes", num_processes, int)
    process_id = pick("process_id", process_id, int)
    if coordinator is None:
        if num_processes is not None or process_id is not None:
            raise ConfigError("--num-processes/--process-id join a group: give --coordinator HOST:PORT "
                              "(or --coordinator auto under SLURM / Open MPI)")
        return None
    timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else int(timeout_s)
    if timeout_s < 1:
        raise ConfigError(f"the group's join timeout must be at least 1 s (got {timeout_s})")
    if coordinator == AUTO:
        return Launch(AUTO, num_processes, process_id, timeout_s)
    if not re.fullmatch(r"[^\s:]+:\d{1,5}", coordinator) or not 0 < int(coordinator.rsplit(":", 1)[1]) < 65536:
        raise ConfigError(f"--coordinator {coordinator!r} is not HOST:PORT (e.g. node0:9876) or 'auto'")
    if num_processes is None or process_id is None:
        raise ConfigError("--coordinator HOST:PORT needs --num-processes N and --process-id I "
                          "(every process of the group runs the same command with its own I)")
    if num_processes < 1:
        raise ConfigError(f"--num-processes must be at least 1 (got {num_processes})")
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"--process-id {process_id} is outside 0..{num_processes - 1}")
    return Launch(coordinator, num_processes, process_id, timeout_s)


def initialize(launch: Launch, prog: str = "jaxsoc") -> None:
    """Joins the group (call before anything else uses JAX). When the group does not assemble
    within `launch.timeout_s` (a wrong count, an unreachable coordinator) the process prints one
    line, `<prog>: error: could not join ...` (`prog`: the tool's name), and exits with status 2:
    JAX's own timeout aborts the process from C++ with a stack trace, so a watchdog gets there
    first."""
    # CPU processes need a collectives implementation to reduce across processes at all.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    global _timeout_s
    _timeout_s = launch.timeout_s
    kwargs = {"initialization_timeout": launch.timeout_s + 60}  # the watchdog below acts first
    if launch.coordinator != AUTO:
        kwargs.update(coordinator_address=launch.coordinator, num_processes=launch.num_processes,
                      process_id=launch.process_id)
    elif launch.num_processes is not None:
        kwargs.update(num_processes=launch.num_processes, process_id=launch.process_id)
    where = ("the launcher's group (--coordinator auto)" if launch.coordinator == AUTO else
             f"the group at {launch.coordinator} as process {launch.process_id} of {launch.num_processes}")
    message = (f"could not join {where} within {launch.timeout_s} s: check that every process was started "
               "with the same --num-processes and that the coordinator is reachable")

    def give_up():
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
        os._exit(2)  # nothing is written before the group assembles

    watchdog = threading.Timer(launch.timeout_s, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as e:  # JAX raises RuntimeError/ValueError for what it can report
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{message} ({first})") from None
    finally:
        watchdog.cancel()


def is_primary() -> bool:
    """This process writes the run folder (process 0; True in a one-process run)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits for every process of the group to get here (a no-op in a one-process run)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def agree(what: str, text: str | None, timeout_s: float | None = None) -> None:
    """Checks that every process of the group got here alike: each publishes a digest of its
    `text` (its resolved config, or "ready"), or that it refused (`text` None: its own error is
    printed by the caller), in the group's key-value store, then reads every other's. A
    ConfigError names the first process that differs (another seed, total_steps or
    --num-processes made a run whose seeds were trained from other keys, or hung in orbax's
    barriers) or refused, or that did not get here within `timeout_s` (default: the join
    timeout). A process that refused and stopped without saying so left the others waiting in
    JAX's barriers for minutes, then aborting in C++. A no-op in one process.

    what: the check's name in the errors ("config": its command line; "run folder": what a run
      checks before compiling, e.g. the lock process 0 takes).

    JAX has no public key-value API; its coordination client (`jax._src.distributed`, the store
    orbax and multihost_utils use) is read here, in this one function."""
    if jax.process_count() == 1:
        return
    import hashlib

    from jax._src import distributed as jax_distributed

    client = jax_distributed.global_state.client
    me, check = jax.process_index(), next(_checks)
    timeout_s = _timeout_s if timeout_s is None else timeout_s
    mine = "refused" if text is None else hashlib.sha256(text.encode()).hexdigest()
    client.key_value_set(f"jaxsoc/{check}/{what}/{me}", mine)
    if text is None:  # refused: the others read it and stop; this one prints its own error
        return
    for other in range(jax.process_count()):
        if other == me:
            continue
        try:
            theirs = client.blocking_key_value_get(f"jaxsoc/{check}/{what}/{other}", int(timeout_s * 1000))
        except Exception:  # JAX raises its own error type on a timeout
            raise ConfigError(f"process {other} did not reach the {what} check within {timeout_s:g} s "
                              "(it may have failed: see its output)") from None
        if theirs == "refused":
            refused = "its command line" if what == "config" else f"its {what}"
            raise ConfigError(f"process {other} refused {refused} (see its output): the group stops")
        if theirs != mine:
            raise ConfigError(f"process {other} was started with another {what} than process {me}: start every "
                              "process with the same flags and files (compare their --print-config)")
