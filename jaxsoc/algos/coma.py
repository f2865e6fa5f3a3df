"""COMA, counterfactual multi-agent policy gradients (Foerster et al. 2018), for the SOC team
(family "coma", algorithm `coma`, config section `coma:`).

    make_train(config, env, env_params) -> Trainer        # see jaxsoc.algos.base

Every role has its own actor on its own observation (heterogeneous roles, no parameter sharing).
One centralised critic learns the joint action value Q(s, u) of the env's world state s and the
team's joint action u, in COMA's form: for role a it reads s, the *other* roles' actions u_-a and
a's one-hot id, and returns the values of all of a's own choices at once,

    Q_a(s, u_-a, .) = [Q(s, (u_-a, u'))]_{u' in U_a}                       [..., |U_a|]

so one forward pass gives both the value of the taken joint action and every counterfactual of
role a. Role a's advantage keeps the others' actions fixed and marginalises its own out under its
current policy (the counterfactual baseline):

    A_a = Q_a(s, u_-a, u_a) - sum_{u'} pi_a(u' | o_a) Q_a(s, u_-a, u')

Masked choices have probability 0, so they never enter the baseline (`counterfactual_advantage`).
Actors: `- mean(w_a * A_a * log pi_a(u_a | o_a)) - ent_coef * mean(w_a * H(pi_a))` per role, with
A_a held constant (weights w_a as in `onpolicy.make_rollout`: the coordinator counts only on the
steps the env reads its directive). Critic: `0.5 * mean_a mean((Q_a(s, u_-a, u_a) - y_a)^2)` to
TD(lambda) targets y_a, the lambda-returns of the rollout with bootstraps Q_target(s', u') of the
joint action the team took next (SARSA-style, as the paper's critic):

    y_t = r_t + gamma * (1 - term_t) * [(1 - lambda) Q_target(s_{t+1}, u_{t+1}) + lambda * y_{t+1}]

computed by `onpolicy.gae` with the taken-action Q values in place of state values (its
`returns`); a role's own head gives its own target column. After the rollout's last step the
next joint action is sampled from the policy at the carried state.

Target network: the critic's targets come from `target_period` updates old parameters (a hard
copy every `target_period` updates; 1: the critic as it was when the update began). Targets are
computed once per update and held fixed through its epochs and minibatches, so even period 1 is
a frozen target within an update, the role a target network plays in off-policy Q-learning;
longer periods slow the bootstrap's drift further (the paper's code copies its critic every 200
training steps of 8 episodes: oxwhirl/pymarl, src/config/algs/coma.yaml).

Critic first (`critic_epochs` > 0): with the code's defaults one pass trains the actors and the
critic together, the advantages coming from the critic as the update began. With `critic_epochs` = k
the critic takes k passes of its loss alone over the rollout first, the advantages then come from
the critic just fitted to it, and the actors take their `epochs` passes after (each network's Adam
steps only in its own passes). This is the order of the paper's code: pymarl's COMA learner takes
one critic step per time step of its batch (backwards in time), keeping the Q values each step
computed, then one actor step on them, so its critic steps outnumber its actor's by the episode
length. It matters where one joint pass leaves the critic unable to explain its targets: the
counterfactual advantage is then mostly the critic's error (docs/coma.md). `critic_fraction` < 1
makes each critic pass visit a fresh random share of the rollout in the same number of
minibatches: as many critic steps for that share of their cost. configs/coma.yaml (`--algo coma`)
takes 8 passes over a quarter each; configs/coma-joint.yaml is the one joint pass.

Discrete actions only (the COMA baseline sums over a role's choices): the coordinator plays the
env's directives on soc-v2 (8 choices encoded as `coordinator: onehot | hmarl` on hmarl-soc-v1,
as IQL), alert triage its 4 actions, and the threat hunter and response orchestrator (Box roles)
act through the bins the off-policy learners use (`offpolicy.binned_role`, the reference QMIX
baseline's discretisation, `th_bins` / `ro_bins`). Time-limit truncation is treated as the end of
the return: the Q bootstrap needs the next joint action, the env reports the terminal
observation but not its action masks to sample one, and the world state shows the time step, so
the critic can tell the end of an episode coming (docs/coma.md).

Shapes: `T` rollout steps, `N` envs, `B` flattened samples, `A` roles, `W` world-state width,
`U = sum_a |U_a|` the joint one-hot action width.
"""
from __future__ import annotations

from typing import Any, Dict, NamedTuple, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.algos import offpolicy as op
from jaxsoc.algos import onpolicy
from jaxsoc.algos.base import Trainer, mean_episode_metrics
from jaxsoc.algos.common import RoleSpec, with_world_state
from jaxsoc.algos.ppo import normalise_advantages, policy_objective
from jaxsoc.env.spaces import Discrete
from jaxsoc.networks import MLP, SQRT2, dense, get_activation, orthogonal

DEFAULTS = {
    "rollout": 32,               # env steps per env per update (T)
    "epochs": 1,                 # passes over each rollout
    "minibatches": 4,            # minibatches per pass; num_envs * rollout must divide by it
    "lr": 3.0e-4,                # every actor and the critic (each network its own Adam)
    "anneal_lr": False,
    "adam_eps": 1.0e-5,
    "max_grad_norm": 0.5,        # per network
    "gamma": 0.99,
    "td_lambda": 0.8,            # the critic's TD(lambda) targets (0.8: the paper's code, pymarl)
    "target_period": 1,          # updates between hard copies of the critic into its target
    "critic_epochs": 0,          # critic-only passes before the actors' pass (0: one joint pass)
    "critic_fraction": 1.0,      # the share of the rollout each critic-only pass visits (a fresh subset each)
    "ent_coef": 0.01,
    "normalize_advantages": True,
    "reward_scale": 1.0,
    "hidden_sizes": [256, 256],  # every actor and the critic
    "activation": "relu",
    "coordinator": "onehot",     # hmarl-soc-v1: how 8 coordinator choices become the directive (onehot|hmarl)
    "th_bins": 16,               # threat hunter choices (offpolicy.bin_table)
    "ro_bins": 12,               # response orchestrator choices
    "bin_low": 0.3,              # raw action of the lowest bin level
    "bin_high": 1.0,             # raw action of the highest bin level
    "decisions_only": True,      # coordinator actor loss only on steps where the env reads it
}
POSITIVE = ("rollout", "epochs", "minibatches", "lr", "adam_eps", "max_grad_norm", "target_period",
            "th_bins", "ro_bins")
# Keys the update only computes with: a sweep (jaxsoc/sweep.py) trains grid points that differ
# only in these in one program (tests/test_sweepable.py traces each and checks it is used).
SWEEPABLE = ("lr", "ent_coef", "gamma", "td_lambda", "max_grad_norm", "reward_scale")
# The SOC roles' Box actions are binned by name (BINS): SOC worlds only (`common.check_soc_team`).
SOC_TEAM = True
# Which key sets how many bins a Box role has.
BINS = {"threat_hunter": "th_bins", "response_orchestrator": "ro_bins"}


def validate(config: dict) -> None:
    """Checks beyond types; a one-line ConfigError naming the key."""
    from jaxsoc.argtypes import is_integer
    from jaxsoc.config import ConfigError, check_choice, check_layer_sizes, check_unit_interval

    s = config["coma"]
    check_choice("coma.coordinator", s["coordinator"], ("onehot", "hmarl"))
    if not is_integer(s["critic_epochs"]) or s["critic_epochs"] < 0:
        raise ConfigError(f"coma.critic_epochs must be an integer >= 0, got {s['critic_epochs']!r}")
    onpolicy.check_pass_fraction("coma.critic_fraction", s["critic_fraction"], config["num_envs"] * s["rollout"],
                                 "coma.minibatches", s["minibatches"])
    if s["critic_fraction"] < 1.0 and not s["critic_epochs"]:
        raise ConfigError("coma.critic_fraction < 1 needs coma.critic_epochs > 0 (the joint pass visits every sample)")
    for key in ("gamma", "td_lambda"):
        check_unit_interval(f"coma.{key}", s[key])
    if not is_integer(s["target_period"]) or s["target_period"] < 1:
        raise ConfigError(f"coma.target_period must be a positive integer, got {s['target_period']!r}")
    check_layer_sizes("coma.hidden_sizes", s["hidden_sizes"])
    if not -1.0 <= s["bin_low"] <= s["bin_high"] <= 1.0:
        raise ConfigError(f"coma.bin_low and bin_high must satisfy -1 <= bin_low <= bin_high <= 1, "
                          f"got {s['bin_low']!r}, {s['bin_high']!r}")
    batch = config["num_envs"] * s["rollout"]
    if batch % s["minibatches"]:
        raise ConfigError(f"num_envs * coma.rollout ({batch}) must be divisible by coma.minibatches "
                          f"({s['minibatches']})")


# ----------------------------------------------------------------------------- roles
def role_actions(env, section: dict) -> Dict[str, op.RoleAction]:
    """`{agent: RoleAction}` in env order, every role discrete (see the module docstring): the
    coordinator through `offpolicy.coordinator_role`, Box roles through `offpolicy.binned_role`,
    discrete roles as they are."""
    op.check_encoding_read(env, "coma.coordinator", section["coordinator"], DEFAULTS["coordinator"])
    out = {}
    for r in env.agents:
        if r == "coordinator":
            out[r] = op.coordinator_role(env, section["coordinator"])
        elif isinstance(env.action_space(r), Discrete):
            out[r] = op.native_role(env, r)
        else:
            out[r] = op.binned_role(env, r, section[BINS[r]], section["bin_low"], section["bin_high"])
    return out


def joint_one_hot(actions: Dict[str, jax.Array], sizes: Sequence[Tuple[str, int]]) -> jax.Array:
    """`[..., U]`: the roles' choices `{role: int [...]}` one-hot, side by side in `sizes` order
    (`(role, |U_role|)` pairs)."""
    return jnp.concatenate([jax.nn.one_hot(actions[r], n, dtype=jnp.float32) for r, n in sizes], axis=-1)


# ----------------------------------------------------------------------------- critic
class COMACritic(nn.Module):
    """The centralised critic: `(state [..., W], joint [..., U]) -> (Q_a [..., |U_a|] for each role)`.

    Role a's input is COMA's `[s, u_-a, onehot(a)]`: the joint one-hot action with a's own block
    zeroed, so its outputs are the values of all of a's choices with the others' fixed. One torso
    for every role (the id tells them apart), one output head per role (their choice counts differ).

    Attributes:
      sizes: choices per role, in env order.
      hidden_sizes, activation: the torso (at least one hidden layer).
    """

    sizes: Tuple[int, ...]
    hidden_sizes: Sequence[int]
    activation: str = "relu"

    @nn.compact
    def __call__(self, state: jax.Array, joint: jax.Array) -> Tuple[jax.Array, ...]:
        roles = len(self.sizes)
        ends = np.cumsum(self.sizes)
        own = np.zeros((roles, int(ends[-1])), np.float32)  # [A, U]: 1 on role a's own block
        for a, (end, n) in enumerate(zip(ends, self.sizes)):
            own[a, end - n:end] = 1.0
        others = joint[..., None, :] * (1.0 - own)                                # [..., A, U]
        ids = jnp.broadcast_to(jnp.eye(roles, dtype=jnp.float32), others.shape[:-1] + (roles,))
        # The first layer on [s, u_-a, a] as W_s s + W_u [u_-a, a]: the same affine map, with the
        # state's (widest) part computed once for every role instead of once per role.
        width = self.hidden_sizes[0]
        h = (dense(width, SQRT2, name="state_in")(state)[..., None, :]
             + nn.Dense(width, use_bias=False, kernel_init=orthogonal(SQRT2), name="action_in")(
                 jnp.concatenate([others, ids], axis=-1)))
        h = MLP(self.hidden_sizes[1:], activation=self.activation, name="torso")(get_activation(self.activation)(h))
        return tuple(dense(n, 1.0, name=f"q_{a}")(h[..., a, :]) for a, n in enumerate(self.sizes))


def taken_values(q: Dict[str, jax.Array], actions: Dict[str, jax.Array], roles: Sequence[str]) -> jax.Array:
    """`[..., A]`: each role's head at the joint action taken, Q_a(s, u_-a, u_a), from
    `q = {role: [..., |U_role|]}` and `actions = {role: int [...]}`."""
    return jnp.stack([jnp.take_along_axis(q[r], actions[r][..., None], axis=-1)[..., 0] for r in roles], axis=-1)


def counterfactual_advantage(q: jax.Array, probs: jax.Array, action: jax.Array) -> jax.Array:
    """COMA's advantage of one role: `Q(s, (u_-a, u_a)) - sum_u' pi(u') Q(s, (u_-a, u'))`.

    Args:
      q: `[..., n]` the role's critic head Q_a(s, u_-a, .).
      probs: `[..., n]` its policy, 0 on masked choices (`MaskedCategorical.probs`): a masked
        choice's value, which the critic never learns, is left out of the baseline whatever it is.
      action: `int [...]` the choice taken.

    Returns `[...]`.
    """
    taken = jnp.take_along_axis(q, action[..., None], axis=-1)[..., 0]
    baseline = jnp.sum(jnp.where(probs > 0, probs * q, 0.0), axis=-1)
    return taken - baseline


def td_lambda_targets(rewards: jax.Array, q_taken: jax.Array, last: jax.Array, terminated: jax.Array,
                      done: jax.Array, gamma: float, lam: float) -> jax.Array:
    """The critic's TD(lambda) targets, `[T, N, A]`, backwards over a rollout:

        y_t = r_t + gamma * (1 - term_t) * [(1 - lam) Q_{t+1} + lam * y_{t+1}]

    with `y_{t+1}` replaced by `Q_{t+1}` where the episode ended at t (`done`: the next state is
    another episode's). `onpolicy.gae`'s returns with the taken joint actions' values in place of
    state values.

    Args:
      rewards, terminated, done: `[T, N]`.
      q_taken: `[T, N, A]` each role's head at the joint action taken, Q_a(s_t, u_t).
      last: `[N, A]` the same after the rollout, Q_a(s_T, u_T).
    """
    after = onpolicy.next_values(q_taken, last, None, None)
    _, targets = onpolicy.gae(rewards[..., None], q_taken, after, terminated[..., None], done[..., None], gamma, lam)
    return targets


# ----------------------------------------------------------------------------- loss
class Batch(NamedTuple):
    """A flat batch for `loss`, `B` samples on every leaf.

    acted: `onpolicy.Acted` `[B, ...]` (choices `int32 [B]` for every role).
    world_state: `[B, W]`.
    q: `{role: [B, |U_role|]}` the critic's heads when the update began (the advantages' Q).
    targets: `[B, A]` the TD(lambda) targets of each role's head at the taken joint action.
    """

    acted: onpolicy.Acted
    world_state: jax.Array
    q: Dict[str, jax.Array]
    targets: jax.Array


class COMALoss(NamedTuple):
    """The static parts of `loss`: the actors, the critic module, the roles' choice counts."""

    policy: onpolicy.Policy
    critic: COMACritic
    sizes: Tuple[Tuple[str, int], ...]
    ent_coef: float
    normalize_advantages: bool


def actor_loss(actor_params: Any, batch: Batch, cfg: COMALoss):
    """The actors' part of `loss`: per role `- mean(w A log pi) - ent_coef * mean(w H)`, with A the
    counterfactual advantage of `batch.q` (a constant). Returns `(loss, metrics)`: per role
    `actor_loss/<role>`, `entropy/<role>`, `approx_kl/<role>`, `advantage/<role>` (mean raw
    counterfactual advantage)."""
    acted = batch.acted
    dists = cfg.policy.dists(actor_params, acted.obs, acted.masks)
    log_probs = onpolicy.log_probs_of(dists, acted.actions)
    entropy = onpolicy.entropies(dists)
    metrics: Dict[str, jax.Array] = {}
    total = 0.0
    for r in cfg.policy.roles:
        w = acted.weights[r]
        # The baseline marginalises the role's own choice under its policy now, a constant of the
        # actor's gradient (the paper's estimator differentiates log pi only).
        probs = jax.lax.stop_gradient(dists[r].probs)
        adv = counterfactual_advantage(batch.q[r], probs, acted.actions[r])
        metrics[f"advantage/{r}"] = onpolicy.weighted_average(adv, w)
        if cfg.normalize_advantages:
            adv = normalise_advantages(adv, w)
        pl, kl, _ = policy_objective(log_probs[r], acted.log_probs[r], adv, w, None)
        ent = onpolicy.weighted_average(entropy[r], w)
        total = total + pl - cfg.ent_coef * ent
        metrics.update({f"actor_loss/{r}": pl, f"entropy/{r}": ent, f"approx_kl/{r}": kl})
    return total, metrics


def critic_loss(critic_params: Any, batch: Batch, cfg: COMALoss):
    """The critic's part of `loss`: `0.5 * mean((Q_a(s, u) - y_a)^2)` over samples and roles.
    Returns `(loss, {"critic_loss": loss})`."""
    acted = batch.acted
    q = dict(zip(cfg.policy.roles, cfg.critic.apply(critic_params, batch.world_state,
                                                    joint_one_hot(acted.actions, cfg.sizes))))
    value = 0.5 * jnp.mean(jnp.square(taken_values(q, acted.actions, cfg.policy.roles) - batch.targets))
    return value, {"critic_loss": value}


def loss(params: Any, batch: Batch, cfg: COMALoss):
    """The COMA loss of `params = {"actor": {role: ...}, "critic": ...}` on a `Batch`: `actor_loss`
    + `critic_loss` (every network's parameters appear in exactly one of them; the entropy joins
    its actor's). Returns `(loss, metrics)`, both parts' metrics."""
    actors, metrics = actor_loss(params["actor"], batch, cfg)
    critic, critic_metrics = critic_loss(params["critic"], batch, cfg)
    return actors + critic, {**metrics, **critic_metrics}


# ----------------------------------------------------------------------------- trainer
class COMAState(NamedTuple):
    """Train state of one seed. Env-axis leaves: env_state, obs, world_state `[num_envs, ...]`."""

    params: Any            # {"actor": {role: ...}, "critic": ...}
    target: Any            # the critic's target parameters; None when copied every update (the critic itself)
    opt_state: Any
    env_state: Any
    obs: Dict[str, jax.Array]
    world_state: jax.Array  # [num_envs, W]
    key: jax.Array
    env_steps: jax.Array   # int32 []
    updates: jax.Array     # int32 []


def make_train(config: dict, env, env_params) -> Trainer:
    s = config["coma"]
    num_envs, rollout = config["num_envs"], s["rollout"]
    epochs, minibatches, period = s["epochs"], s["minibatches"], s["target_period"]
    critic_epochs = s["critic_epochs"]
    env = with_world_state(env)
    env_params = env_params.replace(with_world_state=True)

    actions = role_actions(env, s)
    specs = tuple(RoleSpec(r, env.observation_space(r).shape[0], "discrete", a.size) for r, a in actions.items())
    hidden = tuple(s["hidden_sizes"])
    policy = onpolicy.Policy(specs, hidden_sizes=hidden, activation=s["activation"])
    roles = policy.roles
    sizes = tuple((sp.name, sp.size) for sp in specs)
    critic = COMACritic(tuple(n for _, n in sizes), hidden, s["activation"])
    cfg = COMALoss(policy, critic, sizes, s["ent_coef"], s["normalize_advantages"])
    world_dim = env.world_state_size

    def to_env(choices):
        return {r: actions[r].to_env(choices[r]) for r in roles}

    steps_per_update = num_envs * rollout
    num_updates = config["total_steps"] // steps_per_update
    # The rollout records world states (a "world" critic's input); this critic's Q reads them.
    rollout_fn = onpolicy.make_rollout(env, env_params, policy, onpolicy.Critic("world", roles), num_envs, rollout,
                                       decisions_only=s["decisions_only"], bootstrap_truncation=False,
                                       to_env=to_env)
    batched_avail = jax.vmap(env.get_avail_actions, in_axes=(0, None))
    gamma, lam, reward_scale = s["gamma"], s["td_lambda"], s["reward_scale"]

    def make_opt(params, passes=epochs):
        anneal = num_updates * passes * minibatches if s["anneal_lr"] else None
        return onpolicy.per_network_optimizer(params, s["lr"], s["max_grad_norm"], s["adam_eps"], anneal)

    def split_params(params):
        """`critic_epochs > 0`: the actors and the critic step in separate passes, each with its own
        optimiser (per-network Adam either way), over `{"actor": ...}` and `{"critic": ...}`."""
        return {"actor": params["actor"]}, {"critic": params["critic"]}

    def init_opt(params):
        if not critic_epochs:
            return make_opt(params).init(params)
        actor_part, critic_part = split_params(params)
        return {"actor": make_opt(actor_part).init(actor_part),
                "critic": make_opt(critic_part, critic_epochs).init(critic_part)}

    def q_heads(critic_params, world_state, choices):
        return dict(zip(roles, critic.apply(critic_params, world_state, joint_one_hot(choices, sizes))))

    def init(key):
        k_actor, k_critic, k_reset, key = jax.random.split(key, 4)
        critic_params = critic.init(k_critic, jnp.zeros((1, world_dim), jnp.float32),
                                    jnp.zeros((1, sum(n for _, n in sizes)), jnp.float32))
        params = {"actor": policy.init(k_actor), "critic": critic_params}
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_envs), env_params)
        world_state = jax.vmap(env.get_world_state, in_axes=(0, None))(env_state, env_params)
        target = None if period == 1 else op.copy_tree(critic_params)
        return COMAState(params, target, init_opt(params), env_state, obs,
                         world_state, key, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def update_step(state: COMAState):
        key, k_roll, k_next, k_sgd = jax.random.split(state.key, 4)
        params = state.params

        # 1. Rollout: [T, N] transitions with the current policy.
        (env_state, obs, world_state), traj, _, (ep_metrics, ep_done) = rollout_fn(
            params["actor"], state.env_state, state.obs, state.world_state, k_roll)
        acted = traj.acted

        # 2. TD(lambda) targets [T, N, A] from the target critic at the joint actions taken; after
        #    the last step, the joint action the policy takes next at the carried state.
        target_params = params["critic"] if period == 1 else state.target
        q_target = q_heads(target_params, traj.world_state, acted.actions)
        values = taken_values(q_target, acted.actions, roles)
        next_dists = policy.dists(params["actor"], obs, policy.masks(batched_avail(env_state, env_params)))
        next_actions, _ = onpolicy.sample(next_dists, k_next)
        last = taken_values(q_heads(target_params, world_state, next_actions), next_actions, roles)
        targets = td_lambda_targets(reward_scale * traj.rewards, values, last, traj.terminated, traj.done,
                                    gamma, lam)
        fit_metrics = {}
        if not critic_epochs:
            # The advantages' Q: the critic when the update began (the target itself when copied
            # every update).
            q_now = q_target if period == 1 else q_heads(params["critic"], traj.world_state, acted.actions)

            # 3. Epochs x minibatches of the loss on the flattened [T * N] batch.
            batch = onpolicy.flatten(Batch(acted, traj.world_state, q_now, targets))
            new_params, opt_state, loss_metrics = onpolicy.sgd(
                k_sgd, params, state.opt_state, batch, lambda p, mb: loss(p, mb, cfg), make_opt(params),
                epochs, minibatches)
        else:
            # 3'. The critic first: `critic_epochs` passes of its loss alone, to the same targets; then
            #     the advantages' Q from the critic just fitted to this rollout (the paper's code
            #     also fits its critic to the batch before its actors' step); then the actors'
            #     passes. Until the critic explains its targets, the advantages are mostly its error.
            k_critic, k_sgd = jax.random.split(k_sgd)
            actor_part, critic_part = split_params(params)
            batch = onpolicy.flatten(Batch(acted, traj.world_state, q_target, targets))
            critic_part, critic_opt, critic_metrics = onpolicy.sgd(
                k_critic, critic_part, state.opt_state["critic"], batch,
                lambda p, mb: critic_loss(p["critic"], mb, cfg), make_opt(critic_part, critic_epochs),
                critic_epochs, minibatches, s["critic_fraction"])
            q_fit = q_heads(critic_part["critic"], traj.world_state, acted.actions)
            fit_metrics["explained_variance_fit"] = jnp.nanmean(
                onpolicy.explained_variance(taken_values(q_fit, acted.actions, roles), targets))
            batch = batch._replace(q=onpolicy.flatten(q_fit))
            actor_part, actor_opt, actor_metrics = onpolicy.sgd(
                k_sgd, actor_part, state.opt_state["actor"], batch,
                lambda p, mb: actor_loss(p["actor"], mb, cfg), make_opt(actor_part), epochs, minibatches)
            new_params = {"actor": actor_part["actor"], "critic": critic_part["critic"]}
            opt_state = {"actor": actor_opt, "critic": critic_opt}
            loss_metrics = {**actor_metrics, **critic_metrics}
        updates = state.updates + 1
        target = None if period == 1 else op.update_target(new_params["critic"], state.target, updates, 1.0, period)

        env_steps = state.env_steps + steps_per_update
        metrics = mean_episode_metrics(ep_metrics, ep_done)
        metrics.update(loss_metrics)
        metrics["reward"] = traj.rewards.mean()
        metrics["q_taken"] = values.mean()
        metrics["explained_variance"] = jnp.nanmean(onpolicy.explained_variance(values, targets))
        metrics.update(fit_metrics)
        metrics["env_steps"] = env_steps
        return COMAState(new_params, target, opt_state, env_state, obs, world_state, key, env_steps, updates), metrics

    def act(policy_params, key, obs, env_state, greedy):
        masks = policy.masks(env.get_avail_actions(env_state, env_params))
        dists = policy.dists(policy_params, obs, masks)
        choices = onpolicy.greedy(dists) if greedy else onpolicy.sample(dists, key)[0]
        return to_env(choices)

    return Trainer(
        init=init,
        update=update_step,
        num_updates=num_updates,
        env_steps_per_update=steps_per_update,
        act=act,
        policy_params=lambda state: state.params["actor"],
        name=config["algo"],
        env_axes=lambda st: st._replace(params=None, target=None, opt_state=None, env_state=0, obs=0, world_state=0,
                                        key=None, env_steps=None, updates=None),
    )
