"""An autoencoder over telemetry windows: anomaly score = reconstruction error.

Trained unsupervised on a contaminated stream (attacked windows mixed in, no labels), as a SOC
would have to: it learns to reproduce what the fleet usually emits, and a window it reproduces
badly is unusual. Two choices make it hold up when attacks are in the training data:

* inputs are standardised per feature with the median / MAD of the training frames (the z-score
  detector's robust fit), which a minority of attacked windows barely moves;
* the loss is trimmed: each minibatch ignores its `trim` share of worst-reconstructed windows,
  so rare windows (attacked ones, as long as they stay rarer than `trim`) are never learned and
  keep a high error. Past that share the autoencoder starts to reproduce the attacks too
  (eval/detector_quality.py measures how quality falls with the contaminated share).

Training is one jitted program: `lax.scan` over epochs, each a `lax.scan` over shuffled
minibatches with optax's Adam. The network is `jaxsoc.networks.MLP` (orthogonal init, vmap-safe
QR) for the encoder and the decoder.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxsoc.argtypes import is_integer
from jaxsoc.detectors.telemetry import check_windows
from jaxsoc.detectors.zscore import fit_zscore, standardize
from jaxsoc.networks import MLP, get_activation


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
    """Shape and training of the autoencoder (hashable: a static argument of the jitted trainer).

    window, features: the windows it reads, `[W, F]`.
    hidden: encoder widths (the decoder mirrors them); latent: bottleneck width.
    epochs, batch_size, learning_rate: Adam over shuffled minibatches (a last partial batch of
      each epoch is dropped).
    trim: share of each minibatch's worst-reconstructed windows left out of the loss, in [0, 1).
    """

    window: int = 4
    features: int = 8
    hidden: Tuple[int, ...] = (32,)
    latent: int = 4
    activation: str = "relu"
    epochs: int = 5
    batch_size: int = 256
    learning_rate: float = 3e-3
    trim: float = 0.3

    def __post_init__(self):
        for name in ("window", "features", "latent", "epochs", "batch_size"):
            v = getattr(self, name)
            if not is_integer(v) or v < 1:
                raise ValueError(f"AutoencoderConfig.{name} must be a positive integer, got {v!r}")
            object.__setattr__(self, name, int(v))  # np.int64(4) -> 4: saved as JSON, hashed as static
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"AutoencoderConfig.hidden widths must be positive, got {self.hidden}")
        if not (0.0 <= self.trim < 1.0):
            raise ValueError(f"AutoencoderConfig.trim is a share of each minibatch and must lie in "
                             f"[0, 1), got {self.trim}")
        if not self.learning_rate > 0:
            raise ValueError(f"AutoencoderConfig.learning_rate must be positive, got {self.learning_rate}")
        get_activation(self.activation)  # ValueError naming the known ones

    @property
    def input_dim(self) -> int:
        return self.window * self.features

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, d: dict) -> "AutoencoderConfig":
        return cls(**{**d, "hidden": tuple(d["hidden"])})


class WindowAutoencoder(nn.Module):
    """`[..., W * F] -> [..., W * F]`: encoder MLP to `latent`, decoder MLP back."""

    config: AutoencoderConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        z = MLP(c.hidden, activation=c.activation, out_dim=c.latent, name="encoder")(x)
        return MLP(tuple(reversed(c.hidden)), activation=c.activation, out_dim=c.input_dim,
                   name="decoder")(z)


@struct.dataclass
class AutoencoderDetector:
    """A trained autoencoder: network `params`, the input standardisation `center`, `scale` `[F]`,
    and its (static) `config`."""

    params: dict
    center: jax.Array
    scale: jax.Array
    config: AutoencoderConfig = struct.field(pytree_node=False)

    @property
    def window(self) -> int:
        return self.config.window

    @property
    def features(self) -> int:
        return self.config.features


def init_params(key: jax.Array, config: AutoencoderConfig) -> dict:
    """Fresh network parameters (also the layout checkpoints restore into)."""
    return WindowAutoencoder(config).init(key, jnp.zeros((1, config.input_dim), jnp.float32))["params"]


def reconstruction_error(params: dict, config: AutoencoderConfig, x: jax.Array) -> jax.Array:
    """Mean squared error per row of standardised, flattened windows: `[..., W*F] -> [...]`."""
    recon = WindowAutoencoder(config).apply({"params": params}, x)
    return jnp.mean((recon - x) ** 2, axis=-1)


def autoencoder_scores(detector: AutoencoderDetector, windows: jax.Array) -> jax.Array:
    """Anomaly scores `[...]` of windows `[..., W, F]`: reconstruction error of the standardised
    window (higher = more anomalous)."""
    check_windows(windows, detector.window, detector.features)
    x = standardize(detector.center, detector.scale, windows)
    x = x.reshape(x.shape[:-2] + (detector.config.input_dim,))
    return reconstruction_error(detector.params, detector.config, x)


def trimmed_loss(params: dict, config: AutoencoderConfig, x: jax.Array) -> jax.Array:
    """The training loss of a minibatch of standardised flat windows `[B, W*F]`: the mean
    reconstruction error of its best-reconstructed `B - int(trim * B)` windows (a static count),
    so its worst `trim` share (rare windows, e.g. attacked ones) is not learned."""
    err = reconstruction_error(params, config, x)  # [B]
    keep = max(1, x.shape[0] - int(config.trim * x.shape[0]))
    return jnp.mean(jnp.sort(err)[:keep])


def optimizer(config: AutoencoderConfig) -> optax.GradientTransformation:
    """Adam at `config.learning_rate`: the autoencoder's one optimiser, offline here
    (`train_autoencoder`) and online in `jaxsoc.algos.hybrid`."""
    return optax.adam(config.learning_rate)


@functools.partial(jax.jit, static_argnames=("config",))
def _train(key: jax.Array, x: jax.Array, config: AutoencoderConfig):
    """x: standardised flat windows `[M, W*F]` -> (params, per-epoch mean trimmed loss `[epochs]`)."""
    k_init, k_epochs = jax.random.split(key)
    params = init_params(k_init, config)
    tx = optimizer(config)
    opt_state = tx.init(params)
    batches = x.shape[0] // config.batch_size

    def batch_step(carry, idx):
        p, o = carry
        loss, grads = jax.value_and_grad(trimmed_loss)(p, config, x[idx])
        updates, o = tx.update(grads, o, p)
        return (optax.apply_updates(p, updates), o), loss

    def epoch(carry, k):
        perm = jax.random.permutation(k, x.shape[0])[: batches * config.batch_size]
        carry, losses = jax.lax.scan(batch_step, carry, perm.reshape(batches, config.batch_size))
        return carry, jnp.mean(losses)

    (params, _), losses = jax.lax.scan(epoch, (params, opt_state), jax.random.split(k_epochs, config.epochs))
    return params, losses


def train_autoencoder(key: jax.Array, windows: jax.Array,
                      config: AutoencoderConfig) -> Tuple[AutoencoderDetector, jax.Array]:
    """Train on unlabelled windows `[M, W, F]` (M >= batch_size).

    Returns `(detector, losses [epochs])`: the per-epoch mean of the trimmed minibatch loss.
    Deterministic for a given key, data and config.
    """
    check_windows(windows, config.window, config.features, "training windows")
    windows = jnp.asarray(windows, jnp.float32)
    if windows.ndim != 3 or windows.shape[0] < config.batch_size:
        raise ValueError(f"train_autoencoder needs windows [M >= batch_size={config.batch_size}, "
                         f"W, F], got shape {tuple(windows.shape)}")
    norm = fit_zscore(windows, robust=True)
    x = standardize(norm.center, norm.scale, windows).reshape(windows.shape[0], config.input_dim)
    params, losses = _train(key, x, config)
    return AutoencoderDetector(params=params, center=norm.center, scale=norm.scale, config=config), losses
