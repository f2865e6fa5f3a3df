"""Times the replay buffers at the paper's size: sum-tree PER vs a naive O(N) sampler.

    python eval/bench_buffers.py [--capacity 200000] [--batch 256] [--add 256] [--reps 100]
                                 [--obs-dtype float32|float16|bfloat16]

The buffer is full (size = capacity) with random priorities and holds the paper's transition
(4 agents' obs 352 floats, next obs, 37 action floats, reward, done). Each operation runs `reps`
times inside one jitted `lax.scan` with the buffer in the carry, as in training, so the numbers
are per-op device time without Python dispatch or buffer copies. "naive" keeps the same
priorities as a flat `[capacity]` array and samples with cumsum + searchsorted (O(N) per batch);
its update is a plain scatter. "indices" rows leave out the item gather, which both samplers share.
A --capacity whose arrays (`bytes_needed`) exceed this machine's memory (its RAM, `jaxsoc.memory`)
is refused before the buffer is made.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # uninstalled checkout
from jaxsoc import buffers as B, cli  # noqa: E402
from jaxsoc.host import cpu_description  # noqa: E402
from jaxsoc.memory import machine_bytes  # noqa: E402

OBS = {"sc": 64, "th": 128, "at": 64, "ro": 96}
ACTS = {"sc": 8, "th": 16, "at": 1, "ro": 12}


def paper_item(lead=()):
    """The paper's transition with leading shape `lead` (random, float32)."""
    key = iter(jax.random.split(jax.random.key(0), 16))
    leaf = lambda *shape: jax.random.normal(next(key), lead + shape)  # noqa: E731
    return {"obs": {k: leaf(v) for k, v in OBS.items()},
            "next_obs": {k: leaf(v) for k, v in OBS.items()},
            "actions": {k: leaf(v) for k, v in ACTS.items()},
            "reward": leaf(), "done": jnp.zeros(lead)}


def timed(fn, carry, reps, repeats=7):
    """Seconds per rep of `carry -> carry` scanned `reps` times: the best of `repeats` calls.

    The minimum, not the mean: the machine is shared and contention only ever adds time.
    """
    run = jax.jit(lambda c: jax.lax.scan(lambda c, _: (fn(c), None), c, None, length=reps)[0],
                  donate_argnums=0)
    carry = jax.block_until_ready(run(carry))  # compile
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        carry = jax.block_until_ready(run(carry))
        best = min(best, (time.perf_counter() - t0) / reps)
    return best, carry


def naive_indices(prio, key, batch):
    """O(N): cumulative sums of all priorities, then a binary search per draw. `[batch]`."""
    cdf = jnp.cumsum(prio)
    mass = jax.random.uniform(key, (batch,)) * cdf[-1]
    return jnp.minimum(jnp.searchsorted(cdf, mass, side="right"), prio.shape[0] - 1)


def touch(prio, key):
    """Changes one priority so XLA cannot hoist the O(N) cumsum out of the timing loop
    (in training the priorities change between samples too)."""
    i = jax.random.randint(key, (), 0, prio.shape[0])
    return prio.at[i].set(prio[i] * 0.5 + 0.25)


def bytes_needed(example, capacity: int, add: int, obs_dtype) -> int:
    """Bytes the benchmark holds at once: the full prioritized buffer (`buffers.buffer_bytes`,
    items and sum tree) twice, as a timed program's output beside its input (measured: capacity
    1e6 peaked at 2.1x the buffer), the `add` new float32 items, and the `[capacity]` TD errors,
    slot indices and flat priorities of the tree's build and the naive sampler."""
    return (2 * B.buffer_bytes(example, capacity, prioritized=True, obs_dtype=obs_dtype)
            + add * B.bytes_per_transition(example) + 3 * 4 * capacity)


def main(argv=None):
    ap = cli.Parser(prog="eval/bench_buffers.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--capacity", type=cli.parse_positive_int, default=200_000)
    ap.add_argument("--batch", type=cli.parse_positive_int, default=256)
    ap.add_argument("--add", type=cli.parse_positive_int, default=256, help="transitions per add (envs per step)")
    ap.add_argument("--reps", type=cli.parse_positive_int, default=100)
    ap.add_argument("--obs-dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    args = ap.parse_args(argv)
    if args.add > args.capacity:  # buffers.add writes at most a buffer's worth at once
        ap.error(f"--add {args.add:,} is more than --capacity {args.capacity:,}: one add must fit in the buffer")
    cap, batch, reps = args.capacity, args.batch, args.reps
    obs_dtype = None if args.obs_dtype == "float32" else jnp.dtype(args.obs_dtype)

    example = jax.tree.map(lambda x: x[0], paper_item((1,)))
    memory, need = machine_bytes(), bytes_needed(example, cap, args.add, obs_dtype)
    if memory is not None and need > memory:  # before the buffer is made (it failed in XLA's allocator)
        ap.error(f"--capacity {cap:,}: the full buffer, its copy and its work arrays need {need / 2**30:,.1f} GiB "
                 f"({args.obs_dtype} observations), more than this machine's {memory / 2**30:,.1f} GiB of memory")
    new_items = paper_item((args.add,))
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, "
          f"CPU {cpu_description()}")
    print(f"capacity {cap}, batch {batch}, add {args.add}, obs {args.obs_dtype}: "
          f"{B.bytes_per_transition(example, obs_dtype=obs_dtype)} B/transition, "
          f"PER buffer {B.buffer_bytes(example, cap, prioritized=True, obs_dtype=obs_dtype) / 1e6:.1f}"
          f" MB per seed")

    # A full buffer with random priorities (update_priorities over every slot builds the tree).
    state = B.init_prioritized(example, cap, obs_dtype=obs_dtype)
    state = state.replace(replay=state.replay.replace(size=jnp.int32(cap)))
    td = jax.random.exponential(jax.random.key(1), (cap,))
    state = jax.jit(B.update_priorities)(state, jnp.arange(cap), td)
    key = lambda: jax.random.key(2)  # noqa: E731  (a fresh one per call: carries are donated)
    res = {}

    def split(c):
        k, sub = jax.random.split(c[-1])
        return sub, c[:-1] + (k,)

    # ---- sum tree (the real functions)
    def tree_add(c):
        return (B.add(c[0], new_items), c[1])

    def tree_indices(c):
        sub, (s, acc, k) = split(c)
        idx, _ = B.descend(s.tree, jax.random.uniform(sub, (batch,)) * s.tree[1])
        return s, acc + idx.sum(), k

    def tree_sample(c):
        sub, (s, acc, k) = split(c)
        s, out = B.sample_prioritized(s, sub, batch)
        return s, acc + out.weights.sum() + out.items["obs"]["th"].sum(), k

    def tree_update(c):
        sub, (s, k) = split(c)
        k1, k2 = jax.random.split(sub)
        idx = jax.random.randint(k1, (batch,), 0, cap)
        return B.update_priorities(s, idx, jax.random.exponential(k2, (batch,))), k

    def tree_round(c):
        sub, (s, acc, k) = split(c)
        s, out = B.sample_prioritized(s, sub, batch)
        td = out.items["reward"] - 0.5  # stands in for a learner's TD errors (no weights in them)
        return B.update_priorities(s, out.indices, td), acc + out.items["obs"]["th"].sum(), k

    z = lambda: jnp.float32(0)  # noqa: E731
    res["add", "tree"], (state, _) = timed(tree_add, (state, key()), reps)
    res["sample indices", "tree"], (state, _, _) = timed(tree_indices, (state, jnp.int32(0), key()), reps)
    res["sample + items", "tree"], (state, _, _) = timed(tree_sample, (state, z(), key()), reps)
    res["update", "tree"], (state, _) = timed(tree_update, (state, key()), reps)
    res["sample + update", "tree"], (state, _, _) = timed(tree_round, (state, z(), key()), reps)

    # ---- naive: the same items, priorities as a flat [capacity] array
    replay, prio = state.replay, B.slot_priorities(state)
    del state

    def naive_add(c):
        r, p, k = c
        slots = (r.ptr + jnp.arange(args.add)) % cap
        return B.add(r, new_items), p.at[slots].set(p.max()), k

    def naive_idx(c):
        sub, (p, acc, k) = split(c)
        return touch(p, k), acc + naive_indices(p, sub, batch).sum(), k

    def naive_sample(c):
        sub, (r, p, acc, k) = split(c)
        idx = naive_indices(p, sub, batch)
        w = (p[idx].min() / p[idx]) ** 0.4
        return r, touch(p, k), acc + w.sum() + B.gather_items(r, idx)["obs"]["th"].sum(), k

    def naive_update(c):
        sub, (p, k) = split(c)
        k1, k2 = jax.random.split(sub)
        idx = jax.random.randint(k1, (batch,), 0, cap)
        new = (jax.random.exponential(k2, (batch,)) + 1e-6) ** 0.6
        return p.at[idx].set(0.0).at[idx].max(new), k

    def naive_round(c):
        sub, (r, p, acc, k) = split(c)
        idx = naive_indices(p, sub, batch)
        w = (p[idx].min() / p[idx]) ** 0.4
        items = B.gather_items(r, idx)
        new = (jnp.abs(items["reward"] * w) + 1e-6) ** 0.6
        return r, p.at[idx].set(0.0).at[idx].max(new), acc + items["obs"]["th"].sum(), k

    res["add", "naive"], (replay, prio, _) = timed(naive_add, (replay, prio, key()), reps)
    res["sample indices", "naive"], (prio, _, _) = timed(naive_idx, (prio, jnp.int32(0), key()), reps)
    res["sample + items", "naive"], (replay, prio, _, _) = timed(
        naive_sample, (replay, prio, z(), key()), reps)
    res["update", "naive"], (prio, _) = timed(naive_update, (prio, key()), reps)
    res["sample + update", "naive"], (replay, prio, _, _) = timed(
        naive_round, (replay, prio, z(), key()), reps)
    del replay, prio

    # ---- uniform replay, for scale
    uni = B.init(example, cap, obs_dtype=obs_dtype)
    uni = uni.replace(size=jnp.int32(cap))

    def uni_sample(c):
        sub, (u, acc, k) = split(c)
        items, _ = B.sample(u, sub, batch)
        return u, acc + items["obs"]["th"].sum(), k

    res["add", "uniform"], uni = timed(lambda u: B.add(u, new_items), uni, reps)
    res["sample + items", "uniform"], _ = timed(uni_sample, (uni, z(), key()), reps)

    ops = ("add", "sample indices", "sample + items", "update", "sample + update")
    print(f"\n{'per call, us':<18}{'sum tree':>12}{'naive O(N)':>12}{'uniform':>12}")
    for op in ops:
        row = [res.get((op, kind)) for kind in ("tree", "naive", "uniform")]
        print(f"{op:<18}" + "".join(f"{t * 1e6:>12.1f}" if t is not None else f"{'-':>12}"
                                    for t in row))


if __name__ == "__main__":
    main()
