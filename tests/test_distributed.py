"""Multi-process training on jax.distributed (jaxsoc.distributed, engine): two CPU processes on
localhost against one process with two devices and one with one device, and the group's launch
checks. The toy learner (tests/engine_toys.py) keeps each process's compile to seconds."""
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from jaxsoc import distributed, run_log
from jaxsoc.config import ConfigError

REPO = Path(__file__).resolve().parent.parent

# One process: `out mode pid port`. mode "group": join the 2-process group at localhost:port,
# run "g" and stop it (like an interrupt) after its first checkpoint, then resume it as a group;
# mode "local": one process with the devices XLA_FLAGS gives, run "two" on 2 devices and "one" on
# 1. Process 0 saves each final state, gathered from every process, to `out/<name>.npz`.
SCRIPT = textwrap.dedent("""
    import sys
    out, mode, pid, port = sys.argv[1:5]
    from jaxsoc import distributed
    if mode == "group":
        distributed.initialize(distributed.Launch(f"localhost:{port}", 2, int(pid), 60))
    import jax, numpy as np
    # The resumed run compiles what the interrupted one did: the persistent cache serves it.
    jax.config.update("jax_compilation_cache_dir", f"{out}/cache-{mode}-{pid}")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    from jax.experimental import multihost_utils
    from tests import engine_toys as toys
    from jaxsoc import engine

    def config(name, devices):
        return toys.toy_config(num_seeds=2, seed=5, devices=devices,
                               run={"dir": out, "name": name, "chunk_updates": 2, "checkpoint_every": 2},
                               eval={"every_chunks": 1, "episodes": 4})

    def stop(update, state):
        if update == 2:
            raise KeyboardInterrupt

    def save(name, state):
        leaves = [jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
                  for x in jax.tree.leaves(state)]
        if jax.process_count() > 1:
            leaves = multihost_utils.process_allgather(leaves, tiled=True)
        if distributed.is_primary():
            np.savez(f"{out}/{name}.npz", *map(np.asarray, leaves))

    if mode == "group":
        try:
            engine.run(config("g", 2), make_env=toys.make_toy_env, on_chunk=stop)
        except KeyboardInterrupt:
            pass
        if distributed.is_primary():
            from jaxsoc import run_log
            assert run_log.read_jsonl(f"{out}/g/metrics.jsonl")[0][-1]["update"] == 2
        save("g", engine.run(config("g", 2), make_env=toys.make_toy_env, resume=f"{out}/g").state)
    else:
        save("two", engine.run(config("two", 2), make_env=toys.make_toy_env).state)
        save("one", engine.run(config("one", 1), make_env=toys.make_toy_env).state)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(tmp_path, mode, processes):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
               XLA_FLAGS="--xla_force_host_platform_device_count=" + ("1" if mode == "group" else "2")
                         + " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path), mode, str(pid), str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for pid in range(processes)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-3000:]


def load(path):
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


def test_two_processes_equal_one_process_bit_for_bit_and_resume_as_a_group(tmp_path):
    """Seeds split over 2 processes x 1 CPU device (gloo collectives), interrupted after a
    checkpoint and resumed by the group (the same two processes), against uninterrupted runs on
    one process with 2 devices and with 1: the same final state bit for bit, the same logs,
    written once."""
    launch(tmp_path, "group", processes=2)
    launch(tmp_path, "local", processes=1)
    group, two, one = load(tmp_path / "g.npz"), load(tmp_path / "two.npz"), load(tmp_path / "one.npz")
    assert len(group) == len(two) == len(one)
    for g, t, o in zip(group, two, one):
        np.testing.assert_array_equal(g, t)
        np.testing.assert_array_equal(g, o)
    for log in ("metrics.jsonl", "eval.jsonl"):
        got = [(r["update"], r["seed"], r["metrics"]) for r in run_log.read_jsonl(tmp_path / "g" / log)[0]]
        want = [(r["update"], r["seed"], r["metrics"]) for r in run_log.read_jsonl(tmp_path / "one" / log)[0]]
        assert got == want and len({(u, s) for u, s, _ in got}) == len(got)  # each line once
    assert sorted(p.name for p in (tmp_path / "g" / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "4", "6"]


def test_a_group_that_never_assembles_fails_with_one_line_in_time(tmp_path):
    """Process 0 of 2 started alone: a clear error after the join timeout, not a hang."""
    out = subprocess.run([sys.executable, str(REPO / "train" / "run.py"), "--algo", "random", "--name", "x",
                          "--coordinator", f"localhost:{free_port()}", "--num-processes", "2", "--process-id", "0",
                          "--join-timeout", "3", "--set", f"run.dir={tmp_path}"],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "train/run.py: error: could not join the group at localhost:" in out.stderr and "within 3 s" in out.stderr
    assert not list(tmp_path.iterdir())


def test_processes_started_with_other_configs_are_refused_by_every_process(tmp_path):
    """Process 1 with another --seed trained the group's second seed from its own keys, silently
    (and another total_steps hung in orbax's barriers): every process now names the difference in
    one line before any work; a process that refuses its command line stops the others."""
    port = free_port()

    def start(pid, extra):
        return subprocess.Popen([sys.executable, str(REPO / "train" / "run.py"), "--algo", "random", "--name", "g",
                                 "--num-envs", "8", "--total-steps", "2000", "--coordinator", f"localhost:{port}",
                                 "--num-processes", "2", "--process-id", str(pid), "--join-timeout", "60",
                                 "--set", f"run.dir={tmp_path}", *extra],
                                env=dict(os.environ, JAX_PLATFORMS="cpu"), stderr=subprocess.PIPE, text=True)

    for extra, (first, second) in (
            (["--seed", "7"], ("process 1 was started with another config than process 0",
                               "process 0 was started with another config than process 1")),
            (["--set", "ppo.lr=1e-3"], ("process 1 refused its command line (see its output): the group stops",
                                         "section 'ppo' configures"))):
        port = free_port()
        procs = [start(0, []), start(1, extra)]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [2, 2], errors
        assert first in errors[0].splitlines()[-1] and second in errors[1].splitlines()[-1], errors
        assert not list(tmp_path.iterdir())


def test_a_refusal_on_process_0_alone_stops_the_group_in_one_line(tmp_path):
    """Process 0 alone takes the run folder's lock (and reads its logs): its refusal left process 1
    compiling and both waiting in JAX's barriers for 5 minutes, then aborting in C++ (2026-12-07).
    Now every process says what stopped it in one line, in seconds. The folder is a run's
    config.yaml, locked by this test as a process still training there would hold it."""
    from jaxsoc import run_lock

    run = tmp_path / "g"
    run.mkdir()
    common = [sys.executable, str(REPO / "train" / "run.py")]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    printed = subprocess.run(common + ["--algo", "random", "--name", "g", "--num-envs", "8", "--total-steps", "2000",
                                       "--set", f"run.dir={tmp_path}", "--print-config"],
                             capture_output=True, text=True, timeout=60, env=env)
    assert printed.returncode == 0, printed.stderr[-2000:]
    (run / "config.yaml").write_text(printed.stdout)
    held = run_lock.acquire(run)
    try:
        port = free_port()
        procs = [subprocess.Popen(common + ["--resume", str(run), "--coordinator", f"localhost:{port}",
                                            "--num-processes", "2", "--process-id", str(pid), "--join-timeout", "60"],
                                  env=env, stderr=subprocess.PIPE, text=True) for pid in range(2)]
        errors = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        held.release()
    assert [p.returncode for p in procs] == [2, 2], errors
    assert f"is being trained by another process (pid {os.getpid()})" in errors[0].splitlines()[-1], errors
    assert "process 0 refused its run folder (see its output): the group stops" in errors[1].splitlines()[-1], errors
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]  # nothing written


@pytest.mark.parametrize("kwargs, environ, message", [
    (dict(num_processes=2, process_id=0), {}, "give --coordinator"),
    (dict(coordinator="node0"), {}, "not HOST:PORT"),
    (dict(coordinator="node0:70000", num_processes=2, process_id=0), {}, "not HOST:PORT"),
    (dict(coordinator="node0:9876"), {}, "needs --num-processes N and --process-id I"),
    (dict(coordinator="node0:9876", num_processes=2, process_id=2), {}, "outside 0..1"),
    (dict(coordinator="node0:9876", num_processes=0, process_id=0), {}, "at least 1"),
    (dict(coordinator="node0:9876", num_processes=2, process_id=0, timeout_s=0), {}, "at least 1 s"),
    ({}, {"JAXSOC_COORDINATOR": "node0:9876", "JAXSOC_NUM_PROCESSES": "two"}, "JAXSOC_NUM_PROCESSES='two'"),
])
def test_launch_descriptions_that_cannot_work_are_refused(kwargs, environ, message):
    with pytest.raises(ConfigError, match=message):
        distributed.launch_from(**kwargs, environ=environ)


def test_launch_reads_the_environment_and_flags_win():
    env = {"JAXSOC_COORDINATOR": "node0:9876", "JAXSOC_NUM_PROCESSES": "4", "JAXSOC_PROCESS_ID": "3"}
    assert distributed.launch_from(environ=env) == distributed.Launch("node0:9876", 4, 3)
    assert distributed.launch_from(process_id=1, environ=env).process_id == 1
    assert distributed.launch_from(environ={}) is None
    assert distributed.launch_from("auto", environ={}) == distributed.Launch("auto", None, None)


def test_cli_refuses_a_group_without_a_shared_run_name():
    out = subprocess.run([sys.executable, str(REPO / "train" / "run.py"), "--coordinator", "localhost:9876",
                          "--num-processes", "2", "--process-id", "1"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "needs --name (or --resume)" in out.stderr
    assert out.stderr.strip().count("\n") == 0
