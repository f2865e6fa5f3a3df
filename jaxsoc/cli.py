"""What the command lines (train/run.py, eval/*.py) share: one-line argparse errors, number, seed
and list parsing, the run-folder arguments of the table and figure tools, and turning every
expected failure into `error: <message>` with exit status 2 (no stack trace).

Light on purpose: nothing here imports JAX, so `--help` and flag errors stay instant."""
from __future__ import annotations

import argparse
import sys
from typing import Callable


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (`<prog>: error: <message> (see --help)`), exit 2."""

    def error(self, message):  # one line, no usage dump
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def parse_int(text: str) -> int:
    """An integer that may be written 5e6 or 5_000_000."""
    try:
        value = float(str(text).replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(value)


def parse_seeds(text: str) -> tuple[int, ...]:
    """'42,123,456' or '0-4' or '0-2,10' -> the seeds, in order, without duplicates."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-") if not part.startswith("-") else (part, "", "")
        try:
            values = range(int(lo), int(hi) + 1) if sep else [int(lo)]
        except ValueError:
            raise argparse.ArgumentTypeError(f"seeds are integers like 42,123 or 0-4, got {text!r}") from None
        if sep and int(hi) < int(lo):
            raise argparse.ArgumentTypeError(f"empty seed range {part!r}")
        for v in values:
            if v < 0:
                raise argparse.ArgumentTypeError(f"seeds must be >= 0, got {v}")
            if v not in out:
                out.append(v)
    if not out:
        raise argparse.ArgumentTypeError(f"no seeds in {text!r}")
    return tuple(out)


def parse_list(text: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']."""
    return [x.strip() for x in str(text).split(",") if x.strip()]


def add_run_arguments(p: argparse.ArgumentParser, window_help: str) -> None:
    """The arguments of the tools that read run folders under both protocols (eval/table.py,
    eval/figures.py): the folders, --protocol, --window (paper), --episodes and --no-evaluate (ours)."""
    p.add_argument("runs", nargs="*", default=["runs"], metavar="PATH",
                   help="run folders or folders holding them (default: runs)")
    p.add_argument("--protocol", choices=("paper", "ours", "both"), default="both")
    p.add_argument("--window", type=parse_int, default=2000, metavar="N", help=window_help)
    p.add_argument("--episodes", type=parse_int, default=1000, metavar="N",
                   help="ours: held-out episodes per seed for runs not yet evaluated (1000)")
    p.add_argument("--no-evaluate", action="store_true", help="ours: use existing evaluations only")


def read_methods(paths) -> list:
    """The methods (`jaxsoc.analysis.runs.Group`s) of the run folders at or below `paths`, for
    eval/table.py and eval/figures.py; each note about a seed taken from the newest of several
    runs is printed to stderr as `note: ...`."""
    from jaxsoc.analysis import runs

    groups = runs.group_runs(runs.find_runs(paths))
    for g in groups:
        for note in g.notes:
            print(f"note: {note}", file=sys.stderr)
    return groups


def guarded(main: Callable[[], int]) -> int:
    """Runs `main`; AnalysisError/ConfigError (and their kin) -> 'error: ...' on stderr, exit 2;
    Ctrl-C -> exit 130."""
    from jaxsoc.analysis.runs import AnalysisError
    from jaxsoc.config import ConfigError

    try:
        return main()
    except (AnalysisError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def use_agg() -> None:
    """Matplotlib without a display (the tools only write files)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
