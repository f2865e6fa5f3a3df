"""Action distributions shared by every learner.

This module is the only place in jaxsoc that knows about distrax. The maths here is written in
plain `jax.numpy` because masking and the tanh change of variables need exact control over
-inf/NaN handling that a generic library does not promise; distrax is imported lazily, only by the
`to_distrax()` converters, so a future JAX release that breaks distrax breaks interop, not training.

All distributions are `flax.struct` dataclasses (pytrees), so they can be returned from `jit`
and `vmap`ped functions. Batch dimensions are arbitrary leading axes `[...]`; event axes are the
last axis (`n` actions for the categorical, `d` action dims for the Gaussians) and every
`log_prob`/`entropy` sums or reduces over it.

Public API:
  MaskedCategorical(logits [..., n], mask [..., n] | None)
  FactoredCategorical(logits [..., E, n], mask [..., E, n] | None): one choice per entry
  DiagGaussian(mean [..., d], log_std [..., d])
  TanhGaussian(mean [..., d], log_std [..., d])
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from flax import struct

__all__ = ["MaskedCategorical", "FactoredCategorical", "DiagGaussian", "TanhGaussian", "tanh_log_det_jacobian",
           "TANH_CLIP_EPS"]

_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

# Default clip for `TanhGaussian.log_prob(action)`: actions are clipped to [-1 + eps, 1 - eps]
# before atanh. 1e-6 is well above float32 spacing near 1 (~6e-8) and maps to |u| <= ~7.25.
TANH_CLIP_EPS = 1e-6


# --------------------------------------------------------------------------------------------
# Masked categorical
# --------------------------------------------------------------------------------------------


@struct.dataclass
class MaskedCategorical:
    """Categorical over `n` actions with an optional availability mask.

    Args (fields):
      logits: `[..., n]` unnormalised log-probabilities.
      mask: `[..., n]` bool (True = allowed) or None (all allowed). Anything castable to bool.

    Semantics:
      * Masked actions have probability exactly 0, `log_prob` -inf, and are never sampled or
        returned by `mode()`, whatever the logits (allowed logits of -1e30 and masked logits of
        +1e30 included): the choice is an argmax in which masked entries are -inf and allowed
        entries are clamped to the most negative finite float.
      * A row whose mask is all False has no valid action. It is treated as *uniform over all n
        actions* (logits ignored), so everything stays finite and no gradient reaches the logits
        from that row. Callers that can produce such rows (e.g. terminal steps) should zero the
        corresponding loss terms themselves.
      * `entropy()` and its gradient never produce NaN: masked terms are dropped, not 0 * -inf.
    """

    logits: jax.Array
    mask: Optional[jax.Array] = None

    # ---- derived quantities (cheap, recomputed; XLA deduplicates under jit) ----------------

    @property
    def num_actions(self) -> int:
        return self.logits.shape[-1]

    @property
    def batch_shape(self) -> tuple:
        """The leading axes `[...]`: one action each."""
        return self.logits.shape[:-1]

    @property
    def valid(self) -> jax.Array:
        """`[..., n]` bool: the effective mask (all-False rows replaced by all-True)."""
        if self.mask is None:
            return jnp.ones(self.logits.shape, dtype=bool)
        mask = jnp.broadcast_to(self.mask.astype(bool), self.logits.shape)
        any_allowed = jnp.any(mask, axis=-1, keepdims=True)
        return jnp.where(any_allowed, mask, True)

    @property
    def _effective_logits(self) -> jax.Array:
        """Logits with all-False rows replaced by zeros (-> uniform), masked entries -inf."""
        logits = self.logits
        if self.mask is not None:
            mask = jnp.broadcast_to(self.mask.astype(bool), logits.shape)
            any_allowed = jnp.any(mask, axis=-1, keepdims=True)
            logits = jnp.where(any_allowed, logits, jnp.zeros_like(logits))
        return jnp.where(self.valid, logits, -jnp.inf)

    @property
    def log_probs(self) -> jax.Array:
        """`[..., n]` normalised log-probabilities; -inf at masked actions."""
        return jax.nn.log_softmax(self._effective_logits, axis=-1)

    @property
    def probs(self) -> jax.Array:
        """`[..., n]` probabilities; exactly 0 at masked actions, rows sum to 1."""
        return jnp.where(self.valid, jnp.exp(self.log_probs), 0.0)

    # ---- distribution API -------------------------------------------------------------------

    def _argmax_allowed(self, scores: jax.Array) -> jax.Array:
        # Clamp allowed scores to a finite floor so an allowed action always beats a masked one
        # (-inf), even if the allowed scores underflowed to -inf themselves.
        floor = jnp.finfo(scores.dtype).min
        scores = jnp.where(self.valid, jnp.maximum(scores, floor), -jnp.inf)
        return jnp.argmax(scores, axis=-1).astype(jnp.int32)

    def sample(self, key: jax.Array, sample_shape: Sequence[int] = ()) -> jax.Array:
        """Draws actions by Gumbel-max. Returns int32 `[*sample_shape, ...]`."""
        shape = tuple(sample_shape) + self.logits.shape
        gumbel = jax.random.gumbel(key, shape, dtype=self.logits.dtype)
        return self._argmax_allowed(self.log_probs + gumbel)

    def log_prob(self, action: jax.Array) -> jax.Array:
        """`action` int `[*sample_shape, ...]` -> `[*sample_shape, ...]`; -inf if masked."""
        action = jnp.asarray(action, jnp.int32)
        log_probs = jnp.broadcast_to(self.log_probs, action.shape + (self.num_actions,))
        return jnp.take_along_axis(log_probs, action[..., None], axis=-1)[..., 0]

    def sample_and_log_prob(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """`(action int32 [...], log_prob [...])`."""
        action = self.sample(key)
        return action, self.log_prob(action)

    def entropy(self) -> jax.Array:
        """`[...]` Shannon entropy over allowed actions (nats)."""
        valid = self.valid
        # Replace -inf by 0 *before* multiplying: where(valid, p * logp, 0) alone would still
        # send 0 * -inf = NaN into the gradient of the unused branch.
        log_probs = jnp.where(valid, self.log_probs, 0.0)
        return -jnp.sum(jnp.where(valid, jnp.exp(log_probs) * log_probs, 0.0), axis=-1)

    def mode(self) -> jax.Array:
        """`[...]` int32: the most likely allowed action."""
        return self._argmax_allowed(self.log_probs)

    def kl_divergence(self, other: "MaskedCategorical") -> jax.Array:
        """`[...]` KL(self || other), two heads over the same choices with the same mask: the sum
        over the allowed choices of p (log p - log q)."""
        valid = self.valid
        # -inf at masked choices replaced before multiplying (0 * -inf = NaN, in the gradient too).
        lp = jnp.where(valid, self.log_probs, 0.0)
        lq = jnp.where(valid, other.log_probs, 0.0)
        return jnp.sum(jnp.where(valid, jnp.exp(lp) * (lp - lq), 0.0), axis=-1)

    def to_distrax(self):
        """The equivalent `distrax.Categorical` (masked logits are -inf)."""
        import distrax  # lazy: see module docstring

        return distrax.Categorical(logits=self.log_probs)


@struct.dataclass
class FactoredCategorical(MaskedCategorical):
    """`E` independent choices, entry `e` among `n` (a `MultiDiscrete` action: one choice per host).

    Args (fields):
      logits: `[..., E, n]`.
      mask: `[..., E, n]` bool or None; each entry is masked as `MaskedCategorical` masks a row.

    The joint probability is the product over entries, so `log_prob`, `entropy` and
    `kl_divergence` are the per-entry ones summed over `E` (`[...]`); `sample` and `mode` give
    int32 `[..., E]` (the per-entry ones, inherited). An entry with fewer than `n` choices is one
    whose mask forbids the rest.
    """

    @property
    def batch_shape(self) -> tuple:
        """The leading axes `[...]` (before the entries): one action `[E]` each."""
        return self.logits.shape[:-2]

    def log_prob(self, action: jax.Array) -> jax.Array:
        """`action` int `[*sample_shape, ..., E]` -> `[*sample_shape, ...]`."""
        return jnp.sum(super().log_prob(action), axis=-1)

    def entropy(self) -> jax.Array:
        """`[...]`: the entries' entropies summed (they are independent)."""
        return jnp.sum(super().entropy(), axis=-1)

    def kl_divergence(self, other: "FactoredCategorical") -> jax.Array:
        """`[...]`: the entries' KLs summed."""
        return jnp.sum(super().kl_divergence(other), axis=-1)

    def to_distrax(self):
        """The equivalent `distrax.Independent(distrax.Categorical, 1)`."""
        import distrax  # lazy: see module docstring

        return distrax.Independent(distrax.Categorical(logits=self.log_probs), 1)


# --------------------------------------------------------------------------------------------
# Gaussians
# --------------------------------------------------------------------------------------------


@struct.dataclass
class DiagGaussian:
    """Diagonal Gaussian; `log_prob`/`entropy` sum over the last axis.

    Args (fields):
      mean: `[..., d]`.
      log_std: `[..., d]` (broadcastable to `mean`). Not clamped here: networks clamp it.
    """

    mean: jax.Array
    log_std: jax.Array

    @property
    def batch_shape(self) -> tuple:
        """The leading axes `[...]`: one action `[d]` each."""
        return self.mean.shape[:-1]

    @property
    def std(self) -> jax.Array:
        return jnp.exp(self.log_std)

    def sample(self, key: jax.Array, sample_shape: Sequence[int] = ()) -> jax.Array:
        """Reparameterised sample `[*sample_shape, ..., d]`."""
        mean, std = jnp.broadcast_arrays(self.mean, self.std)
        eps = jax.random.normal(key, tuple(sample_shape) + mean.shape, dtype=mean.dtype)
        return mean + std * eps

    def log_prob(self, x: jax.Array) -> jax.Array:
        """`x [..., d]` -> `[...]`."""
        z = (x - self.mean) * jnp.exp(-self.log_std)
        return jnp.sum(-0.5 * jnp.square(z) - self.log_std - _HALF_LOG_2PI, axis=-1)

    def entropy(self) -> jax.Array:
        """`[...]` closed form: sum_d (0.5 log(2 pi e) + log_std)."""
        log_std = jnp.broadcast_to(self.log_std, jnp.broadcast_shapes(self.mean.shape,
                                                                      jnp.shape(self.log_std)))
        return jnp.sum(log_std + 0.5 + _HALF_LOG_2PI, axis=-1)

    def mode(self) -> jax.Array:
        return jnp.broadcast_to(self.mean, jnp.broadcast_shapes(self.mean.shape,
                                                                jnp.shape(self.log_std)))

    def kl_divergence(self, other: "DiagGaussian") -> jax.Array:
        """`[...]` KL(self || other), closed form, summed over the last axis."""
        var_ratio = jnp.exp(2.0 * (self.log_std - other.log_std))
        mean_term = jnp.square((self.mean - other.mean) / jnp.exp(other.log_std))
        return jnp.sum(0.5 * (var_ratio + mean_term - 1.0) - (self.log_std - other.log_std), axis=-1)

    def to_distrax(self):
        """The equivalent `distrax.MultivariateNormalDiag`."""
        import distrax

        mean, std = jnp.broadcast_arrays(self.mean, self.std)
        return distrax.MultivariateNormalDiag(mean, std)


def tanh_log_det_jacobian(u: jax.Array) -> jax.Array:
    """Elementwise log(d tanh(u)/du) = log(1 - tanh(u)^2), stable for any finite u.

    Uses the identity 1 - tanh(u)^2 = 4 e^{-2u} / (1 + e^{-2u})^2, i.e.
    log(1 - tanh^2 u) = 2 (log 2 - u - softplus(-2u)); the naive form is log(0) = -inf once
    tanh(u) rounds to +-1 (|u| > ~9 in float32).
    """
    return 2.0 * (_LOG2 - u - jax.nn.softplus(-2.0 * u))


@struct.dataclass
class TanhGaussian:
    """`a = tanh(u)`, `u ~ N(mean, exp(log_std)^2)` per dimension; actions in (-1, 1)^d.

    Args (fields):
      mean: `[..., d]` pre-tanh mean.
      log_std: `[..., d]` pre-tanh log standard deviation (broadcastable to `mean`).

    Log-densities sum over the last axis:
      log p(a) = sum_d [ log N(u_d; mean_d, std_d) - log(1 - tanh(u_d)^2) ],  a = tanh(u).

    Prefer the pre-tanh route: store `u` from `sample_pre_tanh` (or `sample_and_log_prob`) and
    later evaluate `log_prob_from_pre_tanh(u)`; it is exact for any u. `log_prob(action)` has to
    invert tanh and therefore clips (see its docstring); once |u| > ~9 the float32 action is
    exactly +-1 and u cannot be recovered from it at all.

    The tanh-Gaussian has no closed-form entropy. `entropy_estimate` is a Monte-Carlo estimate;
    `base_entropy` is the exact entropy of the pre-tanh Gaussian (an upper bound, since tanh
    contracts: log|tanh'| <= 0).
    """

    mean: jax.Array
    log_std: jax.Array

    @property
    def batch_shape(self) -> tuple:
        """The leading axes `[...]`: one action `[d]` each."""
        return self.mean.shape[:-1]

    @property
    def base(self) -> DiagGaussian:
        """The pre-tanh Gaussian over `u`."""
        return DiagGaussian(self.mean, self.log_std)

    def sample_pre_tanh(self, key: jax.Array, sample_shape: Sequence[int] = ()) -> jax.Array:
        """Reparameterised `u [*sample_shape, ..., d]`; the action is `tanh(u)`."""
        return self.base.sample(key, sample_shape)

    def log_prob_from_pre_tanh(self, u: jax.Array) -> jax.Array:
        """Exact `log p(tanh(u))`: `u [..., d]` -> `[...]`. Finite and NaN-free for finite u."""
        return self.base.log_prob(u) - jnp.sum(tanh_log_det_jacobian(u), axis=-1)

    def sample_and_log_prob(
        self, key: jax.Array, sample_shape: Sequence[int] = ()
    ) -> tuple[jax.Array, jax.Array]:
        """`(action [*sample_shape, ..., d] in (-1, 1), log_prob [*sample_shape, ...])`."""
        u = self.sample_pre_tanh(key, sample_shape)
        return jnp.tanh(u), self.log_prob_from_pre_tanh(u)

    def sample(self, key: jax.Array, sample_shape: Sequence[int] = ()) -> jax.Array:
        """Action `[*sample_shape, ..., d]`."""
        return jnp.tanh(self.sample_pre_tanh(key, sample_shape))

    def log_prob(self, action: jax.Array, clip_eps: float = TANH_CLIP_EPS) -> jax.Array:
        """`log p(action)` for `action [..., d]` in (-1, 1) -> `[...]`.

        The action is clipped to [-1 + clip_eps, 1 - clip_eps] before `atanh`, so actions at or
        beyond +-1 (e.g. from rounding, or from another policy) give a finite but approximate
        value, as if u = +-atanh(1 - clip_eps) (~ +-7.25 for the default). For |u| <~ 5 the
        result matches `log_prob_from_pre_tanh(u)` to float32 accuracy.
        """
        action = jnp.clip(action, -1.0 + clip_eps, 1.0 - clip_eps)
        return self.log_prob_from_pre_tanh(jnp.arctanh(action))

    def mode(self) -> jax.Array:
        """`tanh(mean)` `[..., d]` (the deterministic action; not the exact density mode)."""
        return jnp.tanh(self.base.mode())

    def base_entropy(self) -> jax.Array:
        """`[...]` exact entropy of the pre-tanh Gaussian."""
        return self.base.entropy()

    def entropy_estimate(self, key: jax.Array, num_samples: int = 1) -> jax.Array:
        """`[...]` unbiased Monte-Carlo estimate of the tanh-Gaussian's entropy.

        H[tanh(U)] = H[U] + E[sum_d log(1 - tanh(U_d)^2)]; the first term is exact, only the
        log-det term is sampled (lower variance than averaging -log p(a)). Differentiable
        through the reparameterised samples.
        """
        u = self.sample_pre_tanh(key, (num_samples,))
        log_det = jnp.sum(tanh_log_det_jacobian(u), axis=-1)
        return self.base_entropy() + jnp.mean(log_det, axis=0)

    def kl_divergence(self, other: "TanhGaussian") -> jax.Array:
        """`[...]` KL(self || other): the pre-tanh Gaussians' (exact: tanh is a bijection, and KL
        is invariant under one)."""
        return self.base.kl_divergence(other.base)

    def to_distrax(self):
        """The equivalent `distrax.Transformed(MultivariateNormalDiag, Block(Tanh, 1))`."""
        import distrax

        return distrax.Transformed(self.base.to_distrax(), distrax.Block(distrax.Tanh(), 1))
