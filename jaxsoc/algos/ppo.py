"""PPO with GAE for the SOC team: IPPO, MAPPO and Single-DRL (family "ppo", config section `ppo:`).

    make_train(config, env, env_params) -> Trainer        # see jaxsoc.algos.base

One update = a rollout of `rollout` steps in `num_envs` envs, GAE advantages, then `epochs`
passes of `minibatches` shuffled minibatches of the clipped-surrogate loss (Schulman et al.
2017, as in PureJaxRL). The three algorithms differ only in two switches of the `ppo:` section,
which default to what the algorithm's name says (`auto`):

| algo       | policy   | critic | what it is                                                  |
|------------|----------|--------|-------------------------------------------------------------|
| ippo       | per_role | local  | each role: own actor, own critic on its own observation     |
| mappo      | per_role | world  | each role: own actor; one centralised critic V(world state) |
| single-drl | single   | joint  | one agent: one actor on the concatenated observation with a |
|            |          |        | head per role, one joint ratio, critic V(concatenated obs)  |

Heterogeneous roles keep their own spaces and parameters (no padding); discrete heads honour
the env's action masks; continuous heads are tanh-Gaussians with exact log-probabilities from
the stored pre-tanh sample (the reference's Single-DRL compared log-probs of different variables,
and its MAPPO had no policy loss at all: docs/reference.md §4 D23). Time-limit truncation is bootstrapped
from the terminal state's value unless `bootstrap_truncation: false` (see `onpolicy`).

The loss and the update are functions of a `Batch`, so other learners (the hierarchical team's
coordinator on macro-transitions) call `update` on batches they build themselves.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from jaxsoc.algos import onpolicy
from jaxsoc.algos.base import Trainer, mean_episode_metrics
from jaxsoc.algos.common import COORDINATOR_ENCODINGS, RoleSpec, role_specs, with_world_state

DEFAULTS = {
    "policy": "auto",            # auto | per_role | single (auto: from the algorithm, table above)
    "critic": "auto",            # auto | world | local | joint | world_per_role (onpolicy.Critic)
    "rollout": 32,               # env steps per env per update (T)
    "epochs": 1,                 # passes over each rollout (see configs/mappo.yaml)
    "minibatches": 4,            # minibatches per pass; num_envs * rollout must divide by it
    "lr": 3.0e-4,
    "anneal_lr": False,          # decay the learning rate linearly to 0 over the run
    "gae_lambda": 0.95,
    "clip_eps": 0.2,
    "clip_value": True,          # clip the value update to +-clip_eps around the old values
    "vf_coef": 0.5,
    "ent_coef": 0.01,
    "normalize_advantages": True,
    **onpolicy.TEAM_DEFAULTS,
}
POSITIVE = ("rollout", "epochs", "minibatches", "lr", "adam_eps", "max_grad_norm", "clip_eps")
# Keys the update only computes with (no shapes, no Python branches): a sweep (jaxsoc/sweep.py)
# trains grid points that differ only in these in one program, the values vmapped.
SWEEPABLE = ("lr", "ent_coef", "vf_coef", "clip_eps", "max_grad_norm", "gamma", "gae_lambda", "reward_scale")

# What `auto` means for each algorithm name of this family.
VARIANTS = {
    "ippo": {"policy": "per_role", "critic": "local"},
    "mappo": {"policy": "per_role", "critic": "world"},
    "single-drl": {"policy": "single", "critic": "joint"},
    # advantage actor-critic (family "a2c", a2c.py) uses the same switches
    "iac": {"policy": "per_role", "critic": "local"},
    "maac": {"policy": "per_role", "critic": "joint"},
    # trust-region policy optimisation (family "trpo", trpo.py)
    "trpo": {"policy": "per_role", "critic": "local"},
    "matrpo": {"policy": "per_role", "critic": "world"},
}
POLICIES = ("per_role", "single")


def validate(config: dict) -> None:
    """Config checks beyond types (raised as jaxsoc.config.ConfigError by the caller's layer)."""
    check_section(config, "ppo")


def check_section(config: dict, family: str) -> None:
    from jaxsoc.config import ConfigError, check_layer_sizes, check_unit_interval

    s = config[family]
    choices = {"policy": ("auto",) + POLICIES, "critic": ("auto",) + onpolicy.CRITICS,
               "coordinator": COORDINATOR_ENCODINGS}
    for key, allowed in choices.items():
        if key in s and s[key] not in allowed:
            raise ConfigError(f"{family}.{key} must be one of {', '.join(allowed)}, got {s[key]!r}")
    for key in ("gamma", "gae_lambda"):
        check_unit_interval(f"{family}.{key}", s[key])
    check_layer_sizes(f"{family}.hidden_sizes", s["hidden_sizes"])
    onpolicy.check_log_std(s, family)
    policy, critic = resolve_variant(config["algo"], s)
    if policy == "single" and critic in onpolicy.PER_ROLE_CRITICS:
        raise ConfigError(f"{family}.policy single is one agent with one critic: use critic joint or world")
    batch = config["num_envs"] * s["rollout"]
    if batch % s.get("minibatches", 1):
        raise ConfigError(f"num_envs * {family}.rollout ({batch}) must be divisible by "
                          f"{family}.minibatches ({s['minibatches']})")


def resolve_variant(algo: str, section: dict) -> tuple[str, str]:
    """`(policy, critic)` with `auto` replaced by the algorithm's defaults."""
    variant = VARIANTS.get(algo, VARIANTS["mappo"])
    policy = variant["policy"] if section["policy"] == "auto" else section["policy"]
    critic = variant["critic"] if section["critic"] == "auto" else section["critic"]
    return policy, critic


# ----------------------------------------------------------------------------- loss and update
class Batch(NamedTuple):
    """A flat batch of samples for `loss`/`update`; `B` samples on every leaf.

    acted: `onpolicy.Acted`, `[B, ...]`: what the policy did (the weights are 0 where an action
      did not count: padding, or a coordinator action the env did not read).
    world_state: the world state as the trajectory keeps it (`Critic.kept`), None without a world
      critic; `Critic.source_kept(acted.obs, world_state)` is the critic's input.
    advantages, returns, values: `[B, C]` per value column (`Critic.column(role)`); values are
      the critic's old predictions (for value clipping).
    """

    acted: onpolicy.Acted
    world_state: Optional[jax.Array]
    advantages: jax.Array
    returns: jax.Array
    values: jax.Array


class LossConfig(NamedTuple):
    """Loss hyper-parameters. `clip_eps=None` gives the vanilla policy gradient -A log pi (A2C)."""

    clip_eps: Optional[float] = 0.2
    clip_value: bool = True
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    normalize_advantages: bool = True
    joint_ratio: bool = False  # Single-DRL: one ratio for the joint action of all heads


def normalise_advantages(adv: jax.Array, w: jax.Array) -> jax.Array:
    """`(adv - mean) / (std + 1e-8)` with the mean and std weighted by `w` (masked items weigh 0)."""
    mean = onpolicy.weighted_average(adv, w)
    std = jnp.sqrt(onpolicy.weighted_average(jnp.square(adv - mean), w))
    return (adv - mean) / (std + 1e-8)


def policy_objective(log_prob, old_log_prob, adv, w, clip_eps):
    """Weighted mean of the clipped surrogate loss -min(r A, clip(r) A), `r = pi / pi_old`
    (vanilla -log pi A when `clip_eps` is None), and diagnostics (approx KL, clip fraction)."""
    log_ratio = log_prob - old_log_prob
    ratio = jnp.exp(log_ratio)
    if clip_eps is None:
        loss = -onpolicy.weighted_average(log_prob * adv, w)
        clipped = jnp.zeros_like(ratio)
    else:
        surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv)
        loss = -onpolicy.weighted_average(surrogate, w)
        clipped = (jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32)
    # "k3" estimator of KL(old || new): unbiased, never negative (Schulman's approx-KL note).
    kl = onpolicy.weighted_average((ratio - 1.0) - log_ratio, w)
    return loss, kl, onpolicy.weighted_average(clipped, w)


def weighted_head_loss(log_prob: jax.Array, old_log_prob: jax.Array, advantage: jax.Array,
                       entropy: jax.Array, value: jax.Array, returns: jax.Array, weight: jax.Array,
                       cfg: LossConfig):
    """The PPO loss of ONE policy head and ONE value head on samples `[B]` weighted by `weight`
    (0 for padding): `policy_objective + vf_coef * value_loss - ent_coef * entropy`, with the value
    loss `0.5 * weighted_average((value - returns)^2)` (unclipped) and the weighted entropy. For a
    learner that builds its own batches (the hierarchical team's coordinator on macro-transitions,
    whose advantages are normalised once per update, before its minibatches).

    Returns `(loss, {policy_loss, value_loss, entropy, approx_kl, clip_frac})`.
    """
    policy_loss, approx_kl, clip_frac = policy_objective(log_prob, old_log_prob, advantage, weight, cfg.clip_eps)
    value_loss = 0.5 * onpolicy.weighted_average((value - returns) ** 2, weight)
    ent = onpolicy.weighted_average(entropy, weight)
    total = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * ent
    return total, dict(policy_loss=policy_loss, value_loss=value_loss, entropy=ent, approx_kl=approx_kl,
                       clip_frac=clip_frac)


def loss(params: Any, batch: Batch, policy: onpolicy.Policy, critic: onpolicy.Critic, cfg: LossConfig):
    """The PPO (or A2C) loss of `params = {"actor": ..., "critic": ...}` on a `Batch`.

    Returns `(loss, metrics)`: per role `actor_loss/<role>`, `entropy/<role>`, and (per role, or
    once for a joint ratio) `approx_kl`, `clip_frac`; `value_loss`. Roles' actor terms are summed:
    their parameters are disjoint, so each actor gets exactly its own gradient (with messages,
    `comm.py`, a listener's term also reaches the speakers' parameters).
    """
    acted = batch.acted
    dists = policy.dists(params["actor"], acted.obs, acted.masks)
    log_probs = onpolicy.log_probs_of(dists, acted.actions)
    entropy = onpolicy.entropies(dists)
    metrics: Dict[str, jax.Array] = {}

    def advantage(role, w):
        adv = batch.advantages[:, critic.column(role)]
        return normalise_advantages(adv, w) if cfg.normalize_advantages else adv

    total = 0.0
    if cfg.joint_ratio:
        # One agent, one action: the joint log-prob is the sum over the heads that took effect.
        joint = sum(acted.weights[r] * log_probs[r] for r in policy.roles)
        joint_old = sum(acted.weights[r] * acted.log_probs[r] for r in policy.roles)
        ones = jnp.ones_like(joint)
        pl, kl, cf = policy_objective(joint, joint_old, advantage(policy.roles[0], ones), ones, cfg.clip_eps)
        total = total + pl
        metrics.update({"actor_loss": pl, "approx_kl": kl, "clip_frac": cf})
    for r in policy.roles:
        w = acted.weights[r]
        if not cfg.joint_ratio:
            pl, kl, cf = policy_objective(log_probs[r], acted.log_probs[r], advantage(r, w), w, cfg.clip_eps)
            total = total + pl
            metrics.update({f"actor_loss/{r}": pl, f"approx_kl/{r}": kl, f"clip_frac/{r}": cf})
        ent = onpolicy.weighted_average(entropy[r], w)
        total = total - cfg.ent_coef * ent
        metrics[f"entropy/{r}"] = ent

    values = critic.values(params["critic"], critic.source_kept(acted.obs, batch.world_state))  # [B, C]
    errors = jnp.square(values - batch.returns)
    if cfg.clip_value and cfg.clip_eps is not None:
        clipped = batch.values + jnp.clip(values - batch.values, -cfg.clip_eps, cfg.clip_eps)
        errors = jnp.maximum(errors, jnp.square(clipped - batch.returns))
    value_loss = 0.5 * jnp.mean(errors)
    metrics["value_loss"] = value_loss
    return total + cfg.vf_coef * value_loss, metrics


def update(key: jax.Array, params: Any, opt_state: Any, batch: Batch, *, policy: onpolicy.Policy,
           critic: onpolicy.Critic, optimizer: optax.GradientTransformation, cfg: LossConfig,
           epochs: int, minibatches: int):
    """`epochs` x `minibatches` optimiser steps of `loss` on `batch`: `(params, opt_state, metrics)`."""
    def loss_fn(p, mb):
        return loss(p, mb, policy, critic, cfg)

    return onpolicy.sgd(key, params, opt_state, batch, loss_fn, optimizer, epochs, minibatches)


# ----------------------------------------------------------------------------- trainer
class PPOState(NamedTuple):
    """Train state of one seed. Env-axis leaves: env_state, obs, world_state `[num_envs, ...]`."""

    params: Any            # {"actor": ..., "critic": ...}
    opt_state: Any
    env_state: Any
    obs: Dict[str, jax.Array]
    world_state: Optional[jax.Array]  # [num_envs, W] for a world critic, else None
    key: jax.Array
    env_steps: jax.Array   # int32 []
    updates: jax.Array     # int32 []


def make_train(config: dict, env, env_params) -> Trainer:
    return build_trainer(config, env, env_params, family="ppo", loss_cfg=None)


class Learner(NamedTuple):
    """How a trainer learns from a rollout's `Batch` (default: `update`'s SGD on `loss`).

    init: `params -> opt_state`, the learner's optimiser state for `{"actor", "critic"}` params.
    step: `(key, params, opt_state, batch) -> (params, opt_state, metrics)`, metrics scalars.
    """

    init: Any
    step: Any


def build_trainer(config: dict, env, env_params, *, family: str, loss_cfg: Optional[LossConfig],
                  epochs: Optional[int] = None, minibatches: Optional[int] = None,
                  make_learner: Optional[Any] = None,
                  make_policy: Optional[Callable[[Tuple[RoleSpec, ...]], onpolicy.Policy]] = None) -> Trainer:
    """The on-policy trainer of `config[family]`; A2C (`a2c.py`) calls it with its own loss
    (no clipping) and one full-batch step per rollout. `make_learner(policy, critic) -> Learner`
    replaces the loss and its SGD altogether (TRPO, `trpo.py`); `loss_cfg`, `epochs` and
    `minibatches` are then unused. `make_policy(specs)` builds the team's actors from the role
    specs instead of the section's `onpolicy.Policy` (the communicating team of `comm.py`: a
    `Policy` whose roles' outputs depend on each other's messages)."""
    s = config[family]
    num_envs, rollout = config["num_envs"], s["rollout"]
    policy_kind, critic_kind = resolve_variant(config["algo"], s)
    coordinator = s["coordinator"]
    if make_learner is None:
        epochs = s["epochs"] if epochs is None else epochs
        minibatches = s["minibatches"] if minibatches is None else minibatches
    if make_learner is None and loss_cfg is None:
        loss_cfg = LossConfig(clip_eps=s["clip_eps"], clip_value=s["clip_value"], vf_coef=s["vf_coef"],
                              ent_coef=s["ent_coef"], normalize_advantages=s["normalize_advantages"],
                              joint_ratio=policy_kind == "single")
    if critic_kind in onpolicy.WORLD_CRITICS:
        env = with_world_state(env)
        env_params = env_params.replace(with_world_state=True)

    # Networks: one per role (or one shared actor) and the critic(s), all `hidden_sizes` MLPs.
    specs = tuple(role_specs(env, coordinator, per_entry=True).values())
    onpolicy.check_world_keys(config, family, specs, env.agents)
    hidden = tuple(s["hidden_sizes"])
    if make_policy is None:
        policy = onpolicy.Policy(specs, shared=policy_kind == "single", hidden_sizes=hidden, activation=s["activation"],
                                 log_std_init=s["log_std_init"], log_std_min=s["log_std_min"],
                                 log_std_max=s["log_std_max"])
    else:
        policy = make_policy(specs)
    critic = onpolicy.Critic(critic_kind, policy.roles, hidden, s["activation"],
                             observers=getattr(env, "world_state_observers", ()))
    obs_dims = {sp.name: sp.obs_dim for sp in specs}
    world_dim = getattr(env, "world_state_size", 0)

    steps_per_update = num_envs * rollout
    num_updates = config["total_steps"] // steps_per_update
    max_steps = int(env_params.max_steps)
    rollout_fn = onpolicy.make_rollout(env, env_params, policy, critic, num_envs, rollout, coordinator=coordinator,
                                 decisions_only=s["decisions_only"],
                                 bootstrap_truncation=s["bootstrap_truncation"], max_steps=max_steps)
    gamma, lam, reward_scale = s["gamma"], s["gae_lambda"], s["reward_scale"]

    if make_learner is None:
        def make_opt(params):
            anneal = num_updates * epochs * minibatches if s["anneal_lr"] else None
            return onpolicy.per_network_optimizer(params, s["lr"], s["max_grad_norm"], s["adam_eps"], anneal)

        def sgd_step(key, params, opt_state, batch):
            return update(key, params, opt_state, batch, policy=policy, critic=critic, optimizer=make_opt(params),
                          cfg=loss_cfg, epochs=epochs, minibatches=minibatches)

        learner = Learner(init=lambda params: make_opt(params).init(params), step=sgd_step)
    else:
        learner = make_learner(policy, critic)

    def init(key):
        k_actor, k_critic, k_reset, key = jax.random.split(key, 4)
        params = {"actor": policy.init(k_actor), "critic": critic.init(k_critic, obs_dims, world_dim)}
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_envs), env_params)
        world_state = None
        if critic_kind in onpolicy.WORLD_CRITICS:
            world_state = jax.vmap(env.get_world_state, in_axes=(0, None))(env_state, env_params)
        return PPOState(params, learner.init(params), env_state, obs, world_state, key,
                        jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def update_step(state: PPOState):
        key, k_roll, k_sgd = jax.random.split(state.key, 3)
        params = state.params

        # 1. Rollout: [T, N] transitions with the current policy.
        (env_state, obs, world_state), traj, truncs, (ep_metrics, ep_done) = rollout_fn(
            params["actor"], state.env_state, state.obs, state.world_state, k_roll)

        # 2. Values and GAE advantages, [T, N, C]; truncated steps bootstrap from their terminal state.
        values = critic.values(params["critic"], critic.source_kept(traj.acted.obs, traj.world_state))
        last_values = critic.values(params["critic"], critic.source(obs, world_state))
        truncated_values = None if truncs is None else critic.values(params["critic"], truncs.source)
        after = onpolicy.next_values(values, last_values, truncs, truncated_values)
        rewards = reward_scale * traj.rewards
        advantages, returns = onpolicy.gae(rewards[..., None], values, after, traj.terminated[..., None],
                                     traj.done[..., None], gamma, lam)

        # 3. Learning on the flattened [T * N] batch: epochs x minibatches of the loss (or the
        #    family's own `Learner`).
        batch = onpolicy.flatten(Batch(traj.acted, traj.world_state, advantages, returns, values))
        new_params, opt_state, loss_metrics = learner.step(k_sgd, params, state.opt_state, batch)

        env_steps = state.env_steps + steps_per_update
        metrics = mean_episode_metrics(ep_metrics, ep_done)
        metrics.update(loss_metrics)
        metrics["reward"] = traj.rewards.mean()
        ev = onpolicy.explained_variance(values, returns)
        if critic.columns == 1:
            metrics["explained_variance"] = ev[0]
        else:
            metrics.update({f"explained_variance/{r}": ev[critic.column(r)] for r in policy.roles})
        metrics["env_steps"] = env_steps
        new_state = PPOState(new_params, opt_state, env_state, obs, world_state, key, env_steps,
                             state.updates + 1)
        return new_state, metrics

    return Trainer(
        init=init,
        update=update_step,
        num_updates=num_updates,
        env_steps_per_update=steps_per_update,
        act=onpolicy.make_act(env, env_params, policy, coordinator),
        policy_params=lambda state: state.params["actor"],
        name=config["algo"],
        env_axes=lambda st: st._replace(params=None, opt_state=None, env_state=0, obs=0,
                                        world_state=None if st.world_state is None else 0,
                                        key=None, env_steps=None, updates=None),
    )
