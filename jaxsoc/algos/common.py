"""What every learner needs to talk to the SOC env: role specs, coordinator encodings, batched steps.

The four roles are heterogeneous (different observation sizes, discrete or continuous actions), so
learners keep one network per role and loop over roles in Python at trace time (a static loop
over four different roles, never over envs or hosts).

Coordinator encodings (`coordinator=` below): the env's own coordinator action is `Box([-1,1]^8)`
under `hmarl-soc-v1` and `Discrete(S * postures)` with the D6 fix. Learners that want a discrete
coordinator on v1 pick how a choice becomes the 8-float directive, as the reference's learners did:
  * "native": the env's space as it is (continuous on v1, discrete with D6);
  * "hmarl":  8 choices mapped by HMARL-SOC's `get_directive` (v1 only; `jaxsoc.env.hmarl_directive`);
  * "onehot": 8 choices mapped to the one-hot directive of the IQL/MAPPO baselines (v1 only).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

import jax
import jax.numpy as jnp
import optax

import jaxsoc.env as env_lib
from jaxsoc.config import ConfigError
from jaxsoc.env import SOCEnv, hmarl_directive
from jaxsoc.env.defenders import DIRECTIVE_DIM
from jaxsoc.env.spaces import Discrete, MultiDiscrete

COORDINATOR_ENCODINGS = ("native", "hmarl", "onehot")
# A discrete coordinator on v1 chooses among 8 directives (HMARL-SOC's get_directive: 2 focus
# values x 4 priority levels; the one-hot baselines: one unit vector per directive dimension).
V1_COORDINATOR_CHOICES = 8
# The roles under the coordinator, in env order: they act every step, under its directive.
TIER2_ROLES = ("threat_hunter", "alert_triage", "response_orchestrator")
# The learners whose heads take one choice per entry of a MultiDiscrete role (`role_specs`'s
# `per_entry`): the on-policy family, on `onpolicy.Policy`. Named in the refusal of the others.
PER_ENTRY_LEARNERS = ("ippo", "mappo", "single-drl", "iac", "maac", "trpo", "matrpo", "impala", "mappo-comm")


@dataclasses.dataclass(frozen=True)
class RoleSpec:
    """One role as the env defines it (its observation width and action space), and, for a v1
    coordinator under an encoding, the choices a learner has instead of its Box.

    Every learner starts from these: the on-policy ones use them as they are, the off-policy
    ones layer their choice of how to act on top (`offpolicy.RoleAction`: binned, encoded or
    fixed), the hierarchical team reads its tier-2 widths from them.
    """

    name: str
    obs_dim: int
    kind: str  # "discrete", "continuous" or "multidiscrete"
    size: int  # choices (discrete; per entry, the most of any, for multidiscrete) or action dimensions (continuous, in [-1, 1])
    nvec: Tuple[int, ...] = ()  # multidiscrete: the choices of each entry (one entry per host)

    @property
    def entries(self) -> int:
        """The entries of a multidiscrete role (its action is int32 `[entries]`); 0 otherwise."""
        return len(self.nvec)

    @property
    def logits_size(self) -> int:
        """The width of a choosing head's flat output: `size`, or `entries * size`."""
        return self.size * max(self.entries, 1)

    def choice_mask(self) -> jax.Array:
        """bool `[entries, size]`: which of the `size` choices each entry of a multidiscrete role
        has (all, when every entry has `size`)."""
        return jnp.arange(self.size)[None, :] < jnp.asarray(self.nvec)[:, None]


def check_no_red_control(env) -> None:
    """ValueError on a scenario with a learnable red agent: the team learners share one team
    reward among `env.agents`, and red's is its negation."""
    if isinstance(env, SOCEnv) and env.default_params.red_control:
        raise ConfigError("this scenario has a learnable red agent (red_control): train it with "
                         "--algo red-ppo or redblue (docs/redblue.md), or the SOC team on soc-v2")


def check_soc_team(algo: str, scenario: str, env) -> None:
    """ConfigError unless `env` is a SOC world (`SOCEnv`: the presets, soc-strategic, scenario
    files) without a learnable red: for the learners built on the SOC roles' action layouts (a
    family module's `SOC_TEAM = True`: the DQN family's binned hunter and responder, COMA's
    binned roles, the HMARL hierarchy), which cannot act for other agents. Checked before the
    team is built (it failed there with an AttributeError or KeyError deep in the setup)."""
    if not isinstance(env, SOCEnv):
        raise ConfigError(
            f"--algo {algo} acts through the SOC team's roles ({', '.join(env_lib.AGENTS)}) and "
            f"their action layouts; scenario {scenario!r} has other agents ({', '.join(env.agents)}): "
            "train it with a learner that takes any agents (e.g. mappo or ippo)")
    check_no_red_control(env)


def role_specs(env: SOCEnv, coordinator: str = "native", per_entry: bool = False) -> Dict[str, RoleSpec]:
    """`{agent: RoleSpec}` in `env.agents` order.

    `per_entry`: the learner has heads of one choice per entry (the on-policy family's
    `FactoredCategorical`), so a `MultiDiscrete` role (soc-hybrid's segment agents: one choice per
    host) is a "multidiscrete" spec; without it such a role is refused.
    """
    if coordinator not in COORDINATOR_ENCODINGS:
        raise ConfigError(f"unknown coordinator encoding {coordinator!r}; use one of {COORDINATOR_ENCODINGS}")
    check_no_red_control(env)
    # Scenarios without a coordinator (jaxsoc.env.cage4) only take the native encoding.
    discrete_env = "coordinator" not in env.agents or isinstance(env.action_space("coordinator"), Discrete)
    if coordinator != "native" and discrete_env:
        has = ("this scenario's coordinator is already discrete (D6)" if "coordinator" in env.agents
               else "this scenario has no coordinator")
        raise ConfigError(f"coordinator encoding {coordinator!r} maps 8 choices to the v1 8-float "
                          f"directive; {has}: use 'native'")
    specs = {}
    for a in env.agents:
        space = env.action_space(a)
        obs_dim = env.observation_space(a).shape[0]
        if a == "coordinator" and coordinator != "native":
            specs[a] = RoleSpec(a, obs_dim, "discrete", V1_COORDINATOR_CHOICES)
        elif isinstance(space, Discrete):
            specs[a] = RoleSpec(a, obs_dim, "discrete", space.n)
        elif isinstance(space, MultiDiscrete) and per_entry:
            nvec = tuple(int(n) for n in space.nvec)
            specs[a] = RoleSpec(a, obs_dim, "multidiscrete", max(nvec), nvec)
        elif isinstance(space, MultiDiscrete):
            # Read as a Box, its floats were cast to choice 0 by the env: the role never acted and
            # nothing said so. The on-policy learners have per-entry heads.
            raise ConfigError(
                f"role {a!r} chooses one of {int(max(space.nvec))} actions for each of its "
                f"{len(space.nvec)} hosts (MultiDiscrete), which this learner's heads (one choice, or a "
                f"continuous vector) cannot express: train this scenario with --algo hybrid or one of "
                f"the on-policy learners ({', '.join(PER_ENTRY_LEARNERS)})")
        else:
            specs[a] = RoleSpec(a, obs_dim, "continuous", space.shape[0])
    return specs


def coordinator_to_env(action: jax.Array, coordinator: str) -> jax.Array:
    """A learner's coordinator action -> the env's (shapes broadcast over leading batch axes)."""
    if coordinator == "hmarl":
        return jax.vmap(hmarl_directive)(action.reshape(-1)).reshape(action.shape + (DIRECTIVE_DIM,))
    if coordinator == "onehot":
        return jax.nn.one_hot(action, DIRECTIVE_DIM, dtype=jnp.float32)
    return action


def to_env_actions(actions: Dict[str, jax.Array], coordinator: str = "native") -> Dict[str, jax.Array]:
    """Learner actions (per role, any leading batch shape) -> env actions."""
    if coordinator == "native":  # nothing to map (and an env need not have a coordinator)
        return actions
    out = dict(actions)
    out["coordinator"] = coordinator_to_env(actions["coordinator"], coordinator)
    return out


def with_world_state(env: SOCEnv) -> SOCEnv:
    """The same scenario, with `infos["world_state"]`/`["final_world_state"]` in every step (any env
    built as `type(env)(params)` whose params have `with_world_state`, the SOC env and the demos)."""
    if env.default_params.with_world_state:
        return env
    return type(env)(env.default_params.replace(with_world_state=True))


def batched_reset(env: SOCEnv, params, key: jax.Array, num_envs: int):
    """`num_envs` fresh envs: `(obs {agent: [num_envs, obs_dim]}, state [num_envs, ...])`."""
    return jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), params)


def batched_step(env: SOCEnv, params, key: jax.Array, state, actions):
    """One auto-resetting step of every env: `(obs, state, rewards, dones, infos)`, `[num_envs, ...]`."""
    n = jax.tree.leaves(state)[0].shape[0]
    return jax.vmap(env.step, in_axes=(0, 0, 0, None))(jax.random.split(key, n), state, actions, params)


def clipped_adam(learning_rate, max_grad_norm: float = 0.0, eps: float = 1e-8) -> optax.GradientTransformation:
    """Adam after clipping its gradient tree to global norm `max_grad_norm` (0: no clipping).

    The one optimiser the learners build, over whatever tree they hand it (a network, a role's
    networks, a joint tree; the hybrid's online detector trains with the detector's own,
    `jaxsoc.detectors.autoencoder.optimizer`); `learning_rate` may be an optax schedule. `eps`
    1e-8 is PyTorch's and optax's default; the on-policy family passes its `adam_eps`. `max_grad_norm` may be a traced
    scalar (a sweep's grid point, jaxsoc/sweep.py): then the clip is always in the program and a
    value of 0 makes its limit infinite.
    """
    adam = optax.adam(learning_rate, eps=eps)
    if isinstance(max_grad_norm, jax.Array):
        limit = jnp.where(max_grad_norm > 0, max_grad_norm, jnp.inf)
        return optax.chain(optax.clip_by_global_norm(limit), adam)
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adam) if max_grad_norm > 0 else adam
