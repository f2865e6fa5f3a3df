"""Matrix-product throughput of this machine under XLA, the floor under every learner's update.

    python eval/bench_matmul.py                  # float32 and bfloat16, 256^3 and 1024^3
    python eval/bench_matmul.py --sizes 256 512 --dtypes float32

An update round of 3 x 256 MLPs at batch 256 is made of [256, k] x [k, 256] products, so the
256^3 figure (best of `--repeats` jitted `lax.fori_loop`s of `--reps` dependent products) bounds
how fast any round can go here: a round of G GFLOP cannot take less than G / (GFLOP/s) seconds.
bfloat16 operands accumulate in float32 (`preferred_element_type`), as mixed precision would.
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp


def make_chain(n: int, dtype, reps: int):
    """`(chain, a, b)`: `chain(a, b)` is `reps` dependent `[n, n] x [n, n]` products, jitted."""
    a = jnp.full((n, n), 0.5, dtype)
    b = jnp.eye(n, dtype=dtype)  # values stay 0.5 along the chain (no overflow, no slow denormals)

    @jax.jit
    def chain(x, b):  # b an argument, not a constant folded into the program, as weights are
        step = lambda i, x: jnp.dot(x, b, preferred_element_type=jnp.float32).astype(dtype)  # noqa: E731
        return jax.lax.fori_loop(0, reps, step, x)

    return chain, a, b


def matmul_gflops(n: int, dtype, reps: int = 100, repeats: int = 5) -> float:
    """GFLOP/s of `reps` chained [n, n] x [n, n] products (best of `repeats`)."""
    chain, a, b = make_chain(n, dtype, reps)
    jax.block_until_ready(chain(a, b))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(chain(a, b))
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 * reps / best / 1e9


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[256, 1024])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")
    print("| dtype | n | GFLOP/s |\n|---|---:|---:|")
    for dtype in args.dtypes:
        for n in args.sizes:
            reps = max(4, int(200 * (256 / n) ** 3))
            print(f"| {dtype} | {n} | {matmul_gflops(n, jnp.dtype(dtype), reps, args.repeats):.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
