"""Machinery shared by the on-policy learners: the team's networks, rollouts, returns, SGD.

PPO (`ppo.py`: IPPO, MAPPO, Single-DRL) and advantage actor-critic (`a2c.py`: IAC, MAAC) differ
only in their loss and in how many passes they make over a rollout; everything else lives here.

  * `Policy`: the team's actors. Each role has its own network, spaces and parameters
    (heterogeneous agents, no padding), or, for Single-DRL, one network reads the concatenated
    observation and has one head per role. Discrete heads are `MaskedCategorical`s over the env's
    avail actions, MultiDiscrete ones (a choice per host) `FactoredCategorical`s with a row of
    logits per entry; continuous heads are `TanhGaussian`s whose *pre-tanh* sample `u` is what a
    rollout stores (the env gets `tanh(u)`), so log-probabilities are exact:
    `log_prob_from_pre_tanh(u)`, never an `atanh` of a clipped action (the reference's D23 bug).
  * `Critic`: state values `[..., C]`, one column per value head: a centralised critic on the
    env's world state ("world", C = 1), one local critic per role on its own observation
    ("local", C = number of roles), one critic on the concatenated observation ("joint",
    Single-DRL, C = 1), or one critic per role on the world state ("world_per_role", C = number
    of roles: IPPO's structure with MAPPO's input, an ablation). Rewards are the team's (every
    role gets the same scalar).
  * `make_rollout`: `T` steps of `N` auto-resetting envs in one `lax.scan`, acting with the policy.
  * `next_values` / `gae`: advantages that bootstrap through time-limit truncation (from the env's
    `infos["final_obs"]` / `["final_world_state"]`) but not through termination, read from
    `infos["terminated"]` / `["truncated"]` (never `infos["discount"]`: under `hmarl-soc-v1` it
    treats truncation as terminal on purpose, docs/reference.md §4 D12).
  * `sgd`: epochs x shuffled minibatches of optax updates on a flat batch; `per_network_optimizer`.

Shapes: `T` rollout steps, `N` envs, `B` = flattened samples, `C` value columns. Observations are
`{role: [..., obs_dim]}` dicts in `env.agents` order; stored actions are `int32 [...]` (discrete),
`int32 [..., E]` (multidiscrete: E entries) or `f32 [..., d]` pre-tanh (continuous).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxsoc.algos.common import RoleSpec, clipped_adam, to_env_actions
from jaxsoc.argtypes import is_number
from jaxsoc.distributions import FactoredCategorical, MaskedCategorical, TanhGaussian
from jaxsoc.env.defenders import reads_directive
from jaxsoc.networks import MLP, CategoricalActor, TanhGaussianActor, ValueCritic, dense

Obs = Dict[str, jax.Array]
Dist = Any  # MaskedCategorical (FactoredCategorical) | TanhGaussian

CHOOSING = ("discrete", "multidiscrete")  # the RoleSpec kinds whose heads are logits

CRITICS = ("world", "local", "joint", "world_per_role")
WORLD_CRITICS = ("world", "world_per_role")  # read the env's world state (the trainer asks the env for it)
PER_ROLE_CRITICS = ("local", "world_per_role")  # one network and value column per role

# The config keys every on-policy learner built on this module shares, with one meaning and one
# default (ppo, a2c, trpo, impala, and the learners built on ppo): each learner's DEFAULTS spreads
# these and adds its own.
TEAM_DEFAULTS = {
    "adam_eps": 1.0e-5,
    "max_grad_norm": 0.5,        # per network
    "gamma": 0.99,
    "reward_scale": 1.0,         # rewards are multiplied by this before anything else
    "hidden_sizes": [256, 256],  # every actor and critic; the reference's "3-layer MLP, 256 hidden"
    "activation": "relu",
    "log_std_init": -0.5,        # continuous heads: state-independent pre-tanh log-std
    "log_std_min": -5.0,
    "log_std_max": 2.0,
    "coordinator": "native",     # native | hmarl | onehot (v1 only), see jaxsoc.algos.common
    "bootstrap_truncation": True,  # False: a time-limit cut is terminal (the reference's D12)
    "decisions_only": True,      # coordinator loss only on steps where the env reads it (every K)
}


# ----------------------------------------------------------------------------- actors
class SharedActor(nn.Module):
    """Single-DRL's actor: one torso on the concatenated observation, one head per role.

    `[..., sum(obs_dim)] -> {role: logits [..., n] | [..., E, n] | (mean, log_std) [..., d]}`. Continuous
    heads have a state-independent log-std vector (as the reference's Single-DRL).
    """

    specs: Tuple[RoleSpec, ...]
    hidden_sizes: Sequence[int]
    activation: str = "relu"
    log_std_init: float = -0.5
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, x: jax.Array) -> Dict[str, Any]:
        h = MLP(self.hidden_sizes, activation=self.activation, name="torso")(x)
        out: Dict[str, Any] = {}
        for s in self.specs:
            if s.kind in CHOOSING:
                out[s.name] = head_logits(s, dense(s.logits_size, 0.01, name=f"{s.name}_logits")(h))
            else:
                mean = dense(s.size, 0.01, name=f"{s.name}_mean")(h)
                log_std = self.param(f"{s.name}_log_std", nn.initializers.constant(self.log_std_init),
                                     (s.size,))
                log_std = jnp.clip(jnp.broadcast_to(log_std, mean.shape), self.log_std_min, self.log_std_max)
                out[s.name] = (mean, log_std)
        return out


@dataclasses.dataclass(frozen=True)
class Policy:
    """The team's actors (see the module docstring). A static Python object; params are a pytree.

    Attributes:
      specs: the roles in `env.agents` order.
      shared: False: one network per role on its own observation (IPPO, MAPPO, IAC, MAAC).
        True: one network on the concatenated observation with a head per role (Single-DRL).
      hidden_sizes, activation: the MLP torso of every actor.
      log_std_init, log_std_min, log_std_max: the state-independent pre-tanh log-std of the
        continuous heads (PPO style), clipped to [min, max].
    """

    specs: Tuple[RoleSpec, ...]
    shared: bool = False
    hidden_sizes: Tuple[int, ...] = (256, 256)
    activation: str = "relu"
    log_std_init: float = -0.5
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    @property
    def roles(self) -> Tuple[str, ...]:
        return tuple(s.name for s in self.specs)

    def role_module(self, s: RoleSpec) -> nn.Module:
        """The network of role `s` when not `shared` (a subclass may give some roles another one:
        `comm.CommPolicy`'s talking roles)."""
        if s.kind in CHOOSING:
            return CategoricalActor(s.logits_size, self.hidden_sizes, self.activation)
        return TanhGaussianActor(s.size, self.hidden_sizes, self.activation, state_dependent_std=False,
                                 log_std_init=self.log_std_init, log_std_min=self.log_std_min,
                                 log_std_max=self.log_std_max)

    def _shared_module(self) -> SharedActor:
        return SharedActor(self.specs, self.hidden_sizes, self.activation, self.log_std_init,
                           self.log_std_min, self.log_std_max)

    def init(self, key: jax.Array) -> Any:
        """Parameters: `{role: params}`, or one params tree when `shared`."""
        if self.shared:
            x = jnp.zeros((1, sum(s.obs_dim for s in self.specs)), jnp.float32)
            return self._shared_module().init(key, x)
        keys = jax.random.split(key, len(self.specs))
        return {s.name: self.role_module(s).init(k, jnp.zeros((1, s.obs_dim), jnp.float32))
                for k, s in zip(keys, self.specs)}

    def outputs(self, params: Any, obs: Obs) -> Dict[str, Any]:
        """`{role: logits [..., n] | [..., E, n] | (mean, log_std) [..., d]}` for observations
        `{role: [..., obs_dim]}`."""
        if self.shared:
            return self._shared_module().apply(params, concat_obs(obs, self.roles))
        return {s.name: head_logits(s, self.role_module(s).apply(params[s.name], obs[s.name]))
                for s in self.specs}

    def dists(self, params: Any, obs: Obs, masks: Dict[str, jax.Array]) -> Dict[str, Dist]:
        """`{role: distribution}`; `masks` holds `[..., n]` (`[..., E, n]`) avail actions for the
        choosing roles."""
        out = self.outputs(params, obs)
        dists: Dict[str, Dist] = {}
        for s in self.specs:
            if s.kind == "discrete":
                dists[s.name] = MaskedCategorical(out[s.name], masks.get(s.name))
            elif s.kind == "multidiscrete":
                dists[s.name] = FactoredCategorical(out[s.name], masks.get(s.name))
            else:
                dists[s.name] = TanhGaussian(*out[s.name])
        return dists

    def masks(self, env_masks: Dict[str, jax.Array]) -> Dict[str, jax.Array]:
        """The env's avail-action masks for the choosing roles, `{role: bool [..., n]}` (`[..., E, n]`
        for a multidiscrete role, an entry's choices beyond its own count masked too).

        A role whose learner-side choices are not the env's (a coordinator encoding on v1's Box
        coordinator, `jaxsoc.algos.common`) has every choice allowed.
        """
        out = {}
        for s in self.specs:
            if s.kind not in CHOOSING:
                continue
            m = env_masks[s.name]
            if s.kind == "multidiscrete":
                m = m.astype(bool) & s.choice_mask()
            elif m.shape[-1] != s.size:
                m = jnp.ones(m.shape[:-1] + (s.size,), bool)
            out[s.name] = m
        return out


def head_logits(spec: RoleSpec, flat: jax.Array) -> jax.Array:
    """A choosing head's flat output `[..., logits_size]` as its distribution reads it: as it is
    for a discrete role, `[..., E, n]` (a row per entry) for a multidiscrete one."""
    if spec.kind == "multidiscrete":
        return flat.reshape(flat.shape[:-1] + (spec.entries, spec.size))
    return flat


def concat_obs(obs: Obs, roles: Sequence[str]) -> jax.Array:
    """`[..., sum(obs_dim)]`: the roles' observations side by side, in `roles` order."""
    return jnp.concatenate([obs[r] for r in roles], axis=-1)


def sample(dists: Dict[str, Dist], key: jax.Array) -> Tuple[Dict[str, jax.Array], Dict[str, jax.Array]]:
    """`(actions, log_probs)` per role: int32 choices `[*batch]` (`[*batch, heads]` for a
    factored head) or pre-tanh `u` `[*batch, dim]`, and their exact log-probs `[*batch]`; `batch`
    is the distributions' batch shape (e.g. `[num_envs]`).

    All roles' noise comes from ONE uniform draw (Gumbel noise for the choices, Gaussian noise
    by the inverse normal CDF for the continuous heads): every threefry call compiles to its own
    large XLA:CPU kernel (~0.5 s of compile time each), and a rollout step is compiled into every
    training program.
    """
    def event(d):  # the shape of one action's noise: the logits', or the Gaussian's dims
        return d.logits.shape[len(batch):] if isinstance(d, MaskedCategorical) else d.mean.shape[-1:]

    first = next(iter(dists.values()))
    batch = first.batch_shape
    widths = {role: math.prod(event(d)) for role, d in dists.items()}
    tiny = jnp.finfo(jnp.float32).tiny
    u = jax.random.uniform(key, batch + (sum(widths.values()),), minval=tiny, maxval=1.0)
    actions, start = {}, 0
    for role, d in dists.items():
        noise = u[..., start:start + widths[role]].reshape(batch + event(d))
        start += widths[role]
        if isinstance(d, MaskedCategorical):
            # Gumbel-max over the allowed choices (of each entry): the mode of the perturbed
            # masked distribution.
            actions[role] = type(d)(d.log_probs - jnp.log(-jnp.log(noise)), d.mask).mode()
        else:
            eps = jax.scipy.special.ndtri(noise)
            actions[role] = d.mean + jnp.exp(d.log_std) * eps
    return actions, log_probs_of(dists, actions)


def log_probs_of(dists: Dict[str, Dist], actions: Dict[str, jax.Array]) -> Dict[str, jax.Array]:
    """`{role: [...]}` log-probabilities of stored actions (choices, or pre-tanh samples)."""
    return {role: (d.log_prob(actions[role]) if isinstance(d, MaskedCategorical)
                   else d.log_prob_from_pre_tanh(actions[role]))
            for role, d in dists.items()}


def entropies(dists: Dict[str, Dist]) -> Dict[str, jax.Array]:
    """`{role: [...]}`: exact for discrete heads; for tanh-Gaussians the entropy of the pre-tanh
    Gaussian (closed form, an upper bound of the squashed one: the usual PPO entropy bonus)."""
    return {role: (d.entropy() if isinstance(d, MaskedCategorical) else d.base_entropy())
            for role, d in dists.items()}


def greedy(dists: Dict[str, Dist]) -> Dict[str, jax.Array]:
    """Greedy stored actions, shaped as `sample`'s: the most likely allowed choice, or the
    pre-tanh mean."""
    return {role: (d.mode() if isinstance(d, MaskedCategorical) else d.mean) for role, d in dists.items()}


def env_actions(actions: Dict[str, jax.Array], dists: Dict[str, Dist]) -> Dict[str, jax.Array]:
    """Stored actions -> the actions the roles take, each of the same shape (`sample`'s):
    choices as they are, `tanh(u)` for Box roles."""
    return {role: (a if isinstance(dists[role], MaskedCategorical) else jnp.tanh(a))
            for role, a in actions.items()}


def make_act(env, env_params, policy: "Policy", coordinator: str = "native") -> Callable:
    """The `Trainer.act` of the team's actors: `(params, key, obs, env_state, greedy) -> actions`
    for ONE env (`obs` `{role: [obs_dim]}`), sampled or greedy, masked by the env's avail actions,
    as the env takes them (`tanh(u)` for Box roles, the coordinator encoded)."""
    modes = greedy  # the module's function; `act`'s argument `greedy` is the switch

    def act(policy_params, key, obs, env_state, greedy):
        masks = policy.masks(env.get_avail_actions(env_state, env_params))
        dists = policy.dists(policy_params, obs, masks)
        actions = modes(dists) if greedy else sample(dists, key)[0]
        return to_env_actions(env_actions(actions, dists), coordinator)

    return act


# ----------------------------------------------------------------------------- critics
@dataclasses.dataclass(frozen=True)
class Critic:
    """State values `[..., C]` (see the module docstring).

    Attributes:
      kind: "world" (V(world state), C = 1), "local" (V_i(obs_i) per role, C = roles),
        "joint" (V(concatenated obs), C = 1) or "world_per_role" (V_i(world state), C = roles).
      roles: the roles in `env.agents` order.
      hidden_sizes, activation: the MLP of every critic.
      observers: the env's `world_state_observers`: the agents whose observations open its world
        state. A world critic's trajectories keep only the rest of it (`kept`) and rebuild the
        whole from the observations they store anyway (`source_kept`): on soc-v2 23 floats per
        step instead of 336 in the rollout's output, the batch and every epoch's shuffle (14 %
        of MAPPO's update memory at Table II's shape; no measurable time on a CPU,
        docs/benchmarks.md). () keeps the whole world state.
    """

    kind: str
    roles: Tuple[str, ...]
    hidden_sizes: Tuple[int, ...] = (256, 256)
    activation: str = "relu"
    observers: Tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in CRITICS:
            raise ValueError(f"unknown critic {self.kind!r}; use one of {CRITICS}")

    @property
    def columns(self) -> int:
        return len(self.roles) if self.kind in PER_ROLE_CRITICS else 1

    def column(self, role: str) -> int:
        """The value column whose advantages train `role`'s actor."""
        return self.roles.index(role) if self.kind in PER_ROLE_CRITICS else 0

    def source(self, obs: Obs, world_state: Optional[jax.Array]) -> Any:
        """What the critic reads: the world state (`WORLD_CRITICS`) or the observations."""
        return world_state if self.kind in WORLD_CRITICS else obs

    def kept(self, obs: Obs, world_state: Optional[jax.Array]) -> Optional[jax.Array]:
        """`[..., W - lead]`: what a trajectory keeps of a world state `[..., W]`, the features after
        the `observers`' observations (`lead` their summed widths); the whole of it without
        observers; None without a world critic or when nothing follows the observations (a
        zero-width array could not be reshaped into a batch)."""
        if self.kind not in WORLD_CRITICS:
            return None
        if not self.observers:
            return world_state
        lead = sum(obs[a].shape[-1] for a in self.observers)
        return world_state[..., lead:] if world_state.shape[-1] > lead else None

    def source_kept(self, obs: Obs, kept: Optional[jax.Array]) -> Any:
        """`source` from the observations and a world state as `kept` (bit for bit the same input)."""
        if self.kind in WORLD_CRITICS and self.observers:
            return jnp.concatenate([obs[a] for a in self.observers] + ([] if kept is None else [kept]), axis=-1)
        return self.source(obs, kept)

    def _module(self) -> ValueCritic:
        return ValueCritic(self.hidden_sizes, self.activation)

    def init(self, key: jax.Array, obs_dims: Dict[str, int], world_dim: int) -> Any:
        m = self._module()
        if self.kind == "world":
            return m.init(key, jnp.zeros((1, world_dim), jnp.float32))
        if self.kind == "joint":
            return m.init(key, jnp.zeros((1, sum(obs_dims.values())), jnp.float32))
        keys = jax.random.split(key, len(self.roles))
        dims = {r: world_dim if self.kind in WORLD_CRITICS else obs_dims[r] for r in self.roles}
        return {r: m.init(k, jnp.zeros((1, dims[r]), jnp.float32)) for k, r in zip(keys, self.roles)}

    def values(self, params: Any, source: Any) -> jax.Array:
        """`[..., C]` values of a `source` (see `source`) with leading axes `[...]`."""
        m = self._module()
        if self.kind == "world":
            return m.apply(params, source)[..., None]
        if self.kind == "joint":
            return m.apply(params, concat_obs(source, self.roles))[..., None]
        inputs = {r: source for r in self.roles} if self.kind in WORLD_CRITICS else source  # per role
        return jnp.stack([m.apply(params[r], inputs[r]) for r in self.roles], axis=-1)


# ----------------------------------------------------------------------------- rollouts
class Acted(NamedTuple):
    """What the team's policy did, leading axes `[...]` on every leaf (`[T, N]` in a rollout,
    `[B]` in a flat batch).

    obs: `{role: [..., obs_dim]}` the observations acted on.
    masks: `{role: bool [..., n]}` (`[..., E, n]` per entry) avail actions of the choosing roles.
    actions: `{role: int32 [...] | int32 [..., E] | f32 [..., d]}` choices (per entry), or pre-tanh samples.
    log_probs: `{role: [...]}` their log-probabilities under the acting policy.
    weights: `{role: [...]}` 1 where the role's action took effect, else 0 (the env reads the
      coordinator only on its directive schedule; see `make_rollout`'s `decisions_only`).
    """

    obs: Obs
    masks: Dict[str, jax.Array]
    actions: Dict[str, jax.Array]
    log_probs: Dict[str, jax.Array]
    weights: Dict[str, jax.Array]


class Trajectory(NamedTuple):
    """A rollout, `[T, N, ...]` on every leaf.

    acted: the policy's observations, masks, actions, log-probs and weights (`Acted`).
    world_state: `[T, N, K]` the world state that goes with them as the critic keeps it
      (`Critic.kept`: without the observations it repeats; world critics only, else None).
      `Critic.source_kept(acted.obs, world_state)` is the critic's input.
    rewards: `[T, N]` team reward.
    terminated: `[T, N]` the episode ended without a value after it (no bootstrap).
    done: `[T, N]` the episode ended (terminated or truncated): the return stops here.
    """

    acted: Acted
    world_state: Optional[jax.Array]
    rewards: jax.Array
    terminated: jax.Array
    done: jax.Array


class Truncations(NamedTuple):
    """Where a rollout's episodes were cut by the time limit, and what came after.

    Each env truncates at most once every `max_steps` steps, so `S = ceil(T / max_steps)` slots
    per env hold every truncation of a rollout (one slot whenever T <= max_steps); the critic
    reads the `S x N` terminal inputs once after the rollout instead of `T x N` of them.

    source: the critic's input at the truncated state, `[S, N, ...]`.
    step: `int32 [S, N]`, the rollout step of each, -1 for an unused slot.
    count: `int32 [N]`, slots used.
    """

    source: Any
    step: jax.Array
    count: jax.Array


def make_rollout(env, env_params, policy: Policy, critic: Critic, num_envs: int, length: int, *,
                 coordinator: str = "native", decisions_only: bool = True,
                 bootstrap_truncation: bool = True, max_steps: int | None = None,
                 to_env: Optional[Callable[[Dict[str, jax.Array]], Dict[str, jax.Array]]] = None) -> Callable:
    """`rollout(actor_params, env_state, obs, world_state, key) -> (carry, traj, truncs, metrics)`.

    Steps `num_envs` envs `length` times with actions sampled from `policy`; `carry` is the new
    `(env_state, obs, world_state)`, `traj` a `Trajectory`, `truncs` the `Truncations` (None
    when truncation is not bootstrapped), `metrics` the env's `infos["metrics"]` and
    `dones["__all__"]`, `[T, N]`, for `mean_episode_metrics`.

    decisions_only: the env reads the coordinator's action only on the steps of its directive
      schedule (`defenders.reads_directive`; it holds it in between); with True the coordinator's
      other actions get weight 0, so its policy gradient counts only the actions that acted.
    bootstrap_truncation: True: a time-limit truncation is not the end of the return: its
      advantage bootstraps from the value of the terminal state (`final_obs`/`final_world_state`).
      False: truncation is treated like termination (value 0 after it), as the reference did.
    to_env: the env actions of the stored actions `{role: [N, ...]}`, for a learner whose choices
      are not the env's (COMA's binned Box roles, `coma.py`); None: the policy's heads as they
      are (`env_actions`, then the `coordinator` encoding).
    """
    batched_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    batched_avail = jax.vmap(env.get_avail_actions, in_axes=(0, None))
    weigh_coordinator = decisions_only and "coordinator" in policy.roles
    slots = -(-length // max_steps) if max_steps else length

    def rollout(actor_params, env_state, obs, world_state, key):
        def step(carry, t):
            env_state, obs, world_state, key, truncs = carry
            key, k_act, k_env = jax.random.split(key, 3)
            masks = policy.masks(batched_avail(env_state, env_params))
            dists = policy.dists(actor_params, obs, masks)
            actions, log_probs = sample(dists, k_act)
            weights = {r: jnp.ones((num_envs,), jnp.float32) for r in policy.roles}
            if weigh_coordinator:
                weights["coordinator"] = reads_directive(env_state.t, env_params).astype(jnp.float32)
            taken = (to_env_actions(env_actions(actions, dists), coordinator) if to_env is None
                     else to_env(actions))
            next_obs, env_state, rewards, dones, infos = batched_step(
                jax.random.split(k_env, num_envs), env_state, taken, env_params)
            done = dones["__all__"]
            team_reward = jnp.mean(jnp.stack([rewards[r] for r in env.agents]), axis=0)
            next_world_state = infos["world_state"] if critic.kind in WORLD_CRITICS else None
            if bootstrap_truncation:
                terminated = infos["terminated"]
                cut = infos["truncated"] & ~terminated  # needs the terminal state's value
                hit = cut[None] & (jnp.arange(slots)[:, None] == truncs.count[None])  # [S, N]
                final = critic.source(infos["final_obs"], infos.get("final_world_state"))
                source = jax.tree.map(
                    lambda buf, new: jnp.where(hit.reshape(hit.shape + (1,) * (new.ndim - 1)), new[None], buf),
                    truncs.source, final)
                truncs = Truncations(source, jnp.where(hit, t, truncs.step), truncs.count + cut)
            else:
                terminated = done
            traj = Trajectory(Acted(obs, masks, actions, log_probs, weights), critic.kept(obs, world_state),
                              team_reward, terminated, done)
            carry = (env_state, next_obs, next_world_state, key, truncs)
            return carry, (traj, (infos["metrics"], done))

        truncs = None
        if bootstrap_truncation:
            example = critic.source(obs, world_state)
            truncs = Truncations(
                jax.tree.map(lambda x: jnp.zeros((slots,) + x.shape, x.dtype), example),
                jnp.full((slots, num_envs), -1, jnp.int32), jnp.zeros((num_envs,), jnp.int32))
        (env_state, obs, world_state, _, truncs), (traj, metrics) = jax.lax.scan(
            step, (env_state, obs, world_state, key, truncs), jnp.arange(length))
        return (env_state, obs, world_state), traj, truncs, metrics

    return rollout


# ----------------------------------------------------------------------------- returns
def next_values(values: jax.Array, last_values: jax.Array, truncs: Optional[Truncations],
                truncated_values: Optional[jax.Array]) -> jax.Array:
    """The value after each step, `[T, N, C]`, for bootstrapping.

    values: `[T, N, C]` V(s_t) of the states acted on; last_values: `[N, C]` V(s_T) after the
      rollout; truncs / truncated_values (`[S, N, C]`): the time-limit truncations and the values
      of their terminal states. After a reset s_{t+1} is the next episode's first state, so a
      truncated step's value comes from its terminal state instead; a terminated step's value is
      whatever (`gae` multiplies it by 0).
    """
    after = jnp.concatenate([values[1:], last_values[None]], axis=0)
    if truncs is None:
        return after
    steps = jnp.arange(values.shape[0])
    hit = truncs.step[:, None, :] == steps[None, :, None]  # [S, T, N]
    from_terminal = jnp.sum(jnp.where(hit[..., None], truncated_values[:, None], 0.0), axis=0)
    return jnp.where(jnp.any(hit, axis=0)[..., None], from_terminal, after)


def gae(rewards: jax.Array, values: jax.Array, next_values: jax.Array, terminated: jax.Array,
        done: jax.Array, gamma: float, lam: float) -> Tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation (Schulman et al. 2016), backwards over time.

        delta_t = r_t + gamma * (1 - terminated_t) * next_value_t - value_t
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}
        return_t = A_t + value_t

    All arrays `[T, ...]` with equal trailing shapes (broadcast `[T, N, 1]` flags against
    `[T, N, C]` values). A terminated step keeps no value after it; a truncated one
    (done but not terminated) bootstraps from `next_value_t`, the value of its terminal state;
    both stop the sum (the next state belongs to another episode). `lam=1` gives the discounted
    Monte-Carlo return to the rollout's end; `lam=0` the one-step TD error r + gamma V' - V.

    Returns `(advantages, returns)`, `[T, ...]`.
    """
    terminated = terminated.astype(values.dtype)
    done = done.astype(values.dtype)
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values

    def back(next_adv, x):
        delta, d = x
        adv = delta + gamma * lam * (1.0 - d) * next_adv
        return adv, adv

    _, advantages = jax.lax.scan(back, jnp.zeros_like(deltas[0]), (deltas, done), reverse=True)
    return advantages, advantages + values


def explained_variance(values: jax.Array, returns: jax.Array) -> jax.Array:
    """`1 - Var(returns - values) / Var(returns)` over the leading axes, `[C]` (NaN if Var = 0)."""
    axes = tuple(range(values.ndim - 1))
    var = jnp.var(returns, axis=axes)
    return jnp.where(var > 0, 1.0 - jnp.var(returns - values, axis=axes) / jnp.where(var > 0, var, 1.0),
                     jnp.nan)


# ----------------------------------------------------------------------------- optimisation
def per_network_optimizer(params: Any, lr: float, max_grad_norm: float, adam_eps: float,
                   anneal_steps: int | None = None) -> optax.GradientTransformation:
    """Adam with gradient-norm clipping per network (each actor, each critic on its own), as if
    every network had its own optimiser: one role's large gradient never scales another's down.

    `params` is `{"actor": ..., "critic": ...}`; its second level (the roles of per-role networks)
    names the networks. `anneal_steps`: decay the learning rate linearly to 0 over that many
    optimiser steps (None: constant).
    """
    rate = optax.linear_schedule(lr, 0.0, anneal_steps) if anneal_steps else lr

    def one():
        return clipped_adam(rate, max_grad_norm, eps=adam_eps)

    def labels(tree):
        out = {}
        for part, sub in tree.items():
            if isinstance(sub, dict) and "params" not in sub:  # {role: flax variables}
                out[part] = {role: jax.tree.map(lambda _, n=f"{part}/{role}": n, v) for role, v in sub.items()}
            else:
                out[part] = jax.tree.map(lambda _, n=part: n, sub)
        return out

    names = sorted(set(jax.tree.leaves(labels(params))))
    return optax.multi_transform({n: one() for n in names}, labels)


def sgd(key: jax.Array, params: Any, opt_state: Any, batch: Any, loss_fn: Callable,
        optimizer: optax.GradientTransformation, epochs: int, minibatches: int, fraction: float = 1.0):
    """`epochs` passes over `batch` (a pytree of `[B, ...]` leaves), each split into `minibatches`
    shuffled minibatches, one optimiser step per minibatch.

    `fraction` < 1: each pass visits a fresh random `fraction` of the samples (`floor(B * fraction)`
    rounded down to a multiple of `minibatches`, none twice), in `minibatches` steps of that
    smaller size: the same number of optimiser steps for that fraction of the gradient work.
    `loss_fn(params, minibatch) -> (loss, metrics)`. Returns `(params, opt_state, metrics)`, the
    metrics averaged over all steps. With one minibatch of every sample nothing is shuffled (the
    order of a full-batch gradient does not matter).
    """
    size = jax.tree.leaves(batch)[0].shape[0]
    used = pass_samples(size, fraction, minibatches)
    if not 0.0 < fraction <= 1.0 or used < minibatches:
        raise ValueError(f"a pass over {fraction} of {size} samples leaves fewer than {minibatches} minibatches of one")

    def minibatch_step(carry, minibatch):
        params, opt_state = carry
        grads, metrics = jax.grad(loss_fn, has_aux=True)(params, minibatch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), metrics

    def epoch(carry, k):
        if minibatches == 1 and used == size:
            split = jax.tree.map(lambda x: x[None], batch)
        else:
            # argsort of uniforms: a uniformly random permutation from one random draw
            # (jax.random.permutation draws several rounds, each its own compiled kernel); its
            # first `used` entries are a uniformly random subset, in random order.
            perm = jnp.argsort(jax.random.uniform(k, (size,)))[:used]
            split = jax.tree.map(lambda x: x[perm].reshape((minibatches, -1) + x.shape[1:]), batch)
        return jax.lax.scan(minibatch_step, carry, split)

    (params, opt_state), metrics = jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, epochs))
    return params, opt_state, jax.tree.map(jnp.mean, metrics)


def pass_samples(samples: int, fraction: float, minibatches: int) -> int:
    """How many of `samples` one `sgd` pass at `fraction` visits: all at 1, else `floor(samples *
    fraction)` rounded down to a multiple of `minibatches` (fewer than `minibatches` cannot run)."""
    return samples if fraction == 1.0 else int(samples * fraction) // minibatches * minibatches


def check_log_std(section: dict, family: str) -> None:
    """ConfigError unless `log_std_min <= log_std_init <= log_std_max` in `section`: the heads clip
    their log-std to [min, max], so otherwise every continuous head sits at a bound."""
    from jaxsoc.config import ConfigError

    low, init, high = section["log_std_min"], section["log_std_init"], section["log_std_max"]
    if not low <= init <= high:
        raise ConfigError(f"{family}: need log_std_min <= log_std_init <= log_std_max, got {low}, {init}, {high}")


def check_world_keys(config: dict, family: str, specs, agents) -> None:
    """ConfigError for a key of `config[family]` changed from the algorithm's preset
    (`config.preset_section`) that the world (`specs`, its roles; `agents`, its agents) leaves
    unread, as config.yaml would record it: the log-std keys without a continuous role
    (cage4-like), `decisions_only` without a coordinator (cage4-like, soc-hybrid)."""
    from jaxsoc.config import ConfigError, preset_section

    section, preset = config[family], preset_section(config["algo"])
    continuous = any(sp.kind == "continuous" for sp in specs)
    for keys, read, why in ((("log_std_init", "log_std_min", "log_std_max"), continuous, "no continuous action"),
                            (("decisions_only",), "coordinator" in agents, "no coordinator")):
        changed = [k for k in keys if k in section and section[k] != preset.get(k, TEAM_DEFAULTS[k])]
        if changed and not read:
            raise ConfigError(f"{family}.{changed[0]}: this scenario has {why}, which would ignore it")


def check_pass_fraction(key: str, fraction: Any, samples: int, minibatches_key: str, minibatches: int) -> None:
    """ConfigError unless `fraction` (the config key `key`) is a number in (0, 1] whose share of the
    update's `samples` still fills `minibatches` (the key `minibatches_key`) minibatches of one
    sample: what `sgd`'s `fraction` needs, checked before anything is traced."""
    from jaxsoc.config import ConfigError

    if not is_number(fraction) or not 0.0 < fraction <= 1.0:
        raise ConfigError(f"{key} must be a number in (0, 1], got {fraction!r}")
    if fraction < 1.0 and pass_samples(samples, fraction, minibatches) < minibatches:
        raise ConfigError(f"{key} {fraction} of {samples} samples per update leaves fewer than "
                          f"{minibatches_key} ({minibatches}) samples per pass")


def flatten(tree: Any) -> Any:
    """`[T, N, ...] -> [T * N, ...]` on every leaf."""
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


def weighted_average(x: jax.Array, w: jax.Array) -> jax.Array:
    """`sum(x * w) / sum(w)`: the average over the items that count (`w` 0 or 1 per item; a sum of
    weights below 1 divides by 1, so an all-zero `w` gives 0, not NaN)."""
    return jnp.sum(x * w) / jnp.maximum(jnp.sum(w), 1.0)
