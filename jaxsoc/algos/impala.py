"""IMPALA-style actor-learner with V-trace for the SOC team (family "impala", config section `impala:`).

    make_train(config, env, env_params) -> Trainer        # see jaxsoc.algos.base

IMPALA (Espeholt et al. 2018) decouples acting from learning: actors roll out with whatever
parameters they last received, so their behaviour policy mu lags the learner's pi, and the
learner corrects for the difference with V-trace. Here both halves run in one compiled program on
one host: the train state keeps the learner's last `policy_lag` actor parameter sets, and every
update's rollout acts with the oldest of them (the learner's parameters from `policy_lag` updates
ago; `policy_lag: 0` is on-policy). The rollout stores mu's log-probabilities; the learner then
takes `epochs` x `minibatches` Adam steps (minibatches of whole env trajectories), each on the loss

    - mean(w * rho_s * (r_s + gamma v_{s+1} - V(x_s)) * log pi(a_s|o_s))     policy gradient
    + vf_coef * 0.5 * mean((V(x_s) - v_s)^2)                                  value loss
    - ent_coef * mean(w * H(pi(.|o_s)))                                       entropy bonus

with the V-trace targets v_s of the learner's current pi and V (`vtrace`), no gradient through
them. Later minibatches of one update are off-policy even at lag 0; V-trace corrects those too.
With `clip_eps` set the policy term is PPO's clipped surrogate on pi / pi_start instead, pi_start
the learner's policy at the update's start, which also gives the targets their weights (`loss`).

Importance weights. Every value column has one ratio pi/mu, that of the policy whose value it
learns: a world critic (`critic: world`, V of the env's world state, as MAPPO) values the team's
joint policy, so its ratio is the product of the roles' ratios (the coordinator's counted only on
the steps the env reads it); a local critic column (`critic: local`, V_i(o_i), as IPPO) uses its
own role's ratio. A role's policy gradient uses the ratio and targets of its value column.

The rollout, networks, action heads (masked categoricals, tanh-Gaussians on the stored pre-tanh
sample), per-network Adam and the termination/truncation handling are the on-policy family's
(`onpolicy`): a truncated step bootstraps from its terminal state's value, a terminated one not,
and both stop the V-trace recursion.
"""
from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from jaxsoc.algos import onpolicy
from jaxsoc.algos.base import Trainer, mean_episode_metrics
from jaxsoc.algos.common import COORDINATOR_ENCODINGS, role_specs, with_world_state
from jaxsoc.algos.ppo import normalise_advantages, policy_objective

DEFAULTS = {
    "critic": "world",           # world (V(world state), joint ratio) | local (V_i(o_i), own ratio)
    "policy_lag": 1,             # actors act with the learner's parameters from this many updates ago
    "rho_bar": 1.0,              # truncation of the importance weights in the targets and the gradient
    "c_bar": 1.0,                # truncation of the trace coefficients c_s (0: one-step TD targets)
    "rollout": 32,               # env steps per env per update (T)
    "epochs": 1,                 # passes over each rollout
    "minibatches": 4,            # minibatches of whole env trajectories; num_envs must divide by it
    "lr": 3.0e-4,
    "anneal_lr": False,
    "vf_coef": 0.5,
    "ent_coef": 0.01,
    # False, as Espeholt et al. (2018). Normalised per role, the advantages collapsed the soc-v2
    # triage onto escalating every alert (greedy +1.5 against +5.8; docs/impala.md, Evidence),
    # most likely because rescaling to unit scale undoes the rho weights that mute stale samples.
    "normalize_advantages": False,
    # null: V-trace's policy gradient, nothing bounds an update. A number: the clipped surrogate
    # -min(r A, clip(r, 1 - e, 1 + e) A), r = pi / pi_start, pi_start the learner's policy at the
    # update's start, whose ratio to mu then weighs the V-trace targets (IMPACT, Luo et al. 2020).
    "clip_eps": None,
    **onpolicy.TEAM_DEFAULTS,
}
POSITIVE = ("rollout", "epochs", "minibatches", "lr", "adam_eps", "max_grad_norm", "rho_bar")
# Keys the update only computes with: a sweep (jaxsoc/sweep.py) trains grid points that differ
# only in these in one program (tests/test_sweepable.py traces each and checks it is used).
SWEEPABLE = ("lr", "ent_coef", "vf_coef", "max_grad_norm", "gamma", "rho_bar", "c_bar", "reward_scale")
CRITICS = ("world", "local")


def validate(config: dict) -> None:
    """One-line ConfigErrors for values the types do not catch, before anything is traced."""
    from jaxsoc.argtypes import is_integer, is_number
    from jaxsoc.config import ConfigError, check_layer_sizes, check_unit_interval

    s = config["impala"]
    choices = {"critic": CRITICS, "coordinator": COORDINATOR_ENCODINGS}
    for key, allowed in choices.items():
        if s[key] not in allowed:
            raise ConfigError(f"impala.{key} must be one of {', '.join(allowed)}, got {s[key]!r}")
    check_unit_interval("impala.gamma", s["gamma"])
    lag = s["policy_lag"]
    if not is_integer(lag) or lag < 0:
        raise ConfigError(f"impala.policy_lag must be an integer >= 0, got {lag!r}")
    clip = s["clip_eps"]
    if clip is not None and (not is_number(clip) or not clip > 0):
        raise ConfigError(f"impala.clip_eps must be a number > 0 or null, got {clip!r}")
    if s["c_bar"] < 0:
        raise ConfigError(f"impala.c_bar must be >= 0, got {s['c_bar']!r}")
    check_layer_sizes("impala.hidden_sizes", s["hidden_sizes"])
    onpolicy.check_log_std(s, "impala")
    if config["num_envs"] % s["minibatches"]:
        raise ConfigError(f"num_envs ({config['num_envs']}) must be divisible by impala.minibatches "
                          f"({s['minibatches']}): a minibatch holds whole env trajectories")


# ----------------------------------------------------------------------------- V-trace
# `rho_clip_frac`'s margin in log-ratio: an importance weight counts as clipped when it is over
# rho_bar by more than this (1e-4: 0.01 %, twenty times the rounding seen on on-policy samples).
RHO_CLIP_TOL = 1e-4


def vtrace(log_rhos: jax.Array, rewards: jax.Array, values: jax.Array, next_values: jax.Array,
           terminated: jax.Array, done: jax.Array, gamma: float, rho_bar: float,
           c_bar: float) -> Tuple[jax.Array, jax.Array]:
    """V-trace targets and policy-gradient advantages (Espeholt et al. 2018, eq. 1 and section 4.2),
    backwards over time with a reverse `lax.scan`:

        rho_t = min(rho_bar, pi/mu),  c_t = min(c_bar, pi/mu)
        delta_t = rho_t * (r_t + gamma * (1 - terminated_t) * next_value_t - V_t)
        v_t - V_t = delta_t + gamma * (1 - done_t) * c_t * (v_{t+1} - V_{t+1})
        A_t = rho_t * (r_t + gamma * (1 - terminated_t) * v'_t - V_t)

    where v'_t, the target after step t, is v_{t+1}, except after the rollout's last step (the
    bootstrap value `next_value`) and after an episode's end (a truncated step's terminal-state
    value; nothing after a terminated one): v'_t = next_value_t + (1 - done_t) (v_{t+1} - V_{t+1}).

    On-policy (pi = mu) with rho_bar, c_bar >= 1, v_t is the discounted return to the rollout's end
    bootstrapped from V (GAE's lambda = 1 return) and A_t its advantage; with c_bar = 0, v_t is
    V_t + rho_t (r_t + gamma V_{t+1} - V_t), one-step TD.

    Args:
      log_rhos: `[T, ...]` log pi(a_t) - log mu(a_t) of the actions taken.
      rewards, values, next_values: `[T, ...]`: r_t, V(x_t), and the value after step t
        (`onpolicy.next_values`: V(x_{t+1}), or the terminal state's after a truncation).
      terminated, done: `[T, ...]` flags (broadcastable against the values): no value after a
        terminated step; the episode ended (terminated or truncated) and the recursion stops.
      gamma, rho_bar, c_bar: discount and truncation levels.

    Returns:
      `(vs, advantages)`, `[T, ...]`: the value targets v_t and rho_t-weighted advantages.
    """
    rhos = jnp.exp(log_rhos)
    clipped_rhos = jnp.minimum(rho_bar, rhos)
    cs = jnp.minimum(c_bar, rhos)
    keep = gamma * (1.0 - terminated.astype(values.dtype))
    cont = gamma * (1.0 - done.astype(values.dtype))
    deltas = clipped_rhos * (rewards + keep * next_values - values)

    def back(acc_next, x):
        delta, c, g = x
        acc = delta + g * c * acc_next
        return acc, acc

    acc_last = jnp.zeros(jnp.broadcast_shapes(deltas.shape, cs.shape, cont.shape)[1:], deltas.dtype)
    _, accs = jax.lax.scan(back, acc_last, jnp.broadcast_arrays(deltas, cs, cont), reverse=True)
    vs = values + accs
    # v_{t+1} - V_{t+1} for each t (0 after the rollout's last step), kept only within the episode.
    acc_after = jnp.concatenate([accs[1:], jnp.zeros_like(accs[:1])], axis=0)
    vs_after = next_values + (1.0 - done.astype(values.dtype)) * acc_after
    advantages = clipped_rhos * (rewards + keep * vs_after - values)
    return vs, advantages


def column_log_rhos(log_ratios: Dict[str, jax.Array], weights: Dict[str, jax.Array], policy: onpolicy.Policy,
                    critic: onpolicy.Critic) -> jax.Array:
    """`[..., C]` log importance weights per value column (see the module docstring): a world
    critic's one column the joint ratio (sum over roles of w_r log pi_r/mu_r), a local critic's
    column of role r its own w_r log pi_r/mu_r. `log_ratios`, `weights`: `{role: [...]}`;
    a weight-0 action (the coordinator's, on steps the env does not read it) counts as ratio 1."""
    weighted = {r: weights[r] * log_ratios[r] for r in policy.roles}
    if critic.kind == "local":
        return jnp.stack([weighted[r] for r in policy.roles], axis=-1)
    return sum(weighted[r] for r in policy.roles)[..., None]


# ----------------------------------------------------------------------------- loss
class Segment(NamedTuple):
    """Whole env trajectories of one rollout, ENV axis first (`[n, T, ...]`) so that SGD can split
    envs into minibatches (`onpolicy.sgd` shuffles axis 0) and keep each trajectory's time order.

    acted: `onpolicy.Acted`, `[n, T, ...]`: mu's observations, masks, actions, log-probs, weights.
    world_state: `[n, T, K]` the world state at each step as the critic keeps it (`Critic.kept`; None
      without a world critic): `Critic.source_kept` of it and `acted.obs` is the critic's input.
    last_source: `[n, ...]` the critic's input after the rollout's last step.
    truncs: `onpolicy.Truncations` with `source` `[n, S, ...]` and `step` `[n, S]` (None when
      truncation is not bootstrapped).
    rewards, terminated, done: `[n, T]` (rewards already scaled).
    start_log_probs: `{role: [n, T]}` log pi_start(a) of mu's actions under the learner's policy at
      the update's start (`clip_eps` set), else None.
    """

    acted: onpolicy.Acted
    world_state: Optional[jax.Array]
    last_source: Any
    truncs: Optional[onpolicy.Truncations]
    rewards: jax.Array
    terminated: jax.Array
    done: jax.Array
    start_log_probs: Optional[Dict[str, jax.Array]] = None


class VTraceConfig(NamedTuple):
    gamma: float = 0.99
    rho_bar: float = 1.0
    c_bar: float = 1.0
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    normalize_advantages: bool = False
    clip_eps: Optional[float] = None


def swap_env_time(tree: Any) -> Any:
    """`[a, b, ...] <-> [b, a, ...]` on every leaf: env-major <-> time-major."""
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), tree)


def loss(params: Any, segment: Segment, policy: onpolicy.Policy, critic: onpolicy.Critic, cfg: VTraceConfig):
    """The V-trace actor-critic loss of `params = {"actor": ..., "critic": ...}` on a `Segment`.

    Returns `(loss, metrics)`: per role `actor_loss/<role>`, `entropy/<role>`, `approx_kl/<role>`
    (KL(mu || pi) on mu's actions, how far the learner has moved from the actors); `value_loss`,
    `rho_clip_frac` (share of importance weights above rho_bar) and `explained_variance`.

    With `cfg.clip_eps` (IMPACT, Luo et al. 2020) the importance weights are pi_start / mu, fixed
    for the whole update, and role i's policy term is PPO's clipped surrogate on pi_i / pi_start,i
    (`ppo.policy_objective`) with its column's advantages; per role also `clip_frac/<role>`. At
    pi = pi_start its gradient is V-trace's; the clip stops a sample's pull once its ratio has
    moved past 1 +- clip_eps in the advantage's direction.
    """
    acted = swap_env_time(segment.acted)  # [T, n, ...]
    source = critic.source_kept(acted.obs, swap_env_time(segment.world_state))
    dists = policy.dists(params["actor"], acted.obs, acted.masks)
    log_probs = onpolicy.log_probs_of(dists, acted.actions)
    entropy = onpolicy.entropies(dists)
    log_ratios = {r: jax.lax.stop_gradient(log_probs[r]) - acted.log_probs[r] for r in policy.roles}
    start = None if cfg.clip_eps is None else swap_env_time(segment.start_log_probs)
    # The targets' importance weights: the current policy's, or (clipped) the update's start policy's.
    rho_log_ratios = log_ratios if start is None else {r: start[r] - acted.log_probs[r] for r in policy.roles}
    log_rhos = column_log_rhos(rho_log_ratios, acted.weights, policy, critic)  # [T, n, C]

    values = critic.values(params["critic"], source)  # [T, n, C]
    last_values = critic.values(params["critic"], segment.last_source)
    truncs, truncated_values = None, None
    if segment.truncs is not None:
        truncs = segment.truncs._replace(source=swap_env_time(segment.truncs.source),
                                         step=segment.truncs.step.T)
        truncated_values = critic.values(params["critic"], truncs.source)
    after = onpolicy.next_values(values, last_values, truncs, truncated_values)
    vs, advantages = jax.lax.stop_gradient(vtrace(
        log_rhos, segment.rewards.T[..., None], values, after, segment.terminated.T[..., None],
        segment.done.T[..., None], cfg.gamma, cfg.rho_bar, cfg.c_bar))

    metrics: Dict[str, jax.Array] = {}
    total = 0.0
    for r in policy.roles:
        w = acted.weights[r]
        adv = advantages[..., critic.column(r)]
        if cfg.normalize_advantages:
            adv = normalise_advantages(adv, w)
        if start is None:
            policy_loss = -onpolicy.weighted_average(log_probs[r] * adv, w)
        else:
            policy_loss, _, metrics[f"clip_frac/{r}"] = policy_objective(log_probs[r], start[r], adv, w,
                                                                         cfg.clip_eps)
        ent = onpolicy.weighted_average(entropy[r], w)
        total = total + policy_loss - cfg.ent_coef * ent
        # "k3" estimator of KL(mu || pi) on mu's samples: never negative.
        ratio = jnp.exp(log_ratios[r])
        metrics.update({f"actor_loss/{r}": policy_loss, f"entropy/{r}": ent,
                        f"approx_kl/{r}": onpolicy.weighted_average(ratio - 1.0 - log_ratios[r], w)})
    value_loss = 0.5 * jnp.mean(jnp.square(values - vs))
    metrics["value_loss"] = value_loss
    # Above the bar by more than float rounding: an on-policy sample's log-ratio is 0 up to ~5e-6,
    # so at the default rho_bar 1 a strict test counted about half of them as clipped.
    metrics["rho_clip_frac"] = jnp.mean((log_rhos > jnp.log(cfg.rho_bar) + RHO_CLIP_TOL).astype(jnp.float32))
    ev = onpolicy.explained_variance(jax.lax.stop_gradient(values), vs)
    metrics["explained_variance"] = jnp.nanmean(ev)
    return total + cfg.vf_coef * value_loss, metrics


# ----------------------------------------------------------------------------- trainer
class ImpalaState(NamedTuple):
    """Train state of one seed. Env-axis leaves: env_state, obs, world_state `[num_envs, ...]`.

    lagged: the learner's last `policy_lag` actor parameter sets, oldest first, each leaf
      `[policy_lag, ...]` (None at lag 0): entry 0 is what the actors act with. At update u it
      holds the learner's parameters after updates u - L, ..., u - 1 (the initial ones in place
      of those before update 0).
    """

    params: Any            # {"actor": ..., "critic": ...}: the learner's
    opt_state: Any
    lagged: Any
    env_state: Any
    obs: Dict[str, jax.Array]
    world_state: Optional[jax.Array]  # [num_envs, W] for a world critic, else None
    key: jax.Array
    env_steps: jax.Array   # int32 []
    updates: jax.Array     # int32 []


def acting_params(state: ImpalaState) -> Any:
    """The actor parameters the actors roll out with: the learner's from `policy_lag` updates ago."""
    if state.lagged is None:
        return state.params["actor"]
    return jax.tree.map(lambda x: x[0], state.lagged)


def push(lagged: Any, actor: Any) -> Any:
    """The lag queue with its oldest entry dropped and `actor` appended as the newest."""
    return jax.tree.map(lambda q, new: jnp.concatenate([q[1:], new[None]], axis=0), lagged, actor)


def make_train(config: dict, env, env_params) -> Trainer:
    s = config["impala"]
    num_envs, rollout, lag = config["num_envs"], s["rollout"], s["policy_lag"]
    epochs, minibatches = s["epochs"], s["minibatches"]
    coordinator, critic_kind = s["coordinator"], s["critic"]
    if critic_kind == "world":
        env = with_world_state(env)
        env_params = env_params.replace(with_world_state=True)
    cfg = VTraceConfig(gamma=s["gamma"], rho_bar=s["rho_bar"], c_bar=s["c_bar"], vf_coef=s["vf_coef"],
                       ent_coef=s["ent_coef"], normalize_advantages=s["normalize_advantages"],
                       clip_eps=s["clip_eps"])

    specs = tuple(role_specs(env, coordinator, per_entry=True).values())
    onpolicy.check_world_keys(config, "impala", specs, env.agents)
    hidden = tuple(s["hidden_sizes"])
    policy = onpolicy.Policy(specs, hidden_sizes=hidden, activation=s["activation"], log_std_init=s["log_std_init"],
                             log_std_min=s["log_std_min"], log_std_max=s["log_std_max"])
    critic = onpolicy.Critic(critic_kind, policy.roles, hidden, s["activation"],
                             observers=getattr(env, "world_state_observers", ()))
    obs_dims = {sp.name: sp.obs_dim for sp in specs}
    world_dim = getattr(env, "world_state_size", 0)

    steps_per_update = num_envs * rollout
    num_updates = config["total_steps"] // steps_per_update
    rollout_fn = onpolicy.make_rollout(env, env_params, policy, critic, num_envs, rollout, coordinator=coordinator,
                                       decisions_only=s["decisions_only"],
                                       bootstrap_truncation=s["bootstrap_truncation"],
                                       max_steps=int(env_params.max_steps))

    def make_opt(params):
        anneal = num_updates * epochs * minibatches if s["anneal_lr"] else None
        return onpolicy.per_network_optimizer(params, s["lr"], s["max_grad_norm"], s["adam_eps"], anneal)

    def init(key):
        k_actor, k_critic, k_reset, key = jax.random.split(key, 4)
        params = {"actor": policy.init(k_actor), "critic": critic.init(k_critic, obs_dims, world_dim)}
        lagged = None
        if lag:
            lagged = jax.tree.map(lambda x: jnp.broadcast_to(x, (lag,) + x.shape), params["actor"])
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_envs), env_params)
        world_state = None
        if critic_kind == "world":
            world_state = jax.vmap(env.get_world_state, in_axes=(0, None))(env_state, env_params)
        return ImpalaState(params, make_opt(params).init(params), lagged, env_state, obs, world_state, key,
                           jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def loss_fn(p, segment):
        return loss(p, segment, policy, critic, cfg)

    def update_step(state: ImpalaState):
        key, k_roll, k_sgd = jax.random.split(state.key, 3)
        params = state.params

        # 1. The actors: [T, N] transitions with the lagged parameters; mu's log-probs stored.
        (env_state, obs, world_state), traj, truncs, (ep_metrics, ep_done) = rollout_fn(
            acting_params(state), state.env_state, state.obs, state.world_state, k_roll)

        # 2. The learner: epochs x minibatches of whole trajectories, V-trace inside the loss.
        if truncs is not None:
            truncs = truncs._replace(source=swap_env_time(truncs.source), step=truncs.step.T)
        start_log_probs = None
        if cfg.clip_eps is not None:  # pi_start: the learner's policy before this update's first step
            start_dists = policy.dists(params["actor"], traj.acted.obs, traj.acted.masks)
            start_log_probs = swap_env_time(onpolicy.log_probs_of(start_dists, traj.acted.actions))
        segment = Segment(swap_env_time(traj.acted),
                          swap_env_time(traj.world_state),
                          critic.source(obs, world_state), truncs, (s["reward_scale"] * traj.rewards).T,
                          traj.terminated.T, traj.done.T, start_log_probs)
        new_params, opt_state, loss_metrics = onpolicy.sgd(k_sgd, params, state.opt_state, segment, loss_fn,
                                                           make_opt(params), epochs, minibatches)

        # 3. The learner's pre-update parameters join the lag queue (see ImpalaState.lagged).
        lagged = None if state.lagged is None else push(state.lagged, params["actor"])
        env_steps = state.env_steps + steps_per_update
        metrics = mean_episode_metrics(ep_metrics, ep_done)
        metrics.update(loss_metrics)
        metrics["reward"] = traj.rewards.mean()
        metrics["env_steps"] = env_steps
        new_state = ImpalaState(new_params, opt_state, lagged, env_state, obs, world_state, key, env_steps,
                                state.updates + 1)
        return new_state, metrics

    return Trainer(
        init=init,
        update=update_step,
        num_updates=num_updates,
        env_steps_per_update=steps_per_update,
        act=onpolicy.make_act(env, env_params, policy, coordinator),
        # Evaluation and checkpointed policies are the learner's (the newest parameters).
        policy_params=lambda state: state.params["actor"],
        name=config["algo"],
        env_axes=lambda st: st._replace(params=None, opt_state=None, lagged=None, env_state=0, obs=0,
                                        world_state=None if st.world_state is None else 0,
                                        key=None, env_steps=None, updates=None),
    )
