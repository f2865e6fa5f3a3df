"""Tier 1 and tier 3: the strategic coordinator, PPO (`ppo.py`'s loss and SGD) on macro-transitions,
deciding through the attention explainer over per-segment tokens.

The policy reads the coordinator's observation; with `attention` the segment features are
tokens (`observe.segment_token_layout`), multi-head attention queried by the global features
turns them into one embedding, and the weights `[..., heads, S]` explain each decision
(`attention_weights`). Its samples are macro-transitions (`hierarchy.py`); `update` runs
`onpolicy.sgd` over `ppo.weighted_head_loss`, the same objective as the PPO learners.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, NamedTuple, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsoc.algos import onpolicy, ppo
from jaxsoc.algos.common import V1_COORDINATOR_CHOICES, clipped_adam
from jaxsoc.algos.hmarl.defaults import env_overrides
from jaxsoc.config import ConfigError  # a ValueError the command lines print in one line
from jaxsoc.distributions import MaskedCategorical
from jaxsoc.env import SOCEnv
from jaxsoc.env.observe import segment_token_layout
from jaxsoc.networks import MLP, TokenAttentionEncoder, ValueCritic

PyTree = Any


class CoordinatorActor(nn.Module):
    """Policy logits `[..., n_actions]` and attention weights `[..., heads, S]` (or None).

    With `num_postures` > 0 (the `focus_head: attention` option, discrete directives `focus x
    num_postures + posture`) the focus is read off the explainer: `log P(focus = s)` is the log of
    the head-mean attention on segment `s` divided by `focus_temperature` T, the posture comes
    from the MLP, and a directive's logit is their sum. The focus distribution is then the
    attention map itself (T = 1) or the map sharpened, attention ** (1 / T) normalised, in the
    map's order (T < 1), and the focus choice trains the query and keys directly; otherwise the
    MLP gives one logit per choice.
    """

    n_actions: int
    hidden_sizes: Tuple[int, ...]
    tokens: Tuple[Tuple[int, ...], ...]  # static [S, F] indices into the observation
    rest: Tuple[int, ...]  # static [G] indices of the global features
    attention: bool = True
    num_heads: int = 4
    d_k: int = 64
    embed_dim: int = 64
    num_postures: int = 0  # > 0: the focus from the attention, the posture from the MLP
    focus_temperature: float = 1.0  # with num_postures: P(focus) ~ attention ** (1 / T)

    @nn.compact
    def __call__(self, obs: jax.Array):
        if not self.attention:
            return MLP(self.hidden_sizes, out_dim=self.n_actions, output_gain=0.01)(obs), None
        tok = obs[..., np.asarray(self.tokens)]  # [..., S, F]
        glob = obs[..., np.asarray(self.rest)]  # [..., G]
        emb, weights = TokenAttentionEncoder(self.embed_dim, num_heads=self.num_heads, d_k=self.d_k,
                                             token_ids=len(self.tokens), name="explainer")(tok, glob)
        x = jnp.concatenate([emb, glob], axis=-1)
        if not self.num_postures:
            return MLP(self.hidden_sizes, out_dim=self.n_actions, output_gain=0.01)(x), weights
        # The floor keeps log finite where a head-mean weight underflows (a masked segment). The
        # temperature T sharpens the focus, P(focus = s) ~ attention_s ** (1 / T), with the map's order.
        focus = jnp.log(jnp.mean(weights, axis=-2) + 1e-9) / self.focus_temperature  # [..., S]
        posture = MLP(self.hidden_sizes, out_dim=self.num_postures, output_gain=0.01)(x)  # [..., P]
        logits = focus[..., :, None] + posture[..., None, :]  # [..., S, P]: index focus * P + posture
        return logits.reshape(logits.shape[:-2] + (self.n_actions,)), weights


class CoordinatorState(NamedTuple):
    actor_params: PyTree
    critic_params: PyTree
    opt_state: PyTree


@dataclasses.dataclass(frozen=True)
class Coordinator:
    """PPO on macro-transitions for the strategic coordinator (discrete directives). Every
    hyper-parameter comes from the `hmarl.coordinator` config section (`build_coordinator`)."""

    obs_dim: int
    n_actions: int
    hidden_sizes: Tuple[int, ...]
    tokens: Tuple[Tuple[int, ...], ...]
    rest: Tuple[int, ...]
    loss_cfg: ppo.LossConfig  # clip_eps, vf_coef, ent_coef (no value clipping, advantages normalised by the caller)
    lr: float
    epochs: int
    minibatches: int
    max_grad_norm: float
    attention: bool
    num_heads: int
    d_k: int
    embed_dim: int
    num_postures: int = 0  # > 0: `focus_head: attention` (see `CoordinatorActor`)
    focus_temperature: float = 1.0

    @property
    def actor(self) -> CoordinatorActor:
        return CoordinatorActor(self.n_actions, self.hidden_sizes, self.tokens, self.rest, self.attention,
                                self.num_heads, self.d_k, self.embed_dim, self.num_postures,
                                self.focus_temperature)

    @property
    def critic(self) -> ValueCritic:
        return ValueCritic(self.hidden_sizes)

    @property
    def optimizer(self) -> optax.GradientTransformation:
        """One Adam over actor and critic together, clipped by their joint gradient norm."""
        return clipped_adam(self.lr, self.max_grad_norm, eps=1e-5)

    def init(self, key: jax.Array) -> CoordinatorState:
        ka, kc = jax.random.split(key)
        obs = jnp.zeros((1, self.obs_dim), jnp.float32)
        params = (self.actor.init(ka, obs), self.critic.init(kc, obs))
        return CoordinatorState(params[0], params[1], self.optimizer.init(params))

    def dist(self, actor_params, obs) -> Tuple[MaskedCategorical, Optional[jax.Array]]:
        """The policy `[...]` over directive choices and the attention weights `[..., heads, S]`."""
        logits, weights = self.actor.apply(actor_params, obs)
        return MaskedCategorical(logits), weights

    def value(self, critic_params, obs) -> jax.Array:
        return self.critic.apply(critic_params, obs)

    def decide(self, actor_params, obs: jax.Array, key: jax.Array, greedy: bool):
        """Directive choices and their log-probs, `[N]` each, for observations `[N, obs_dim]`."""
        dist, _ = self.dist(actor_params, obs)
        a = dist.mode() if greedy else dist.sample(key)
        return a.astype(jnp.int32), dist.log_prob(a)

    def loss(self, params, batch: Dict[str, jax.Array]):
        """`ppo.weighted_head_loss` of `params = (actor, critic)` on a weighted minibatch of
        macro-transitions `{obs, action, log_prob, advantage, return, weight}`, each `[B, ...]`."""
        actor_params, critic_params = params
        dist, _ = self.dist(actor_params, batch["obs"])
        return ppo.weighted_head_loss(dist.log_prob(batch["action"]), batch["log_prob"], batch["advantage"],
                                      dist.entropy(), self.value(critic_params, batch["obs"]), batch["return"],
                                      batch["weight"], self.loss_cfg)

    def update(self, state: CoordinatorState, batch: Dict[str, jax.Array], key: jax.Array):
        """`epochs` passes of `minibatches` shuffled minibatches over a gathered batch `[M, ...]`
        (`M` a multiple of `minibatches`; `onpolicy.sgd`, as the PPO learners)."""
        params, opt_state, info = onpolicy.sgd(key, (state.actor_params, state.critic_params), state.opt_state,
                                               batch, self.loss, self.optimizer, self.epochs, self.minibatches)
        return CoordinatorState(params[0], params[1], opt_state), info


def num_choices(env_params) -> int:
    """The coordinator's choices: the env's directives with the D6 fix, else the v1 encodings'."""
    return env_params.num_directives if env_params.fix_d6_directive else V1_COORDINATOR_CHOICES


def build_coordinator(config: dict, env_params) -> Coordinator:
    """The coordinator of a run (its static network description) from its config and scenario."""
    c = config["hmarl"]
    cc = c["coordinator"]
    env_params = env_params.replace(**env_overrides(config))  # hmarl.k, as engine.make_env_checked sets it
    env = SOCEnv(env_params)
    tokens, rest, _ = segment_token_layout(env_params, "coordinator")
    head = cc["focus_head"]
    can_attend = cc["attention"] and env_params.fix_d6_directive  # explainer on, discrete directives
    if head == "auto":
        head = "attention" if can_attend else "mlp"
    if head == "attention" and not can_attend:
        raise ConfigError("hmarl.coordinator.focus_head: attention reads the focus off the explainer, so it "
                         f"needs hmarl.coordinator.attention: true and discrete directives (D6); "
                         f"{env_params.name!r} with attention={cc['attention']} has not both: use focus_head: mlp")
    postures = env_params.num_postures if head == "attention" else 0
    temperature = cc["focus_temperature"]
    if head != "attention" and temperature != 1.0:
        raise ConfigError(f"hmarl.coordinator.focus_temperature sharpens the attention focus head; {env_params.name!r} "
                          f"with focus_head={cc['focus_head']} has an MLP head, which would ignore it")
    return Coordinator(
        env.observation_space("coordinator").shape[0], num_choices(env_params), tuple(c["hidden_sizes"]),
        tuple(map(tuple, tokens.tolist())), tuple(rest.tolist()),
        loss_cfg=ppo.LossConfig(clip_eps=cc["clip_eps"], clip_value=False, vf_coef=cc["vf_coef"],
                                ent_coef=cc["ent_coef"], normalize_advantages=False),
        lr=cc["lr"], epochs=cc["epochs"], minibatches=cc["minibatches"], max_grad_norm=cc["max_grad_norm"],
        attention=cc["attention"], num_heads=cc["num_heads"], d_k=cc["d_k"], embed_dim=cc["embed_dim"],
        num_postures=postures, focus_temperature=float(temperature))


def attention_weights(policy_params, obs, config: dict, env_params):
    """Tier-3 explanations: the coordinator's attention over segments for a batch of decisions.

    `policy_params` of one seed (`Trainer.policy_params`), `obs` the env's per-agent observations
    with a leading decisions axis, `config` the run's resolved config, `env_params` its scenario.
    Returns `(weights [decisions, heads, segments] (each row a distribution over segments),
    segment names)`.
    """
    if not config["hmarl"]["train_coordinator"]:  # its weights are the untrained initialisation's
        raise ValueError("this run has no coordinator (hmarl.train_coordinator: false): the directive was "
                         "fixed, so there is no choice to explain")
    coordinator = build_coordinator(config, env_params)
    if not coordinator.attention:
        raise ValueError("this run's coordinator has no attention explainer (hmarl.coordinator.attention: false)")
    _, weights = coordinator.dist(policy_params[0], obs["coordinator"])
    return weights, list(env_params.segment_names)
