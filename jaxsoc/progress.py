"""What a training run shows on the terminal (stderr): the budget it will really train, a status
line while its programs compile, a progress bar that moves with every update, and notes.

    budget: 12 updates x 8,192 env steps = 98,304 env steps per seed (total_steps 100,000 rounded
            down to whole updates); 64 envs x 1 seed -> runs/rs
    compiling rule-soar on soc-v2: first program (init, chunk of 4 updates) ... compiled in 38.5 s
    rs:  42%|████▏     | 41.0k/98.3k [00:01<00:03, 18.3k env-steps/s, return=-15.5, csr=0.86]

The bar counts env steps over all seeds, so its rate is the run's env-steps/s and its ETA the
time left. Updates run inside one compiled `lax.scan` per chunk; the engine puts a host callback
(`tick`) in that scan after every update, so the bar moves per update, not per chunk (its cost is
in docs/engine.md). Status lines and the bar follow `run.progress`; notes (e.g. checkpoints set
aside) are printed whatever it says, since they report something done to the run folder.
"""
from __future__ import annotations

import contextlib
import sys
import time


class Progress:
    """The terminal display of one run.

    Args:
      cfg: the resolved config (`run.name`, `run.progress`, sizes).
      steps_per_update: env steps per update and seed (`Trainer.env_steps_per_update`).
      num_updates: updates of the whole run (`Trainer.num_updates`).
      start: updates already done (a resumed run).
      enabled: False hides everything `run.progress` would show (the other processes of a
        group); `wanted` still says whether the program carries the per-update `tick`, so every
        process compiles the same program.
    """

    def __init__(self, cfg: dict, steps_per_update: int, num_updates: int, start: int = 0,
                 enabled: bool = True):
        self.cfg = cfg
        self.wanted = bool(cfg["run"]["progress"])
        self.enabled = self.wanted and enabled
        self.steps = steps_per_update * cfg["num_seeds"]  # per update, all seeds
        self.num_updates = num_updates
        self.start = start
        self.bar = None

    def status(self, text: str, end: str = "\n") -> None:
        """A status line on stderr (only when `run.progress`)."""
        if self.enabled:
            print(text, end=end, file=sys.stderr, flush=True)

    @staticmethod
    def note(text: str) -> None:
        """A note on stderr, always: something was done that the user must know about."""
        print(f"note: {text}", file=sys.stderr, flush=True)

    def announce(self, run_dir) -> None:
        """The budget line: updates, env steps per update, the env steps really trained (after
        rounding `total_steps` down to whole updates) and where the run goes."""
        cfg = self.cfg
        per_seed = self.steps // cfg["num_seeds"]
        trained = self.num_updates * per_seed
        rounding = ("" if trained == cfg["total_steps"] else
                    f" (total_steps {cfg['total_steps']:,} rounded down to whole updates)")
        seeds = f"{cfg['num_seeds']} seed{'s' if cfg['num_seeds'] > 1 else ''}"
        self.status(f"budget: {self.num_updates:,} updates x {per_seed:,} env steps = {trained:,} env steps "
                    f"per seed{rounding}; {cfg['num_envs']:,} envs x {seeds} -> {run_dir}")

    @contextlib.contextmanager
    def compiling(self, parts: str):
        """Status around compiling the run's programs: 'compiling <algo> on <scenario>: first
        program (<parts>) ...' then the seconds it took."""
        self.status(f"compiling {self.cfg['algo']} on {self.cfg['scenario']}: first program ({parts}) ...", end="")
        t0 = time.perf_counter()
        try:
            yield
        except BaseException:
            self.status("")
            raise
        self.status(f" compiled in {time.perf_counter() - t0:.1f} s")

    def open_bar(self) -> None:
        """Shows the bar (env steps over all seeds, with env-steps/s and the time left)."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        devices = f" [{cfg['devices']} devices]" if cfg["devices"] > 1 else ""
        self.bar = tqdm(total=self.num_updates * self.steps, initial=self.start * self.steps,
                        unit=" env-steps", unit_scale=True, desc=cfg["run"]["name"] + devices,
                        disable=not self.enabled, dynamic_ncols=True)

    def tick(self) -> None:
        """One update done (called from the compiled program, on the host)."""
        if self.bar is not None:
            self.bar.update(self.steps)

    def chunk_done(self, update: int, postfix: dict) -> None:
        """After a chunk: the bar at exactly `update` updates, with `postfix` (e.g. return, CSR)."""
        if self.bar is None:
            return
        self.bar.n = update * self.steps  # exact whatever the callbacks did
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
