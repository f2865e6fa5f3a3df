"""What the command lines (train/run.py, eval/*.py) share: one-line argparse errors, number, seed
and list parsing, the run-folder arguments of the table and figure tools, and turning every
expected failure into `<tool>: error: <message>` with exit status 2 (no stack trace), the form
argparse gives a bad flag, so a pipeline's log says which tool stopped.

Light on purpose: nothing here imports JAX, so `--help` and flag errors stay instant."""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

from jaxsoc.names import repeated


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


def parse_positive_int(text: str) -> int:
    """`parse_int`, 1 or more."""
    value = parse_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_non_negative_int(text: str) -> int:
    """`parse_int`, 0 or more."""
    value = parse_int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return value


def set_keys_problem(sets, prefixes: tuple[str, ...]) -> str | None:
    """For a tool whose own flags set the rest of the config (envs, budgets, seeds): the first
    `--set KEY=VALUE` whose key starts with none of `prefixes` ("meta.", "env."), or None. Such a
    key was taken and then overridden or left unread."""
    for item in sets:
        key = str(item).split("=", 1)[0].strip()
        if not key.startswith(tuple(prefixes)):
            return (f"--set {item}: this tool takes {' or '.join(p + 'KEY=VALUE' for p in prefixes)} only "
                    "(its own flags set the envs, budgets, seeds and the rest)")
    return None


MAX_SEED = 2**32 - 1  # the largest seed (uint32; a config's seeds too, `jaxsoc.config`)


def parse_seed(text: str) -> int:
    """A seed: `parse_int`, 0 to `MAX_SEED` (a key's seed is an unsigned 32-bit word)."""
    value = parse_int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to {MAX_SEED:,}, got {text!r}")
    return value


# Every trainer counts env steps in int32: the most one seed of a run can take
# (`jaxsoc.engine` refuses a config past it, the tools' step flags likewise).
MAX_ENV_STEPS = 2**31 - 1


def parse_env_steps(text: str) -> int:
    """An env-step budget per seed: `parse_positive_int`, at most `MAX_ENV_STEPS`."""
    value = parse_positive_int(text)
    if value > MAX_ENV_STEPS:
        raise argparse.ArgumentTypeError(f"more than the {MAX_ENV_STEPS:,} env steps per seed the int32 step "
                                         f"counters hold, got {text!r}")
    return value


def parse_positive_float(text: str) -> float:
    """A finite number above 0 (not nan, not inf)."""
    try:
        value = float(str(text).replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number above 0, got {text!r}")
    return value


# More seeds than any tool runs in one go; a range past it is a typo (and would take long to list).
MAX_SEEDS = 100_000


def parse_seeds(text: str) -> tuple[int, ...]:
    """'42,123,456' or '0-4' or '0-2,10' -> the seeds, in order; a seed given twice, more than
    `MAX_SEEDS` seeds or a negative one is refused."""
    out: list[int] = []
    seen: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-") if not part.startswith("-") else (part, "", "")
        try:
            first, last = (int(lo), int(hi)) if sep else (int(lo), int(lo))
        except ValueError:
            raise argparse.ArgumentTypeError(f"seeds are integers like 42,123 or 0-4, got {text!r}") from None
        if last < first:
            raise argparse.ArgumentTypeError(f"empty seed range {part!r}")
        if first < 0:
            raise argparse.ArgumentTypeError(f"seeds must be >= 0, got {first}")
        if len(out) + last - first + 1 > MAX_SEEDS:
            raise argparse.ArgumentTypeError(f"more than {MAX_SEEDS:,} seeds in {text!r}")
        for v in range(first, last + 1):
            if v in seen:
                raise argparse.ArgumentTypeError(f"seed {v} is given twice in {text!r}")
            seen.add(v)
            out.append(v)
    if not out:
        raise argparse.ArgumentTypeError(f"no seeds in {text!r}")
    return tuple(out)


def folder_problem(path: str | os.PathLike) -> str | None:
    """Why files cannot be written into folder `path` (made if missing), or None: checked before a
    tool does its work, so that a bad --out fails in one line instead of after it. The path must
    not be a file; the nearest folder that exists at or above it must take a new folder (tried:
    one is made there and removed at once; nothing is left)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"{path} exists and is not a folder"
    return _creation_problem(path, path)


def file_problem(path: str | os.PathLike) -> str | None:
    """Why file `path` cannot be written (its folder made if missing), or None: a folder at the
    path, or a folder above it that is a file or cannot be written (`folder_problem`)."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder, not a file"
    return _creation_problem(path, path.parent)


def _creation_problem(target: Path, folder: Path) -> str | None:
    """Why `target` cannot be made with `folder` (made if missing) as its folder, or None."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot write {target}: {existing} is not a folder"
    try:  # a real write (permission bits do not tell for root, /proc, read-only mounts), undone
        os.rmdir(tempfile.mkdtemp(prefix=".jaxsoc-write-check-", dir=existing))
    except OSError as e:
        return f"cannot write {target}: {existing} refuses new files ({e.strerror or e})"
    return None


def parse_list(text: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']."""
    return [x.strip() for x in str(text).split(",") if x.strip()]


def add_run_arguments(p: argparse.ArgumentParser, window_help: str, metrics_help: str) -> None:
    """The arguments of the tools that read run folders under both protocols (eval/table.py,
    eval/figures.py): the folders, --protocol, --window (paper), --episodes and --no-evaluate (ours),
    --metrics."""
    p.add_argument("runs", nargs="*", default=["runs"], metavar="PATH",
                   help="run folders or folders holding them (default: runs)")
    p.add_argument("--protocol", choices=("paper", "ours", "both"), default="both")
    # Defaults None (not given), so that a flag the chosen protocol would ignore can be refused.
    p.add_argument("--window", type=parse_positive_int, default=None, metavar="N", help=window_help)
    p.add_argument("--episodes", type=parse_positive_int, default=None, metavar="N",
                   help="ours: held-out episodes per seed for runs not yet evaluated (1000)")
    p.add_argument("--no-evaluate", action="store_true", help="ours: use existing evaluations only")
    p.add_argument("--metrics", type=parse_list, metavar="LIST", help=metrics_help)


def check_run_arguments(p: argparse.ArgumentParser, args) -> tuple:
    """`(window, episodes)` of `add_run_arguments`' flags, defaults filled in, after refusing
    (`p.error`) the combinations that would be ignored: --episodes or --no-evaluate with the paper
    protocol (it reads the training logs), --episodes with --no-evaluate, an empty --metrics or
    one naming a metric twice."""
    from jaxsoc.analysis.tables import PAPER_WINDOW

    if args.protocol == "paper":
        for flag, given in (("--episodes", args.episodes is not None), ("--no-evaluate", args.no_evaluate)):
            if given:
                p.error(f"{flag} goes with --protocol ours or both: the paper protocol reads the training logs")
    if args.no_evaluate and args.episodes is not None:
        p.error("--episodes sets how runs are evaluated, and --no-evaluate evaluates none")
    if args.metrics is not None and not args.metrics:
        p.error("--metrics: no metric given")
    twice = repeated(args.metrics or [])
    if twice:  # the column would be printed twice
        p.error(f"--metrics names {', '.join(twice)} more than once")
    return (PAPER_WINDOW if args.window is None else args.window,
            1000 if args.episodes is None else args.episodes)


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


def print_error(prog: str, message: str) -> None:
    """One line on stderr, `<prog>: error: <message>`: argparse's form for a bad flag, used for
    every refusal a tool makes after parsing too (`prog` as the tool's Parser names it)."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)


def guarded(main: Callable[[], int], prog: str) -> int:
    """Runs `main`; AnalysisError/ConfigError (and their kin) -> '<prog>: error: ...' on stderr,
    exit 2; Ctrl-C -> exit 130; a closed output pipe (`| head`) -> exit 1 without a traceback."""
    from jaxsoc.analysis.runs import AnalysisError
    from jaxsoc.config import ConfigError

    try:
        code = main()
        sys.stdout.flush()  # inside the try: a pipe closed by `| head` is found here, not at exit
        return code
    except (AnalysisError, ConfigError) as e:
        print_error(prog, str(e))
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tool | head` closed the pipe: stop quietly (Python's documented recipe:
        try:                 # stdout onto /dev/null, so the interpreter's last flush raises nothing)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # a stdout without a file descriptor (captured)
            pass
        return 1


def use_agg() -> None:
    """Matplotlib without a display (the tools only write files)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
