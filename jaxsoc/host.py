"""What the host machine's CPU is, as tables and benchmarks name it (`cpu_description`).

XLA:CPU compiles every program for the vector extensions of the CPU it runs on, so the same
program's float results, and a training run's trajectory after enough steps, can differ between
two hosts whose CPUs differ (docs/reproduction.md "Which host"); the figures of one machine are
comparable among themselves only. Every table `eval/reproduce.py` writes and every benchmark's
first line name the CPU with this description.
"""
from __future__ import annotations

import platform

# cpuinfo flag -> the name a description gives it, widest first
VECTOR_EXTENSIONS = {"avx512f": "avx512", "avx2": "avx2", "avx": "avx", "sse4_2": "sse4_2"}


def cpu_description(cpuinfo: str | None = None) -> str:
    """The host CPU as Linux's `/proc/cpuinfo` describes its first core (`cpuinfo`: that file's
    text; read when None): model name, family and model numbers, and the widest vector extension,
    e.g. "AMD EPYC (family 23, model 49, avx2)" (a hypervisor may shorten the name, so the
    numbers tell CPU generations apart). Elsewhere (no such file) `platform.processor()`."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return platform.processor() or "CPU not described by the OS"
    fields: dict = {}
    for line in cpuinfo.split("\n\n")[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    widest = next((name for flag, name in VECTOR_EXTENSIONS.items() if flag in flags), "no AVX")
    numbers = ", ".join(f"{name} {fields[key]}" for key, name in (("cpu family", "family"), ("model", "model"))
                        if key in fields)
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    return f"{name} ({numbers + ', ' if numbers else ''}{widest})"
