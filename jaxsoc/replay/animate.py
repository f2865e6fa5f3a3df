"""A replay episode as an animation: one frame per step (`frame.draw_frame`), as a GIF (Pillow,
a matplotlib dependency) or, where ffmpeg is installed, an MP4. The last frame (how the episode
ended) stays on screen for `HOLD_SECONDS`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxsoc.replay.frame import FIGSIZE, draw_frame

HOLD_SECONDS = 2.0


def can_write(fmt: str) -> bool:
    """Whether this machine can write `fmt` ("gif": always; "mp4": with ffmpeg on PATH)."""
    from matplotlib import animation

    return fmt == "gif" or animation.writers.is_available("ffmpeg")


def pick_format(fmt: str = "auto") -> str:
    """"mp4" where ffmpeg is available, else "gif" (for `fmt="auto"`); `fmt` itself otherwise."""
    return ("mp4" if can_write("mp4") else "gif") if fmt == "auto" else fmt


def frames(trace: dict, episode: int, dpi: int = 80):
    """Each step's frame of `trace["episodes"][episode]` as an RGB array `[height, width, 3]`."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=FIGSIZE, dpi=dpi)
    try:
        for step in trace["episodes"][episode]["steps"]:  # one frame per step, drawn on the host
            draw_frame(fig, trace, step, episode)
            fig.canvas.draw()
            yield np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    finally:
        plt.close(fig)


def write_animation(trace: dict, episode: int, stem: str | Path, fps: float = 4.0, dpi: int = 80,
                    fmt: str = "auto") -> Path:
    """Every step of `trace["episodes"][episode]` drawn into `<stem>.gif` or `<stem>.mp4`; the path.

    ValueError if `fmt` is "mp4" and ffmpeg is missing."""
    fmt = pick_format(fmt)
    if not can_write(fmt):
        raise ValueError("writing MP4 needs ffmpeg on PATH; use the GIF format instead")
    path = Path(stem).with_suffix("." + fmt)
    images = list(frames(trace, episode, dpi))
    if fmt == "gif":
        from PIL import Image

        # Per-frame durations (ms): a GIF can hold the last frame without repeating it.
        durations = [round(1000 / fps)] * (len(images) - 1) + [round(HOLD_SECONDS * 1000)]
        first, *rest = [Image.fromarray(im) for im in images]
        first.save(path, save_all=True, append_images=rest, duration=durations, loop=0)
        return path
    import matplotlib.pyplot as plt
    from matplotlib import animation

    height, width = images[0].shape[:2]
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    try:
        writer = animation.FFMpegWriter(fps=fps)
        shown = fig.figimage(images[0])
        with writer.saving(fig, str(path), dpi):
            for im in images + [images[-1]] * max(int(round(HOLD_SECONDS * fps)) - 1, 0):
                shown.set_data(im)
                writer.grab_frame()
    finally:
        plt.close(fig)
    return path
