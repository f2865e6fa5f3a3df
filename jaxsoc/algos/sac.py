"""The "sac" family: soft actor-critic (Haarnoja et al. 2018) with twin Q and automatic temperature.

Agent (pure functions; the HMARL team's threat hunter is a `SAC`):

    agent = SAC(obs_dim=128, action_dim=16, **sac_kwargs(section))
    state = agent.init(key)                                       # SACState
    a     = agent.act(state, obs [..., obs_dim], key, greedy)     # [..., action_dim] in (-1, 1)
    state, td, metrics = agent.update(state, batch, weights [B], key)   # td [B]

    batch = {"obs": [B, obs_dim], "action": [B, action_dim], "reward": [B], "discount": [B],
             "next_obs": [B, obs_dim]}

Update (one call = one critic, actor and temperature step, then the target critics):
    a' ~ pi(.|s'),  y = r + gamma * discount * (min(Q1', Q2')(s', a') - alpha * log pi(a'|s'))
    critic: mean(w * ((Q1(s, a) - y)^2 + (Q2(s, a) - y)^2))           (the reference's MSE sum)
    actor:  mean(w * (alpha * log pi(a~|s) - min(Q1, Q2)(s, a~))),  a~ ~ pi(.|s) reparameterised,
            on the critics just updated
    alpha:  mean(w * -log_alpha * (log pi(a~|s) + target_entropy)),  target entropy -action_dim
    targets: Polyak `tau` (every `target_period` updates)
    td = (|Q1 - y| + |Q2 - y|) / 2 (the reference's priority)
`w` are the PER importance weights (1 for uniform replay); the reference ignored them (D18). The
actor is `networks.TanhGaussianActor` with the exact tanh log-density of
`distributions.TanhGaussian`; the deterministic (greedy) action is `tanh(mean)`, where the
reference returned the raw mean (D21). The temperature starts at `init_alpha` (the reference: 1.0,
its config's 0.2 ignored).

Roles on the SOC env (`sac` trainer): independent SAC on each continuous tier-2 role (threat
hunter and response orchestrator, native action vectors), alert triage by a `dqn.DQN` (SAC here
is for continuous actions; `<family>.dqn` configures it), coordinator fixed as under VDN/QMIX (v1
all-zero directive, soc-v2 directive `coordinator_action`). All learners share one buffer and one
sampled batch per round; the PER priority combines their TD errors (`priority_rule`). Why: this is
the full tier-2 team with independent learners, the counterpart of MADDPG's centralised critics,
and the coordinator is left to the hierarchy (an every-step learner would see its action ignored
on K-1 of K steps).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from jaxsoc.algos import offpolicy as op
from jaxsoc.algos.common import clipped_adam
from jaxsoc.algos.dqn import DQN, dqn_kwargs
from jaxsoc.argtypes import is_number
from jaxsoc.distributions import TanhGaussian
from jaxsoc.networks import TanhGaussianActor, TwinQ

PyTree = Any

DEFAULTS = {
    **op.COMMON_DEFAULTS,
    "actor_lr": 3e-4,
    "critic_lr": 3e-4,
    "alpha_lr": 3e-4,
    "tau": 0.005,
    "target_period": 1,
    "init_alpha": 1.0,          # the reference's auto-alpha starts at 1.0
    "target_entropy": None,     # null: -action_dim (the reference: -16 for the threat hunter)
    "log_std_min": -20.0,
    "log_std_max": 2.0,
    "max_grad_norm": 0.0,       # 0: no clipping (the reference clips nothing in SAC)
    "dqn": dict(op.DQN_DEFAULTS),  # the alert triage DQN
}
# The keys of a SAC agent's section that must be positive (config.validate checks POSITIVE).
SAC_POSITIVE = ("actor_lr", "critic_lr", "alpha_lr", "tau", "init_alpha", "target_period")
POSITIVE = op.POSITIVE + SAC_POSITIVE
# Keys the update only computes with: a sweep (jaxsoc/sweep.py) trains grid points that differ
# only in these in one program (tests/test_sweepable.py traces each and checks it is used).
SWEEPABLE = ("actor_lr", "critic_lr", "alpha_lr", "gamma", "tau", "max_grad_norm", "init_alpha", "dqn.lr")


def validate(config: dict) -> None:
    op.validate_common(config, "sac")
    op.validate_dqn(config["sac"]["dqn"], "sac.dqn")
    validate_agent(config["sac"], "sac")


def validate_agent(section: dict, where: str) -> None:
    """The `SAC_KWARGS` of a section that builds a `SAC` agent (sac, hmarl.sac) beyond its
    `SAC_POSITIVE` keys (which `config.validate` checks first, through the family's POSITIVE):
    one-line ConfigError naming `where`."""
    from jaxsoc.config import ConfigError

    if section["tau"] > 1:
        raise ConfigError(f"{where}.tau must be in (0, 1], got {section['tau']}")
    entropy = section["target_entropy"]
    if entropy is not None and not is_number(entropy):
        raise ConfigError(f"{where}.target_entropy must be a number or null, got {entropy!r}")
    if section["log_std_min"] >= section["log_std_max"]:
        raise ConfigError(f"{where}.log_std_min must be below {where}.log_std_max")
    op.check_clip_norm(section, where)


class SACState(NamedTuple):
    """Actor and twin-critic variables, target critics, log temperature, Adam states, updates."""

    actor_params: PyTree
    critic_params: PyTree
    target_critic_params: PyTree
    log_alpha: jax.Array
    actor_opt: PyTree
    critic_opt: PyTree
    alpha_opt: PyTree
    steps: jax.Array


# The config keys that become `SAC` fields (with `hidden_sizes` and `gamma`).
SAC_KWARGS = ("actor_lr", "critic_lr", "alpha_lr", "tau", "target_period", "init_alpha", "target_entropy",
              "log_std_min", "log_std_max", "max_grad_norm")


def sac_kwargs(section: dict, gamma: Optional[float] = None) -> dict:
    out = {k: section[k] for k in SAC_KWARGS}
    out.update(hidden=tuple(section["hidden_sizes"]), gamma=section["gamma"] if gamma is None else gamma)
    return out


@dataclasses.dataclass(frozen=True)
class SAC:
    """SAC for one continuous role; see the module docstring."""

    obs_dim: int
    action_dim: int
    hidden: Tuple[int, ...] = (256, 256, 256)
    gamma: float = 0.99
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    tau: float = 0.005
    target_period: int = 1
    init_alpha: float = 1.0
    target_entropy: Optional[float] = None
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    max_grad_norm: float = 0.0

    @property
    def actor(self) -> TanhGaussianActor:
        return TanhGaussianActor(self.action_dim, self.hidden, log_std_min=self.log_std_min,
                                 log_std_max=self.log_std_max)

    @property
    def critic(self) -> TwinQ:
        return TwinQ(self.hidden)

    @property
    def entropy_target(self) -> float:
        return -float(self.action_dim) if self.target_entropy is None else float(self.target_entropy)

    def _opt(self, lr: float) -> optax.GradientTransformation:
        return clipped_adam(lr, self.max_grad_norm)

    def _alpha_opt(self) -> optax.GradientTransformation:
        # The temperature's one-number gradient is never clipped (the reference's does not either).
        return clipped_adam(self.alpha_lr)

    def init(self, key: jax.Array) -> SACState:
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros((1, self.obs_dim), jnp.float32)
        actor = self.actor.init(k_actor, obs)
        critic = self.critic.init(k_critic, obs, jnp.zeros((1, self.action_dim), jnp.float32))
        log_alpha = jnp.asarray(jnp.log(self.init_alpha), jnp.float32)
        return SACState(actor, critic, op.copy_tree(critic), log_alpha, self._opt(self.actor_lr).init(actor),
                        self._opt(self.critic_lr).init(critic), self._alpha_opt().init(log_alpha),
                        jnp.zeros((), jnp.int32))

    def distribution(self, actor_params: PyTree, obs: jax.Array) -> TanhGaussian:
        mean, log_std = self.actor.apply(actor_params, obs)
        return TanhGaussian(mean, log_std)

    def act(self, state: SACState, obs: jax.Array, key: jax.Array, greedy: bool = False) -> jax.Array:
        """A sample, or with `greedy` the deterministic action tanh(mean); `[..., action_dim]`."""
        return self.policy(state.actor_params, obs, key, greedy)

    def policy(self, actor_params: PyTree, obs: jax.Array, key: jax.Array, greedy: bool = False) -> jax.Array:
        """`act` from the actor's parameters alone."""
        dist = self.distribution(actor_params, obs)
        return dist.mode() if greedy else dist.sample(key)

    def q_min(self, critic_params: PyTree, obs: jax.Array, action: jax.Array) -> jax.Array:
        q1, q2 = self.critic.apply(critic_params, obs, action)
        return jnp.minimum(q1, q2)

    def update(self, state: SACState, batch: Dict[str, jax.Array], weights: jax.Array, key: jax.Array):
        """One SAC step; returns `(state, td [B], metrics)`."""
        k_next, k_new = jax.random.split(key)
        alpha = jnp.exp(state.log_alpha)

        # Critic: soft Bellman target from the target critics and a fresh next action.
        next_action, next_logp = self.distribution(state.actor_params, batch["next_obs"]).sample_and_log_prob(k_next)
        next_q = self.q_min(state.target_critic_params, batch["next_obs"], next_action)
        target = batch["reward"] + self.gamma * batch["discount"] * (next_q - alpha * next_logp)
        target = jax.lax.stop_gradient(target)

        def critic_loss(params):
            q1, q2 = self.critic.apply(params, batch["obs"], batch["action"])
            loss = op.importance_weighted_mean(jnp.square(q1 - target) + jnp.square(q2 - target), weights)
            return loss, ((jnp.abs(q1 - target) + jnp.abs(q2 - target)) / 2, q1)

        (c_loss, (td, q1)), critic_params, critic_opt = op.gradient_step(
            critic_loss, state.critic_params, state.critic_opt, self._opt(self.critic_lr), has_aux=True)

        # Actor: reparameterised action through the updated critics.
        def actor_loss(params):
            action, logp = self.distribution(params, batch["obs"]).sample_and_log_prob(k_new)
            q = self.q_min(critic_params, batch["obs"], action)
            return op.importance_weighted_mean(alpha * logp - q, weights), logp

        (a_loss, logp), actor_params, actor_opt = op.gradient_step(
            actor_loss, state.actor_params, state.actor_opt, self._opt(self.actor_lr), has_aux=True)

        # Temperature: raise alpha when the entropy (-log pi) is below the target, lower it above.
        logp = jax.lax.stop_gradient(logp)

        def alpha_loss(log_alpha):
            return op.importance_weighted_mean(-log_alpha * (logp + self.entropy_target), weights)

        t_loss, log_alpha, alpha_opt = op.gradient_step(alpha_loss, state.log_alpha, state.alpha_opt,
                                                        self._alpha_opt())

        steps = state.steps + 1
        target_critic = op.update_target(critic_params, state.target_critic_params, steps, self.tau,
                                         self.target_period)
        new = SACState(actor_params, critic_params, target_critic, log_alpha, actor_opt, critic_opt,
                       alpha_opt, steps)
        metrics = {"critic_loss": c_loss, "actor_loss": a_loss, "alpha_loss": t_loss, "alpha": alpha,
                   "entropy": -jnp.mean(logp), "q": jnp.mean(q1)}
        return new, td, metrics


# ------------------------------------------------------------------------------------- team
class SACTeam(op.PerRoleTeam):
    """SAC on the continuous roles it controls, DQN on the discrete ones (module docstring)."""

    def __init__(self, env, roles: Dict[str, op.RoleAction], section: dict):
        self.roles = roles
        gamma, hidden = section["gamma"], section["hidden_sizes"]
        self.agents = {}
        for r, a in roles.items():
            obs_dim = int(env.observation_space(r).shape[0])
            if a.kind == "continuous":
                self.agents[r] = SAC(obs_dim, a.size, **sac_kwargs(section))
            elif a.kind == "discrete":
                self.agents[r] = DQN(obs_dim, a.size, **dqn_kwargs(section["dqn"], hidden, gamma))
        self.obs_roles = tuple(self.agents)
        self.priority_rule = section["priority_rule"]


def make_team(config: dict, env) -> SACTeam:
    c = config["sac"]
    op.check_fixed_directive_read(env, "sac.coordinator_action", c["coordinator_action"],
                                  DEFAULTS["coordinator_action"])
    return SACTeam(env, op.native_tier2_roles(env, c), c)


def make_train(config: dict, env, env_params):
    return op.make_trainer(config, env, env_params, make_team(config, env), config["sac"])
