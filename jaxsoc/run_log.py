"""What a run writes besides checkpoints: JSON-lines logs, and the optional live sinks
(TensorBoard events, a Weights & Biases run) that get the same numbers as each update ends.

`runs/<name>/metrics.jsonl` (training) and `runs/<name>/eval.jsonl` (evaluation) hold one JSON
object per line and per seed:

    {"update": 12, "seed": 0, "env_steps": 49152, "time": 3.21, "metrics": {"return": -4.2, ...}}

`time` is the run's wall-clock seconds (summed over resumes) when the chunk holding that update
finished. NaN and infinities are written as null. Each batch of lines is flushed and fsync'ed,
so a crash can only tear the last line; `read_jsonl` drops such a line.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np


def json_safe(value: Any) -> Any:
    """numpy scalars/arrays -> Python numbers/lists, NaN/inf -> None (JSON has neither), dicts,
    lists and tuples walked."""
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()] if value.ndim else json_safe(value.item())
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def append_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Appends records as JSON lines, then flushes and fsyncs so they survive a crash."""
    text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records)
    if not text:
        return
    with open(path, "a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> tuple[list[dict], bool]:
    """All complete records of a JSON-lines file, and whether a torn last line was dropped.

    A last line without its newline or not valid JSON is what a crash mid-write leaves; it is
    dropped. A bad line elsewhere is damage we did not cause: ValueError naming the line.
    """
    path = Path(path)
    if not path.exists():
        return [], False
    lines = path.read_text().split("\n")
    # A complete file ends with "\n", so the last element is "" unless the last line is torn.
    torn = lines[-1] != ""
    body = lines[:-1]
    records = []
    for number, line in enumerate(body, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(body) and not torn:
                torn = True  # a complete-looking but garbled last line: also a torn write
                break
            raise ValueError(f"{path}:{number} is not valid JSON") from None
    return records, torn


def truncate_jsonl(path: str | os.PathLike, last_update: int) -> int:
    """Keeps only complete records with `update <= last_update` (atomic rewrite); returns how
    many lines were dropped, the torn one included."""
    path = Path(path)
    if not path.exists():
        return 0
    records, torn = read_jsonl(path)
    kept = [r for r in records if r.get("update", 0) <= last_update]
    dropped = len(records) - len(kept) + int(torn)
    if dropped:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in kept))
        with open(tmp) as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return dropped


def tensorboard_writer_class(mode: bool | str):
    """`SummaryWriter` of tensorboardX (else torch's) when `mode` is True or "auto" and one is
    installed; None otherwise. TensorBoard is optional: nothing here requires it."""
    if mode is False:
        return None
    for module in ("tensorboardX", "torch.utils.tensorboard"):
        try:
            return __import__(module, fromlist=["SummaryWriter"]).SummaryWriter
        except Exception:  # ImportError, or a broken torch install
            continue
    return None


WANDB_ID_FILE = "wandb-run-id"  # in the run folder: a resumed run continues the same W&B run


class ScalarSinks:
    """The live sinks of one run: `log(step, {tag: value})` sends scalars to each, `close()` ends
    them. Open them with the function `scalar_sinks(cfg)` returns."""

    def __init__(self, tensorboard=None, wandb_run=None):
        self.tensorboard = tensorboard
        self.wandb_run = wandb_run

    def log(self, step: int, scalars: dict) -> None:
        """One point per tag at x = `step` (env steps per seed); NaN values are left out (an update
        in which no episode ended has no episode metrics)."""
        finite = {k: float(v) for k, v in scalars.items() if math.isfinite(float(v))}
        if self.tensorboard is not None:
            for tag, value in finite.items():
                self.tensorboard.add_scalar(tag, value, step)
        if self.wandb_run is not None and finite:
            self.wandb_run.log(finite, step=step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def scalar_sinks(cfg: dict):
    """Checks that the sinks `cfg` asks for can be made, before anything is written, and returns
    `open(run_dir, first_step=None) -> ScalarSinks` to call once the run folder exists;
    `first_step`, for a resumed run, is the first x it logs: TensorBoard then hides the points an
    earlier process logged from there on (W&B drops a step below its last, keeping the earlier).

    TensorBoard: `run.tensorboard` (true, false, "auto": when tensorboardX or torch is installed),
    events in `<run>/tensorboard/`. Weights & Biases: `run.wandb` names a project; `wandb` is
    imported only then. ConfigError when a sink is asked for and its library is missing.
    """
    from jaxsoc.config import ConfigError

    writer_class = tensorboard_writer_class(cfg["run"]["tensorboard"])
    if writer_class is None and cfg["run"]["tensorboard"] is True:
        raise ConfigError("run.tensorboard is true but neither tensorboardX nor torch is installed "
                          "(pip install -e '.[tensorboard]')")
    project = cfg["run"].get("wandb")
    wandb = None
    if project:
        try:
            import wandb
        except ImportError:
            raise ConfigError(f"run.wandb is {project!r} but wandb is not installed (pip install wandb)") from None

    def open_sinks(run_dir: Path, first_step: int | None = None) -> ScalarSinks:
        # A resumed run logs again from the step after its checkpoint: `purge_step` writes a
        # session start there, and TensorBoard's reader drops the points an earlier process logged
        # at that step or later (those after the checkpoint, which the resumed run logs again).
        # Its own file name too: event files are named by the second they are opened in, and a
        # writer opening an existing name empties it.
        tb = None
        if writer_class is not None:
            tb = writer_class(str(run_dir / "tensorboard"), purge_step=first_step,
                              filename_suffix="" if first_step is None else f".from-{first_step}")
        wandb_run = None
        if wandb is not None:
            id_file = run_dir / WANDB_ID_FILE
            known = id_file.read_text().strip() if id_file.is_file() else None
            wandb_run = wandb.init(project=project, name=cfg["run"]["name"], config=cfg, dir=str(run_dir),
                                   id=known, resume="allow")
            if known is None:
                id_file.write_text(str(wandb_run.id) + "\n")
        return ScalarSinks(tb, wandb_run)

    return open_sinks
