"""What every off-policy learner shares: configs, role action maps, target updates, epsilon
schedules, and the training loop that fills a replay buffer and runs update rounds.

The learners themselves are *agents*: frozen dataclasses holding static hyper-parameters and
exposing pure functions (`init`, `act`, `update`) of an agent state (a pytree). A *team* (one per
algorithm name) says which agent controls which SOC role, builds each agent's batch view out of
one sampled transition batch and combines their TD errors into one priority per item. The
hierarchical team (`jaxsoc/algos/hmarl/`) runs the same agents and buffer through this loop's
public hook, `learn_rounds`.

Training loop (`make_trainer`), one `Trainer.update` for one seed:

    repeat `rollout` times (lax.scan):       every env acts once, auto-resets; the `num_envs`
                                             transitions go into the replay buffer
    if buffer.size >= learning_starts:       (`learn_rounds`: a lax.cond over a lax.scan)
        repeat `rounds` times:               sample `batch_size` (uniform or PER), team.update,
                                             PER priorities <- the team's TD errors

`rounds = round(utd * num_envs * rollout)`: `utd` is the update-to-data ratio, gradient rounds
per env transition (the HMARL reference's train_fast does ~1 round per 50 env steps, utd 0.02;
its IQL/QMIX baselines one per 4 env steps, utd 0.25). The replay buffer is part of the train
state, so checkpoints hold it and a resumed run continues bit for bit.

A stored transition (leaves `[capacity, ...]` in the buffer, `[batch, ...]` when sampled):

    obs        {role: f32[obs_dim]}      the roles the team reads (`Team.obs_roles`)
    next_obs   {role: f32[obs_dim]}      `infos["final_obs"]`: the terminal obs when an episode ended
    action     {role: i32[] | f32[dim]}  the learner's action (choice index, or a continuous
                                         vector in [-1, 1]) of each *controlled* role
    reward     f32[]                     the team reward
    discount   f32[]                     `infos["discount"]`: 0 where bootstrapping stops. The env
                                         decides: soc-v2 stops only on termination; hmarl-soc-v1
                                         also on truncation, as the reference does (D12)
    world_state, next_world_state        f32[ws] only when `Team.world_state` (QMIX's mixer)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsoc import buffers
from jaxsoc.algos import common
from jaxsoc.algos.base import Trainer, mean_episode_metrics, per_update_trainer
from jaxsoc.config import ConfigError

PyTree = Any

# Short names for metric prefixes ("th/critic_loss").
ROLE_ABBREV = {"coordinator": "sc", "threat_hunter": "th", "alert_triage": "at",
               "response_orchestrator": "ro"}

# ------------------------------------------------------------------------------------ configs
# Keys every off-policy family has (paper hyper-parameters; the reference-specific ones are in
# each family's DEFAULTS and in configs/<algo>.yaml).
COMMON_DEFAULTS = {
    "rollout": 1,              # env steps per env per update iteration
    "utd": 0.02,               # gradient rounds per env transition (update-to-data ratio)
    "buffer_size": 200_000,    # replay capacity (transitions, per seed)
    "batch_size": 256,
    "learning_starts": 0,      # transitions in the buffer before learning (at least batch_size)
    "gamma": 0.99,
    "hidden_sizes": [256, 256, 256],  # the paper's 3 x 256 ReLU MLPs
    "per": True,               # prioritized replay (else uniform)
    "per_alpha": 0.6,
    "per_beta0": 0.4,
    "per_beta_steps": 60_000,  # sample calls to anneal beta to 1 (the reference: +1e-5 per call)
    "priority_rule": "mean",   # combining several learners' TD errors: mean (reference) or max
    "obs_dtype": "float32",    # buffer storage of observations: float32, float16 or bfloat16
    "coordinator_action": 0,   # the fixed coordinator's directive index on discrete-directive scenarios
}

# The DQN learner's own keys; a DQN used inside another family (the AT role of `sac`/`maddpg`)
# has them under `<family>.dqn`.
DQN_DEFAULTS = {
    "lr": 3e-4,
    "double": True,            # double DQN target: online argmax, target network value
    "dueling": True,
    "loss": "mse",             # mse (reference) or huber
    "max_grad_norm": 10.0,     # 0: no clipping
    "tau": 1.0,                # target <- tau * online + (1 - tau) * target every target_period steps:
    "target_period": 1000,     # tau 1 = hard copies (reference: every 1000), tau 0.005 & period 1 = Polyak
    "epsilon_start": 1.0,
    "epsilon_end": 0.05,
    "epsilon_decay": 50_000,   # env transitions (all envs of a seed)
    "epsilon_schedule": "exponential",  # eps_end + (start-end) exp(-n/decay) (reference), or linear
}

POSITIVE = ("rollout", "utd", "buffer_size", "batch_size", "gamma", "per_beta_steps")
PER_KEYS = ("per_alpha", "per_beta0", "per_beta_steps")  # the prioritized buffer's (`per: true`)
# `obs_dtype` -> the dtype the replay buffer stores observations in (None: float32, as they come).
OBS_DTYPES = {"float32": None, "float16": jnp.float16, "bfloat16": jnp.bfloat16}


def validate_common(config: dict, family: str) -> None:
    """Checks the shared keys of `config[family]`; ValueError (a ConfigError) naming the key."""
    from jaxsoc.config import ConfigError, check_choice, check_layer_sizes, check_unit_interval, refuse_unread

    c = config[family]
    steps = config["num_envs"] * c["rollout"]
    if c["utd"] * steps < 0.5:
        raise ConfigError(
            f"{family}.utd={c['utd']} gives {c['utd'] * steps:.3g} gradient rounds per update "
            f"({config['num_envs']} envs x rollout {c['rollout']}); raise {family}.rollout or utd")
    if c["batch_size"] > c["buffer_size"]:
        raise ConfigError(f"{family}.batch_size ({c['batch_size']}) exceeds buffer_size ({c['buffer_size']})")
    if steps > c["buffer_size"]:
        raise ConfigError(f"{family}.buffer_size ({c['buffer_size']}) is smaller than one rollout of all envs "
                          f"({config['num_envs']} envs x rollout {c['rollout']} = {steps} transitions)")
    if not 0 <= c["learning_starts"] <= c["buffer_size"]:
        raise ConfigError(f"{family}.learning_starts must be in [0, buffer_size], got {c['learning_starts']}")
    # Learning starts once a seed's buffer holds this many transitions; a run that never stores
    # them would train nothing while looking like a training run.
    first = max(c["learning_starts"], c["batch_size"])
    stored = config["total_steps"] // steps * steps
    if stored < first:
        raise ConfigError(
            f"{family}: no gradient round would run: learning starts at {first:,} transitions per seed "
            f"(max of learning_starts and batch_size) and total_steps {config['total_steps']:,} stores "
            f"{stored:,}; lower {family}.learning_starts or raise total_steps")
    check_choice(f"{family}.obs_dtype", c["obs_dtype"], OBS_DTYPES)
    check_choice(f"{family}.priority_rule", c["priority_rule"], ("mean", "max"))
    check_layer_sizes(f"{family}.hidden_sizes", c["hidden_sizes"])
    check_unit_interval(f"{family}.gamma", c["gamma"])
    # A negative alpha turns prioritisation upside down (|td|^alpha favours items learnt already).
    if not c["per_alpha"] >= 0:
        raise ConfigError(f"{family}.per_alpha must be >= 0, got {c['per_alpha']!r}")
    check_unit_interval(f"{family}.per_beta0", c["per_beta0"])
    # Uniform replay reads none of the prioritized buffer's keys.
    unread = [k for k in PER_KEYS if c[k] != COMMON_DEFAULTS[k]]
    if unread and not c["per"]:
        refuse_unread(f"{family}.{unread[0]} is read by prioritized replay only, not with {family}.per: false")


def validate_dqn(section: dict, where: str) -> None:
    from jaxsoc.config import ConfigError, check_choice, check_unit_interval

    check_choice(f"{where}.loss", section["loss"], ("mse", "huber"))
    check_choice(f"{where}.epsilon_schedule", section["epsilon_schedule"], ("exponential", "linear"))
    if not 0.0 < section["tau"] <= 1.0 or section["target_period"] < 1:
        raise ConfigError(f"{where}: need 0 < tau <= 1 and target_period >= 1")
    if section["epsilon_decay"] <= 0 or section["lr"] <= 0:
        raise ConfigError(f"{where}: epsilon_decay and lr must be positive")
    for key in ("epsilon_start", "epsilon_end"):  # probabilities of a random action
        check_unit_interval(f"{where}.{key}", section[key])
    check_clip_norm(section, where)


def check_clip_norm(section: dict, where: str) -> None:
    """ConfigError for a negative `max_grad_norm` (0 means no clipping, as `clipped_adam` reads it;
    a negative one read the same, while config.yaml showed a limit)."""
    from jaxsoc.config import ConfigError

    if not section["max_grad_norm"] >= 0:
        raise ConfigError(f"{where}.max_grad_norm must be >= 0 (0: no clipping), got {section['max_grad_norm']!r}")


# ------------------------------------------------------------------------------ shared maths
def gradient_step(loss_fn: Callable, params: PyTree, opt_state: PyTree,
                  optimizer: optax.GradientTransformation, has_aux: bool = False):
    """One optimiser step on `loss_fn(params)`: `(loss or (loss, aux), params, opt_state)`."""
    out, grads = jax.value_and_grad(loss_fn, has_aux=has_aux)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return out, optax.apply_updates(params, updates), opt_state


def update_target(online: PyTree, target: PyTree, step: jax.Array, tau: float, period: int) -> PyTree:
    """Every `period` steps, target <- tau * online + (1 - tau) * target (tau 1: a hard copy).

    `step` is the gradient step count after this step's update (1 on the first update), so a
    hard copy every 1000 steps happens after updates 1000, 2000, ...
    A traced `tau` (a sweep's grid point) is always applied as the Polyak average, which at
    tau = 1 is the online network itself (1 * online + 0 * target).
    """
    traced = isinstance(tau, jax.Array)
    soft = optax.incremental_update(online, target, tau) if traced or tau < 1.0 else online
    if period == 1:
        return soft
    return optax.periodic_update(soft, target, step, period)


def epsilon_schedule(start: float, end: float, decay: int, kind: str) -> optax.Schedule:
    """`env_steps -> epsilon`: the reference's `end + (start - end) exp(-n / decay)` or a linear
    ramp from `start` to `end` over `decay` steps (then constant). Written out (optax's
    `exponential_decay` and `linear_schedule`, whose arithmetic this is, branch in Python on
    `decay`) so that every argument may be a traced scalar (a sweep's grid point); the
    validated config has decay > 0."""
    if kind == "linear":
        return lambda n: (start - end) * (1 - jnp.clip(n, 0, decay) / decay) + end
    rate = math.exp(-1.0)
    return lambda n: end + jnp.where(n <= 0, start - end, (start - end) * jnp.power(rate, n / decay))


def copy_tree(tree: PyTree) -> PyTree:
    """A copy with fresh buffers (target networks start equal to, but not aliased with, the
    online ones: donating a state in which two leaves share a buffer fails)."""
    return jax.tree.map(jnp.copy, tree)


def importance_weighted_mean(x: jax.Array, weights: jax.Array) -> jax.Array:
    """`mean(weights * x)` over the batch: PER importance weights scale each item's loss."""
    return jnp.mean(weights * x)


# ------------------------------------------------------------------------------ role actions
@dataclasses.dataclass(frozen=True, eq=False)
class RoleAction:
    """How one SOC role acts under an off-policy team: the learner-side choice layered on the
    env's `common.RoleSpec` (`native_role` is the spec as it is; `binned_role` and
    `coordinator_role` give a Box role discrete choices through a table; `fixed_role` takes the
    role out of learning).

    Attributes:
      role: env agent name.
      kind: "discrete", "continuous" or "fixed".
      size: choices (discrete), action dims (continuous) or the env action's size (fixed; 0 for
        a scalar discrete env action).
      env_dim: size of the role's env action vector (0: the env takes a choice index).
      table: discrete roles whose env action is a vector: `[size, env_dim]` float32, row i is the
        env action of choice i (the QMIX baseline's bins, the v1 coordinator encodings).
      fixed: fixed roles: the env action.
      critic_dim: width of the role's action as a critic input (`as_vector`).
      masked: a discrete role whose choices are the env's own and which the env may forbid
        (`env.get_avail_actions`; not in `env.always_legal`): its agent chooses among the legal
        ones and its targets maximise over them (the buffer keeps its next-state mask).
    """

    role: str
    kind: str
    size: int
    env_dim: int = 0
    table: Optional[np.ndarray] = None
    fixed: Optional[np.ndarray] = None
    masked: bool = False

    @property
    def controlled(self) -> bool:
        return self.kind != "fixed"

    def to_env(self, action: jax.Array) -> jax.Array:
        """The learner's action (any leading batch shape) -> the env's."""
        if self.kind == "fixed":
            raise ValueError(f"{self.role} is fixed: use fixed_env_action")
        if self.table is not None:
            return jnp.asarray(self.table)[action]
        return action

    def fixed_env_action(self, lead: tuple = ()) -> jax.Array:
        value = jnp.asarray(self.fixed)
        return jnp.broadcast_to(value, lead + value.shape)

    @property
    def critic_dim(self) -> int:
        if self.kind == "continuous":
            return self.size
        if self.kind == "discrete":
            return self.size
        return self.env_dim if self.env_dim else int(self.size)

    def as_vector(self, action: Optional[jax.Array], lead: tuple) -> jax.Array:
        """The action as floats `[*lead, critic_dim]` for a centralised critic: one-hot choices,
        continuous vectors as they are, a fixed role's constant env action (one-hot if discrete)."""
        if self.kind == "continuous":
            return action
        if self.kind == "discrete":
            return jax.nn.one_hot(action, self.size, dtype=jnp.float32)
        value = jnp.asarray(self.fixed)
        if value.ndim == 0:  # a fixed discrete env action
            value = jax.nn.one_hot(value, self.size, dtype=jnp.float32)
        return jnp.broadcast_to(value.astype(jnp.float32), lead + value.shape)

    def example(self) -> jax.ShapeDtypeStruct:
        """One stored learner action (for the buffer)."""
        if self.kind == "discrete":
            return jax.ShapeDtypeStruct((), jnp.int32)
        return jax.ShapeDtypeStruct((self.size,), jnp.float32)


def num_segments(env) -> int:
    return int(env.default_params.num_segments)


def bin_table(role: str, n_bins: int, segments: int, env_dim: int, low: float, high: float) -> np.ndarray:
    """The reference QMIX baseline's discretisation of a continuous role, `[n_bins, env_dim]`.

    Bin b acts on segment `b % S` at level `l = b // S` of `L = ceil(n_bins / S)` levels, raw
    value `low + (high - low) * l / (L - 1)`; every other dimension is raw 0. Threat hunter:
    intensity of that segment = the value, its scope = 0.5 (dims `[0, S)` and `[S, 2S)`).
    Response orchestrator: isolate = remediate = the value (dims `[0, S)` and `[S, 2S)`; the
    v2 release dims stay 0, i.e. no release). With 5 segments, 16 and 12 bins this is exactly
    the reference (0.3 + 0.7 l/3 and 0.3 + 0.7 l/2); raw 0 elsewhere still hunts and isolates
    at the env's mid-points (docs/reference.md §2.7).
    """
    levels = max(1, math.ceil(n_bins / segments))
    table = np.zeros((n_bins, env_dim), np.float32)
    for b in range(n_bins):
        seg, level = b % segments, b // segments
        value = high if levels == 1 else low + (high - low) * level / (levels - 1)
        table[b, seg] = value
        if role == "threat_hunter":
            table[b, segments + seg] = 0.5
        elif role == "response_orchestrator":
            table[b, segments + seg] = value
        else:
            raise ValueError(f"no bins for role {role!r}")
    return table


def fixed_role(env, role: str, section: dict) -> RoleAction:
    """A role held at the scripted `constant` policy's action, the fixed coordinator included:
    the v1 all-zero directive (what the env holds after reset; the reference QMIX baseline sends
    no directive), or directive index `coordinator_action` on discrete-directive scenarios
    (default 0: focus segment 0, the first posture, as the `constant` baseline)."""
    import jaxsoc.env as soc

    params = env.default_params
    space = env.action_space(role)
    # A static fact of the team, computed now even when the trainer is built inside a trace (a
    # sweep builds it per grid point inside its one program).
    with jax.ensure_compile_time_eval():
        action = soc.POLICIES["constant"](jax.random.key(0), None, None, params)[role]
        if role == "coordinator" and params.fix_d6_directive:
            action = jnp.asarray(section.get("coordinator_action", 0), jnp.int32)
            if not 0 <= int(action) < space.n:
                raise ConfigError(f"coordinator_action {int(action)} outside 0..{space.n - 1}")
        action = np.asarray(action)
    if action.ndim == 0:
        return RoleAction(role, "fixed", int(space.n), 0, fixed=action)
    return RoleAction(role, "fixed", int(action.shape[0]), int(action.shape[0]), fixed=action)


def coordinator_kind(env) -> Optional[str]:
    """"discrete" (soc-v2 and the D6 scenarios: the env's own directives), "box" (v1's 8-float
    directive) or None (a world without a coordinator: cage4-like, the demos)."""
    if "coordinator" not in env.agents:
        return None
    return "discrete" if hasattr(env.action_space("coordinator"), "n") else "box"


def check_encoding_read(env, key: str, value: str, default: str) -> None:
    """ConfigError for a changed coordinator encoding (`key`) on a world whose coordinator is not
    v1's Box: `coordinator_role` maps 8 choices to a directive vector there only."""
    kind = coordinator_kind(env)
    if value != default and kind != "box":
        has = "has no coordinator" if kind is None else "has a discrete coordinator already (D6)"
        raise ConfigError(f"{key} maps 8 choices to the v1 directive vector; this scenario {has}, "
                          "which would ignore it")


def check_fixed_directive_read(env, key: str, value: int, default: int) -> None:
    """ConfigError for a changed fixed directive index (`key`) on a world without discrete
    directives: `fixed_role` reads it there only (v1's fixed coordinator sends the all-zero
    directive)."""
    kind = coordinator_kind(env)
    if value != default and kind != "discrete":
        has = "has no coordinator" if kind is None else "fixes the all-zero v1 directive"
        raise ConfigError(f"{key} is a directive index of the discrete-directive scenarios; this "
                          f"scenario {has}, which would ignore it")


def native_role(env, role: str) -> RoleAction:
    """A role controlled in its env action space (`common.role_specs`: Discrete -> choices, Box ->
    a vector)."""
    spec = common.role_specs(env)[role]
    if spec.kind == "discrete":
        # An env of one's own need not derive from WorldEnv: without `always_legal`, masks are read.
        return RoleAction(role, "discrete", spec.size, masked=role not in getattr(env, "always_legal", ()))
    return RoleAction(role, "continuous", spec.size, spec.size)


def native_tier2_roles(env, section: dict) -> Dict[str, RoleAction]:
    """`{agent: RoleAction}` in env order: the coordinator fixed (`fixed_role`), every other role
    (the SOC's three under it, or a demo env's agents) controlled in its env action space (the
    `sac` and `maddpg` teams)."""
    return {r: native_role(env, r) if r != "coordinator" else fixed_role(env, r, section) for r in env.agents}


def binned_role(env, role: str, n_bins: int, low: float = 0.3, high: float = 1.0) -> RoleAction:
    """A continuous role controlled through the reference QMIX baseline's bins (`bin_table`)."""
    dim = int(env.action_space(role).shape[0])
    table = bin_table(role, n_bins, num_segments(env), dim, low, high)
    return RoleAction(role, "discrete", n_bins, dim, table=table)


def coordinator_role(env, encoding: str) -> RoleAction:
    """A discrete learned coordinator: the env's own choices on discrete-directive scenarios,
    else 8 choices mapped to the v1 directive by `encoding` ("onehot" as the reference's IQL,
    or "hmarl" as HMARL-SOC's get_directive)."""
    if coordinator_kind(env) == "discrete":
        return native_role(env, "coordinator")
    if encoding not in ("onehot", "hmarl"):
        raise ValueError(f"a discrete v1 coordinator needs encoding onehot or hmarl, got {encoding!r}")
    spec = common.role_specs(env, encoding)["coordinator"]
    table = np.asarray(common.coordinator_to_env(jnp.arange(spec.size), encoding), np.float32)  # [choices, D]
    return RoleAction("coordinator", "discrete", spec.size, table.shape[1], table=table)


# ------------------------------------------------------------------------------------ teams
class Team:
    """Which learner controls which role, as pure functions (subclassed per algorithm).

    Attributes (set by subclasses):
      roles: `{agent: RoleAction}` for every env agent, in env order.
      obs_roles: the roles whose observations the buffer keeps.
      world_state: whether the buffer keeps the env's world state (centralised mixers/critics).
    """

    roles: Dict[str, RoleAction]
    obs_roles: tuple
    world_state: bool = False

    def init(self, key: jax.Array) -> PyTree:
        """The learners' states (parameters, optimiser states, target networks, counters)."""
        raise NotImplementedError

    def act(self, agents: PyTree, obs: Dict[str, jax.Array], key: jax.Array, greedy: bool,
            env_steps: Optional[jax.Array], avail: Dict[str, jax.Array]) -> Dict[str, jax.Array]:
        """Learner actions `{controlled role: action}` for ONE env (`obs[role]` `[obs_dim]`).
        `env_steps` drives exploration schedules; None means the end of the schedule. `avail`:
        `{masked role: bool [n]}` (`Team.avail`), the legal choices."""
        raise NotImplementedError

    def update(self, agents: PyTree, batch: PyTree, weights: jax.Array, key: jax.Array):
        """One gradient round on a sampled batch: `(agents, td_errors [batch], metrics)`; the TD
        errors (non-negative) become PER priorities."""
        raise NotImplementedError

    def schedules(self, env_steps: jax.Array) -> Dict[str, jax.Array]:
        """Exploration values to log (e.g. epsilon)."""
        return {}

    # -- shared helpers ---------------------------------------------------------------------
    @property
    def controlled(self) -> tuple:
        return tuple(r for r, a in self.roles.items() if a.controlled)

    @property
    def masked(self) -> tuple:
        """The roles whose choices the env's avail-action masks restrict (`RoleAction.masked`)."""
        return tuple(r for r, a in self.roles.items() if a.masked)

    def avail(self, env, env_state, env_params) -> Dict[str, jax.Array]:
        """`{masked role: bool [n]}`: the legal choices of the masked roles in ONE env's state."""
        if not self.masked:
            return {}
        masks = env.get_avail_actions(env_state, env_params)
        return {r: masks[r] for r in self.masked}

    def env_actions(self, actions: Dict[str, jax.Array], lead: tuple = ()) -> Dict[str, jax.Array]:
        """Learner actions of the controlled roles (leading shape `lead`) -> env actions of all."""
        return {r: (a.to_env(actions[r]) if a.controlled else a.fixed_env_action(lead))
                for r, a in self.roles.items()}

    def example_transition(self, env) -> PyTree:
        obs = {r: jax.ShapeDtypeStruct(env.observation_space(r).shape, jnp.float32) for r in self.obs_roles}
        item = {
            "obs": obs,
            "next_obs": obs,
            "action": {r: self.roles[r].example() for r in self.controlled},
            "reward": jax.ShapeDtypeStruct((), jnp.float32),
            "discount": jax.ShapeDtypeStruct((), jnp.float32),
        }
        if self.masked:  # the next state's legal choices, for the targets' max
            item["next_avail"] = {r: jax.ShapeDtypeStruct((self.roles[r].size,), jnp.bool_) for r in self.masked}
        if self.world_state:
            ws = jax.ShapeDtypeStruct((env.world_state_size,), jnp.float32)
            item["world_state"] = item["next_world_state"] = ws
        return item


class PerRoleTeam(Team):
    """A team of one agent per controlled role (`agents: {role: agent}`, env order), all updated on
    the same sampled batch, each with its own optimiser; an item's priority is their |TD| errors
    combined by `priority_rule`. Value-based agents (those with an `epsilon` schedule, DQN) act
    epsilon-greedily on it; the others (SAC, MADDPG) by their own exploration.

    Subclasses set `roles`, `agents`, `obs_roles`, `priority_rule`, and may add inputs to a role's
    batch view (`view`), e.g. a centralised critic's.
    """

    agents: Dict[str, Any]
    priority_rule: str

    def init(self, key):
        keys = jax.random.split(key, len(self.agents))
        return {r: a.init(k) for (r, a), k in zip(self.agents.items(), keys)}

    def act(self, agents, obs, key, greedy, env_steps, avail):
        keys = jax.random.split(key, len(self.agents))
        out = {}
        for (r, a), k in zip(self.agents.items(), keys):
            if hasattr(a, "epsilon"):
                out[r] = a.act(agents[r], obs[r], k, greedy, a.epsilon(env_steps), avail.get(r))
            else:
                out[r] = a.act(agents[r], obs[r], k, greedy)
        return out

    def prepare(self, agents, batch) -> Any:
        """Whatever every role's view needs, computed once per round before any agent updates."""
        return None

    def view(self, batch, role: str, agent, prepared) -> Dict[str, jax.Array]:
        """`role`'s batch: its own obs/next_obs/action (and next_avail, a masked role's), the
        team's reward and discount `[B, ...]`."""
        view = {"obs": batch["obs"][role], "next_obs": batch["next_obs"][role], "action": batch["action"][role],
                "reward": batch["reward"], "discount": batch["discount"]}
        if role in self.masked:
            view["next_avail"] = batch["next_avail"][role]
        return view

    def update(self, agents, batch, weights, key):
        prepared = self.prepare(agents, batch)
        keys = jax.random.split(key, len(self.agents))
        new, tds, metrics = {}, [], {}
        for (r, agent), k in zip(self.agents.items(), keys):
            new[r], td, m = agent.update(agents[r], self.view(batch, r, agent, prepared), weights, k)
            tds.append(td)
            metrics.update({f"{ROLE_ABBREV.get(r, r)}/{name}": v for name, v in m.items()})
        return new, buffers.combine_td_errors(tds, self.priority_rule), metrics

    def schedules(self, env_steps):
        explorers = [a for a in self.agents.values() if hasattr(a, "epsilon")]
        return {"epsilon": explorers[0].epsilon(env_steps)} if explorers else {}


def _is_obs(names: tuple) -> bool:
    return buffers.default_is_obs(names) or any("world_state" in n for n in names)


def init_buffer(section: dict, example: PyTree):
    """The replay buffer of a config section (`per`, `buffer_size`, `obs_dtype`, PER keys)."""
    kw = dict(obs_dtype=OBS_DTYPES[section["obs_dtype"]], is_obs=_is_obs)
    if section["per"]:
        return buffers.init_prioritized(example, section["buffer_size"], alpha=section["per_alpha"],
                                        beta0=section["per_beta0"], beta_steps=section["per_beta_steps"], **kw)
    return buffers.init(example, section["buffer_size"], **kw)


def sample_batch(buffer, key: jax.Array, batch_size: int):
    """`(buffer, batch, weights [B], indices [B])`: PER with IS weights, or uniform (weights 1)."""
    if isinstance(buffer, buffers.PrioritizedState):
        buffer, s = buffers.sample_prioritized(buffer, key, batch_size)
        return buffer, s.items, s.weights, s.indices
    items, indices = buffers.sample(buffer, key, batch_size)
    return buffer, items, jnp.ones((batch_size,), jnp.float32), indices


def learn_round(team: Team, agents, buffer, key: jax.Array, batch_size: int):
    """One update round: sample, `team.update`, and (PER) priorities <- TD errors.
    Returns `(agents, buffer, metrics)`."""
    k_sample, k_update = jax.random.split(key)
    buffer, batch, weights, indices = sample_batch(buffer, k_sample, batch_size)
    agents, td, metrics = team.update(agents, batch, weights, k_update)
    if isinstance(buffer, buffers.PrioritizedState):
        buffer = buffers.update_priorities(buffer, indices, td)
    return agents, buffer, metrics


def learn_rounds(round_fn: Callable, learner: PyTree, buffer, key: jax.Array, rounds: int, ready: jax.Array):
    """`rounds` update rounds (a `lax.scan`) when `ready`, else nothing: the public hook every
    off-policy trainer (this module's and the hierarchical team's) learns through.

    Args:
      round_fn: `(learner, buffer, key) -> (learner, buffer, metrics)`, one round: sample from
        `buffer`, update `learner` (any pytree: the team's agent states, plus whatever else the
        caller's rounds carry), write new PER priorities into the returned buffer.
      ready: bool `[]`, e.g. `buffers.can_sample(buffer, learning_starts)`.

    Returns `(learner, buffer, metrics)`: the metrics averaged over the rounds, NaN when not ready.
    The buffer's storage is only read while learning: the rounds carry (and the cond selects) its
    priority part alone, so that vmapped over seeds (cond -> select) only parameters and the PER
    tree are selected, never the storage.
    """
    def learn(learner, buffer, key):
        def body(carry, k):
            learner, part = carry
            learner, buf, metrics = round_fn(learner, buffers.with_priority_part(buffer, part), k)
            return (learner, buffers.priority_part(buf)), metrics

        (learner, part), metrics = jax.lax.scan(body, (learner, buffers.priority_part(buffer)),
                                                jax.random.split(key, rounds))
        return learner, part, jax.tree.map(jnp.mean, metrics)

    skipped = jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype),
                           jax.eval_shape(learn, learner, buffer, key)[2])
    learner, part, metrics = jax.lax.cond(
        ready, learn, lambda l, b, k: (l, buffers.priority_part(b), skipped), learner, buffer, key)
    return learner, buffers.with_priority_part(buffer, part), metrics


# ---------------------------------------------------------------------------------- trainer
class OffPolicyState(NamedTuple):
    """Train state of one seed.

    agents: the team's learner states; buffer: the replay buffer (`ReplayState` or
    `PrioritizedState`); env_state/obs: `[num_envs, ...]`; world_state: `[num_envs, ws]` or
    None; key; env_steps: transitions collected; grad_steps: update rounds done.
    """

    agents: PyTree
    buffer: PyTree
    env_state: PyTree
    obs: PyTree
    world_state: Optional[jax.Array]
    key: jax.Array
    env_steps: jax.Array
    grad_steps: jax.Array


# --------------------------------------------------------------------- checkpoints before masks
def is_mask_path(path) -> bool:
    """Whether a key path (`jax.tree_util`) leads to a `next_avail` mask."""
    return any(getattr(k, "key", None) == "next_avail" for k in path)


def without_masks(tree: PyTree) -> Optional[PyTree]:
    """`tree` (a train state, or its abstract layout) without the buffer's `next_avail` masks, the
    layout of a checkpoint saved before 2026-12-07 (when they were added); None when it has none.
    Rebuilt container by container (dicts, named tuples, dataclasses such as the buffers)."""
    if not any(is_mask_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]):
        return None

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "next_avail"}
        if isinstance(x, tuple) and hasattr(x, "_fields"):
            return type(x)(*(strip(v) for v in x))
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return dataclasses.replace(x, **{f.name: strip(getattr(x, f.name)) for f in dataclasses.fields(x)})
        if isinstance(x, (list, tuple)):
            return type(x)(strip(v) for v in x)
        return x

    return strip(tree)


def with_legal_masks(old_state: PyTree, abstract_state: PyTree, wanted: Optional[list] = None) -> PyTree:
    """A state restored in `without_masks`' layout, laid out as `abstract_state`: every stored
    transition's `next_avail` all True (what its targets assumed when it was stored), placed with
    the abstract leaf's sharding; None where `wanted` (one flag per leaf of `abstract_state`) says
    a leaf was not read."""
    old_leaves = iter(jax.tree.flatten(old_state, is_leaf=lambda x: x is None)[0])
    paths, treedef = jax.tree_util.tree_flatten_with_path(abstract_state)
    out = []
    for i, (path, leaf) in enumerate(paths):
        if not is_mask_path(path):
            out.append(next(old_leaves))
        elif wanted is not None and not wanted[i]:
            out.append(None)
        else:
            out.append(jax.device_put(np.ones(leaf.shape, bool), leaf.sharding))
    return jax.tree_util.tree_unflatten(treedef, out)


def make_trainer(config: dict, env, env_params, team: Team, section: dict) -> Trainer:
    """The `Trainer` that runs `team` on the SOC env with the shared loop (module docstring)."""
    num_envs = config["num_envs"]
    rollout = section["rollout"]
    steps_per_update = num_envs * rollout
    rounds = max(1, int(round(section["utd"] * steps_per_update)))
    batch_size = section["batch_size"]
    learning_starts = max(section["learning_starts"], batch_size)
    agents_order = list(env.agents)
    if team.world_state:
        env = common.with_world_state(env)
        env_params = env_params.replace(with_world_state=True)
    example = team.example_transition(env)

    def act(policy_params, key, obs, env_state, greedy):
        # Learned agents see observations, and the legal choices the env's interface gives.
        return team.env_actions(team.act(policy_params, obs, key, greedy, None,
                                         team.avail(env, env_state, env_params)))

    def init(key):
        k_agents, k_reset, key = jax.random.split(key, 3)
        obs, env_state = common.batched_reset(env, env_params, k_reset, num_envs)
        ws = jax.vmap(env.get_world_state, in_axes=(0, None))(env_state, env_params) if team.world_state else None
        return OffPolicyState(team.init(k_agents), init_buffer(section, example), env_state, obs, ws,
                              key, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    batched_act = jax.vmap(team.act, in_axes=(None, 0, 0, None, None, 0))
    batched_avail = jax.vmap(lambda env_state: team.avail(env, env_state, env_params))  # [num_envs, n]

    def round_fn(agents, buffer, key):
        return learn_round(team, agents, buffer, key, batch_size)

    def env_step(carry, _):
        agents, buffer, env_state, obs, ws, avail, key, env_steps = carry
        key, k_act, k_step = jax.random.split(key, 3)
        actions = batched_act(agents, obs, jax.random.split(k_act, num_envs), False, env_steps, avail)
        next_obs, env_state, rewards, dones, infos = common.batched_step(
            env, env_params, k_step, env_state, team.env_actions(actions, (num_envs,)))
        reward = jnp.mean(jnp.stack([rewards[a] for a in agents_order]), axis=0)
        item = {
            "obs": {r: obs[r] for r in team.obs_roles},
            "next_obs": {r: infos["final_obs"][r] for r in team.obs_roles},
            "action": actions,
            "reward": reward.astype(jnp.float32),
            "discount": infos["discount"].astype(jnp.float32),
        }
        # The new state's masks, once: the next step acts on them, and the buffer keeps them. An
        # episode that ended has its next episode's here, not its last state's (auto-reset);
        # after a termination the target ignores them (discount 0), after a time limit they
        # stand in for the last state's.
        avail = batched_avail(env_state)  # {} where no role is masked
        if team.masked:
            item["next_avail"] = avail
        if team.world_state:
            item["world_state"], item["next_world_state"] = ws, infos["final_world_state"]
            ws = infos["world_state"]
        buffer = buffers.add(buffer, item)
        carry = (agents, buffer, env_state, next_obs, ws, avail, key, env_steps + num_envs)
        return carry, (infos["metrics"], dones["__all__"], reward)

    def update(state: OffPolicyState):
        carry = (state.agents, state.buffer, state.env_state, state.obs, state.world_state,
                 batched_avail(state.env_state), state.key, state.env_steps)
        carry, (ep_metrics, done, reward) = jax.lax.scan(env_step, carry, None, length=rollout)
        agents, buffer, env_state, obs, ws, _, key, env_steps = carry
        key, k_learn = jax.random.split(key)
        ready = buffers.can_sample(buffer, learning_starts)
        agents, buffer, learn_metrics = learn_rounds(round_fn, agents, buffer, k_learn, rounds, ready)
        grad_steps = state.grad_steps + jnp.where(ready, rounds, 0).astype(jnp.int32)

        out = mean_episode_metrics(ep_metrics, done)
        out["reward"] = reward.mean()
        out["env_steps"] = env_steps
        out["grad_steps"] = grad_steps
        out["buffer_size"] = buffer.size
        out.update(learn_metrics)
        out.update(team.schedules(env_steps))
        new = OffPolicyState(agents, buffer, env_state, obs, ws, key, env_steps, grad_steps)
        return new, out

    return per_update_trainer(
        config, steps_per_update, init=init, update=update, act=act,
        policy_params=lambda s: s.agents,
        env_axes=lambda s: OffPolicyState(agents=None, buffer=None, env_state=0, obs=0,
                                          world_state=None if s.world_state is None else 0,
                                          key=None, env_steps=None, grad_steps=None),
    )


def rounds_per_update(config: dict, section: dict) -> int:
    """Update rounds in one `Trainer.update` (for reports)."""
    return max(1, int(round(section["utd"] * config["num_envs"] * section["rollout"])))


def critic_dims(roles: Dict[str, RoleAction]) -> Dict[str, int]:
    return {r: a.critic_dim for r, a in roles.items()}
