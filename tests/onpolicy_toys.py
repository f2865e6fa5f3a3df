"""A tiny SOC-shaped env for the on-policy learners: the four roles with their kinds of spaces,
real (changing) action masks, a coordinator read every K steps, a world state, termination and
time-limit truncation, auto-reset. It compiles in a second, so every learner can be trained on
it in the default test suite.

Each step every role sees a target in its observation; the team reward is
  + 1 if the coordinator names its target (only on steps where the env reads it, t % K == 0)
  + 1 if alert triage names its target
  - mean squared distance of each continuous role's action to its target
  - 10 for every masked choice taken (counted in the "masked" episode metric).
Targets are always allowed; 1 to 4 other choices are masked at random every step.
"""
from __future__ import annotations

from typing import Dict

import jax
import jax.numpy as jnp
from flax import struct

from jaxsoc.env.spaces import Box, Discrete
from tests.engine_toys import scenario_maker

AGENTS = ("coordinator", "threat_hunter", "alert_triage", "response_orchestrator")
N_COORD, N_TRIAGE, D_TH, D_RO = 5, 4, 3, 2


@struct.dataclass
class ToyParams:
    max_steps: int = struct.field(pytree_node=False, default=8)
    directive_period: int = struct.field(pytree_node=False, default=2)
    p_end: float = struct.field(pytree_node=False, default=0.05)
    with_world_state: bool = struct.field(pytree_node=False, default=True)
    # One "segment", so that learners that bin the Box roles as the SOC env's (offpolicy.bin_table)
    # run here too (COMA); the toy itself has no segments.
    num_segments: int = struct.field(pytree_node=False, default=1)


@struct.dataclass
class ToyState:
    t: jax.Array
    coord_target: jax.Array
    triage_target: jax.Array
    th_target: jax.Array
    ro_target: jax.Array
    coord_mask: jax.Array
    triage_mask: jax.Array
    ret: jax.Array
    masked: jax.Array


def _mask(key, n, target):
    # Keep the target; each other choice is allowed with probability 1/2.
    allowed = jax.random.bernoulli(key, 0.5, (n,))
    return allowed | (jnp.arange(n) == target)


class ToySOC:
    agents = list(AGENTS)
    num_agents = 4

    def __init__(self, params: ToyParams = ToyParams()):
        self.default_params = params
        self.action_spaces = {
            "coordinator": Discrete(N_COORD), "threat_hunter": Box(-1.0, 1.0, (D_TH,)),
            "alert_triage": Discrete(N_TRIAGE), "response_orchestrator": Box(-1.0, 1.0, (D_RO,)),
        }
        dims = {"coordinator": N_COORD + 1, "threat_hunter": D_TH + 1, "alert_triage": N_TRIAGE + 1,
                "response_orchestrator": D_RO + 1}
        self.observation_spaces = {a: Box(-jnp.inf, jnp.inf, (d,)) for a, d in dims.items()}
        self.world_state_size = sum(dims.values()) + 2

    def action_space(self, agent):
        return self.action_spaces[agent]

    def observation_space(self, agent):
        return self.observation_spaces[agent]

    def _draw(self, key, t, ret, masked):
        k = jax.random.split(key, 6)
        ct = jax.random.randint(k[0], (), 0, N_COORD)
        tt = jax.random.randint(k[1], (), 0, N_TRIAGE)
        return ToyState(t, ct, tt, jax.random.uniform(k[2], (D_TH,), minval=-0.8, maxval=0.8),
                        jax.random.uniform(k[3], (D_RO,), minval=-0.8, maxval=0.8),
                        _mask(k[4], N_COORD, ct), _mask(k[5], N_TRIAGE, tt), ret, masked)

    def get_obs(self, s: ToyState, params=None) -> Dict[str, jax.Array]:
        p = self.default_params if params is None else params
        tau = jnp.reshape(s.t / p.max_steps, (1,)).astype(jnp.float32)
        return {
            "coordinator": jnp.concatenate([jax.nn.one_hot(s.coord_target, N_COORD), tau]),
            "threat_hunter": jnp.concatenate([s.th_target, tau]),
            "alert_triage": jnp.concatenate([jax.nn.one_hot(s.triage_target, N_TRIAGE), tau]),
            "response_orchestrator": jnp.concatenate([s.ro_target, tau]),
        }

    def get_world_state(self, s: ToyState, params=None) -> jax.Array:
        obs = self.get_obs(s, params)
        truth = jnp.stack([s.coord_target, s.triage_target]).astype(jnp.float32)
        return jnp.concatenate([obs[a] for a in AGENTS] + [truth])

    def get_avail_actions(self, s: ToyState, params=None) -> Dict[str, jax.Array]:
        return {"coordinator": s.coord_mask, "threat_hunter": jnp.ones((D_TH,), bool),
                "alert_triage": s.triage_mask, "response_orchestrator": jnp.ones((D_RO,), bool)}

    def reset(self, key, params=None):
        z = jnp.zeros((), jnp.int32)
        s = self._draw(key, z, jnp.zeros((), jnp.float32), z)
        return self.get_obs(s, params), s

    def step(self, key, s: ToyState, actions, params=None):
        p = self.default_params if params is None else params
        k_end, k_next, k_reset = jax.random.split(key, 3)
        c, a = actions["coordinator"].astype(jnp.int32), actions["alert_triage"].astype(jnp.int32)
        read = (s.t % p.directive_period) == 0
        masked = (~s.coord_mask[c] & read).astype(jnp.int32) + (~s.triage_mask[a]).astype(jnp.int32)
        reward = (jnp.where(read, (c == s.coord_target).astype(jnp.float32), 0.0)
                  + (a == s.triage_target).astype(jnp.float32)
                  - jnp.mean(jnp.square(actions["threat_hunter"] - s.th_target))
                  - jnp.mean(jnp.square(actions["response_orchestrator"] - s.ro_target))
                  - 10.0 * masked)
        t = s.t + 1
        stepped = self._draw(k_next, t, s.ret + reward, s.masked + masked)
        terminated = jax.random.uniform(k_end) < p.p_end
        truncated = t >= p.max_steps
        done = terminated | truncated
        metrics = {"return": stepped.ret, "length": t.astype(jnp.float32),
                   "masked": stepped.masked.astype(jnp.float32)}
        final_obs = self.get_obs(stepped, p)
        final_ws = self.get_world_state(stepped, p)
        _, fresh = self.reset(k_reset, p)
        state = jax.tree.map(lambda r, x: jnp.where(done, r, x), fresh, stepped)
        obs = self.get_obs(state, p)
        infos = {"terminated": terminated, "truncated": truncated,
                 "discount": 1.0 - done.astype(jnp.float32), "final_obs": final_obs, "metrics": metrics,
                 "world_state": self.get_world_state(state, p), "final_world_state": final_ws}
        rewards = {ag: reward for ag in AGENTS}
        dones = {ag: done for ag in AGENTS} | {"__all__": done}
        return obs, state, rewards, dones, infos


make_toy_soc = scenario_maker("toy-soc", ToySOC, ToyParams)
