"""Environment throughput: env-steps/s for 1..16384 envs, both presets, in one run.

    python eval/bench_env.py                       # the table in docs/benchmarks.md
    python eval/bench_env.py --envs 1 4096 --presets hmarl-soc-v1 --steps 200
    python eval/bench_env.py --reference ~/HMARL-SOC-journal/code   # + the original NumPy env
    python eval/bench_env.py --presets soc-v2 cage4-like --envs 4096  # + the CAGE-4-like scenario

Each measurement is reset + `steps` steps with uniformly random actions and auto-reset on, jitted
as one `lax.scan` over `jax.vmap(env.step)`. Printed per preset and size: compile time, steady-state
env-steps/s (best of `--repeats`), the ratio to 1 env measured in the same run, and bytes of env
state per env. Machines are noisy: compare numbers from the same run only.

`--cpu-devices D` splits the host CPU into D XLA devices (it sets
XLA_FLAGS=--xla_force_host_platform_device_count=D before JAX starts) and shards the envs over
them, so each core steps its own shard: every `--envs` count must then be a multiple of D (others
are refused; the default counts are cut to those that are). On a machine with several
accelerators the envs are sharded over all of them, and counts that are not a multiple of their
number are skipped.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from jaxsoc import cli  # noqa: E402  (light: no JAX, so the XLA flags below are still set in time)


ENVS = [1, 64, 1024, 4096, 16384]  # the default --envs


def _parse(argv=None):
    """The command line, refused in one line (`<prog>: error: ...`, exit 2) before any benchmark."""
    ap = cli.Parser(prog="eval/bench_env.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["hmarl-soc-v1", "soc-v2"])
    # None: not given, so that counts given explicitly that --cpu-devices cannot shard are refused
    ap.add_argument("--envs", nargs="+", type=cli.parse_positive_int,
                    help=f"env counts (default: {' '.join(map(str, ENVS))}; with --cpu-devices D, those of "
                         "them that are multiples of D)")
    ap.add_argument("--steps", type=cli.parse_positive_int, default=100, help="env steps per timed call")
    ap.add_argument("--repeats", type=cli.parse_positive_int, default=3)
    ap.add_argument("--cpu-devices", type=cli.parse_non_negative_int, default=0,
                    help="split the host CPU into this many XLA devices and shard envs across them "
                         "(every --envs count a multiple of it)")
    ap.add_argument("--with-obs", action="store_true",
                    help="compute every observation (a rollout's cost); default: rewards only, which XLA "
                         "may compute without the observations")
    ap.add_argument("--reference", default=None,
                    help="path to the original HMARL-SOC code/ folder, to time its NumPy env in the same run")
    args = ap.parse_args(argv)
    from jaxsoc import config  # the scenario registry (imports JAX, but starts no backend)
    from jaxsoc.names import suggest

    from jaxsoc.env import preset_names

    known = config.known_scenarios() or []
    # What this benchmark can time: the SOC presets and cage4-like (their envs count the random
    # words a step draws); the demo worlds and soc-hybrid do not (they would fail mid-run).
    timed = sorted(set(preset_names()) | {"cage4-like"})
    for preset in args.presets:  # a preset, or a scenario .yaml as jaxsoc.env.make reads
        if config.is_scenario_file(preset) and not os.path.isfile(preset):
            ap.error(f"--presets: scenario file {preset} does not exist")
        if not config.is_scenario_file(preset) and preset not in timed:
            what = "is not one this benchmark times" if preset in known else "is unknown"
            ap.error(f"preset {preset!r} {what}{suggest(preset, timed)}; it times: {', '.join(timed)}")
    d = args.cpu_devices
    if args.envs is None:  # the defaults that d devices can share evenly (each of them, without d)
        args.envs = [n for n in ENVS if not d or n % d == 0]
        if not args.envs:
            ap.error(f"--cpu-devices {d}: none of the default env counts ({' '.join(map(str, ENVS))}) is a "
                     f"multiple of it; give --envs")
    elif d:  # bench() shards each count evenly over the devices: others it could not time
        uneven = [n for n in args.envs if n % d]
        if uneven:
            ap.error(f"--envs {' '.join(map(str, uneven))}: not divisible by --cpu-devices {d} "
                     f"(each device steps an equal share); give multiples of {d}")
    if args.reference is not None and not os.path.isdir(args.reference):  # found out before the benchmarks
        ap.error(f"--reference {args.reference} is not a folder (the original HMARL-SOC code/ folder)")
    return args


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None and ARGS.cpu_devices:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={ARGS.cpu_devices}").strip()

import jax  # noqa: E402  (XLA flags must be set first)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxsoc.env as soc  # noqa: E402
from jaxsoc.host import cpu_description  # noqa: E402
from jaxsoc.memory import tree_bytes  # noqa: E402
from jaxsoc.env import cage4  # noqa: E402
from jaxsoc.env.spaces import Discrete  # noqa: E402


def random_actions(env, key, n):
    """`{agent: [n, ...]}` uniform actions, one batched draw per role (cheap next to the env)."""
    keys = jax.random.split(key, env.num_agents)
    out = {}
    for k, a in zip(keys, env.agents):
        space = env.action_space(a)
        if isinstance(space, Discrete):
            out[a] = jax.random.randint(k, (n,), 0, space.n)
        else:
            out[a] = jax.random.uniform(k, (n,) + space.shape, minval=-1.0, maxval=1.0)
    return out


def make_runner(env, n, steps, mesh=None, with_obs=False):
    """`run(key) -> checksum`: reset n envs, then `steps` auto-resetting random steps.

    The checksum sums the rewards, so XLA drops every computation nothing returned depends on:
    the observations among them. `with_obs` adds every observation to the checksum, so they are
    computed as a learner's rollout must (docs/benchmarks.md: v1 keeps 0.58-0.75 of its
    rewards-only rate, soc-v2 0.71-0.94).
    With a mesh, each device runs n / devices envs of its own (shard_map), so every core steps.
    """
    def run_local(key, m):
        k0, k1 = jax.random.split(key)
        _, state = jax.vmap(env.reset)(jax.random.split(k0, m))

        def body(state, k):
            ka, ks = jax.random.split(k)
            obs, state, rew, _, _ = jax.vmap(env.step)(jax.random.split(ks, m), state, random_actions(env, ka, m))
            total = jnp.sum(rew[env.agents[0]])
            if with_obs:
                total = total + sum(jnp.sum(o.astype(jnp.float32)) for o in jax.tree.leaves(obs))
            return state, total

        _, rews = jax.lax.scan(body, state, jax.random.split(k1, steps))
        return jnp.sum(rews)

    if mesh is None:
        return jax.jit(lambda key: run_local(key, n))
    from jax.sharding import PartitionSpec as P

    per_device = n // mesh.size
    sharded = jax.shard_map(lambda keys: run_local(keys[0], per_device)[None], mesh=mesh,
                            in_specs=P("d"), out_specs=P("d"), check_vma=False)
    return jax.jit(lambda key: sharded(jax.random.split(key, mesh.size)))


def state_bytes_per_env(env, n=8):
    _, state = jax.eval_shape(jax.vmap(env.reset), jax.random.split(jax.random.key(0), n))
    return tree_bytes(state) // n


def bench(preset, sizes, steps, repeats, mesh, with_obs=False):
    env, _ = cage4.make(preset) if preset == "cage4-like" else soc.make(preset)
    rows = []
    for n in sizes:
        if mesh is not None and n % mesh.size:  # devices from XLA_FLAGS or accelerators: said, not silent
            print(f"  {preset}: {n} envs skipped (not a multiple of the {mesh.size} devices)", flush=True)
            continue
        run = make_runner(env, n, steps, mesh if (mesh is not None and n >= mesh.size) else None, with_obs)
        t0 = time.perf_counter()
        compiled = run.lower(jax.random.key(0)).compile()
        compile_s = time.perf_counter() - t0
        jax.block_until_ready(compiled(jax.random.key(1)))  # warm up
        best, best_cpu = np.inf, np.inf
        for r in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(compiled(jax.random.key(2 + r)))
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        rows.append(dict(preset=preset, envs=n, compile_s=compile_s, sps=n * steps / best))
        # Per CPU-second of this process: comparable across runs on a machine shared with other jobs.
        print(f"  {preset:14s} {n:>6d} envs: {n * steps / best:>12,.0f} env-steps/s, "
              f"{n * steps / best_cpu:>10,.0f} per CPU-s (compile {compile_s:5.1f} s)", flush=True)
    return env, rows


def bench_reference(path, seconds=5.0):
    """Steps/s of the original NumPy SOCEnv with random actions (one process, one core)."""
    sys.path.insert(0, path)
    from hmarl_soc.env.soc_env import SOCEnv  # the user's local checkout; not part of jaxsoc

    env = SOCEnv({"hosts_per_segment": 40, "max_steps": 200}, seed=0)
    rng = np.random.default_rng(0)
    env.reset()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        acts = {"sc": rng.uniform(-1, 1, 8).astype(np.float32), "th": rng.uniform(-1, 1, 16).astype(np.float32),
                "at": int(rng.integers(4)), "ro": rng.uniform(-1, 1, 12).astype(np.float32)}
        _, _, term, trunc, _ = env.step(acts)
        n += 1
        if term or trunc:
            env.reset()
    return n / (time.perf_counter() - t0)


def main(args):
    devices = jax.devices()
    print(f"jaxsoc env benchmark on {devices[0].device_kind} x{len(devices)} ({jax.default_backend()}), "
          f"jax {jax.__version__}, {os.cpu_count()} CPU cores ({cpu_description()}); "
          f"{'observations computed' if args.with_obs else 'rewards only (observations may be skipped)'}")
    mesh = None
    if len(devices) > 1:
        mesh = jax.sharding.Mesh(np.array(devices), ("d",))
        print(f"  envs sharded over {len(devices)} devices")
    all_rows = []
    for preset in args.presets:
        env, rows = bench(preset, args.envs, args.steps, args.repeats, mesh, args.with_obs)
        words = env.random_words_per_step()
        print(f"  {preset}: {state_bytes_per_env(env):,} bytes of state per env; random 32-bit words per "
              f"env step: {sum(words.values())} ({', '.join(f'{k} {v}' for k, v in words.items())})")
        all_rows += [dict(r, bytes=state_bytes_per_env(env)) for r in rows]
    ref = None
    if args.reference:
        ref = bench_reference(args.reference)
        print(f"  original NumPy env: {ref:,.0f} env-steps/s (1 process)")
    # The ratio is to the smallest count measured (1 unless the counts start higher, or skipped 1):
    # the column says which.
    smallest = min((r["envs"] for r in all_rows), default=1)
    print(f"\n| preset | envs | env-steps/s | x {smallest:,} env{'s' if smallest > 1 else ''} | compile (s) | "
          "state bytes/env | 4096-env state |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in all_rows:
        base = min((x for x in all_rows if x["preset"] == r["preset"]), key=lambda x: x["envs"])
        ratio = f"{r['sps'] / base['sps']:,.1f}" if base["envs"] == smallest else "n/a"
        print(f"| {r['preset']} | {r['envs']} | {r['sps']:,.0f} | {ratio} | {r['compile_s']:.1f} | "
              f"{r['bytes']:,} | {r['bytes'] * 4096 / 2 ** 20:,.1f} MiB |")
    if ref:
        print(f"| original NumPy env (reference) | 1 | {ref:,.0f} | | | | |")


if __name__ == "__main__":
    main(ARGS)
