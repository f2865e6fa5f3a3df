"""Matrix-product throughput of this machine under XLA, the floor under every learner's update.

    python eval/bench_matmul.py                  # float32 and bfloat16, 256^3 and 1024^3
    python eval/bench_matmul.py --sizes 256 512 --dtypes float32

An update round of 3 x 256 MLPs at batch 256 is made of [256, k] x [k, 256] products, so the
256^3 figure (best of `--repeats` jitted `lax.fori_loop`s of dependent products: 200 at 256^3,
fewer at larger sizes) bounds how fast any round can go here: a round of G GFLOP cannot take less
than G / (GFLOP/s) seconds.
bfloat16 operands accumulate in float32 (`preferred_element_type`), as mixed precision would.
Each product is timed twice in turn: compiled with jaxsoc's XLA options (`jaxsoc.xla`: XLA's own
product kernels) and with XLA:CPU's default (YNNPACK's), the two libraries a program can use.
A size whose arrays (`bytes_needed`) exceed this machine's memory (its RAM, `jaxsoc.memory`) is
refused before any array is made.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from jaxsoc import cli, xla  # noqa: E402
from jaxsoc.host import cpu_description  # noqa: E402
from jaxsoc.memory import machine_bytes  # noqa: E402


def make_chain(n: int, dtype, reps: int, jit=xla.jit):
    """`(chain, a, b)`: `chain(a, b)` is `reps` dependent `[n, n] x [n, n]` products, jitted by
    `jit` (jaxsoc's options by default; `jax.jit` for XLA's)."""
    a = jnp.full((n, n), 0.5, dtype)
    b = jnp.eye(n, dtype=dtype)  # values stay 0.5 along the chain (no overflow, no slow denormals)

    @jit
    def chain(x, b):  # b an argument, not a constant folded into the program, as weights are
        step = lambda i, x: jnp.dot(x, b, preferred_element_type=jnp.float32).astype(dtype)  # noqa: E731
        return jax.lax.fori_loop(0, reps, step, x)

    return chain, a, b


def matmul_gflops(n: int, dtype, reps: int = 100, repeats: int = 5) -> dict:
    """`{"jaxsoc": GFLOP/s, "xla-default": GFLOP/s}` of `reps` chained [n, n] x [n, n] products
    (best of `repeats`, the two compilations timed in turn so both see the same machine)."""
    chains = {"jaxsoc": make_chain(n, dtype, reps), "xla-default": make_chain(n, dtype, reps, jax.jit)}
    best = {}
    for name, (chain, a, b) in chains.items():
        jax.block_until_ready(chain(a, b))
        best[name] = float("inf")
    for _ in range(repeats):
        for name, (chain, a, b) in chains.items():
            t0 = time.perf_counter()
            jax.block_until_ready(chain(a, b))
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: 2.0 * n ** 3 * reps / t / 1e9 for name, t in best.items()}


def bytes_needed(n: int, dtype) -> int:
    """Bytes `matmul_gflops(n, dtype)` holds at once: both timings' operands (four [n, n] arrays of
    `dtype`, made before either runs) and, in the running chain, the loop's carry in and out and
    a product's float32 result (measured: n = 4096 float32 peaked at 7 such arrays over JAX's own)."""
    return n * n * (6 * jnp.dtype(dtype).itemsize + 4)


def main(argv=None) -> int:
    ap = cli.Parser(prog="eval/bench_matmul.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=cli.parse_positive_int, default=[256, 1024])
    # Floating types only: the chain's values are 0.5 (float64 needs jax_enable_x64, else it is float32).
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--repeats", type=cli.parse_positive_int, default=5)
    args = ap.parse_args(argv)
    memory = machine_bytes()
    # Before any array is made: a size past the machine's memory failed in XLA's allocator
    # (RESOURCE_EXHAUSTED and a traceback) after minutes of smaller sizes.
    for n in args.sizes:
        for dtype in args.dtypes:
            need = bytes_needed(n, dtype)
            if memory is not None and need > memory:
                ap.error(f"--sizes {n}: {dtype} products of {n:,} x {n:,} need {need / 2**30:,.1f} GiB at once, "
                         f"more than this machine's {memory / 2**30:,.1f} GiB of memory")
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs ({cpu_description()}), "
          f"load {os.getloadavg()[0]:.1f}")
    print("| dtype | n | GFLOP/s (jaxsoc's options) | GFLOP/s (XLA's default, YNNPACK) |\n|---|---:|---:|---:|")
    for dtype in args.dtypes:
        for n in args.sizes:
            reps = max(4, int(200 * (256 / n) ** 3))
            rates = matmul_gflops(n, jnp.dtype(dtype), reps, args.repeats)
            print(f"| {dtype} | {n} | {rates['jaxsoc']:.0f} | {rates['xla-default']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
