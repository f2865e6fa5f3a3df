"""Saving and loading detectors with the project's checkpoints (`jaxsoc.checkpoints`, orbax).

A detector folder is a `Checkpoints` folder holding one checkpoint (`<n>` = 0, or one more than
the detector it replaced):

    <n>/state {"center": [F], "scale": [F], "params": the autoencoder's network (autoencoders only)}
    <n>/meta  JSON: kind ("autoencoder" | "zscore"), scenario, features (F), window (W), config
              (autoencoder) or robust (z-score), threshold and target_fpr (if calibrated),
              shapes of every saved array, jaxsoc_version

`load_detector(path, params)` refuses (`CheckpointError`, a `ValueError`) a detector saved for
another scenario or another telemetry width before reading any array, and a state whose arrays do
not have the shapes its metadata promises.
"""
from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Optional, Tuple, Union

import jax
import jax.numpy as jnp

import jaxsoc
from jaxsoc.argtypes import is_number
from jaxsoc.checkpoints import CheckpointError, Checkpoints
from jaxsoc.detectors.autoencoder import AutoencoderConfig, AutoencoderDetector, init_params
from jaxsoc.detectors.threshold import check_target_fpr
from jaxsoc.detectors.zscore import ZScoreDetector
from jaxsoc.env.params import EnvParams

Detector = Union[AutoencoderDetector, ZScoreDetector]
KINDS = ("autoencoder", "zscore")


def _state_of(detector: Detector) -> dict:
    state = {"center": detector.center, "scale": detector.scale}
    if isinstance(detector, AutoencoderDetector):
        state["params"] = detector.params
    return state


def _shapes(tree) -> dict:
    return {jax.tree_util.keystr(path): list(leaf.shape)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def save_detector(directory: Union[str, os.PathLike], detector: Detector, params: EnvParams,
                  threshold: Optional[float] = None, target_fpr: Optional[float] = None) -> Path:
    """Save `detector` (fit on telemetry of scenario `params`) and its optional calibrated
    threshold to `directory` (created; an existing detector there is replaced). Returns the path."""
    if not isinstance(detector, (AutoencoderDetector, ZScoreDetector)):
        raise ValueError(f"save_detector saves an AutoencoderDetector or a ZScoreDetector, got "
                         f"{type(detector).__name__}")
    if detector.features != params.telemetry_features:
        raise ValueError(f"the detector reads F={detector.features} telemetry features but scenario "
                         f"{params.name!r} emits {params.telemetry_features}")
    if target_fpr is not None:
        target_fpr = check_target_fpr(target_fpr)
    state = _state_of(detector)
    meta = {
        "kind": "autoencoder" if isinstance(detector, AutoencoderDetector) else "zscore",
        "scenario": params.name,
        "features": int(detector.features),
        "window": int(detector.window),
        "threshold": None if threshold is None else float(threshold),
        "target_fpr": target_fpr,
        "shapes": _shapes(state),
        "jaxsoc_version": jaxsoc.__version__,
    }
    if isinstance(detector, AutoencoderDetector):
        meta["config"] = detector.config.to_dict()
    else:
        meta["robust"] = bool(detector.robust)
    step = 0
    if Path(directory).is_dir() and any(Path(directory).iterdir()):
        # Replace a detector saved here before (the new one is the next step; keep=1 drops the
        # old), but never another kind of checkpoint, such as a training run's.
        try:
            kind = read_detector_meta(directory).get("kind")
        except CheckpointError:
            kind = None
        if kind not in KINDS:
            raise CheckpointError(f"{directory} is not empty and holds no detector; save the "
                                  "detector to an empty or new folder")
        step = _latest(directory) + 1
    ckpts = Checkpoints(directory, keep=1)
    try:
        ckpts.save(step, state, meta)
        ckpts.wait()
    finally:
        ckpts.close()
    return Path(directory).resolve()


def _latest(directory) -> int:
    ckpts = Checkpoints(directory, keep=1, create=False)
    try:
        return ckpts.latest()
    finally:
        ckpts.close()


def read_detector_meta(directory: Union[str, os.PathLike]) -> dict:
    """The metadata of a saved detector (CheckpointError if there is none)."""
    path = Path(directory)
    if not path.is_dir():
        raise CheckpointError(f"no detector at {path}: not a folder")
    ckpts = Checkpoints(path, keep=1, create=False)
    try:
        if ckpts.latest() is None:
            raise CheckpointError(f"no detector at {path}: it holds no complete checkpoint")
        return ckpts.read_meta(ckpts.latest())
    finally:
        ckpts.close()


def load_detector(directory: Union[str, os.PathLike],
                  params: Optional[EnvParams] = None) -> Tuple[Detector, dict]:
    """`(detector, meta)` saved at `directory`; `meta["threshold"]` is its calibrated threshold.

    With `params`, the detector must have been saved for that scenario (same name) and telemetry
    width; otherwise CheckpointError (a ValueError) names the mismatch.
    """
    meta = read_detector_meta(directory)
    threshold = meta.get("threshold")  # None: saved uncalibrated
    if threshold is not None and not (is_number(threshold) and math.isfinite(threshold)):  # an edited file
        raise CheckpointError(f"the detector at {directory} holds threshold {threshold!r}, not a finite number")
    if params is not None:
        if meta.get("scenario") != params.name:
            raise CheckpointError(f"the detector at {directory} was trained on scenario "
                                  f"{meta.get('scenario')!r}, not {params.name!r}")
        if meta.get("features") != params.telemetry_features:
            raise CheckpointError(f"the detector at {directory} reads F={meta.get('features')} "
                                  f"telemetry features but {params.name!r} emits "
                                  f"{params.telemetry_features}")
    kind, f = meta.get("kind"), int(meta["features"])
    vec = jax.ShapeDtypeStruct((f,), jnp.float32)
    abstract = {"center": vec, "scale": vec}
    if kind == "autoencoder":
        config = AutoencoderConfig.from_dict(meta["config"])
        abstract["params"] = jax.eval_shape(functools.partial(init_params, config=config), jax.random.key(0))
    elif kind not in KINDS:
        raise CheckpointError(f"the checkpoint at {directory} is not a detector (kind {kind!r})")
    if _shapes(abstract) != meta.get("shapes"):
        raise CheckpointError(f"the detector at {directory} holds arrays of other shapes than its "
                              f"configuration implies: {meta.get('shapes')}")
    ckpts = Checkpoints(directory, keep=1, create=False)
    try:
        state = ckpts.restore(ckpts.latest(), abstract)
    finally:
        ckpts.close()
    if kind == "autoencoder":
        det = AutoencoderDetector(params=state["params"], center=state["center"],
                                  scale=state["scale"], config=config)
    else:
        det = ZScoreDetector(center=state["center"], scale=state["scale"],
                             window=int(meta["window"]), robust=bool(meta["robust"]))
    return det, meta
