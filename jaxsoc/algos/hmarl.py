"""The "hmarl" family: the HMARL-SOC team trained end to end, with the hierarchy actually learned.

    python train/run.py --algo hmarl --scenario soc-v2 --num-envs 4096 --num-seeds 5

Tier 1, strategic coordinator (PPO with temporal abstraction): the env reads its directive every K
env steps (`EnvParams.directive_period`, or `hmarl.k`); it decides on its own observation through
an attention encoder over per-segment tokens (tier 3, below). Its samples are macro-transitions
(`hierarchy.py`): the directive actually executed and its log-probability at acting time (the
reference re-sampled them at update time, D15), the reward discounted over the k steps it lasted,
gamma^k bootstrapping, GAE over macro-steps, and truncation bootstrapped.

Tier 2, updated from one shared replay (`shared_buffer`), each conditioned on the directive in
force (the SOC view shows it; with `condition_on_directive: true` it is appended on the v1
layouts, whose observations do not carry it):
  * threat hunter: `sac.SAC` (twin Q, automatic temperature, tanh-Gaussian);
  * alert triage: `dqn.DQN` (double, dueling, real target network);
  * response orchestrator: `maddpg.MADDPG` with a centralised critic over every role's
    observation and every role's action, the directive included.
Each update round samples ONE batch that all three learn from; the PER priority of an item is
its learners' TD errors combined by `priority_rule` (`mean`, as the reference, or `max`); the
importance weights enter every loss (D18). With `shared_buffer: false` each learner samples its
own batches with its own priorities (the stored transitions are the same, so one storage holds
them and each learner keeps its own priority tree).

Tier 3, the attention explainer: multi-head attention (4 heads, d_k 64) inside the coordinator's
policy, over one token per network segment (`observe.segment_token_layout`), queried by the global
features. It is trained by the policy loss; `attention_weights(policy_params, obs)` returns the
weights of a batch of decisions for `eval/` (`[decisions, heads, segments]`).

Ablations (config switches): `train_coordinator: false` (no coordinator: a fixed directive,
`coordinator_action` on soc-v2, the all-zero directive on v1), `shared_buffer: false`, both (flat),
`k` (the K sweep), `per: false` (uniform replay).

One `Trainer.update` of one seed: `rollout` env steps of all envs (coordinator decisions where an
env's clock is a multiple of K, tier-2 actions every step, every transition into the replay), the
coordinator's PPO update on the macro-transitions completed in it, then `round(utd * num_envs *
rollout)` tier-2 update rounds — all inside one jitted program.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, NamedTuple, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsoc import buffers
from jaxsoc.algos import common
from jaxsoc.algos import hierarchy as hz
from jaxsoc.algos import offpolicy as op
from jaxsoc.algos import onpolicy, ppo
from jaxsoc.algos.base import Trainer, mean_episode_metrics
from jaxsoc.algos.dqn import DQN, dqn_kwargs
from jaxsoc.algos.maddpg import DEFAULTS as MADDPG_DEFAULTS
from jaxsoc.algos.maddpg import MADDPG, maddpg_kwargs
from jaxsoc.algos.sac import DEFAULTS as SAC_DEFAULTS
from jaxsoc.algos.sac import SAC, sac_kwargs
from jaxsoc.distributions import MaskedCategorical
from jaxsoc.env import SOCEnv, hmarl_directive
from jaxsoc.env.observe import segment_token_layout
from jaxsoc.networks import MLP, TokenAttentionEncoder, ValueCritic

PyTree = Any
TIER2 = ("threat_hunter", "alert_triage", "response_orchestrator")
_SAC_KEYS = ("actor_lr", "critic_lr", "alpha_lr", "tau", "target_period", "init_alpha", "target_entropy",
             "log_std_min", "log_std_max", "max_grad_norm")
_MADDPG_KEYS = ("actor_lr", "critic_lr", "tau", "target_period", "max_grad_norm", "noise_std")

COORDINATOR_DEFAULTS = {
    "lr": 3e-4,
    "clip_eps": 0.2,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
    "epochs": 2,
    "minibatches": 2,
    "gae_lambda": 0.95,
    "max_grad_norm": 0.5,
    "discounting": "smdp",         # smdp: R discounted within the macro-step, gamma^k across; reference
    "bootstrap_truncation": True,  # bootstrap time-limit truncation from the terminal observation
    "encoding": "hmarl",           # v1 only: 8 choices -> directive via HMARL-SOC's get_directive, or onehot
    "attention": True,             # the tier-3 explainer in front of the policy
    "num_heads": 4,
    "d_k": 64,
    "embed_dim": 64,
    "capacity": 0.5,               # macro-transitions kept per update, x (num_envs * rollout / K): a
                                   # random subset when fewer than were emitted (unbiased, cheaper)
}
DEFAULTS = {
    **op.COMMON_DEFAULTS,
    "rollout": 20,                 # env steps per env per update
    "utd": 0.0006,                 # tier-2 update rounds per env transition (batch 256): 12 rounds
                                   # per update of 1024 envs x 20 steps (docs/hmarl.md)
    "learning_starts": 10_000,
    "k": None,                     # directive period K; null: the scenario's (5)
    "train_coordinator": True,     # false: no coordinator (a fixed directive), the "w/o SC" ablation
    "shared_buffer": True,         # false: each tier-2 learner samples its own batches and priorities
    "condition_on_directive": "auto",  # auto: as the scenario shows it; true: append on v1 too; false
    "coordinator": dict(COORDINATOR_DEFAULTS),
    "sac": {k: v for k, v in SAC_DEFAULTS.items() if k in _SAC_KEYS},          # the threat hunter
    "dqn": dict(op.DQN_DEFAULTS),                                             # the alert triage
    "maddpg": {k: v for k, v in MADDPG_DEFAULTS.items() if k in _MADDPG_KEYS},  # the response orchestrator
}
POSITIVE = op.POSITIVE


def validate(config: dict) -> None:
    from jaxsoc.config import ConfigError

    op.validate_common(config, "hmarl")
    c = config["hmarl"]
    op.validate_dqn(c["dqn"], "hmarl.dqn")
    cc = c["coordinator"]
    if cc["discounting"] not in ("smdp", "reference"):
        raise ConfigError(f"hmarl.coordinator.discounting must be smdp or reference, got {cc['discounting']!r}")
    if cc["encoding"] not in ("hmarl", "onehot"):
        raise ConfigError(f"hmarl.coordinator.encoding must be hmarl or onehot, got {cc['encoding']!r}")
    if c["condition_on_directive"] not in ("auto", True, False):
        raise ConfigError("hmarl.condition_on_directive must be auto, true or false")
    if c["k"] is not None and (not isinstance(c["k"], int) or c["k"] < 1):
        raise ConfigError(f"hmarl.k must be a positive integer or null, got {c['k']!r}")
    for key in ("epochs", "minibatches"):
        if not isinstance(cc[key], int) or cc[key] < 1:
            raise ConfigError(f"hmarl.coordinator.{key} must be a positive integer")
    if cc["capacity"] <= 0:
        raise ConfigError("hmarl.coordinator.capacity must be positive")


# ----------------------------------------------------------------------------- coordinator
class CoordinatorActor(nn.Module):
    """Policy logits `[..., n_actions]` and attention weights `[..., heads, S]` (or None)."""

    n_actions: int
    hidden: Tuple[int, ...]
    tokens: Tuple[Tuple[int, ...], ...]  # static [S, F] indices into the observation
    rest: Tuple[int, ...]  # static [G] indices of the global features
    attention: bool = True
    num_heads: int = 4
    d_k: int = 64
    embed_dim: int = 64

    @nn.compact
    def __call__(self, obs: jax.Array):
        if not self.attention:
            return MLP(self.hidden, out_dim=self.n_actions, output_gain=0.01)(obs), None
        tok = obs[..., np.asarray(self.tokens)]  # [..., S, F]
        glob = obs[..., np.asarray(self.rest)]  # [..., G]
        emb, weights = TokenAttentionEncoder(self.embed_dim, num_heads=self.num_heads, d_k=self.d_k,
                                             token_ids=len(self.tokens), name="explainer")(tok, glob)
        x = jnp.concatenate([emb, glob], axis=-1)
        return MLP(self.hidden, out_dim=self.n_actions, output_gain=0.01)(x), weights


class CoordinatorState(NamedTuple):
    actor_params: PyTree
    critic_params: PyTree
    opt_state: PyTree


@dataclasses.dataclass(frozen=True)
class Coordinator:
    """PPO on macro-transitions for the strategic coordinator (discrete directives)."""

    obs_dim: int
    n_actions: int
    hidden: Tuple[int, ...]
    tokens: Tuple[Tuple[int, ...], ...]
    rest: Tuple[int, ...]
    lr: float = 3e-4
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    epochs: int = 4
    minibatches: int = 4
    max_grad_norm: float = 0.5
    attention: bool = True
    num_heads: int = 4
    d_k: int = 64
    embed_dim: int = 64

    @property
    def actor(self) -> CoordinatorActor:
        return CoordinatorActor(self.n_actions, self.hidden, self.tokens, self.rest, self.attention,
                                self.num_heads, self.d_k, self.embed_dim)

    @property
    def critic(self) -> ValueCritic:
        return ValueCritic(self.hidden)

    @property
    def optimizer(self) -> optax.GradientTransformation:
        return optax.chain(optax.clip_by_global_norm(self.max_grad_norm), optax.adam(self.lr, eps=1e-5))

    def init(self, key: jax.Array) -> CoordinatorState:
        ka, kc = jax.random.split(key)
        obs = jnp.zeros((1, self.obs_dim), jnp.float32)
        params = (self.actor.init(ka, obs), self.critic.init(kc, obs))
        return CoordinatorState(params[0], params[1], self.optimizer.init(params))

    def dist(self, actor_params, obs) -> Tuple[MaskedCategorical, Optional[jax.Array]]:
        logits, weights = self.actor.apply(actor_params, obs)
        return MaskedCategorical(logits), weights

    def value(self, critic_params, obs) -> jax.Array:
        return self.critic.apply(critic_params, obs)

    def loss(self, params, batch):
        """Clipped surrogate + value + entropy over a weighted minibatch of macro-transitions
        (the same objective as the PPO learners: `ppo.policy_objective`)."""
        actor_params, critic_params = params
        w = batch["weight"]
        dist, _ = self.dist(actor_params, batch["obs"])
        policy_loss, approx_kl, clip_frac = ppo.policy_objective(
            dist.log_prob(batch["action"]), batch["log_prob"], batch["advantage"], w, self.clip_eps)
        value = self.value(critic_params, batch["obs"])
        value_loss = 0.5 * onpolicy.weighted_mean((value - batch["return"]) ** 2, w)
        entropy = onpolicy.weighted_mean(dist.entropy(), w)
        total = policy_loss + self.vf_coef * value_loss - self.ent_coef * entropy
        return total, dict(policy_loss=policy_loss, value_loss=value_loss, entropy=entropy,
                           approx_kl=approx_kl, clip_frac=clip_frac)

    def update(self, state: CoordinatorState, batch: Dict[str, jax.Array], key: jax.Array):
        """`epochs` passes of `minibatches` shuffled minibatches over a gathered batch `[M, ...]`
        (`M` a multiple of `minibatches`; `onpolicy.sgd`, as the PPO learners)."""
        params, opt_state, info = onpolicy.sgd(key, (state.actor_params, state.critic_params), state.opt_state,
                                               batch, self.loss, self.optimizer, self.epochs, self.minibatches)
        return CoordinatorState(params[0], params[1], opt_state), info


# ----------------------------------------------------------------------------------- setup
class Setup(NamedTuple):
    """Static facts of one hmarl run (Python values at trace time)."""

    k: int
    n_directives: int
    directive_dim: int  # width of the directive as a vector (critic input, conditioning)
    discrete_env: bool  # soc-v2: the env takes the directive index
    encoding: str
    condition: bool  # append the directive vector to tier-2 observations
    tier2_obs_dims: Dict[str, int]
    fixed: np.ndarray  # the fixed env directive (no-coordinator ablation)


def make_setup(config: dict, env: SOCEnv) -> Setup:
    c = config["hmarl"]
    p = env.default_params
    discrete_env = p.fix_d6_directive
    n = p.num_directives if discrete_env else 8
    dim = n if discrete_env else 8
    if c["condition_on_directive"] == "auto":
        condition = False  # the SOC view carries the directive; the v1 layouts (as the reference) do not
    else:
        condition = bool(c["condition_on_directive"])
    obs_dims = {r: env.observation_space(r).shape[0] + (dim if condition else 0) for r in TIER2}
    if discrete_env:
        fixed = np.asarray(c["coordinator_action"], np.int32)
        if not 0 <= int(fixed) < n:
            raise ValueError(f"hmarl.coordinator_action {int(fixed)} outside 0..{n - 1}")
    else:
        fixed = np.zeros((8,), np.float32)  # the all-zero directive (what v1 holds after reset)
    return Setup(p.directive_period, n, dim, discrete_env, c["coordinator"]["encoding"], condition,
                 obs_dims, fixed)


def directive_env_action(setup: Setup, index: jax.Array) -> jax.Array:
    """A directive choice `[...]` -> the env's coordinator action."""
    if setup.discrete_env:
        return index.astype(jnp.int32)
    return common.coordinator_to_env(index, setup.encoding)


def directive_vector(setup: Setup, index: jax.Array) -> jax.Array:
    """A directive choice `[...]` -> the float vector tier-2 critics and conditioning see `[..., D]`."""
    if setup.discrete_env:
        return jax.nn.one_hot(index, setup.n_directives, dtype=jnp.float32)
    return common.coordinator_to_env(index, setup.encoding).astype(jnp.float32)


def fixed_vector(setup: Setup, lead: tuple) -> jax.Array:
    v = jnp.asarray(setup.fixed)
    v = jax.nn.one_hot(v, setup.n_directives, dtype=jnp.float32) if setup.discrete_env else v
    return jnp.broadcast_to(v, lead + v.shape)


def tier2_obs(setup: Setup, obs: Dict[str, jax.Array], directive: jax.Array, role: str) -> jax.Array:
    return jnp.concatenate([obs[role], directive], axis=-1) if setup.condition else obs[role]


# ------------------------------------------------------------------------------------ team
class Team(NamedTuple):
    """The tier-2 learners (static dataclasses)."""

    th: SAC
    at: DQN
    ro: MADDPG


def make_team(config: dict, env: SOCEnv, setup: Setup) -> Team:
    c = config["hmarl"]
    hidden, gamma = tuple(c["hidden"]), c["gamma"]
    obs = {r: env.observation_space(r).shape[0] for r in env.agents}
    th_dim = env.action_space("threat_hunter").shape[0]
    ro_dim = env.action_space("response_orchestrator").shape[0]
    sac = SAC(setup.tier2_obs_dims["threat_hunter"], th_dim,
              **sac_kwargs({**c["sac"], "hidden": hidden, "gamma": gamma}))
    dqn = DQN(setup.tier2_obs_dims["alert_triage"], 4, **dqn_kwargs(c["dqn"], hidden, gamma))
    maddpg = MADDPG(setup.tier2_obs_dims["response_orchestrator"], ro_dim,
                    critic_obs_dim=sum(obs.values()),
                    others_action_dim=setup.directive_dim + th_dim + 4,
                    **maddpg_kwargs({**c["maddpg"], "hidden": hidden, "gamma": gamma}))
    return Team(sac, dqn, maddpg)


def team_act(team: Team, setup: Setup, agents, obs, directive, key, greedy, env_steps):
    """Tier-2 actions for ONE env (obs `{role: [obs_dim]}`, directive `[D]`)."""
    k1, k2, k3 = jax.random.split(key, 3)
    th = team.th.act(agents["threat_hunter"], tier2_obs(setup, obs, directive, "threat_hunter"), k1, greedy)
    at = team.at.act(agents["alert_triage"], tier2_obs(setup, obs, directive, "alert_triage"), k2, greedy,
                     team.at.epsilon(env_steps))
    ro = team.ro.act(agents["response_orchestrator"], tier2_obs(setup, obs, directive, "response_orchestrator"),
                     k3, greedy)
    return {"threat_hunter": th, "alert_triage": at, "response_orchestrator": ro}


def team_update(team: Team, setup: Setup, coordinator: Coordinator, coord_params, agents, batches, weights, key,
                rule: str):
    """One tier-2 round. `batches`/`weights`: one per learner (the same for a shared buffer).

    Returns `(agents, [td_th, td_at, td_ro], metrics)`.
    """
    agents_order = ("threat_hunter", "alert_triage", "response_orchestrator")
    b_th, b_at, b_ro = batches
    w_th, w_at, w_ro = weights

    def next_directive(b):
        """The directive in force at the next step: held, unless the next step is a decision,
        where the coordinator's current greedy choice stands in for its target policy."""
        if coord_params is None:
            return b["directive"]
        dist, _ = coordinator.dist(coord_params, b["next_obs"]["coordinator"])
        chosen = directive_vector(setup, dist.mode())
        return jnp.where(b["next_decision"][:, None], chosen, b["directive"])

    def view(b, role, next_dir):
        return {"obs": tier2_obs(setup, b["obs"], b["directive"], role),
                "next_obs": tier2_obs(setup, b["next_obs"], next_dir, role),
                "action": b["action"][role], "reward": b["reward"], "discount": b["discount"]}

    k1, k2, k3 = jax.random.split(key, 3)
    nd_th = next_directive(b_th)
    new_th, td_th, m_th = team.th.update(agents["threat_hunter"], view(b_th, "threat_hunter", nd_th), w_th, k1)
    nd_at = nd_th if b_at is b_th else next_directive(b_at)
    new_at, td_at, m_at = team.at.update(agents["alert_triage"], view(b_at, "alert_triage", nd_at), w_at, k2)

    nd_ro = nd_th if b_ro is b_th else next_directive(b_ro)
    v = view(b_ro, "response_orchestrator", nd_ro)
    roles = ("coordinator",) + agents_order
    th_next = team.th.act(agents["threat_hunter"], tier2_obs(setup, b_ro["next_obs"], nd_ro, "threat_hunter"),
                          k3, True)  # deterministic tanh(mean): the hunter's target-style action
    at_next_q = team.at.q_values(agents["alert_triage"].target_params,
                                 tier2_obs(setup, b_ro["next_obs"], nd_ro, "alert_triage"))
    v.update(
        critic_obs=jnp.concatenate([b_ro["obs"][r] for r in roles], axis=-1),
        next_critic_obs=jnp.concatenate([b_ro["next_obs"][r] for r in roles], axis=-1),
        others_action=jnp.concatenate([b_ro["directive"], b_ro["action"]["threat_hunter"],
                                       jax.nn.one_hot(b_ro["action"]["alert_triage"], 4)], axis=-1),
        next_others_action=jnp.concatenate([nd_ro, th_next, jax.nn.one_hot(jnp.argmax(at_next_q, -1), 4)], axis=-1),
    )
    new_ro, td_ro, m_ro = team.ro.update(agents["response_orchestrator"], v, w_ro, k3)
    metrics = {}
    for prefix, m in (("th", m_th), ("at", m_at), ("ro", m_ro)):
        metrics.update({f"{prefix}/{k}": val for k, val in m.items()})
    agents = {"threat_hunter": new_th, "alert_triage": new_at, "response_orchestrator": new_ro}
    return agents, (td_th, td_at, td_ro), metrics


# ----------------------------------------------------------------------------------- train
class HMARLState(NamedTuple):
    """Train state of one seed (everything a checkpoint needs to resume bit for bit)."""

    coordinator: CoordinatorState
    agents: PyTree  # {tier-2 role: agent state}
    buffer: PyTree  # the replay (PER or uniform)
    extra_priorities: PyTree  # separate-buffer ablation: the other learners' PER trees (else None)
    env_state: PyTree
    obs: PyTree
    held: jax.Array  # [N] the directive choice in force
    pending: hz.Pending
    value: jax.Array  # [N] V(coordinator obs) of the current observation
    key: jax.Array
    env_steps: jax.Array
    grad_steps: jax.Array
    decisions: jax.Array


def example_transition(env: SOCEnv, setup: Setup) -> PyTree:
    obs = {r: jax.ShapeDtypeStruct(env.observation_space(r).shape, jnp.float32) for r in env.agents}
    f32 = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32)
    return {
        "obs": obs, "next_obs": obs,
        "action": {"threat_hunter": f32(env.action_space("threat_hunter").shape[0]),
                   "alert_triage": jax.ShapeDtypeStruct((), jnp.int32),
                   "response_orchestrator": f32(env.action_space("response_orchestrator").shape[0])},
        "directive": f32(setup.directive_dim),
        "next_decision": jax.ShapeDtypeStruct((), jnp.bool_),
        "reward": f32(), "discount": f32(),
    }


class Parts(NamedTuple):
    """The pieces of one hmarl trainer, for tests and tools (`make_train(..., with_parts=True)`)."""

    setup: Setup
    team: Team
    coordinator: Coordinator
    env: SOCEnv  # with the run's K
    env_params: Any
    rounds: int  # tier-2 rounds per update
    capacity: int  # macro-transitions gathered per coordinator update
    collect: Any  # state -> (state, (records, episode metrics, done, reward, decided, held)), [T, N]
    coordinator_update: Any  # (coordinator state, records, key) -> (coordinator state, metrics)
    learn: Any  # (agents, buffer, extra priorities, coordinator actor params, key) -> (...)


def make_train(config: dict, env: SOCEnv, env_params, with_parts: bool = False):
    c = config["hmarl"]
    cc = c["coordinator"]
    if c["k"] is not None and c["k"] != env_params.directive_period:
        env_params = env_params.replace(directive_period=int(c["k"]))
        env = SOCEnv(env_params)
    setup = make_setup(config, env)
    team = make_team(config, env, setup)
    coordinator = build_coordinator(config, env_params)
    learn_coord = bool(c["train_coordinator"])
    num_envs, rollout = config["num_envs"], c["rollout"]
    steps_per_update = num_envs * rollout
    rounds = max(1, int(round(c["utd"] * steps_per_update)))
    batch_size = c["batch_size"]
    learning_starts = max(c["learning_starts"], batch_size)
    gamma, K = c["gamma"], setup.k
    capacity = max(cc["minibatches"], int(np.ceil(cc["capacity"] * steps_per_update / K)))
    capacity = int(np.ceil(capacity / cc["minibatches"]) * cc["minibatches"])
    example = example_transition(env, setup)
    # rows per chunk of the coordinator's sparse forwards: the ~N/K envs deciding in a step, with room
    slots = int(np.ceil(1.25 * num_envs / K / 8) * 8)
    vstep = lambda key, state, actions: common.batched_step(env, env_params, key, state, actions)
    batched_team_act = jax.vmap(team_act, in_axes=(None, None, None, 0, 0, 0, None, None))

    def coord_decide(cstate, obs_c, key, greedy):
        """Directive choices, log-probs `[N]` for coordinator observations `[N, obs_dim]`."""
        if not learn_coord:
            n = obs_c.shape[0]
            idx = jnp.zeros((n,), jnp.int32)
            return idx, jnp.zeros((n,), jnp.float32)
        dist, _ = coordinator.dist(cstate.actor_params, obs_c)
        a = dist.mode() if greedy else dist.sample(key)
        return a.astype(jnp.int32), dist.log_prob(a)

    def env_directive(held):
        if learn_coord:
            return directive_env_action(setup, held)
        return jnp.broadcast_to(jnp.asarray(setup.fixed), held.shape + setup.fixed.shape)

    def held_vector(held):
        return directive_vector(setup, held) if learn_coord else fixed_vector(setup, held.shape)

    # -- acting (evaluation) -------------------------------------------------------------
    def act(policy_params, key, obs, env_state, greedy):
        """One env. The coordinator's choice is offered every step (the env reads it every K); the
        tier-2 roles are conditioned on the directive in force this step: the new choice on a
        decision step, else the one the env holds (which it read from this coordinator)."""
        cparams, agents = policy_params
        kc, kt = jax.random.split(key)
        choice, _ = coord_decide(CoordinatorState(cparams, None, None), obs["coordinator"][None], kc, greedy)
        choice = choice[0]
        decide = (env_state.t % K) == 0
        if setup.discrete_env:
            held = env_state.focus * env_params.num_postures + env_state.posture
            directive = held_vector(jnp.where(decide, choice, held))
        else:  # v1: the env holds the directive vector itself
            directive = jnp.where(decide, held_vector(choice), env_state.directive)
        t2 = team_act(team, setup, agents, obs, directive, kt, greedy, None)
        return {"coordinator": env_directive(choice), **t2}

    # -- training ------------------------------------------------------------------------
    def init(key):
        k_c, k_t, k_r, key = jax.random.split(key, 4)
        obs, env_state = common.batched_reset(env, env_params, k_r, num_envs)
        cstate = coordinator.init(k_c)
        tkeys = jax.random.split(k_t, 3)
        agents = {"threat_hunter": team.th.init(tkeys[0]), "alert_triage": team.at.init(tkeys[1]),
                  "response_orchestrator": team.ro.init(tkeys[2])}
        buffer = op.init_buffer(c, example)
        extra = None
        if not c["shared_buffer"] and c["per"]:
            extra = (op._priority_part(buffer), op._priority_part(buffer))
        value = coordinator.value(cstate.critic_params, obs["coordinator"])
        zero = jnp.zeros((), jnp.int32)
        return HMARLState(cstate, agents, buffer, extra, env_state, obs, jnp.zeros((num_envs,), jnp.int32),
                          hz.empty_pending(obs["coordinator"], num_envs), value, key, zero, zero, zero)

    def env_step(carry, _):
        (cstate, agents, buffer, env_state, obs, held, pending, value, key, env_steps) = carry
        key, k_c, k_a, k_s = jax.random.split(key, 4)
        decide = (env_state.t % K) == 0
        if learn_coord:  # the coordinator's networks run only on the envs that decide this step
            choice, log_prob = hz.sparse_rows(
                lambda o, k: coord_decide(cstate, o, k, False), obs["coordinator"], decide, slots, k_c)
        else:
            choice, log_prob = coord_decide(cstate, obs["coordinator"], k_c, False)
        held = jnp.where(decide, choice, held)
        if learn_coord:
            pending = hz.start(pending, decide, obs["coordinator"], choice, log_prob, value)
        directive = held_vector(held)
        t2 = batched_team_act(team, setup, agents, obs, directive, jax.random.split(k_a, num_envs), False,
                              env_steps)
        actions = {"coordinator": env_directive(held), **t2}
        next_obs, env_state, rewards, dones, infos = vstep(k_s, env_state, actions)
        reward = rewards["coordinator"]
        completes = (env_state.t % K) == 0  # the next step decides (a reset env starts at t = 0)
        if learn_coord:
            # Values only where a macro-transition needs one: V(next obs) where the next step
            # decides (it bootstraps the macro-step ending here and opens the next one), V(final
            # obs) where a time limit cut the episode. Elsewhere they are never read.
            both = jnp.concatenate([next_obs["coordinator"], infos["final_obs"]["coordinator"]], axis=0)
            need = jnp.concatenate([completes, infos["truncated"] & cc["bootstrap_truncation"]])
            v_both = hz.sparse_rows(lambda o, _: coordinator.value(cstate.critic_params, o), both, need, slots)
            v_next, v_final = v_both[:num_envs], v_both[num_envs:]
        else:
            v_next = v_final = jnp.zeros((num_envs,), jnp.float32)
        pending, record = hz.accumulate(pending, reward, gamma, completes, infos["terminated"],
                                        infos["truncated"], v_next, v_final,
                                        bootstrap_truncation=cc["bootstrap_truncation"],
                                        discounting=cc["discounting"])
        item = {"obs": obs, "next_obs": infos["final_obs"], "action": t2, "directive": directive,
                "next_decision": completes, "reward": reward.astype(jnp.float32),
                "discount": infos["discount"].astype(jnp.float32)}
        buffer = buffers.add(buffer, item)
        carry = (cstate, agents, buffer, env_state, next_obs, held, pending, v_next, key, env_steps + num_envs)
        return carry, (record, infos["metrics"], dones["__all__"], reward, decide, held)

    def coordinator_update(cstate, records, key):
        adv, ret = hz.macro_gae(records, cc["gae_lambda"])
        k_g, k_u = jax.random.split(key)
        weight, (obs_g, act_g, lp_g, adv_g, ret_g) = hz.valid_first(
            k_g, records.emit, capacity, records.obs, records.action, records.log_prob, adv, ret)
        adv_g = jnp.where(weight > 0, ppo.normalise_advantages(adv_g, weight), 0.0)
        batch = {"obs": obs_g, "action": act_g, "log_prob": lp_g, "advantage": adv_g, "return": ret_g,
                 "weight": weight}
        cstate, info = coordinator.update(cstate, batch, k_u)
        info = {f"sc/{k}": v for k, v in info.items()}
        info["sc/macro_transitions"] = jnp.sum(records.emit.astype(jnp.float32))
        info["sc/kept"] = jnp.sum(weight)
        return cstate, info

    def learn(agents, buffer, extra, cparams, key):
        """`rounds` tier-2 rounds; returns (agents, priority parts, mean metrics)."""
        def body(carry, k):
            agents, part, extra = carry
            buf = op._with_priority_part(buffer, part)
            ks, ku = jax.random.split(k)
            if c["shared_buffer"] or not c["per"]:
                if c["shared_buffer"]:
                    buf, batch, w, idx = op.sample_batch(buf, ks, batch_size)
                    batches, weights = (batch, batch, batch), (w, w, w)
                else:  # uniform, separate: independent draws
                    kk = jax.random.split(ks, 3)
                    draws = [op.sample_batch(buf, kj, batch_size) for kj in kk]
                    batches, weights = tuple(d[1] for d in draws), tuple(d[2] for d in draws)
                    idx = None
                agents, tds, metrics = team_update(team, setup, coordinator, cparams if learn_coord else None,
                                                   agents, batches, weights, ku, c["priority_rule"])
                if idx is not None and c["per"]:
                    td = buffers.combine_td_errors(list(tds), c["priority_rule"])
                    buf = buffers.update_priorities(buf, idx, td)
                return (agents, op._priority_part(buf), extra), metrics
            # separate PER buffers: the same storage, one priority tree per learner
            kk = jax.random.split(ks, 3)
            parts = (op._priority_part(buf),) + tuple(extra)
            bufs = [op._with_priority_part(buffer, pt) for pt in parts]
            draws = [op.sample_batch(b, kj, batch_size) for b, kj in zip(bufs, kk)]
            batches = tuple(d[1] for d in draws)
            weights = tuple(d[2] for d in draws)
            agents, tds, metrics = team_update(team, setup, coordinator, cparams if learn_coord else None,
                                               agents, batches, weights, ku, c["priority_rule"])
            new_parts = [op._priority_part(buffers.update_priorities(d[0], d[3], td))
                         for d, td in zip(draws, tds)]
            return (agents, new_parts[0], tuple(new_parts[1:])), metrics

        (agents, part, extra), metrics = jax.lax.scan(
            body, (agents, op._priority_part(buffer), extra), jax.random.split(key, rounds))
        return agents, part, extra, jax.tree.map(jnp.mean, metrics)

    def collect(state: HMARLState):
        """`rollout` env steps of all envs: `(state, (records [T, N], episode metrics, done [T, N],
        reward [T, N], decided [T, N], held [T, N] the directive choice in force))`; the replay holds
        the new transitions, nothing is learned yet."""
        carry = (state.coordinator, state.agents, state.buffer, state.env_state, state.obs, state.held,
                 state.pending, state.value, state.key, state.env_steps)
        carry, trace = jax.lax.scan(env_step, carry, None, length=rollout)
        cstate, agents, buffer, env_state, obs, held, pending, value, key, env_steps = carry
        return state._replace(coordinator=cstate, agents=agents, buffer=buffer, env_state=env_state, obs=obs,
                              held=held, pending=pending, value=value, key=key, env_steps=env_steps), trace

    def update(state: HMARLState):
        ptr = buffers._replay_of(state.buffer).ptr
        state, (records, ep_metrics, done, reward, decided, _) = collect(state)
        extra = state.extra_priorities
        if extra is not None:  # separate PER: the other learners' trees get the new items too
            extra = tuple(op._priority_part(buffers.mark_added(op._with_priority_part(state.buffer, pt), ptr,
                                                               rollout * num_envs)) for pt in extra)
        cstate, agents, buffer, env_state, obs, held, pending, value, key, env_steps = (
            state.coordinator, state.agents, state.buffer, state.env_state, state.obs, state.held,
            state.pending, state.value, state.key, state.env_steps)
        key, k_coord, k_learn = jax.random.split(key, 3)
        out = {}
        if learn_coord:
            cstate, info = coordinator_update(cstate, records, k_coord)
            out.update(info)
            # the new policy's values for the carried state (its critic changed)
            value = coordinator.value(cstate.critic_params, obs["coordinator"])
        ready = buffers.can_sample(buffer, learning_starts)
        cparams = cstate.actor_params
        skipped = jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype),
                               jax.eval_shape(learn, agents, buffer, extra, cparams, k_learn)[3])
        agents, part, extra, learn_metrics = jax.lax.cond(
            ready, learn,
            lambda a, b, e, cp, k: (a, op._priority_part(b), e, skipped),
            agents, buffer, extra, cparams, k_learn)
        buffer = op._with_priority_part(buffer, part)
        grad_steps = state.grad_steps + jnp.where(ready, rounds, 0).astype(jnp.int32)
        decisions = state.decisions + jnp.sum(decided).astype(jnp.int32)
        out.update(mean_episode_metrics(ep_metrics, done))
        out.update(learn_metrics)
        out["reward"] = reward.mean()
        out["env_steps"] = env_steps
        out["grad_steps"] = grad_steps
        out["epsilon"] = team.at.epsilon(env_steps)
        out["buffer_size"] = buffer.size
        new = HMARLState(cstate, agents, buffer, extra, env_state, obs, held, pending, value, key, env_steps,
                         grad_steps, decisions)
        return new, out

    def env_axes(s):
        return HMARLState(coordinator=None, agents=None, buffer=None, extra_priorities=None, env_state=0, obs=0,
                          held=0, pending=0, value=0, key=None, env_steps=None, grad_steps=None, decisions=None)

    parts = Parts(setup=setup, team=team, coordinator=coordinator, env=env, env_params=env_params, rounds=rounds,
                  capacity=capacity, collect=collect, coordinator_update=coordinator_update, learn=learn)
    trainer = Trainer(
        init=init,
        update=update,
        num_updates=config["total_steps"] // steps_per_update,
        env_steps_per_update=steps_per_update,
        act=act,
        policy_params=lambda s: (s.coordinator.actor_params, s.agents),
        name=config["algo"],
        env_axes=env_axes,
    )
    return (trainer, parts) if with_parts else trainer


def build_coordinator(config: dict, env_params) -> Coordinator:
    """The coordinator of a run (its static network description) from its config and scenario."""
    c = config["hmarl"]
    cc = c["coordinator"]
    if c["k"] is not None:
        env_params = env_params.replace(directive_period=int(c["k"]))
    env = SOCEnv(env_params)
    n = env_params.num_directives if env_params.fix_d6_directive else 8
    tokens, rest, _ = segment_token_layout(env_params, "coordinator")
    return Coordinator(
        env.observation_space("coordinator").shape[0], n, tuple(c["hidden"]),
        tuple(map(tuple, tokens.tolist())), tuple(rest.tolist()), lr=cc["lr"], clip_eps=cc["clip_eps"],
        ent_coef=cc["ent_coef"], vf_coef=cc["vf_coef"], epochs=cc["epochs"], minibatches=cc["minibatches"],
        max_grad_norm=cc["max_grad_norm"], attention=cc["attention"], num_heads=cc["num_heads"],
        d_k=cc["d_k"], embed_dim=cc["embed_dim"])


def attention_weights(policy_params, obs, config: dict, env_params):
    """Tier-3 explanations: the coordinator's attention over segments for a batch of decisions.

    `policy_params` of one seed (`Trainer.policy_params`), `obs` the env's per-agent observations
    with a leading decisions axis, `config` the run's resolved config, `env_params` its scenario.
    Returns `(weights [decisions, heads, segments] (each row a distribution over segments),
    segment names)`.
    """
    coordinator = build_coordinator(config, env_params)
    if not coordinator.attention:
        raise ValueError("this run's coordinator has no attention explainer (hmarl.coordinator.attention: false)")
    _, weights = coordinator.dist(policy_params[0], obs["coordinator"])
    return weights, list(env_params.segment_names)
