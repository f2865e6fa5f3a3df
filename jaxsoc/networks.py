"""Flax (linen) networks shared by every learner.

Everything is a small module; an actor or critic is an `MLP` torso plus a linear head. All Dense
layers act on the last axis, so any leading axes work: `[batch, obs_dim]`,
`[batch, n_agents, obs_dim]` (parameter sharing across agents), `[time, batch, obs_dim]`...
Shapes below are written for the common `[batch, ...]` case.

Initialisation follows the PPO/"37 implementation details" convention: orthogonal kernels with
gain sqrt(2) for ReLU hidden layers, a configurable (usually small) gain on the output layer, and
zero biases.

Public API:
  MLP, CategoricalActor, TanhGaussianActor, DeterministicActor, ValueCritic, QNetwork,
  ContinuousQ, TwinQ, QMixer, vdn_mix, MultiHeadAttention, TokenAttentionEncoder,
  count_params, get_activation
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Union

__all__ = [
    "MLP", "CategoricalActor", "TanhGaussianActor", "DeterministicActor", "ValueCritic",
    "QNetwork", "ContinuousQ", "TwinQ", "QMixer", "vdn_mix", "MultiHeadAttention",
    "TokenAttentionEncoder", "count_params", "get_activation", "dense", "orthogonal", "DEFAULT_HIDDEN",
]

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxsoc.names import suggest

Activation = Union[str, Callable[[jax.Array], jax.Array], None]

DEFAULT_HIDDEN = (256, 256, 256)  # the paper's "3 x 256 ReLU MLP"
SQRT2 = math.sqrt(2.0)

_ACTIVATIONS = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "swish": nn.silu,
    "leaky_relu": nn.leaky_relu,
    "sigmoid": nn.sigmoid,
    "identity": lambda x: x,
    "linear": lambda x: x,
}


def get_activation(activation: Activation) -> Callable[[jax.Array], jax.Array]:
    """Resolves a name (see `_ACTIVATIONS`), a callable, or None (identity)."""
    if activation is None:
        return lambda x: x
    if callable(activation):
        return activation
    try:
        return _ACTIVATIONS[activation.lower()]
    except KeyError:
        raise ValueError(
            f"unknown activation {activation!r}{suggest(activation, _ACTIVATIONS)}; "
            f"expected one of {sorted(_ACTIVATIONS)}"
        ) from None


@jax.custom_batching.sequential_vmap
def _qr(a: jax.Array):
    """`jnp.linalg.qr` of one matrix `[m, n]`; vmapped, a loop of single QRs instead of a batched one.

    Why: jaxlib 0.10's CPU LAPACK kernels split a batched factorisation over XLA's intra-op
    thread pool and block a pool thread until the pieces finish. When two such kernels run at
    once on a pool of that size (2 threads on a 2-core machine), both threads wait for work that
    only they could do and the program never completes. Initialising parameters vmapped over
    seeds or agents is exactly that: one batched QR per layer, several layers in flight.
    A single matrix is factorised inline, so a loop of them cannot deadlock.
    """
    return jnp.linalg.qr(a)


def orthogonal(scale: float = 1.0, column_axis: int = -1) -> Callable:
    """Orthogonal initializer (Saxe et al. 2014), drawn exactly as `flax.linen.initializers.orthogonal`.

    Same normal draw, same QR and sign convention, so the same values for the same key; the
    difference is `_qr`, which stays safe under `jax.vmap` (see there).
    """

    def init(key, shape, dtype=jnp.float32):
        if len(shape) < 2:
            raise ValueError(f"orthogonal initializer needs at least 2 dimensions, got shape {shape}")
        n_cols = shape[column_axis]
        n_rows = math.prod(shape) // n_cols
        matrix_shape = (n_cols, n_rows) if n_rows < n_cols else (n_rows, n_cols)
        a = jax.random.normal(key, matrix_shape, dtype)
        q, r = _qr(a)
        q = q * jnp.sign(jnp.diagonal(r))[None, :]
        if n_rows < n_cols:
            q = q.T
        rest = tuple(d for i, d in enumerate(shape) if i != column_axis % len(shape))
        q = jnp.moveaxis(jnp.reshape(q, rest + (n_cols,)), -1, column_axis)
        return jnp.asarray(scale, dtype) * q

    return init


def dense(features: int, gain: float, name: Optional[str] = None) -> nn.Dense:
    """Dense layer with orthogonal(gain) kernel and zero bias."""
    return nn.Dense(
        features,
        kernel_init=orthogonal(gain),
        bias_init=nn.initializers.zeros,
        name=name,
    )


def count_params(params) -> int:
    """Total number of scalars in a parameter pytree (e.g. `variables["params"]`)."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


class MLP(nn.Module):
    """Multi-layer perceptron.

    `[batch, in_dim] -> [batch, out_dim]` if `out_dim` is set, else `[batch, hidden_sizes[-1]]`
    (or `[batch, in_dim]` when `hidden_sizes` is empty and `out_dim` is None).

    Attributes:
      hidden_sizes: width of each hidden layer; each is followed by `activation`.
      activation: name or callable for hidden layers.
      out_dim: optional final linear layer (followed by `output_activation`, default none).
      hidden_gain: orthogonal gain for hidden kernels.
      output_gain: orthogonal gain for the output kernel.
      output_activation: name or callable applied after the output layer.
    """

    hidden_sizes: Sequence[int] = DEFAULT_HIDDEN
    activation: Activation = "relu"
    out_dim: Optional[int] = None
    hidden_gain: float = SQRT2
    output_gain: float = 1.0
    output_activation: Activation = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = get_activation(self.activation)
        for i, width in enumerate(self.hidden_sizes):
            x = act(dense(width, self.hidden_gain, name=f"hidden_{i}")(x))
        if self.out_dim is not None:
            x = dense(self.out_dim, self.output_gain, name="out")(x)
            x = get_activation(self.output_activation)(x)
        return x


# --------------------------------------------------------------------------------------------
# Actors
# --------------------------------------------------------------------------------------------


class CategoricalActor(nn.Module):
    """Discrete policy logits: `[batch, obs_dim] -> [batch, n_actions]`.

    Action masking is not done here; pass the logits and the env's mask to
    `jaxsoc.distributions.MaskedCategorical`. The small output gain (0.01) starts the policy
    near uniform.
    """

    n_actions: int
    hidden_sizes: Sequence[int] = DEFAULT_HIDDEN
    activation: Activation = "relu"
    output_gain: float = 0.01

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = MLP(self.hidden_sizes, activation=self.activation, name="torso")(obs)
        return dense(self.n_actions, self.output_gain, name="logits")(x)


def _clamp(x: jax.Array, lo: float, hi: float, soft: bool) -> jax.Array:
    if soft:
        # Smooth squash into [lo, hi]: keeps a gradient everywhere, unlike a hard clip.
        return lo + 0.5 * (hi - lo) * (jnp.tanh(x) + 1.0)
    return jnp.clip(x, lo, hi)


class TanhGaussianActor(nn.Module):
    """Continuous policy parameters for `TanhGaussian`: `[batch, obs_dim] ->
    (mean [batch, action_dim], log_std [batch, action_dim])` (pre-tanh).

    Attributes:
      state_dependent_std: True: log_std is a second linear head on the torso (SAC style).
        False: log_std is a learned vector parameter `[action_dim]`, initialised to
        `log_std_init` and broadcast over the batch (PPO style).
      log_std_min, log_std_max: clamp range for log_std (both modes).
      soft_clamp: False: hard clip (zero gradient outside the range). True: squash with
        `min + (max - min) * (tanh(x) + 1) / 2`, where x is the raw head output or parameter
        (then `log_std_init` is the raw value, not the clamped one).
      mean_gain, log_std_gain: orthogonal gains of the two heads.
    """

    action_dim: int
    hidden_sizes: Sequence[int] = DEFAULT_HIDDEN
    activation: Activation = "relu"
    state_dependent_std: bool = True
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    log_std_init: float = 0.0
    soft_clamp: bool = False
    mean_gain: float = 0.01
    log_std_gain: float = 0.01

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = MLP(self.hidden_sizes, activation=self.activation, name="torso")(obs)
        mean = dense(self.action_dim, self.mean_gain, name="mean")(x)
        if self.state_dependent_std:
            log_std = dense(self.action_dim, self.log_std_gain, name="log_std")(x)
        else:
            param = self.param(
                "log_std",
                nn.initializers.constant(self.log_std_init),
                (self.action_dim,),
            )
            log_std = jnp.broadcast_to(param, mean.shape)
        log_std = _clamp(log_std, self.log_std_min, self.log_std_max, self.soft_clamp)
        return mean, log_std


class DeterministicActor(nn.Module):
    """Deterministic policy in (-1, 1) (MADDPG/DDPG): `[batch, obs_dim] -> [batch, action_dim]`."""

    action_dim: int
    hidden_sizes: Sequence[int] = DEFAULT_HIDDEN
    activation: Activation = "relu"
    output_gain: float = 0.01

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(
            self.hidden_sizes,
            out_dim=self.action_dim,
            activation=self.activation,
            output_gain=self.output_gain,
            output_activation="tanh",
            name="net",
        )(obs)


# --------------------------------------------------------------------------------------------
# Critics
# --------------------------------------------------------------------------------------------


class ValueCritic(nn.Module):
    """State value: `[batch, obs_dim] -> [batch]`."""

    hidden_sizes: Sequence[int] = DEFAULT_HIDDEN
    activation: Activation = "relu"
    output_gain: float = 1.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        v = MLP(self.hidden_sizes, out_dim=1, activation=self.activation,
                output_gain=self.output_gain, name="net")(obs)
        return v[..., 0]


class QNetwork(nn.Module):
    """Discrete action values: `[batch, obs_dim] -> [batch, n_actions]`.

    With `dueling=True` the torso feeds a value head V `[batch, 1]` and an advantage head
    A `[batch, n_actions]`, combined as Q = V + A - mean_a(A) so V = mean_a(Q) is identifiable.
    """

    n_actions: int
    hidden_sizes: Sequence[int] = DEFAULT_HIDDEN
    activation: Activation = "relu"
    dueling: bool = False
    output_gain: float = 1.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = MLP(self.hidden_sizes, activation=self.activation, name="torso")(obs)
        if not self.dueling:
            return dense(self.n_actions, self.output_gain, name="q")(x)
        value = dense(1, self.output_gain, name="value")(x)
        adv = dense(self.n_actions, self.output_gain, name="advantage")(x)
        return value + adv - jnp.mean(adv, axis=-1, keepdims=True)


class ContinuousQ(nn.Module):
    """Q(obs, action): `([batch, obs_dim], [batch, action_dim]) -> [batch]`.

    Inputs are concatenated on the last axis; for a centralised critic (MADDPG) pass the global
    state and the flattened joint action.
    """

    hidden_sizes: Sequence[int] = DEFAULT_HIDDEN
    activation: Activation = "relu"
    output_gain: float = 1.0

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        q = MLP(self.hidden_sizes, out_dim=1, activation=self.activation,
                output_gain=self.output_gain, name="net")(x)
        return q[..., 0]


class TwinQ(nn.Module):
    """Two independent `ContinuousQ` nets (clipped double-Q, SAC/TD3):
    `([batch, obs_dim], [batch, action_dim]) -> (q1 [batch], q2 [batch])`."""

    hidden_sizes: Sequence[int] = DEFAULT_HIDDEN
    activation: Activation = "relu"
    output_gain: float = 1.0

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        kwargs = dict(hidden_sizes=self.hidden_sizes, activation=self.activation,
                      output_gain=self.output_gain)
        return ContinuousQ(**kwargs, name="q1")(obs, action), ContinuousQ(**kwargs, name="q2")(
            obs, action
        )


# --------------------------------------------------------------------------------------------
# Value-decomposition mixers
# --------------------------------------------------------------------------------------------


def vdn_mix(agent_qs: jax.Array) -> jax.Array:
    """VDN: `[batch, n_agents] -> [batch]`, Q_tot = sum_i Q_i."""
    return jnp.sum(agent_qs, axis=-1)


class QMixer(nn.Module):
    """QMIX monotonic mixer: `(agent_qs [batch, n_agents], state [batch, state_dim]) -> [batch]`.

    Hypernetworks on the global state produce the mixing weights; taking |.| of the weights
    (and using a monotone ELU) makes dQ_tot/dQ_i >= 0 for every input:
      W1 = |hyper_w1(s)| [batch, n_agents, embed_dim],  b1 = Linear(s) [batch, embed_dim]
      h  = elu(q @ W1 + b1)                                          [batch, embed_dim]
      W2 = |hyper_w2(s)| [batch, embed_dim, 1],         b2 = ReLU-MLP(s) [batch, 1]
      q_tot = h @ W2 + b2
    hyper_w1/hyper_w2/b2 are one-hidden-layer ReLU MLPs of width `hypernet_hidden` (b2's hidden
    width is `embed_dim`, as in the original QMIX). Leading axes beyond `[batch]` also work.

    `state_norm` centres the state and scales it to unit length before the hypernetworks. Without
    it the ReLU hypernetworks are positively homogeneous in the state at initialisation (zero
    biases), so the mixer's gain dQ_tot/dQ_i grows with the square of the state's length: on
    soc-hybrid (world states of length 5-14, clipped detector scores up to 10) trained mixers
    reached gains of 1.4-11 and over-estimated Q_tot until QMIX collapsed (docs/hybrid.md, "Why
    the QMIX mixer failed").
    """

    embed_dim: int = 32
    hypernet_hidden: int = 64
    state_norm: bool = False

    @nn.compact
    def __call__(self, agent_qs: jax.Array, state: jax.Array) -> jax.Array:
        n_agents = agent_qs.shape[-1]
        lead = agent_qs.shape[:-1]
        if self.state_norm:
            # centred and scaled to unit length: the hypernetworks see the state's direction only
            state = nn.LayerNorm(use_bias=False, use_scale=False)(state) / jnp.sqrt(state.shape[-1])

        def hyper(out: int, hidden: int, name: str) -> MLP:
            return MLP((hidden,), out_dim=out, activation="relu", name=name)

        w1 = jnp.abs(hyper(n_agents * self.embed_dim, self.hypernet_hidden, "hyper_w1")(state))
        w1 = w1.reshape(lead + (n_agents, self.embed_dim))
        b1 = dense(self.embed_dim, 1.0, name="hyper_b1")(state)
        hidden = nn.elu(jnp.einsum("...a,...ae->...e", agent_qs, w1) + b1)

        w2 = jnp.abs(hyper(self.embed_dim, self.hypernet_hidden, "hyper_w2")(state))
        b2 = hyper(1, self.embed_dim, "hyper_b2")(state)[..., 0]
        return jnp.einsum("...e,...e->...", hidden, w2) + b2


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------


def _masked_softmax(scores: jax.Array, mask: Optional[jax.Array]) -> jax.Array:
    """Softmax over the last axis with masked entries exactly 0.

    A row with no allowed entry returns all zeros (there is no distribution to return), not NaN.
    """
    if mask is None:
        return jax.nn.softmax(scores, axis=-1)
    any_allowed = jnp.any(mask, axis=-1, keepdims=True)
    # Masked -> -inf gives exact zeros; fully masked rows get finite dummy scores so that the
    # softmax (and its gradient) stays finite, then are zeroed.
    scores = jnp.where(mask, scores, -jnp.inf)
    scores = jnp.where(any_allowed, scores, 0.0)
    return jnp.where(any_allowed & mask, jax.nn.softmax(scores, axis=-1), 0.0)


class MultiHeadAttention(nn.Module):
    """Scaled dot-product multi-head attention of a query over a set of tokens.

    Call: `(query, tokens, mask=None) -> (output, weights)`
      query:  `[batch, q_dim]`            or `[batch, n_q, q_dim]`
      tokens: `[batch, n_tokens, token_dim]`
      mask:   `[batch, n_tokens]` bool, True = attend (optional)
      output: `[batch, out_dim]`          or `[batch, n_q, out_dim]`
      weights:`[batch, num_heads, n_tokens]` or `[batch, num_heads, n_q, n_tokens]`
    Weights are softmax(q k^T / sqrt(d_k)) over tokens: each head's row sums to 1, masked
    tokens get exactly 0 (a row with every token masked is all 0 and its output is the output
    bias). Values use `d_k` features per head; heads are concatenated and projected to
    `out_dim` (default `num_heads * d_k`).
    """

    num_heads: int = 4
    d_k: int = 64
    out_dim: Optional[int] = None

    @nn.compact
    def __call__(
        self, query: jax.Array, tokens: jax.Array, mask: Optional[jax.Array] = None
    ) -> tuple[jax.Array, jax.Array]:
        single = query.ndim == tokens.ndim - 1
        if single:
            query = query[..., None, :]  # [batch, 1, q_dim]
        h, dk = self.num_heads, self.d_k
        # Glorot-style gain 1 keeps q.k ~ O(d_k) at init, which the 1/sqrt(d_k) scale normalises.
        q = dense(h * dk, 1.0, name="query")(query)
        k = dense(h * dk, 1.0, name="key")(tokens)
        v = dense(h * dk, 1.0, name="value")(tokens)
        q = q.reshape(q.shape[:-1] + (h, dk))  # [batch, n_q, h, dk]
        k = k.reshape(k.shape[:-1] + (h, dk))  # [batch, n_tok, h, dk]
        v = v.reshape(v.shape[:-1] + (h, dk))
        scores = jnp.einsum("...qhd,...thd->...hqt", q, k) / math.sqrt(dk)
        if mask is not None:
            mask = mask.astype(bool)[..., None, None, :]  # [batch, 1, 1, n_tok]
        weights = _masked_softmax(scores, mask)  # [batch, h, n_q, n_tok]
        out = jnp.einsum("...hqt,...thd->...qhd", weights, v)
        out = out.reshape(out.shape[:-2] + (h * dk,))
        out = dense(self.out_dim or h * dk, 1.0, name="out")(out)
        if single:
            return out[..., 0, :], weights[..., 0, :]
        return out, weights


class TokenAttentionEncoder(nn.Module):
    """Embeds a set of tokens and summarises them with attention, for explainable policies.

    Call: `(tokens [batch, n_tokens, token_dim], query_features [batch, q_dim] | None,
            mask [batch, n_tokens] | None) -> (embedding [batch, out_dim],
                                                weights [batch, num_heads, n_tokens])`

    Each token (e.g. one network segment's features) goes through a shared per-token MLP to
    `embed_dim`. The query is a learned vector (when `query_features` is None) or a projection of
    observation-derived features, so the policy can ask different questions in different
    states. `weights` are the attention distribution used to build the embedding, so they are
    trained by whatever loss consumes the embedding and show which tokens drove a decision.

    Compose it in front of a policy, e.g.
        emb, w = TokenAttentionEncoder()(segments, global_obs)
        logits = CategoricalActor(n)(jnp.concatenate([emb, global_obs], -1))

    Attributes:
      embed_dim: per-token embedding width (and learned-query width).
      token_hidden: hidden widths of the per-token MLP.
      num_heads, d_k, out_dim: see `MultiHeadAttention` (out_dim default num_heads * d_k).
      token_ids: if set, add a learned embedding per token position (requires n_tokens ==
        token_ids), so tokens with equal features but different identity (which segment) can be
        told apart; attention alone is permutation-equivariant.
      activation: of the per-token MLP.
    """

    embed_dim: int = 64
    token_hidden: Sequence[int] = (64,)
    num_heads: int = 4
    d_k: int = 64
    out_dim: Optional[int] = None
    token_ids: Optional[int] = None
    activation: Activation = "relu"

    @nn.compact
    def __call__(
        self,
        tokens: jax.Array,
        query_features: Optional[jax.Array] = None,
        mask: Optional[jax.Array] = None,
    ) -> tuple[jax.Array, jax.Array]:
        x = MLP(self.token_hidden, out_dim=self.embed_dim, activation=self.activation,
                name="token_mlp")(tokens)  # [batch, n_tok, embed]
        if self.token_ids is not None:
            if tokens.shape[-2] != self.token_ids:
                raise ValueError(f"expected {self.token_ids} tokens, got {tokens.shape[-2]}")
            ids = self.param("token_id_embed", nn.initializers.normal(0.02),
                             (self.token_ids, self.embed_dim))
            x = x + ids
        if query_features is None:
            # Non-zero init matters: a zero query gives equal scores and no gradient to the keys.
            q = self.param("query", nn.initializers.normal(1.0), (self.embed_dim,))
            query = jnp.broadcast_to(q, tokens.shape[:-2] + (self.embed_dim,))
        else:
            query = dense(self.embed_dim, 1.0, name="query_proj")(query_features)
        return MultiHeadAttention(self.num_heads, self.d_k, self.out_dim, name="attention")(
            query, x, mask
        )
