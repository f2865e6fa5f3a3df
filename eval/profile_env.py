"""Where the env step's time goes: XLA:CPU's per-kernel times, attributed to jaxsoc source lines.

    python eval/profile_env.py                                  # soc-v2, 4,096 envs, top 25 lines
    python eval/profile_env.py --presets hmarl-soc-v1 soc-strategic --by function --top 15

Runs `eval/bench_env.py`'s program (reset + `--steps` random auto-resetting steps, one jitted
`lax.scan` over `vmap(env.step)`) under `jax.profiler`, sums the time of every XLA kernel (a
fusion, a loop, a copy) over XLA's worker threads, and charges each kernel to the innermost
jaxsoc frame of the operation it was built from (its HLO stack frame). Rows are shares of all
kernel time, so they stay meaningful on a machine shared with other jobs, where absolute times
do not. Two rows are not the env's: `(harness)` (the random actions and key splits of the
benchmark itself) and `(runtime)` (XLA's thread-pool bookkeeping between kernels: a cost of many
small kernels rather than of any line).

Read a row with care: XLA fuses elementwise producers into their consumers (and duplicates cheap
ones into several), so a kernel charged to the line that consumes a value also computes that
value: a row named after a sum may be mostly the per-host logic feeding it. CPU only.
"""
from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
from typing import Dict, List, NamedTuple, Tuple

HARNESS = "(harness)"
RUNTIME = "(runtime)"
UNKNOWN = "(no source)"  # XLA left no stack frame; rows name the kernel's kind: "(no source: copy)"


class Frame(NamedTuple):
    file: str  # path relative to the jaxsoc package's parent, e.g. "jaxsoc/env/core.py"
    function: str
    line: int


def _section(text: str, name: str) -> List[str]:
    """The lines of one of the HLO module's stack-frame tables (`FileNames`, `StackFrames`, ...)."""
    parts = text.split("\n" + name + "\n", 1)
    if len(parts) < 2:
        return []
    return [ln for ln in parts[1].split("\n\n", 1)[0].split("\n") if ln.strip()]


def source_frames(hlo_text: str) -> Dict[str, List[Frame]]:
    """`{instruction name: [Frame, ...] innermost first}` from an HLO module printed with metadata.

    The module's `FileNames`, `FunctionNames`, `FileLocations` and `StackFrames` tables give each
    `stack_frame_id` its call chain; instructions without one are left out.
    """
    files = {int(ln.split()[0]): ln.split('"')[1] for ln in _section(hlo_text, "FileNames")}
    funcs = {int(ln.split()[0]): ln.split('"')[1] for ln in _section(hlo_text, "FunctionNames")}
    locs = {}
    for ln in _section(hlo_text, "FileLocations"):
        kv = dict(re.findall(r"(\w+)=(\d+)", ln))
        path = files[int(kv["file_name_id"])]
        short = path[path.rfind("jaxsoc/"):] if "jaxsoc/" in path else os.path.basename(path)
        locs[int(ln.split()[0])] = Frame(short, funcs[int(kv["function_name_id"])], int(kv["line"]))
    parents = {}
    for ln in _section(hlo_text, "StackFrames"):
        kv = dict(re.findall(r"(\w+)=(\d+)", ln))
        parents[int(ln.split()[0])] = (int(kv["file_location_id"]), int(kv["parent_frame_id"]))

    def chain(fid: int) -> List[Frame]:
        out, seen = [], set()
        while fid in parents and fid not in seen:  # a frame's parent id 0 (or itself) ends the chain
            seen.add(fid)
            loc, fid = parents[fid]
            out.append(locs[loc])
        return out

    out = {m.group(1): chain(int(m.group(2)))
           for m in re.finditer(r"\n\s*%?([\w.\-]+) = [^\n]*stack_frame_id=(\d+)", hlo_text)}
    # A kernel that wraps one operation ("wrapped_reduce-window") carries no metadata itself: take
    # the first located instruction of the computation it calls.
    bodies = {m.group(1): m.group(2)
              for m in re.finditer(r"\n%?([\w.\-]+) [^\n]*\{\n(.*?)\n\}", hlo_text, re.S)}
    for m in re.finditer(r"\n\s*%?([\w.\-]+) = [^\n]*calls=%?([\w.\-]+)", hlo_text):
        inner = m.group(1) not in out and re.search(r"stack_frame_id=(\d+)", bodies.get(m.group(2), ""))
        if inner:
            out[m.group(1)] = chain(int(inner.group(1)))
    return out


# Frames in these files are plumbing many lines share (the random numbers); charging a kernel
# to the line that asked for the numbers says more.
PLUMBING = ("jaxsoc/env/rng.py",)


def attribute(frames: List[Frame], by: str = "line") -> str:
    """A kernel's row: its innermost jaxsoc frame outside `PLUMBING`, as `file:function:line`
    (`by="function"`: `file:function`; `"file"`: the file); `HARNESS` when no jaxsoc frame."""
    ours = [f for f in frames if f.file.startswith("jaxsoc/")]
    if not ours:
        return HARNESS if frames else UNKNOWN
    f = next((f for f in ours if not f.file.startswith(PLUMBING)), ours[0])
    if by == "file":
        return f.file
    if by == "function":
        return f"{f.file}:{f.function}"
    return f"{f.file}:{f.function}:{f.line}"


def self_times(events) -> List[int]:
    """Each of one thread's `(start_ns, duration_ns)` events less the events nested inside it (a
    `while` loop's event spans its body's kernels on the same thread, which have events of their
    own): summing these counts every nanosecond once."""
    order = sorted(range(len(events)), key=lambda i: (events[i][0], -events[i][1]))
    own = [duration for _, duration in events]
    open_ = []  # (end, index) of the events enclosing the current one, innermost last
    for i in order:
        start, duration = events[i]
        while open_ and open_[-1][0] <= start:
            open_.pop()
        if open_:
            own[open_[-1][1]] -= duration
        open_.append((start + duration, i))
    return own


def kernel_times(trace_dir: str) -> Dict[str, int]:
    """`{kernel name: total ns}` over XLA:CPU's worker threads in the newest trace under `trace_dir`,
    each event's own time (`self_times`: a loop's event less its body's); the thread pool's own
    events are summed under `RUNTIME`."""
    import jax

    paths = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True))
    if not paths:
        raise RuntimeError(f"jax.profiler wrote no trace under {trace_dir}")
    data = jax.profiler.ProfileData.from_file(paths[-1])
    out = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if "XLAEigen" not in line.name:  # XLA:CPU's intra-op worker threads
                continue
            events = [ev for ev in line.events if not ev.name.startswith("ThunkExecutor")]  # spans the kernels
            for ev, ns in zip(events, self_times([(ev.start_ns, ev.duration_ns) for ev in events])):
                out[RUNTIME if ev.name.startswith("ThreadpoolListener") else ev.name] += ns
    return dict(out)


def breakdown(times: Dict[str, int], frames: Dict[str, List[Frame]], by: str = "line"
              ) -> List[Tuple[str, int, str]]:
    """`[(row, ns, the costliest kernel of the row)]`, costliest row first."""
    rows, top = collections.Counter(), {}
    for kernel, ns in times.items():
        row = RUNTIME if kernel == RUNTIME else attribute(frames.get(kernel, []), by)
        if row == UNKNOWN:  # e.g. copies of the scan's carried state, reduce-windows XLA made up
            kind = re.sub(r"[.][0-9]+$", "", kernel).replace("wrapped_", "")
            row = f"(no source: {kind})"
        rows[row] += ns
        if ns > top.get(row, ("", -1))[1]:
            top[row] = (kernel, ns)
    return [(row, ns, top[row][0]) for row, ns in rows.most_common()]


def profile(preset: str, n: int, steps: int, repeats: int, by: str):
    """Compile and profile one preset; `-> (breakdown rows, kernel ns per env step)`."""
    import jax
    import jaxlib._hlo as hlo

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_env import make_runner

    import jaxsoc.env as soc
    from jaxsoc.env import cage4

    env, _ = cage4.make(preset) if preset == "cage4-like" else soc.make(preset)
    run = make_runner(env, n, steps)
    compiled = run.lower(jax.random.key(0)).compile()
    options = hlo.HloPrintOptions()
    options.print_metadata = True
    text = compiled.runtime_executable().hlo_modules()[0].to_string(options)
    jax.block_until_ready(compiled(jax.random.key(1)))  # warm up outside the trace
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            for r in range(repeats):
                jax.block_until_ready(compiled(jax.random.key(2 + r)))
        times = kernel_times(d)
    rows = breakdown(times, source_frames(text), by)
    total = sum(ns for _, ns, _ in rows)
    return rows, total / (n * steps * repeats)


def main(argv=None):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from jaxsoc import cli

    ap = cli.Parser(prog="eval/profile_env.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["soc-v2"],
                    help="SOC presets or cage4-like (soc-v2); the demo worlds and soc-hybrid are not profiled")
    ap.add_argument("--envs", type=cli.parse_positive_int, default=4096)
    ap.add_argument("--steps", type=cli.parse_positive_int, default=20, help="env steps per profiled call")
    ap.add_argument("--repeats", type=cli.parse_positive_int, default=3, help="profiled calls")
    ap.add_argument("--by", choices=("line", "function", "file"), default="line")
    ap.add_argument("--top", type=cli.parse_positive_int, default=25)
    args = ap.parse_args(argv)
    import jax

    if jax.default_backend() != "cpu":
        ap.error(f"profiles XLA:CPU's kernels only; this process runs on {jax.default_backend()}")
    import jaxsoc.env as soc
    from jaxsoc.names import suggest

    known = sorted(set(soc.preset_names()) | {"cage4-like"})
    # Worlds make builds that bench_env's runner cannot step (the demos, soc-hybrid): not "unknown".
    other = [p for p in args.presets if p not in known and p in soc.scenario_names()]
    if other:
        names = ", ".join(repr(p) for p in other)
        ap.error(f"preset{'s' * (len(other) > 1)} {names} {'are' if len(other) > 1 else 'is'} not "
                 f"{'ones' if len(other) > 1 else 'one'} this profiler runs; it runs: {', '.join(known)}")
    unknown = [p for p in args.presets if p not in known]
    if unknown:
        names = ", ".join(f"{p!r}{suggest(p, known)}" for p in unknown)
        ap.error(f"unknown preset{'s' * (len(unknown) > 1)} {names}; known: {', '.join(known)}")
    for preset in args.presets:
        rows, ns_per_step = profile(preset, args.envs, args.steps, args.repeats, args.by)
        total = sum(ns for _, ns, _ in rows)
        print(f"\n{preset}, {args.envs} envs: {ns_per_step:,.0f} ns of kernel time per env step "
              f"(summed over threads), {len(rows)} rows")
        print("| share | cumulative | source | costliest kernel |\n|---:|---:|---|---|")
        acc = 0
        for row, ns, kernel in rows[:args.top]:
            acc += ns
            print(f"| {100 * ns / total:.1f} % | {100 * acc / total:.1f} % | `{row}` | {kernel} |")


if __name__ == "__main__":
    main()
