"""Where a learner's update spends its time: matrix products, the env, and the rest (XLA:CPU).

    python eval/profile_train.py --algo mappo                      # 5 seeds x 1,024 envs (Table II's shape)
    python eval/profile_train.py --algo hmarl --by function --top 20
    python eval/profile_train.py --algo mappo --num-seeds 40 --envs 256   # the sweep's shape

Compiles the program `train/run.py` runs (`jaxsoc.engine.build_program`, `--updates` updates per
call), runs it once to warm up, then profiles one call with `jax.profiler` and sums XLA:CPU's
kernel times over the worker threads (as `eval/profile_env.py` does for the env alone). It
prints three shares of that kernel time:

* **matrix products**: kernels that contain a `dot` (XLA:CPU fuses a Dense layer's product with
  its bias, activation or a reduction into one kernel), the part a faster matmul would speed up;
* **env**: kernels charged (as in the top rows) to the env's code, the step, its observations
  and the auto-reset: `jaxsoc/env/` and the package of the scenario's env class (`jaxsoc/demos/`
  for retail and banking). Code elsewhere that the env calls is not counted: soc-hybrid's step
  draws its hosts' telemetry in `jaxsoc/detectors/telemetry.py`, whose kernels' stack frames end
  inside that file (they do not show the caller, and the hybrid learner calls the file too), so
  that telemetry is in "the rest" and in its own top row;
* **the rest**: sampling, log-probabilities, returns, optimiser, buffers, copies.

and how busy the threads were: kernel time over (threads x the same call's wall time without
the profiler); what is missing from 100 % is time no kernel ran (threads waiting between small
kernels, the host). Then the top rows by file, function or line, as `profile_env.py` charges
them. Under the profiler everything runs somewhat slower; the shares are what to read. CPU only.
With `--xla-default` the program is compiled with XLA:CPU's default options (products in
YNNPACK, `jaxsoc.xla.XLA_DEFAULT_OPTIONS`) instead of jaxsoc's: under jaxsoc's the profiler
misses part of the threads' time in XLA's own product kernels (the same MAPPO update showed
13.6 s of kernel time against 25.6), so its shares and "busy" are only complete with the flag.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from typing import Dict, Iterable, Set, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import profile_env as pe  # noqa: E402  (its HLO frame tables and kernel timing)

MATMUL = "(matrix products)"
NO_FRAME = "(no jaxsoc frame: flax layers, autodiff)"


def matmul_kernels(hlo_text: str) -> Set[str]:
    """Names of the instructions of an HLO module that compute a matrix product: `dot`s, and
    fusions whose called computation holds one (through nested fusions too). The kernels a
    profile times are among them; the dots inside a fusion are named too but never timed."""
    bodies = {m.group(1): m.group(2)
              for m in re.finditer(r"\n%?([\w.\-]+) [^\n]*\{\n(.*?)\n\}", hlo_text, re.S)}
    instruction = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (?:\([^=]*?\)|\S+) ([\w\-]+)\((.*)$", re.M)
    memo: Dict[str, bool] = {}

    def computes_product(op: str, rest: str) -> bool:
        return op == "dot" or (op == "fusion" and any(holds_dot(c) for c in re.findall(r"calls=%?([\w.\-]+)", rest)))

    def holds_dot(comp: str) -> bool:
        if comp not in memo:
            memo[comp] = False  # a cycle cannot hold more than its members
            memo[comp] = any(computes_product(op, rest) for _, op, rest in instruction.findall(bodies.get(comp, "")))
        return memo[comp]

    return {name for name, op, rest in instruction.findall(hlo_text) if computes_product(op, rest)}


ENV_CODE = ("jaxsoc/env/",)  # every world's shared env code (spaces, the SOC worlds, cage4, hybrid)


def env_code(env) -> Tuple[str, ...]:
    """The source folders whose frames are the env's: `ENV_CODE` and the package of each class of
    `type(env)` (`jaxsoc/demos/` for retail and banking, whose envs live outside `jaxsoc/env/`)."""
    folders = list(ENV_CODE)
    for cls in type(env).__mro__:
        module = cls.__module__
        if module.startswith("jaxsoc."):
            folder = "/".join(module.split(".")[:-1]) + "/"
            if not folder.startswith(tuple(folders)):
                folders.append(folder)
    return tuple(folders)


def shares(times: Dict[str, int], frames: Dict[str, list], matmuls: Iterable[str],
           code: Tuple[str, ...] = ENV_CODE) -> Dict[str, int]:
    """`{MATMUL | "env" | "rest" | pe.RUNTIME: ns}`: kernel time split into matrix products, the
    env's kernels (charged to a file in the env's source folders `code`, `env_code(env)`), the
    thread pool's bookkeeping and everything else."""
    matmuls = set(matmuls)
    out = {MATMUL: 0, "env": 0, "rest": 0, pe.RUNTIME: 0}
    for kernel, ns in times.items():
        if kernel == pe.RUNTIME:
            out[pe.RUNTIME] += ns
        elif kernel in matmuls:
            out[MATMUL] += ns
        elif pe.attribute(frames.get(kernel, []), "file").startswith(code):
            out["env"] += ns
        else:
            out["rest"] += ns
    return out


def main(argv=None):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from jaxsoc import cli

    ap = cli.Parser(prog="eval/profile_train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algo", required=True, help="a registered learner, as train/run.py's --algo (mappo, hmarl, iql, ...)")
    ap.add_argument("--scenario", default="soc-v2")
    ap.add_argument("--num-seeds", type=cli.parse_positive_int, default=5, help="seeds vmapped in one program (5)")
    ap.add_argument("--envs", type=cli.parse_positive_int, default=1024, help="parallel envs per seed (1,024)")
    ap.add_argument("--updates", type=cli.parse_positive_int, default=1, help="updates per profiled call (1)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, as train/run.py's --set")
    ap.add_argument("--xla-default", action="store_true",
                    help="compile with XLA:CPU's default options (YNNPACK products), whose kernels the profiler sees whole")
    ap.add_argument("--by", choices=("line", "function", "file"), default="file")
    ap.add_argument("--top", type=cli.parse_positive_int, default=15)
    args = ap.parse_args(argv)
    import jax
    import jaxlib._hlo as hlo
    import numpy as np

    from jaxsoc import algos, config as config_lib, engine, xla

    if jax.default_backend() != "cpu":
        ap.error(f"profiles XLA:CPU's kernels only; this process runs on {jax.default_backend()}")
    try:
        algos.family_of(args.algo)
        cfg = config_lib.resolve(flags={"algo": args.algo, "scenario": args.scenario, "num_envs": args.envs,
                                        "num_seeds": args.num_seeds, "total_steps": 10**12,
                                        "run": {"name": "profile", "progress": False}}, sets=args.sets)
        env, env_params = engine.make_env_checked(cfg)
        trainer = algos.make_train(cfg, env, env_params)  # refuses a world its team cannot act in
    except (KeyError, ValueError) as e:  # unknown algorithm, scenario or key; a bad value
        ap.error(str(e).strip("'\""))
    program = engine.build_program(trainer, cfg, engine.make_mesh(1), env, env_params)
    compiled = program.chunk(args.updates).lower(program.abstract_state, jax.ShapeDtypeStruct((), np.int32)).compile(
        xla.XLA_DEFAULT_OPTIONS if args.xla_default else None)
    options = hlo.HloPrintOptions()
    options.print_metadata = True
    text = compiled.runtime_executable().hlo_modules()[0].to_string(options)
    state = program.init(engine.seed_keys(cfg["seed"], args.num_seeds))
    state, _ = compiled(state, np.int32(args.updates))  # warm up outside the trace
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    state, _ = compiled(state, np.int32(args.updates))  # the same call, timed without the profiler
    jax.block_until_ready(state)
    plain = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        with jax.profiler.trace(d):
            state, _ = compiled(state, np.int32(args.updates))
            jax.block_until_ready(state)
        wall = time.perf_counter() - t0
        times = pe.kernel_times(d)
    frames = pe.source_frames(text)
    steps = args.num_seeds * trainer.env_steps_per_update * args.updates
    total = sum(times.values())
    threads = max(1, os.cpu_count() or 1)
    split = shares(times, frames, matmul_kernels(text), env_code(env))
    print(f"\n{args.algo} on {args.scenario}, {args.num_seeds} seeds x {args.envs} envs: {steps:,} env steps "
          f"in {plain:.2f} s ({steps / plain:,.0f} env-steps/s), {wall:.2f} s under the profiler; kernel time "
          f"{total / 1e9:.2f} s summed over the threads ({1e-3 * total / steps:,.1f} us per env step): "
          f"{100 * total / 1e9 / (plain * threads):.0f} % of {threads} threads x the time without the profiler")
    print("| part | share of kernel time | us per env step (summed over threads) |\n|---|---:|---:|")
    for part, ns in split.items():
        print(f"| {part} | {100 * ns / total:.1f} % | {1e-3 * ns / steps:,.1f} |")
    rows = pe.breakdown(times, frames, args.by)
    print("\n| share | source | costliest kernel |\n|---:|---|---|")
    for row, ns, kernel in rows[:args.top]:
        row = NO_FRAME if row == pe.HARNESS else row  # a training program has no harness of its own
        print(f"| {100 * ns / total:.1f} % | `{row}` | {kernel} |")


if __name__ == "__main__":
    main()
