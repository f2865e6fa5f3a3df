"""Banking: R routers (agents) each send one arriving transaction down one of C channels, trading
latency, fees and risk (docs/demos.md).

Channels (the seed's numbers): internal 20 ms, 3 % risk, $0.10; external 80 ms, 2 %, $0.50;
blockchain 200 ms, 1 %, $2.00; target latency 100 ms. The rest is this demo's (docs/demos.md
lists each invented number):

  * every step (a tick of `tick_ms` = 100 ms) each router holds one transaction of amount v,
    log-uniform in [amount_min, amount_max] = [$1, $1000];
  * a channel clears `throughput` = (1, 2, 2) transactions per tick; what it cannot clear waits:
    backlog b_c' = max(0, b_c + n_c - mu_c) for the n_c transactions routed to it, and each of
    them takes latency_c = base_c + tick_ms * b_c' / mu_c (the ticks the backlog left behind
    needs), so routers that herd onto one channel slow each other down;
  * each channel but the first (internal) is down for a tick with probability p_outage = 0.05;
    a down channel is masked (`get_avail_actions`); a transaction sent to one anyway falls back
    to internal (counted in "fallbacks");
  * a transaction's cost (`route`) = fee_c + risk_c * v (its expected loss: the risk is priced at
    the amount at stake) + latency_cost_per_ms * latency ($0.005 per ms) + sla_penalty ($1) if
    its latency exceeds the 100 ms target;
  * team reward = -(sum of the R transactions' costs), the same for every router.

With the seed's risks every channel is under the seed's 5 % portfolio-risk ceiling, so that
constraint never binds: "risk_pct" (value-weighted mean risk of the routed amounts, %) is reported,
not penalised.

Observation of a router: [its amount as log(v / amount_min) / log(amount_max / amount_min) in
[0, 1], each channel's backlog / throughput, each channel's up flag, t / max_steps] (2C + 2).
World state: every router's scaled amount, the backlogs, the up flags, t / max_steps (R + 2C + 1).

Heuristics: `least_cost` sends each transaction to the available channel of least expected cost
as if it were the only one routed this tick (it sees the backlog, not the other routers' choices,
so routers herd); `round_robin` sends router i's transaction at step t to channel (i + t) mod C
(internal if that one is down), spreading load evenly and ignoring amounts.
"""
from __future__ import annotations

from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxsoc.demos.base import DemoEnv, check, make_demo
from jaxsoc.env.spaces import Box, Discrete


def _static(default):
    return struct.field(pytree_node=False, default=default)


@struct.dataclass
class BankingParams:
    """Static params of the banking world (module docstring); every field is hashable."""

    num_routers: int = _static(3)
    channel_names: tuple = _static(("internal", "external", "blockchain"))
    base_latency_ms: tuple = _static((20.0, 80.0, 200.0))  # the seed
    risk: tuple = _static((0.03, 0.02, 0.01))              # the seed
    fee: tuple = _static((0.10, 0.50, 2.00))               # the seed
    throughput: tuple = _static((1, 2, 2))                 # transactions cleared per tick
    tick_ms: float = _static(100.0)
    latency_target_ms: float = _static(100.0)              # the seed
    latency_cost_per_ms: float = _static(0.005)
    sla_penalty: float = _static(1.0)                      # per transaction over the target
    amount_min: float = _static(1.0)
    amount_max: float = _static(1000.0)
    p_outage: float = _static(0.05)                        # per tick, each channel but the first
    max_steps: int = _static(50)
    with_world_state: bool = _static(True)

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    def validate(self) -> None:
        check(isinstance(self.num_routers, int) and self.num_routers >= 1,
              f"num_routers must be a positive integer, got {self.num_routers!r}")
        check(isinstance(self.max_steps, int) and self.max_steps >= 1,
              f"max_steps must be a positive integer, got {self.max_steps!r}")
        c = self.num_channels
        check(c >= 2, f"need at least 2 channels, got {c}")
        for name in ("base_latency_ms", "risk", "fee", "throughput"):
            check(len(getattr(self, name)) == c,
                  f"{name} has {len(getattr(self, name))} entries for {c} channels {self.channel_names}")
        check(all(x > 0 for x in self.throughput), f"throughput must be positive, got {self.throughput}")
        check(all(0 <= r <= 1 for r in self.risk), f"risk must be in [0, 1], got {self.risk}")
        check(all(x >= 0 for x in self.base_latency_ms + self.fee), "base_latency_ms and fee must be >= 0")
        check(0 < self.amount_min < self.amount_max,
              f"need 0 < amount_min < amount_max, got {self.amount_min}, {self.amount_max}")
        check(0 <= self.p_outage < 1, f"p_outage must be in [0, 1), got {self.p_outage}")
        check(self.tick_ms > 0 and self.latency_cost_per_ms >= 0 and self.sla_penalty >= 0,
              "need tick_ms > 0, latency_cost_per_ms >= 0, sla_penalty >= 0")
        check(self.latency_target_ms > 0, f"latency_target_ms must be > 0, got {self.latency_target_ms}")

    def arrays(self):
        """(base_latency_ms, risk, fee, throughput), each f32 `[C]`."""
        return tuple(jnp.asarray(np.asarray(x, np.float32))
                     for x in (self.base_latency_ms, self.risk, self.fee, self.throughput))


@struct.dataclass
class BankingState:
    """One env: step `t`, the routers' pending amounts `[R]`, channel backlogs and up flags `[C]`,
    and the episode's sums so far."""

    t: jax.Array
    amount: jax.Array
    backlog: jax.Array
    up: jax.Array
    ret: jax.Array
    fees: jax.Array
    latency: jax.Array     # summed over transactions (ms)
    violations: jax.Array  # transactions over the latency target
    at_risk: jax.Array     # sum of risk_c * v
    value: jax.Array       # sum of v
    fallbacks: jax.Array
    routed: jax.Array      # [C] transactions per channel


def route(backlog: jax.Array, channel: jax.Array, amount: jax.Array, up: jax.Array,
          params: BankingParams) -> Dict[str, jax.Array]:
    """One tick of routing (module docstring).

    Args: backlog `[C]`; channel `[R]` int (the routers' choices); amount `[R]`; up bool `[C]`.
    Returns: "backlog" `[C]` after the tick; "channel" `[R]` where each transaction went (after
    fallbacks); "latency" (ms), "cost" ($), "fee" ($), "violation" (bool) per transaction, `[R]`.
    """
    base, risk, fee, mu = params.arrays()
    channel = jnp.clip(channel.astype(jnp.int32), 0, params.num_channels - 1)
    went = jnp.where(up[channel], channel, 0)
    arrivals = jax.nn.one_hot(went, params.num_channels, dtype=jnp.float32).sum(0)  # [C]
    new_backlog = jnp.maximum(0.0, backlog + arrivals - mu)
    latency = (base + params.tick_ms * new_backlog / mu)[went]
    violation = latency > params.latency_target_ms
    cost = (fee[went] + risk[went] * amount + params.latency_cost_per_ms * latency
            + params.sla_penalty * violation.astype(jnp.float32))
    return {"backlog": new_backlog, "channel": went, "latency": latency, "cost": cost, "fee": fee[went],
            "violation": violation}


class BankingEnv(DemoEnv):
    params_cls = BankingParams
    name = "banking"  # the scenario name (its params have no name field)

    def _spaces(self, p: BankingParams):
        agents = [f"router_{i}" for i in range(p.num_routers)]
        actions = {a: Discrete(p.num_channels) for a in agents}
        observations = {a: Box(-jnp.inf, jnp.inf, (2 * p.num_channels + 2,)) for a in agents}
        return agents, actions, observations, p.num_routers + 2 * p.num_channels + 1

    @property
    def policies(self):
        return {"random": random_policy, "least-cost": least_cost, "round-robin": round_robin}

    def _arrivals(self, key, p: BankingParams):
        """The next tick's amounts `[R]` (log-uniform) and up flags `[C]` (the first channel always up)."""
        k_amount, k_up = jax.random.split(key)
        log_lo, log_hi = np.log(p.amount_min), np.log(p.amount_max)
        amount = jnp.exp(jax.random.uniform(k_amount, (p.num_routers,), minval=log_lo, maxval=log_hi))
        down = jax.random.bernoulli(k_up, p.p_outage, (p.num_channels,)) & (jnp.arange(p.num_channels) > 0)
        return amount, ~down

    def initial_state(self, key, p: BankingParams) -> BankingState:
        amount, up = self._arrivals(key, p)
        zero = jnp.zeros((), jnp.float32)
        return BankingState(jnp.zeros((), jnp.int32), amount, jnp.zeros((p.num_channels,), jnp.float32), up,
                            zero, zero, zero, zero, zero, zero, zero, jnp.zeros((p.num_channels,), jnp.float32))

    def transition(self, key, s: BankingState, actions, p: BankingParams):
        channel = jnp.stack([actions[a].reshape(()) for a in self.agents])  # [R]
        out = route(s.backlog, channel, s.amount, s.up, p)
        _, risk, _, _ = p.arrays()
        reward = -out["cost"].sum()
        amount, up = self._arrivals(key, p)
        stepped = BankingState(
            s.t + 1, amount, out["backlog"], up, s.ret + reward, s.fees + out["fee"].sum(),
            s.latency + out["latency"].sum(), s.violations + out["violation"].sum(),
            s.at_risk + (risk[out["channel"]] * s.amount).sum(), s.value + s.amount.sum(),
            s.fallbacks + (out["channel"] != channel.astype(jnp.int32)).sum(),
            s.routed + jax.nn.one_hot(out["channel"], p.num_channels, dtype=jnp.float32).sum(0))
        return stepped, reward, jnp.zeros((), bool)

    def _scaled_amount(self, amount, p: BankingParams):
        return (jnp.log(amount / p.amount_min) / np.log(p.amount_max / p.amount_min)).astype(jnp.float32)

    def get_obs(self, s: BankingState, params=None) -> Dict[str, jax.Array]:
        """`{router: [2C + 2]}`: its own pending amount (log-scaled), then what every router sees:
        the channels' backlogs over their service rates `[C]`, up flags `[C]`, elapsed share `[1]`."""
        p = self.params_or_default(params)
        _, _, _, mu = p.arrays()
        shared = jnp.concatenate([s.backlog / mu, s.up.astype(jnp.float32),
                                  jnp.reshape(s.t / p.max_steps, (1,)).astype(jnp.float32)])
        scaled = self._scaled_amount(s.amount, p)
        return {a: jnp.concatenate([scaled[i:i + 1], shared]) for i, a in enumerate(self.agents)}

    def get_world_state(self, s: BankingState, params=None) -> jax.Array:
        """`[R + 2C + 1]`: every router's scaled amount `[R]`, then the shared part of `get_obs`."""
        p = self.params_or_default(params)
        _, _, _, mu = p.arrays()
        return jnp.concatenate([self._scaled_amount(s.amount, p), s.backlog / mu, s.up.astype(jnp.float32),
                                jnp.reshape(s.t / p.max_steps, (1,)).astype(jnp.float32)])

    def get_avail_actions(self, s: BankingState, params=None) -> Dict[str, jax.Array]:
        """`{router: [C]}` bool: a channel that is down cannot be chosen."""
        return {a: s.up for a in self.agents}

    def episode_metrics(self, s: BankingState, p: BankingParams) -> Dict[str, jax.Array]:
        """The episode so far: "return", "length", "cost" ($, = -return), "fees" ($), "latency_ms"
        (mean per transaction), "sla_violations" (share over the target), "risk_pct" (value-weighted
        mean risk, %), "fallbacks" (transactions sent to a down channel), "share_<channel>"."""
        n = jnp.maximum(s.t.astype(jnp.float32) * p.num_routers, 1.0)
        out = {"return": s.ret, "length": s.t.astype(jnp.float32), "cost": -s.ret, "fees": s.fees,
               "latency_ms": s.latency / n, "sla_violations": s.violations / n,
               "risk_pct": 100.0 * s.at_risk / jnp.maximum(s.value, 1e-9), "fallbacks": s.fallbacks}
        for c, name in enumerate(p.channel_names):
            out[f"share_{name}"] = s.routed[c] / n
        return out


def _as_actions(channel: jax.Array, p: BankingParams) -> Dict[str, jax.Array]:
    return {f"router_{i}": channel[i].astype(jnp.int32) for i in range(p.num_routers)}


def random_policy(key, obs, state: BankingState, params: BankingParams) -> Dict[str, jax.Array]:
    """Each router picks uniformly among the channels that are up."""
    logits = jnp.where(state.up, 0.0, -jnp.inf)
    return _as_actions(jax.random.categorical(key, logits, shape=(params.num_routers,)), params)


def least_cost(key, obs, state: BankingState, params: BankingParams) -> Dict[str, jax.Array]:
    """Each router: the available channel of least expected cost for its transaction if it were
    the only one routed this tick (`route` for one arrival), `[R]` argmins."""
    del key
    base, risk, fee, mu = params.arrays()
    latency = base + params.tick_ms * jnp.maximum(0.0, state.backlog + 1.0 - mu) / mu  # [C]
    cost = (fee[None] + risk[None] * state.amount[:, None] + params.latency_cost_per_ms * latency[None]
            + params.sla_penalty * (latency > params.latency_target_ms)[None])  # [R, C]
    return _as_actions(jnp.argmin(jnp.where(state.up[None], cost, jnp.inf), axis=-1), params)


def round_robin(key, obs, state: BankingState, params: BankingParams) -> Dict[str, jax.Array]:
    """Router i at step t: channel (i + t) mod C, internal (0) if that one is down."""
    del key
    channel = (jnp.arange(params.num_routers) + state.t) % params.num_channels
    return _as_actions(jnp.where(state.up[channel], channel, 0), params)


def make(**overrides):
    """`(BankingEnv, BankingParams)` with `overrides` (ValueError for unknown names or bad values)."""
    return make_demo(BankingEnv, overrides)
