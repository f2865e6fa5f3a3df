"""The "dqn" family: DQN, IQL, VDN and QMIX.

Agents (pure functions, reusable outside the trainers; the HMARL team's alert triage is a `DQN`):

    agent = DQN(obs_dim=64, n_actions=4, **dqn_kwargs(section, hidden, gamma))
    state = agent.init(key)                                     # DQNState
    a     = agent.act(state, obs [..., obs_dim], key, greedy, epsilon)      # int32 [...]
    state, td, metrics = agent.update(state, batch, weights [B], key)       # td: |Q - y| [B]

    batch = {"obs": [B, obs_dim], "action": i32[B], "reward": [B], "discount": [B],
             "next_obs": [B, obs_dim]}      # discount: 1 = bootstrap, 0 = stop (gamma applied here)

`DQN` is double (online argmax, target value) and dueling when asked, with a real target network
updated by `offpolicy.update_target` (hard copies every `target_period` updates, or Polyak with
`tau`); the reference's learner copied it after every update (D17). Epsilon comes from an optax
schedule over env transitions (`agent.epsilon(env_steps)`).

`ValueDecomposition` (VDN / QMIX): one Q-network per role (no parameter sharing: the roles' observation
and action sizes differ) and a mixer, trained jointly on the team reward:
    y = r + gamma * discount * Mix_target([Q_i,target(s'_i, a'_i)]_i, ws')
    a'_i = argmax Q_i(s'_i) (double) or argmax Q_i,target(s'_i)
    loss = mean(w * (Mix([Q_i(s_i, a_i)]_i, ws) - y)^2)
VDN mixes by a sum; QMIX by `networks.QMixer` (hypernetworks on the env's world state, |W|
weights, so dQ_tot/dQ_i >= 0); `mixer_state: obs` feeds the concatenated observations of the
mixed roles instead, as the reference baseline did (TH+AT+RO = 288 inputs on v1).

Roles on the SOC env (all four are always stepped; a role no learner controls is *fixed*):
  * dqn:  alert triage (its 4 native actions), the role DQN plays in HMARL-SOC. Threat hunter and
          response orchestrator play the scripted `constant` policy (raw 0: hunt every segment,
          isolate detected hosts), the coordinator is fixed (below). A stationary team makes the
          DQN's learning curve readable against the `constant` baseline; DQN on every role is IQL.
  * iql:  all four roles, independent DQNs (the reference IQL baseline): alert triage native,
          threat hunter / response orchestrator through the QMIX baseline's bins (16 / 12 by
          default, `offpolicy.bin_table`), the coordinator discrete: the env's own choices on
          soc-v2 (15 directives), 8 choices one-hot encoded into the v1 directive as the
          reference IQL (`coordinator: onehot`; `hmarl` uses HMARL-SOC's get_directive).
  * vdn, qmix: threat hunter, alert triage, response orchestrator (bins as IQL), as the reference
          QMIX baseline. The coordinator is fixed: the all-zero directive on v1 (what the env holds
          after reset; the baseline sent none), directive `coordinator_action` (default 0: focus
          segment 0, the first posture, as the `constant` baseline) on soc-v2.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from jaxsoc.algos import offpolicy as op
from jaxsoc.algos.common import clipped_adam
from jaxsoc.networks import QMixer, QNetwork, vdn_mix

PyTree = Any

DEFAULTS = {
    **op.COMMON_DEFAULTS,
    **op.DQN_DEFAULTS,
    "coordinator": "onehot",   # iql on v1: how 8 coordinator choices become the directive (onehot|hmarl)
    "th_bins": 16,             # discretised threat hunter (iql/vdn/qmix), reference QMIX baseline
    "ro_bins": 12,             # discretised response orchestrator
    "bin_low": 0.3,            # raw action of the lowest bin level
    "bin_high": 1.0,           # raw action of the highest bin level
    "mixer_embed": 64,         # qmix: mixing layer width (reference 64)
    "hypernet_hidden": 64,     # qmix: hypernetwork hidden width
    "mixer_state": "world",    # qmix: world (env world state) or obs (concat of the mixed roles' obs)
    "mixer_state_norm": False,  # qmix: the hypernetworks read that state at unit length (docs/hybrid.md)
}
POSITIVE = op.POSITIVE + ("th_bins", "ro_bins", "mixer_embed", "hypernet_hidden")
QMIX_ONLY = ("mixer_embed", "hypernet_hidden", "mixer_state", "mixer_state_norm")  # the mixer's
BINNED = ("th_bins", "ro_bins", "bin_low", "bin_high")  # the binned hunter and responder (not dqn's)
# Keys the update only computes with: a sweep (jaxsoc/sweep.py) trains grid points that differ
# only in these in one program (tests/test_sweepable.py traces each and checks it is used).
SWEEPABLE = ("lr", "gamma", "max_grad_norm", "tau", "epsilon_start", "epsilon_end", "epsilon_decay")
# The team is built on the SOC roles (binned hunter and responder, the fixed coordinator): SOC
# worlds only (`algos.make_train` refuses others in one line, `common.check_soc_team`).
SOC_TEAM = True


def validate(config: dict) -> None:
    from jaxsoc.config import ConfigError, check_choice, refuse_unread

    op.validate_common(config, "dqn")
    op.validate_dqn(config["dqn"], "dqn")
    c = config["dqn"]
    check_choice("dqn.mixer_state", c["mixer_state"], ("world", "obs"))
    check_choice("dqn.coordinator", c["coordinator"], ("onehot", "hmarl"))
    # Keys one of the family's algorithms reads and another does not: refused when changed there
    # (a vdn run with dqn.mixer_embed=7 trained as without it, and its config.yaml said 7).
    algo = config["algo"]
    for keys, readers in ((QMIX_ONLY, ("qmix",)), (BINNED, ("iql", "vdn", "qmix")),
                          (("coordinator",), ("iql",)), (("coordinator_action",), ("dqn", "vdn", "qmix"))):
        unread = [k for k in keys if c[k] != DEFAULTS[k]]
        if unread and algo not in readers:
            refuse_unread(f"dqn.{unread[0]} is read by {', '.join(readers)} only, not by --algo {algo}")
    # Bin levels are raw env actions: outside [-1, 1] the env clips them, and bins would merge.
    if not -1.0 <= c["bin_low"] <= c["bin_high"] <= 1.0:
        raise ConfigError(f"dqn.bin_low and bin_high must satisfy -1 <= bin_low <= bin_high <= 1, "
                          f"got {c['bin_low']!r}, {c['bin_high']!r}")


# --------------------------------------------------------------------------------------- DQN
class DQNState(NamedTuple):
    """params/target_params: QNetwork variables; opt_state: Adam; steps: updates done (int32)."""

    params: PyTree
    target_params: PyTree
    opt_state: PyTree
    steps: jax.Array


def dqn_kwargs(section: dict, hidden, gamma: float) -> dict:
    """`DQN` keyword arguments from a config section holding `op.DQN_DEFAULTS`' keys."""
    return dict(hidden=tuple(hidden), gamma=gamma, **{k: section[k] for k in op.DQN_DEFAULTS})


def td_loss(td: jax.Array, kind: str) -> jax.Array:
    """Per-item loss of TD errors `[B]`: squared (the reference's MSE) or Huber (delta 1)."""
    return optax.huber_loss(td, delta=1.0) if kind == "huber" else jnp.square(td)


def td_step(learner, state, q_fn, target: jax.Array, weights: jax.Array):
    """One optimiser step of a weighted TD loss, then the target networks' update: the step
    `DQN.update` and `ValueDecomposition.update` share.

    `learner` has `optimizer`, `loss`, `tau`, `target_period`; `state` has `params`,
    `target_params`, `opt_state`, `steps`; `q_fn(params) -> [B]` the values the TD errors are of
    (the taken action's Q, or the mixed Q_tot), `target [B]` their (stop-gradient) targets.
    Returns `(state, td [B], loss, q [B])`.
    """
    def loss_fn(params):
        q = q_fn(params)
        td = q - target
        return op.importance_weighted_mean(td_loss(td, learner.loss), weights), (td, q)

    (loss, (td, q)), params, opt_state = op.gradient_step(loss_fn, state.params, state.opt_state,
                                                          learner.optimizer, has_aux=True)
    steps = state.steps + 1
    target_params = op.update_target(params, state.target_params, steps, learner.tau, learner.target_period)
    return state._replace(params=params, target_params=target_params, opt_state=opt_state, steps=steps), td, loss, q


def best_choice(q: jax.Array, avail: Optional[jax.Array] = None) -> jax.Array:
    """`[...]` int32: the highest-valued choice of `q [..., n]`, among the legal ones where a mask
    `avail` (bool `[..., n]`) is given (None: every choice, exactly the unmasked argmax)."""
    if avail is not None:
        q = jnp.where(avail, q, -jnp.inf)
    return jnp.argmax(q, axis=-1).astype(jnp.int32)


def random_choice(key: jax.Array, shape: tuple, n: int, avail: Optional[jax.Array] = None) -> jax.Array:
    """`[*shape]` int32: a uniform choice of `n`, or of the legal ones of `avail` (bool
    `[*shape, n]`). Drawn as the k-th legal choice for k uniform below their count, so with every
    choice legal it is the unmasked draw bit for bit (runs on always-legal roles are unchanged)."""
    if avail is None:
        return jax.random.randint(key, shape, 0, n)
    count = jnp.sum(avail, axis=-1, dtype=jnp.int32)  # [*shape]; a world leaves at least one legal
    k = jax.random.randint(key, shape, 0, jnp.maximum(count, 1))
    return jnp.argmax(jnp.cumsum(avail, axis=-1, dtype=jnp.int32) > k[..., None], axis=-1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class DQN:
    """Double / dueling DQN for one discrete role; see the module docstring for the API."""

    obs_dim: int
    n_actions: int
    hidden: Tuple[int, ...] = (256, 256, 256)
    gamma: float = 0.99
    lr: float = 3e-4
    double: bool = True
    dueling: bool = True
    loss: str = "mse"
    max_grad_norm: float = 10.0
    tau: float = 1.0
    target_period: int = 1000
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay: int = 50_000
    epsilon_schedule: str = "exponential"

    @property
    def network(self) -> QNetwork:
        return QNetwork(self.n_actions, self.hidden, dueling=self.dueling)

    @property
    def optimizer(self) -> optax.GradientTransformation:
        return clipped_adam(self.lr, self.max_grad_norm)

    def init(self, key: jax.Array) -> DQNState:
        params = self.network.init(key, jnp.zeros((1, self.obs_dim), jnp.float32))
        # A separate copy: donating a state whose two leaves share a buffer is an error.
        return DQNState(params, op.copy_tree(params), self.optimizer.init(params), jnp.zeros((), jnp.int32))

    def q_values(self, params: PyTree, obs: jax.Array) -> jax.Array:
        """`[..., obs_dim] -> [..., n_actions]`."""
        return self.network.apply(params, obs)

    def epsilon(self, env_steps: Optional[jax.Array]) -> jax.Array:
        """Exploration rate after `env_steps` transitions (None: the schedule's end)."""
        if env_steps is None:
            return jnp.asarray(self.epsilon_end, jnp.float32)
        sched = op.epsilon_schedule(self.epsilon_start, self.epsilon_end, self.epsilon_decay,
                                    self.epsilon_schedule)
        return jnp.asarray(sched(env_steps), jnp.float32)

    def act(self, state: DQNState, obs: jax.Array, key: jax.Array, greedy: bool = False,
            epsilon: Optional[jax.Array] = None, avail: Optional[jax.Array] = None) -> jax.Array:
        """Greedy or epsilon-greedy choices `[...]` (int32) for obs `[..., obs_dim]`, among the
        legal ones of `avail` (bool `[..., n]`; None: all); epsilon None means the schedule's end."""
        return self.policy(state.params, obs, key, greedy, epsilon, avail)

    def policy(self, params: PyTree, obs: jax.Array, key: jax.Array, greedy: bool = False,
               epsilon: Optional[jax.Array] = None, avail: Optional[jax.Array] = None) -> jax.Array:
        """`act` from the online parameters alone."""
        best = best_choice(self.q_values(params, obs), avail)
        if greedy:
            return best
        eps = self.epsilon(None) if epsilon is None else epsilon
        k_explore, k_action = jax.random.split(key)
        explore = jax.random.uniform(k_explore, best.shape) < eps
        return jnp.where(explore, random_choice(k_action, best.shape, self.n_actions, avail), best)

    def next_value(self, params: PyTree, target_params: PyTree, next_obs: jax.Array,
                   next_avail: Optional[jax.Array] = None, double: Optional[bool] = None) -> jax.Array:
        """`[B]`: the target network's value of the next action (double: chosen by the online
        `params`), over the legal next choices of `next_avail` (bool `[B, n]`; None: all).
        `double` None: this DQN's own setting (a VDN/QMIX learner passes its own)."""
        q_target = self.q_values(target_params, next_obs)
        if not (self.double if double is None else double):
            q_target = q_target if next_avail is None else jnp.where(next_avail, q_target, -jnp.inf)
            return jnp.max(q_target, axis=-1)
        choice = best_choice(self.q_values(params, next_obs), next_avail)
        return jnp.take_along_axis(q_target, choice[:, None], axis=-1)[:, 0]

    def update(self, state: DQNState, batch: Dict[str, jax.Array], weights: jax.Array,
               key: Optional[jax.Array] = None):
        """One gradient step; returns `(state, |td| [B], metrics)`."""
        del key  # deterministic update
        next_value = self.next_value(state.params, state.target_params, batch["next_obs"], batch.get("next_avail"))
        target = batch["reward"] + self.gamma * batch["discount"] * next_value
        target = jax.lax.stop_gradient(target)

        def q_taken(params):
            q = self.q_values(params, batch["obs"])
            return jnp.take_along_axis(q, batch["action"][:, None].astype(jnp.int32), axis=-1)[:, 0]

        state, td, loss, q = td_step(self, state, q_taken, target, weights)
        return state, jnp.abs(td), {"q_loss": loss, "q": jnp.mean(q)}


# ------------------------------------------------------------------------ VDN / QMIX learner
class VDState(NamedTuple):
    """params/target_params: `{role: QNetwork variables, "mixer": QMixer variables (qmix)}`."""

    params: PyTree
    target_params: PyTree
    opt_state: PyTree
    steps: jax.Array


@dataclasses.dataclass(frozen=True)
class ValueDecomposition:
    """VDN (`mixer="vdn"`) or QMIX (`mixer="qmix"`) over `agents` `{role: DQN}`.

    The per-role DQNs only supply networks and dimensions; this learner owns one optimiser and
    one target update over all the networks and the mixer (`lr`, `max_grad_norm`, `tau`,
    `target_period`, `double`, `loss` are its own).
    """

    agents: Tuple[Tuple[str, DQN], ...]
    state_dim: int
    mixer: str = "qmix"
    gamma: float = 0.99
    lr: float = 3e-4
    double: bool = True
    loss: str = "mse"
    max_grad_norm: float = 10.0
    tau: float = 1.0
    target_period: int = 1000
    mixer_embed: int = 64
    hypernet_hidden: int = 64
    mixer_state_norm: bool = False

    @property
    def roles(self) -> Tuple[str, ...]:
        return tuple(r for r, _ in self.agents)

    @property
    def qmixer(self) -> QMixer:
        return QMixer(embed_dim=self.mixer_embed, hypernet_hidden=self.hypernet_hidden,
                      state_norm=self.mixer_state_norm)

    @property
    def optimizer(self) -> optax.GradientTransformation:
        return clipped_adam(self.lr, self.max_grad_norm)

    def init(self, key: jax.Array) -> VDState:
        keys = jax.random.split(key, len(self.agents) + 1)
        params = {r: a.init(k).params for (r, a), k in zip(self.agents, keys)}
        if self.mixer == "qmix":
            params["mixer"] = self.qmixer.init(keys[-1], jnp.zeros((1, len(self.agents))),
                                               jnp.zeros((1, self.state_dim)))
        return VDState(params, op.copy_tree(params), self.optimizer.init(params), jnp.zeros((), jnp.int32))

    def mix(self, params: PyTree, agent_qs: jax.Array, state: jax.Array) -> jax.Array:
        """`Q_tot [B]` of the chosen per-role values `agent_qs [B, n_roles]` in state `[B, ws]`."""
        if self.mixer == "vdn":
            return vdn_mix(agent_qs)
        return self.qmixer.apply(params["mixer"], agent_qs, state)

    def chosen_qs(self, params: PyTree, obs: Dict[str, jax.Array], actions: Dict[str, jax.Array]):
        """`[B, n_roles]`: each role's Q of its action."""
        cols = []
        for r, agent in self.agents:
            q = agent.q_values(params[r], obs[r])
            cols.append(jnp.take_along_axis(q, actions[r][:, None].astype(jnp.int32), axis=-1)[:, 0])
        return jnp.stack(cols, axis=-1)

    def next_qs(self, state: VDState, next_obs: Dict[str, jax.Array],
                next_avail: Optional[Dict[str, jax.Array]] = None) -> jax.Array:
        """`[B, n_roles]`: target networks' values of each role's next action (over its legal
        choices where `next_avail` holds its mask `[B, n]`)."""
        next_avail = next_avail or {}
        cols = []
        for r, agent in self.agents:
            cols.append(agent.next_value(state.params[r], state.target_params[r], next_obs[r], next_avail.get(r),
                                         self.double))
        return jnp.stack(cols, axis=-1)

    def update(self, state: VDState, batch: Dict[str, Any], weights: jax.Array,
               key: Optional[jax.Array] = None):
        """`batch`: obs/next_obs/action `{role: ...}`, reward, discount, mix_state/next_mix_state
        `[B, state_dim]`. Returns `(state, |td| [B], metrics)`."""
        del key
        next_qs = self.next_qs(state, batch["next_obs"], batch.get("next_avail"))
        next_tot = self.mix(state.target_params, next_qs, batch["next_mix_state"])
        target = jax.lax.stop_gradient(batch["reward"] + self.gamma * batch["discount"] * next_tot)

        def q_tot(params):
            return self.mix(params, self.chosen_qs(params, batch["obs"], batch["action"]), batch["mix_state"])

        state, td, loss, q = td_step(self, state, q_tot, target, weights)
        return state, jnp.abs(td), {"q_loss": loss, "q_tot": jnp.mean(q)}


# ------------------------------------------------------------------------------------ teams
def _agents_for(team_roles: Dict[str, op.RoleAction], env, section: dict, hidden, gamma) -> Dict[str, DQN]:
    return {r: DQN(int(env.observation_space(r).shape[0]), a.size, **dqn_kwargs(section, hidden, gamma))
            for r, a in team_roles.items() if a.controlled}


class IndependentDQNTeam(op.PerRoleTeam):
    """`dqn` (alert triage only) and `iql` (every role): one DQN per controlled role, each
    updated on the same sampled batch with its own optimiser; priority = combined |td|."""

    def __init__(self, env, roles: Dict[str, op.RoleAction], section: dict, hidden, gamma):
        self.roles = roles
        self.agents = _agents_for(roles, env, section, hidden, gamma)
        self.obs_roles = tuple(self.agents)
        self.priority_rule = section["priority_rule"]


class ValueDecompositionTeam(op.Team):
    """`vdn` / `qmix` over threat hunter, alert triage and response orchestrator."""

    def __init__(self, env, roles: Dict[str, op.RoleAction], section: dict, hidden, gamma, mixer: str):
        self.roles = roles
        agents = _agents_for(roles, env, section, hidden, gamma)
        self.agents = agents
        self.obs_roles = tuple(agents)
        self.mixer_state = section["mixer_state"] if mixer == "qmix" else "obs"
        self.world_state = mixer == "qmix" and self.mixer_state == "world"
        obs_dims = sum(int(env.observation_space(r).shape[0]) for r in agents)
        state_dim = env.world_state_size if self.world_state else obs_dims
        self.learner = ValueDecomposition(
            tuple(agents.items()), state_dim, mixer=mixer, gamma=gamma, lr=section["lr"],
            double=section["double"], loss=section["loss"], max_grad_norm=section["max_grad_norm"],
            tau=section["tau"], target_period=section["target_period"],
            mixer_embed=section["mixer_embed"], hypernet_hidden=section["hypernet_hidden"],
            mixer_state_norm=section["mixer_state_norm"])

    def init(self, key):
        return self.learner.init(key)

    def act(self, agents, obs, key, greedy, env_steps, avail):
        keys = jax.random.split(key, len(self.agents))
        return {r: a.policy(agents.params[r], obs[r], k, greedy, a.epsilon(env_steps), avail.get(r))
                for (r, a), k in zip(self.agents.items(), keys)}

    def _mix_state(self, batch, prefix: str):
        if self.world_state:
            return batch[prefix + "world_state"]
        return jnp.concatenate([batch[prefix + "obs"][r] for r in self.agents], axis=-1)

    def update(self, agents, batch, weights, key):
        view = dict(batch, mix_state=self._mix_state(batch, ""), next_mix_state=self._mix_state(batch, "next_"))
        return self.learner.update(agents, view, weights, key)

    def schedules(self, env_steps):
        return {"epsilon": next(iter(self.agents.values())).epsilon(env_steps)}


def make_team(config: dict, env) -> op.Team:
    """The team of algorithm `config["algo"]` (dqn, iql, vdn or qmix) on `env`."""
    algo, c = config["algo"], config["dqn"]
    # The algorithm's own readers are checked by `validate`; these are the world's.
    op.check_encoding_read(env, "dqn.coordinator", c["coordinator"], DEFAULTS["coordinator"])
    op.check_fixed_directive_read(env, "dqn.coordinator_action", c["coordinator_action"],
                                  DEFAULTS["coordinator_action"])
    hidden, gamma = c["hidden_sizes"], c["gamma"]
    bins = dict(low=c["bin_low"], high=c["bin_high"])
    fixed = {r: op.fixed_role(env, r, c) for r in env.agents}
    binned = {"threat_hunter": op.binned_role(env, "threat_hunter", c["th_bins"], **bins),
              "response_orchestrator": op.binned_role(env, "response_orchestrator", c["ro_bins"], **bins)}
    triage = op.native_role(env, "alert_triage")
    if algo == "dqn":
        roles = dict(fixed, alert_triage=triage)
        return IndependentDQNTeam(env, roles, c, hidden, gamma)
    if algo == "iql":
        roles = dict(coordinator=op.coordinator_role(env, c["coordinator"]), alert_triage=triage, **binned)
        return IndependentDQNTeam(env, {r: roles[r] for r in env.agents}, c, hidden, gamma)
    if algo in ("vdn", "qmix"):
        roles = dict(fixed, alert_triage=triage, **binned)
        return ValueDecompositionTeam(env, {r: roles[r] for r in env.agents}, c, hidden, gamma, algo)
    raise ValueError(f"the dqn family has no algorithm {algo!r}")


def make_train(config: dict, env, env_params):
    return op.make_trainer(config, env, env_params, make_team(config, env), config["dqn"])
