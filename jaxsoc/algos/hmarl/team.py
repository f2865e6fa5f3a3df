"""Tier 2: the three learners under the coordinator, and the directive they are conditioned on.

  * threat hunter: `sac.SAC` (twin Q, automatic temperature, tanh-Gaussian);
  * alert triage: `dqn.DQN` (double, dueling, real target network);
  * response orchestrator: `maddpg.MADDPG` with a centralised critic over every role's
    observation and every role's action, the directive included.

Each role's observation is the env's (`common.role_specs`), with the directive in force appended
when `Setup.condition` (the v1 layouts do not show it; the SOC view of soc-v2 does). One update
round (`team_update`) trains all three on sampled transitions (module `train`) and returns their
TD errors for the replay's priorities.

A stored transition (the replay's item, `[capacity, ...]` in the buffer, `[B, ...]` sampled):

    obs, next_obs   {role: f32[obs_dim]}   every role's observation (next: `infos["final_obs"]`)
    action          {tier-2 role: ...}     f32[16] hunter, int32[] triage, f32[dim] orchestrator
    directive       f32[D]                 the directive in force, as a vector (`directive_vector`)
    next_decision   bool[]                 the next step reads a new directive (`reads_directive`)
    reward, discount f32[]                 the team reward; 0 where bootstrapping stops
"""
from __future__ import annotations

from typing import Any, Dict, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc.algos import common
from jaxsoc.algos import offpolicy as op
from jaxsoc.algos.dqn import DQN, dqn_kwargs
from jaxsoc.algos.hmarl.coordinator import Coordinator, num_choices
from jaxsoc.algos.hmarl.defaults import COORDINATOR_DEFAULTS, DEFAULTS
from jaxsoc.config import ConfigError
from jaxsoc.algos.maddpg import MADDPG, maddpg_kwargs
from jaxsoc.algos.sac import SAC, sac_kwargs
from jaxsoc.env import SOCEnv

PyTree = Any
TIER2 = common.TIER2_ROLES


class Setup(NamedTuple):
    """Learner-side facts of one hmarl run on top of the env's role specs (Python values at trace time)."""

    k: int  # the env's directive period (informational: the schedule is `defenders.reads_directive`)
    n_directives: int  # the coordinator's choices (`coordinator.num_choices`)
    directive_dim: int  # width of the directive as a vector (critic input, conditioning)
    discrete_env: bool  # soc-v2: the env takes the directive index
    encoding: str
    condition: bool  # append the directive vector to tier-2 observations
    specs: Dict[str, common.RoleSpec]  # the env's roles (native: the coordinator's Box on v1)
    tier2_obs_dims: Dict[str, int]  # what each tier-2 learner reads: the spec's obs_dim (+ D if condition)
    fixed: np.ndarray  # the fixed env directive (no-coordinator ablation)


def make_setup(config: dict, env: SOCEnv) -> Setup:
    c = config["hmarl"]
    p = env.default_params
    specs = common.role_specs(env)
    discrete_env = p.fix_d6_directive
    n = num_choices(p)
    dim = n if discrete_env else specs["coordinator"].size  # v1: the directive vector itself
    if c["condition_on_directive"] == "auto":
        condition = False  # the SOC view carries the directive; the v1 layouts (as the reference) do not
    else:
        condition = bool(c["condition_on_directive"])
    obs_dims = {r: specs[r].obs_dim + (dim if condition else 0) for r in TIER2}
    # The world decides which of these keys is read (config.validate cannot see it).
    op.check_encoding_read(env, "hmarl.coordinator.encoding", c["coordinator"]["encoding"],
                           COORDINATOR_DEFAULTS["encoding"])
    op.check_fixed_directive_read(env, "hmarl.coordinator_action", c["coordinator_action"],
                                  DEFAULTS["coordinator_action"])
    if discrete_env:
        fixed = np.asarray(c["coordinator_action"], np.int32)
        if not 0 <= int(fixed) < n:
            raise ConfigError(f"hmarl.coordinator_action {int(fixed)} outside 0..{n - 1}")
    else:
        fixed = np.zeros((dim,), np.float32)  # the all-zero directive (what v1 holds after reset)
    return Setup(p.directive_period, n, dim, discrete_env, c["coordinator"]["encoding"], condition, specs,
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
    """The fixed directive (no coordinator) as a vector `[*lead, D]`."""
    v = jnp.asarray(setup.fixed)
    v = jax.nn.one_hot(v, setup.n_directives, dtype=jnp.float32) if setup.discrete_env else v
    return jnp.broadcast_to(v, lead + v.shape)


def tier2_obs(setup: Setup, obs: Dict[str, jax.Array], directive: jax.Array, role: str) -> jax.Array:
    """What `role`'s learner reads: its observation `[..., obs_dim]`, with the directive `[..., D]`
    appended when `setup.condition`."""
    return jnp.concatenate([obs[role], directive], axis=-1) if setup.condition else obs[role]


class Team(NamedTuple):
    """The tier-2 learners (static dataclasses)."""

    th: SAC
    at: DQN
    ro: MADDPG


def make_team(config: dict, setup: Setup) -> Team:
    c = config["hmarl"]
    hidden, gamma = tuple(c["hidden_sizes"]), c["gamma"]
    specs = setup.specs
    th_dim, at_n, ro_dim = (specs[r].size for r in TIER2)
    sac = SAC(setup.tier2_obs_dims["threat_hunter"], th_dim,
              **sac_kwargs({**c["sac"], "hidden_sizes": hidden, "gamma": gamma}))
    dqn = DQN(setup.tier2_obs_dims["alert_triage"], at_n, **dqn_kwargs(c["dqn"], hidden, gamma))
    maddpg = MADDPG(setup.tier2_obs_dims["response_orchestrator"], ro_dim,
                    critic_obs_dim=sum(s.obs_dim for s in specs.values()),
                    others_action_dim=setup.directive_dim + th_dim + at_n,
                    **maddpg_kwargs({**c["maddpg"], "hidden_sizes": hidden, "gamma": gamma}))
    return Team(sac, dqn, maddpg)


def init_team(team: Team, key: jax.Array) -> Dict[str, PyTree]:
    """`{tier-2 role: agent state}`."""
    keys = jax.random.split(key, 3)
    return {"threat_hunter": team.th.init(keys[0]), "alert_triage": team.at.init(keys[1]),
            "response_orchestrator": team.ro.init(keys[2])}


def team_act(team: Team, setup: Setup, agents, obs, directive, key, greedy, env_steps):
    """Tier-2 actions for ONE env (obs `{role: [obs_dim]}`, directive `[D]`)."""
    k1, k2, k3 = jax.random.split(key, 3)
    th = team.th.act(agents["threat_hunter"], tier2_obs(setup, obs, directive, "threat_hunter"), k1, greedy)
    at = team.at.act(agents["alert_triage"], tier2_obs(setup, obs, directive, "alert_triage"), k2, greedy,
                     team.at.epsilon(env_steps))
    ro = team.ro.act(agents["response_orchestrator"], tier2_obs(setup, obs, directive, "response_orchestrator"),
                     k3, greedy)
    return {"threat_hunter": th, "alert_triage": at, "response_orchestrator": ro}


def team_update(team: Team, setup: Setup, coordinator: Coordinator, coord_params, agents, batches, weights, key):
    """One tier-2 round. `batches`/`weights`: one per learner (the same for a shared buffer);
    `coord_params`: the coordinator's actor (None without a coordinator).

    Returns `(agents, (td_th, td_at, td_ro) [B] each, metrics)`.
    """
    b_th, b_at, b_ro = batches
    w_th, w_at, w_ro = weights
    n_at = setup.specs["alert_triage"].size

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
    roles = ("coordinator",) + TIER2
    th_next = team.th.act(agents["threat_hunter"], tier2_obs(setup, b_ro["next_obs"], nd_ro, "threat_hunter"),
                          k3, True)  # deterministic tanh(mean): the hunter's target-style action
    at_next_q = team.at.q_values(agents["alert_triage"].target_params,
                                 tier2_obs(setup, b_ro["next_obs"], nd_ro, "alert_triage"))
    v.update(
        critic_obs=jnp.concatenate([b_ro["obs"][r] for r in roles], axis=-1),
        next_critic_obs=jnp.concatenate([b_ro["next_obs"][r] for r in roles], axis=-1),
        others_action=jnp.concatenate([b_ro["directive"], b_ro["action"]["threat_hunter"],
                                       jax.nn.one_hot(b_ro["action"]["alert_triage"], n_at)], axis=-1),
        next_others_action=jnp.concatenate([nd_ro, th_next, jax.nn.one_hot(jnp.argmax(at_next_q, -1), n_at)],
                                           axis=-1),
    )
    new_ro, td_ro, m_ro = team.ro.update(agents["response_orchestrator"], v, w_ro, k3)
    metrics = {}
    for role, m in (("threat_hunter", m_th), ("alert_triage", m_at), ("response_orchestrator", m_ro)):
        metrics.update({f"{op.ROLE_ABBREV[role]}/{k}": val for k, val in m.items()})
    agents = {"threat_hunter": new_th, "alert_triage": new_at, "response_orchestrator": new_ro}
    return agents, (td_th, td_at, td_ro), metrics


def example_transition(setup: Setup) -> PyTree:
    """One stored transition as shapes (module docstring), for `offpolicy.init_buffer`."""
    f32 = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32)
    obs = {r: f32(s.obs_dim) for r, s in setup.specs.items()}
    th, ro = setup.specs["threat_hunter"].size, setup.specs["response_orchestrator"].size
    return {
        "obs": obs, "next_obs": obs,
        "action": {"threat_hunter": f32(th), "alert_triage": jax.ShapeDtypeStruct((), jnp.int32),
                   "response_orchestrator": f32(ro)},
        "directive": f32(setup.directive_dim),
        "next_decision": jax.ShapeDtypeStruct((), jnp.bool_),
        "reward": f32(), "discount": f32(),
    }
