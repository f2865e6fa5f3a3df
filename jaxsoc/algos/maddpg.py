"""The "maddpg" family: multi-agent DDPG with centralised critics (Lowe et al. 2017).

Agent (pure functions; the HMARL team's response orchestrator is a `MADDPG`):

    agent = MADDPG(obs_dim=96, action_dim=12, critic_obs_dim=352, others_action_dim=25, ...)
    state = agent.init(key)                                            # MADDPGState
    a     = agent.act(state, obs [..., obs_dim], key, greedy)          # [..., action_dim] in [-1, 1]
    a'    = agent.target_action(state, next_obs)                       # for the other agents' targets
    state, td, metrics = agent.update(state, batch, weights [B], key)  # td = |Q - y| [B]

    batch = {"obs": [B, obs_dim], "action": [B, action_dim], "reward": [B], "discount": [B],
             "next_obs": [B, obs_dim],
             "critic_obs": [B, critic_obs_dim], "next_critic_obs": [B, critic_obs_dim],
             "others_action": [B, others_action_dim], "next_others_action": [B, others_action_dim]}

The critic is Q(critic_obs, [others_action, own action]); the caller decides what the
centralised input holds (here: every role's observation, or the env's world state, and every
other role's action; the HMARL team adds the coordinator's directive to `others_action`), so
the agent itself is agnostic. `next_others_action` are the other agents' *target* policies'
actions at the next observations (the reference kept their batch actions, D16).

Update:
    y = r + gamma * discount * Q_target(next_critic_obs, [next_others_action, mu_target(next_obs)])
    critic: mean(w * (Q(critic_obs, [others_action, action]) - y)^2)        (grad clip, reference 0.5)
    actor:  -mean(w * Q(critic_obs, [others_action, mu(obs)])) on the critic just updated: the
            actor's own action is inserted and its gradient flows through the critic into mu (the
            reference computed mu(obs) but scored the batch action, so its actor never learned, D16)
    targets: Polyak `tau` on the actor and the critic
Exploration: mu(obs) + N(0, noise_std), clipped to [-1, 1] (reference 0.1).

TD3's three corrections (Fujimoto et al. 2018; MATD3 in the multi-agent setting), each a key, all
off by default (= MADDPG as above):
    twin_critics: two critics (`networks.TwinQ`); the target is r + gamma * min(Q1', Q2'), both
                  critics regress on it (loss summed, as SAC's), the actor ascends Q1;
    target_noise: the target action is clip(mu'(s') + clip(N(0, target_noise), +-target_noise_clip), -1, 1)
                  (smooths the critic over actions, so the actor cannot climb a narrow error peak);
    policy_delay: the actor and the targets move every `policy_delay`-th update only.

Roles on the SOC env (`maddpg` trainer): MADDPG on the continuous tier-2 roles (threat hunter and
response orchestrator), each with its own centralised critic over all four roles' observations
(`critic_input: obs`, the reference's 352 inputs on v1; `world` uses the env's world state) and
all four roles' actions (coordinator directive, threat hunter, alert triage one-hot, response
orchestrator); alert triage by a `dqn.DQN` (`maddpg.dqn`), whose target-network greedy choice is
its next action in the critics' targets; coordinator fixed as under VDN/QMIX. Same tier-2 team as
`sac`, so the two compare independent against centralised critics.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from jaxsoc.algos import offpolicy as op
from jaxsoc.algos.common import clipped_adam
from jaxsoc.algos.dqn import DQN, best_choice, dqn_kwargs
from jaxsoc.argtypes import is_integer
from jaxsoc.networks import ContinuousQ, DeterministicActor, TwinQ

PyTree = Any

DEFAULTS = {
    **op.COMMON_DEFAULTS,
    "actor_lr": 3e-4,
    "critic_lr": 3e-4,
    "tau": 0.005,
    "target_period": 1,
    "max_grad_norm": 0.5,      # the reference clips the critic at 0.5; used for actor and critic
    "noise_std": 0.1,          # Gaussian exploration noise on the actor's output
    "critic_input": "obs",     # obs: all roles' observations (reference); world: the env's world state
    "twin_critics": False,     # TD3's clipped double Q (module doc)
    "target_noise": 0.0,       # TD3's target policy smoothing: std of the noise on mu'(s')
    "target_noise_clip": 0.5,  # ... clipped to +- this
    "policy_delay": 1,         # TD3: the actor and the targets move every k-th update
    "dqn": dict(op.DQN_DEFAULTS),  # the alert triage DQN
}
POSITIVE = op.POSITIVE + ("actor_lr", "critic_lr", "tau", "target_period")
# Keys the update only computes with: a sweep (jaxsoc/sweep.py) trains grid points that differ
# only in these in one program (tests/test_sweepable.py traces each and checks it is used).
SWEEPABLE = ("actor_lr", "critic_lr", "gamma", "tau", "max_grad_norm", "noise_std", "target_noise_clip", "dqn.lr")


def validate(config: dict) -> None:
    from jaxsoc.config import ConfigError, check_choice

    op.validate_common(config, "maddpg")
    op.validate_dqn(config["maddpg"]["dqn"], "maddpg.dqn")
    c = config["maddpg"]
    check_choice("maddpg.critic_input", c["critic_input"], ("obs", "world"))
    validate_agent(c, "maddpg")


def validate_agent(section: dict, where: str) -> None:
    """The `MADDPG_KWARGS` of a section that builds `MADDPG` agents (maddpg, hmarl.maddpg,
    hybrid.maddpg): one-line ConfigError."""
    from jaxsoc.config import ConfigError

    if not (0 < section["tau"] <= 1 and section["noise_std"] >= 0 and section["actor_lr"] > 0
            and section["critic_lr"] > 0):
        raise ConfigError(f"{where}: need 0 < tau <= 1, noise_std >= 0 and positive learning rates")
    if not isinstance(section["twin_critics"], bool):
        raise ConfigError(f"{where}.twin_critics must be true or false, got {section['twin_critics']!r}")
    if not (section["target_noise"] >= 0 and section["target_noise_clip"] > 0):
        raise ConfigError(f"{where}: need target_noise >= 0 and target_noise_clip > 0, got "
                          f"{section['target_noise']} and {section['target_noise_clip']}")
    if not is_integer(section["policy_delay"]) or section["policy_delay"] < 1:
        raise ConfigError(f"{where}.policy_delay must be an integer >= 1, got {section['policy_delay']!r}")
    op.check_clip_norm(section, where)


class MADDPGState(NamedTuple):
    """Actor and critic variables, their targets, Adam states, updates done."""

    actor_params: PyTree
    critic_params: PyTree
    target_actor_params: PyTree
    target_critic_params: PyTree
    actor_opt: PyTree
    critic_opt: PyTree
    steps: jax.Array


# The config keys that become `MADDPG` fields (with `hidden_sizes` and `gamma`).
MADDPG_KWARGS = ("actor_lr", "critic_lr", "tau", "target_period", "max_grad_norm", "noise_std",
                 "twin_critics", "target_noise", "target_noise_clip", "policy_delay")
# The section of a family that builds one MADDPG agent among others (hmarl.maddpg, hybrid.maddpg).
AGENT_DEFAULTS = {k: v for k, v in DEFAULTS.items() if k in MADDPG_KWARGS}


def maddpg_kwargs(section: dict) -> dict:
    return dict(hidden=tuple(section["hidden_sizes"]), **{k: section[k] for k in MADDPG_KWARGS + ("gamma",)})


@dataclasses.dataclass(frozen=True)
class MADDPG:
    """One MADDPG agent: a deterministic actor on its own observation, a centralised critic."""

    obs_dim: int
    action_dim: int
    critic_obs_dim: int
    others_action_dim: int
    hidden: Tuple[int, ...] = (256, 256, 256)
    gamma: float = 0.99
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    tau: float = 0.005
    target_period: int = 1
    max_grad_norm: float = 0.5
    noise_std: float = 0.1
    twin_critics: bool = False
    target_noise: float = 0.0
    target_noise_clip: float = 0.5
    policy_delay: int = 1

    @property
    def actor(self) -> DeterministicActor:
        return DeterministicActor(self.action_dim, self.hidden)

    @property
    def critic(self):
        return TwinQ(self.hidden) if self.twin_critics else ContinuousQ(self.hidden)

    def _opt(self, lr: float) -> optax.GradientTransformation:
        return clipped_adam(lr, self.max_grad_norm)

    def init(self, key: jax.Array) -> MADDPGState:
        k_actor, k_critic = jax.random.split(key)
        actor = self.actor.init(k_actor, jnp.zeros((1, self.obs_dim), jnp.float32))
        critic = self.critic.init(k_critic, jnp.zeros((1, self.critic_obs_dim), jnp.float32),
                                  jnp.zeros((1, self.others_action_dim + self.action_dim), jnp.float32))
        return MADDPGState(actor, critic, op.copy_tree(actor), op.copy_tree(critic), self._opt(self.actor_lr).init(actor),
                           self._opt(self.critic_lr).init(critic), jnp.zeros((), jnp.int32))

    def policy(self, actor_params: PyTree, obs: jax.Array, key: jax.Array, greedy: bool = False,
               noise_std: Optional[float] = None) -> jax.Array:
        """`act` from the actor's parameters alone."""
        action = self.actor.apply(actor_params, obs)
        if greedy:
            return action
        std = self.noise_std if noise_std is None else noise_std
        return jnp.clip(action + std * jax.random.normal(key, action.shape), -1.0, 1.0)

    def act(self, state: MADDPGState, obs: jax.Array, key: jax.Array, greedy: bool = False,
            noise_std: Optional[float] = None) -> jax.Array:
        """mu(obs), plus clipped Gaussian noise unless `greedy`; `[..., action_dim]`."""
        return self.policy(state.actor_params, obs, key, greedy, noise_std)

    def target_action(self, state: MADDPGState, obs: jax.Array) -> jax.Array:
        """The target actor's action (no noise), `[..., action_dim]`."""
        return self.actor.apply(state.target_actor_params, obs)

    def qs(self, critic_params: PyTree, critic_obs: jax.Array, others_action: jax.Array,
           action: jax.Array) -> Tuple[jax.Array, ...]:
        """Every critic's Q(critic_obs, [others_action, action]): a tuple of one or two `[B]`."""
        q = self.critic.apply(critic_params, critic_obs, jnp.concatenate([others_action, action], axis=-1))
        return tuple(q) if self.twin_critics else (q,)

    def q(self, critic_params: PyTree, critic_obs: jax.Array, others_action: jax.Array,
          action: jax.Array) -> jax.Array:
        """Q(critic_obs, [others_action, action]) `[B]` (the first critic: the one the actor ascends)."""
        return self.qs(critic_params, critic_obs, others_action, action)[0]

    def update(self, state: MADDPGState, batch: Dict[str, jax.Array], weights: jax.Array,
               key: Optional[jax.Array] = None):
        """One critic and one actor step, then the targets; returns `(state, |td| [B], metrics)`.
        `key` draws the target-smoothing noise (`target_noise` > 0); deterministic otherwise."""
        next_action = self.target_action(state, batch["next_obs"])
        if self.target_noise > 0:
            noise = self.target_noise * jax.random.normal(key, next_action.shape)
            noise = jnp.clip(noise, -self.target_noise_clip, self.target_noise_clip)
            next_action = jnp.clip(next_action + noise, -1.0, 1.0)
        # The smaller of the target critics (the one target critic without twin_critics).
        next_q = functools.reduce(jnp.minimum, self.qs(state.target_critic_params, batch["next_critic_obs"],
                                                        batch["next_others_action"], next_action))
        target = jax.lax.stop_gradient(batch["reward"] + self.gamma * batch["discount"] * next_q)

        def critic_loss(params):
            qs = self.qs(params, batch["critic_obs"], batch["others_action"], batch["action"])
            loss = sum(op.importance_weighted_mean(jnp.square(q - target), weights) for q in qs)
            return loss, (qs[0] - target, qs[0])

        (c_loss, (td, q)), critic_params, critic_opt = op.gradient_step(
            critic_loss, state.critic_params, state.critic_opt, self._opt(self.critic_lr), has_aux=True)

        def actor_loss(params):
            own = self.actor.apply(params, batch["obs"])  # inserted in the critic: the gradient path
            return -op.importance_weighted_mean(self.q(critic_params, batch["critic_obs"], batch["others_action"], own),
                                     weights)

        a_loss, actor_params, actor_opt = op.gradient_step(actor_loss, state.actor_params, state.actor_opt,
                                                           self._opt(self.actor_lr))

        steps = state.steps + 1
        target_actor = op.update_target(actor_params, state.target_actor_params, steps, self.tau,
                                        self.target_period)
        target_critic = op.update_target(critic_params, state.target_critic_params, steps, self.tau,
                                         self.target_period)
        if self.policy_delay > 1:
            # TD3's delay: between the k-th updates the actor, its Adam state and both targets keep
            # their values (computed and discarded: a select, not a branch, under vmap anyway).
            move = steps % self.policy_delay == 0
            keep = lambda new_, old: jax.tree.map(lambda a, b: jnp.where(move, a, b), new_, old)  # noqa: E731
            actor_params, actor_opt = keep(actor_params, state.actor_params), keep(actor_opt, state.actor_opt)
            target_actor = keep(target_actor, state.target_actor_params)
            target_critic = keep(target_critic, state.target_critic_params)
        new = MADDPGState(actor_params, critic_params, target_actor, target_critic, actor_opt, critic_opt, steps)
        return new, jnp.abs(td), {"critic_loss": c_loss, "actor_loss": a_loss, "q": jnp.mean(q)}


# ------------------------------------------------------------------------------------- team
class MADDPGTeam(op.PerRoleTeam):
    """MADDPG on the continuous roles it controls, DQN on the discrete ones, centralised critics
    over every role (module docstring)."""

    def __init__(self, env, roles: Dict[str, op.RoleAction], section: dict):
        self.roles = roles
        self.critic_input = section["critic_input"]
        self.world_state = self.critic_input == "world"
        gamma, hidden = section["gamma"], section["hidden_sizes"]
        obs_dims = {r: int(env.observation_space(r).shape[0]) for r in roles}
        critic_obs_dim = env.world_state_size if self.world_state else sum(obs_dims.values())
        act_dims = op.critic_dims(roles)
        self.agents = {}
        for r, a in roles.items():
            if a.kind == "continuous":
                others = sum(d for o, d in act_dims.items() if o != r)
                self.agents[r] = MADDPG(obs_dims[r], a.size, critic_obs_dim, others, **maddpg_kwargs(section))
            elif a.kind == "discrete":
                self.agents[r] = DQN(obs_dims[r], a.size, **dqn_kwargs(section["dqn"], hidden, gamma))
        self.obs_roles = tuple(self.agents) if self.world_state else tuple(roles)
        self.priority_rule = section["priority_rule"]

    def _critic_obs(self, batch, prefix: str) -> jax.Array:
        if self.world_state:
            return batch[prefix + "world_state"]
        return jnp.concatenate([batch[prefix + "obs"][r] for r in self.roles], axis=-1)

    def _next_actions(self, agents, next_obs, next_avail) -> Dict[str, jax.Array]:
        """Every controlled role's target-policy action at the next observations (a masked
        role's among its legal choices, `next_avail`)."""
        out = {}
        for r, a in self.agents.items():
            if isinstance(a, MADDPG):
                out[r] = a.target_action(agents[r], next_obs[r])
            else:  # a DQN's target policy: greedy on its target network
                out[r] = best_choice(a.q_values(agents[r].target_params, next_obs[r]), next_avail.get(r))
        return out

    def _others(self, actions: Dict[str, jax.Array], me: str, lead: tuple) -> jax.Array:
        """`[*lead, others_dim]`: every other role's action as critic input, in env order."""
        return jnp.concatenate([a.as_vector(actions.get(r), lead) for r, a in self.roles.items() if r != me],
                               axis=-1)

    def prepare(self, agents, batch):
        """The critics' inputs and every role's next target action, before anyone updates."""
        return dict(lead=batch["reward"].shape, critic_obs=self._critic_obs(batch, ""),
                    next_critic_obs=self._critic_obs(batch, "next_"),
                    next_actions=self._next_actions(agents, batch["next_obs"], batch.get("next_avail", {})))

    def view(self, batch, role, agent, prepared):
        view = super().view(batch, role, agent, prepared)
        if isinstance(agent, MADDPG):
            lead = prepared["lead"]
            view.update(critic_obs=prepared["critic_obs"], next_critic_obs=prepared["next_critic_obs"],
                        others_action=self._others(batch["action"], role, lead),
                        next_others_action=self._others(prepared["next_actions"], role, lead))
        return view


def make_team(config: dict, env) -> MADDPGTeam:
    c = config["maddpg"]
    op.check_fixed_directive_read(env, "maddpg.coordinator_action", c["coordinator_action"],
                                  DEFAULTS["coordinator_action"])
    return MADDPGTeam(env, op.native_tier2_roles(env, c), c)


def make_train(config: dict, env, env_params):
    return op.make_trainer(config, env, env_params, make_team(config, env), config["maddpg"])
