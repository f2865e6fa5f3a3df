"""Retail: N warehouses (agents) order stock against random demand and share one cost (docs/demos.md).

Each step, for warehouses i = 0..N-1 (all quantities in units, floats):
  1. order:  a_i in [-1, 1] -> q_i = max_order (a_i + 1) / 2; it arrives at once (no lead time),
             up to the free space: received_i = min(q_i, capacity - I_i). Nothing is paid per unit
             ordered (the seed lists no purchase cost): over-ordering costs its holding.
  2. demand: d_i ~ Poisson(lambda_i), lambda_i spread evenly over [demand_min, demand_max].
  3. settle (`settle`): each warehouse sells min(on hand, d_i); then the team pools (complete
     lateral transshipment): the total shortfall U is met from the total surplus V, moved =
     min(U, V) units, each surplus warehouse giving in proportion to its surplus. Costs (the
     seed's): stockout 10 per unit of demand left unmet, transfer 0.5 per unit moved, holding 0.1
     per unit left in stock at the end of the step.
  4. team reward = -(stockout + transfer + holding), the same for every warehouse.

Observation of warehouse i (its own view only): [I_i / capacity, d_i(last) / capacity,
lambda_i / capacity, t / max_steps]. World state: every warehouse's observation, concatenated.
Episodes last `max_steps` steps (time-limit truncation; nothing terminates) and start from
inventories drawn uniformly in [0, 2 lambda_i].

Heuristic (`base_stock`): order up to S_i, the smallest s with P(Poisson(lambda_i) <= s) >=
stockout / (stockout + holding) (the newsvendor critical fractile; with no lead time and lost
sales, base-stock ordering is the textbook optimum of one warehouse alone). It ignores pooling,
so a team that counts on transfers can hold less.
"""
from __future__ import annotations

import math
from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxsoc.demos.base import DemoEnv, check, make_demo
from jaxsoc.env.spaces import Box


def _static(default):
    return struct.field(pytree_node=False, default=default)


@struct.dataclass
class RetailParams:
    """Static params of the retail world (module docstring); every field is hashable."""

    num_warehouses: int = _static(5)
    demand_min: float = _static(4.0)      # Poisson mean of warehouse 0 (units per step)
    demand_max: float = _static(12.0)     # Poisson mean of warehouse N-1
    capacity: float = _static(60.0)       # units a warehouse can hold
    max_order: float = _static(30.0)      # units ordered at a = +1
    stockout_cost: float = _static(10.0)  # per unit of demand left unmet (the seed)
    transfer_cost: float = _static(0.5)   # per unit moved between warehouses (the seed)
    holding_cost: float = _static(0.1)    # per unit in stock at the end of a step (the seed)
    max_steps: int = _static(50)
    with_world_state: bool = _static(True)

    def validate(self) -> None:
        check(isinstance(self.num_warehouses, int) and self.num_warehouses >= 1,
              f"num_warehouses must be a positive integer, got {self.num_warehouses!r}")
        check(isinstance(self.max_steps, int) and self.max_steps >= 1,
              f"max_steps must be a positive integer, got {self.max_steps!r}")
        check(0 < self.demand_min <= self.demand_max,
              f"need 0 < demand_min <= demand_max, got {self.demand_min}, {self.demand_max}")
        check(self.capacity > 0 and self.max_order > 0,
              f"capacity and max_order must be positive, got {self.capacity}, {self.max_order}")
        for name in ("stockout_cost", "transfer_cost", "holding_cost"):
            check(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")

    def demand_means(self) -> np.ndarray:
        """lambda_i, `[N]` float32."""
        return np.linspace(self.demand_min, self.demand_max, self.num_warehouses).astype(np.float32)


@struct.dataclass
class RetailState:
    """One env: step `t`, inventories and last demands `[N]`, and the episode's sums so far."""

    t: jax.Array
    inventory: jax.Array
    last_demand: jax.Array
    ret: jax.Array
    stockout: jax.Array   # $ so far
    transfer: jax.Array
    holding: jax.Array
    demand: jax.Array     # units demanded so far
    unmet: jax.Array      # units of demand left unmet so far
    moved: jax.Array      # units transferred so far


def order_quantity(action: jax.Array, params: RetailParams) -> jax.Array:
    """Action(s) in [-1, 1] (clipped) -> units ordered in [0, max_order]; any shape."""
    return params.max_order * (jnp.clip(action, -1.0, 1.0) + 1.0) / 2.0


def settle(on_hand: jax.Array, demand: jax.Array, params: RetailParams) -> Dict[str, jax.Array]:
    """Sell, pool and cost one step (module docstring, step 3).

    Args: on_hand `[N]` stock after the orders arrived; demand `[N]`.
    Returns: "inventory" `[N]` left at the end; "unmet", "moved" (units) and "stockout",
    "transfer", "holding" ($), each `[]`.
    """
    sold = jnp.minimum(on_hand, demand)
    short, surplus = demand - sold, on_hand - sold
    total_short, total_surplus = short.sum(), surplus.sum()
    moved = jnp.minimum(total_short, total_surplus)
    share = jnp.where(total_surplus > 0, surplus / jnp.maximum(total_surplus, 1e-9), 0.0)
    inventory = surplus - moved * share
    unmet = total_short - moved
    return {"inventory": inventory, "unmet": unmet, "moved": moved,
            "stockout": params.stockout_cost * unmet, "transfer": params.transfer_cost * moved,
            "holding": params.holding_cost * inventory.sum()}


def base_stock_levels(params: RetailParams) -> np.ndarray:
    """S_i: the smallest s with P(Poisson(lambda_i) <= s) >= p / (p + h), capped at capacity, `[N]`."""
    p, h = params.stockout_cost, params.holding_cost
    ratio = p / (p + h) if p + h > 0 else 0.0
    levels = []
    for lam in params.demand_means().astype(float):
        s, term = 0, math.exp(-lam)
        cdf = term
        while cdf < ratio and s < params.capacity:
            s += 1
            term *= lam / s
            cdf += term
        levels.append(min(float(s), params.capacity))
    return np.asarray(levels, np.float32)


class RetailEnv(DemoEnv):
    params_cls = RetailParams
    name = "retail"  # the scenario name (its params have no name field)

    def _spaces(self, p: RetailParams):
        agents = [f"warehouse_{i}" for i in range(p.num_warehouses)]
        actions = {a: Box(-1.0, 1.0, (1,)) for a in agents}
        observations = {a: Box(-jnp.inf, jnp.inf, (4,)) for a in agents}
        return agents, actions, observations, 4 * p.num_warehouses

    @property
    def policies(self):
        return {"random": random_policy, "base-stock": base_stock}

    def initial_state(self, key, p: RetailParams) -> RetailState:
        lam = jnp.asarray(p.demand_means())
        inventory = jax.random.uniform(key, lam.shape) * 2.0 * lam
        zero = jnp.zeros((), jnp.float32)
        return RetailState(jnp.zeros((), jnp.int32), inventory, jnp.zeros_like(lam), zero, zero, zero,
                           zero, zero, zero, zero)

    def transition(self, key, s: RetailState, actions, p: RetailParams):
        action = jnp.stack([actions[a].reshape(()) for a in self.agents])  # [N]
        received = jnp.minimum(order_quantity(action, p), p.capacity - s.inventory)
        demand = jax.random.poisson(key, jnp.asarray(p.demand_means()), s.inventory.shape).astype(jnp.float32)
        out = settle(s.inventory + received, demand, p)
        reward = -(out["stockout"] + out["transfer"] + out["holding"])
        stepped = RetailState(s.t + 1, out["inventory"], demand, s.ret + reward, s.stockout + out["stockout"],
                              s.transfer + out["transfer"], s.holding + out["holding"], s.demand + demand.sum(),
                              s.unmet + out["unmet"], s.moved + out["moved"])
        return stepped, reward, jnp.zeros((), bool)

    def get_obs(self, s: RetailState, params=None) -> Dict[str, jax.Array]:
        """`{warehouse: [4]}`: its inventory, last demand and mean demand over its capacity, and the
        elapsed share of the episode."""
        p = self.params_or_default(params)
        lam = jnp.asarray(p.demand_means())
        tau = jnp.broadcast_to(s.t / p.max_steps, lam.shape)
        table = jnp.stack([s.inventory / p.capacity, s.last_demand / p.capacity, lam / p.capacity, tau],
                          axis=-1).astype(jnp.float32)  # [N, 4]
        return {a: table[i] for i, a in enumerate(self.agents)}

    @property
    def world_state_observers(self):
        return tuple(self.agents)  # the world state is every warehouse's observation, nothing more

    @property
    def always_legal(self):
        return tuple(self.agents)  # continuous orders: nothing to mask (`get_avail_actions`)

    def get_world_state(self, s: RetailState, params=None) -> jax.Array:
        """`[4N]`: every warehouse's observation, in agent order."""
        obs = self.get_obs(s, params)
        return jnp.concatenate([obs[a] for a in self.agents])

    def get_avail_actions(self, s: RetailState, params=None) -> Dict[str, jax.Array]:
        """`{warehouse: [1]}` True: continuous actions, nothing to mask."""
        return {a: jnp.ones((1,), bool) for a in self.agents}

    def episode_metrics(self, s: RetailState, p: RetailParams) -> Dict[str, jax.Array]:
        """The episode so far: "return", "length", "cost" ($, = -return) and its three parts,
        "fill_rate" (share of demand met, locally or by transfer), "moved" (units transferred)."""
        fill = jnp.where(s.demand > 0, 1.0 - s.unmet / jnp.maximum(s.demand, 1e-9), 1.0)
        return {"return": s.ret, "length": s.t.astype(jnp.float32), "cost": -s.ret,
                "stockout_cost": s.stockout, "transfer_cost": s.transfer, "holding_cost": s.holding,
                "fill_rate": fill, "moved": s.moved}


def random_policy(key, obs, state: RetailState, params: RetailParams) -> Dict[str, jax.Array]:
    """Uniform orders in [0, max_order]: every warehouse's action uniform in [-1, 1]."""
    keys = jax.random.split(key, params.num_warehouses)
    return {f"warehouse_{i}": jax.random.uniform(k, (1,), minval=-1.0, maxval=1.0) for i, k in enumerate(keys)}


def base_stock(key, obs, state: RetailState, params: RetailParams) -> Dict[str, jax.Array]:
    """Order up to S_i (`base_stock_levels`): q_i = clip(S_i - I_i, 0, max_order), as an action."""
    del key
    q = jnp.clip(jnp.asarray(base_stock_levels(params)) - state.inventory, 0.0, params.max_order)
    action = 2.0 * q / params.max_order - 1.0
    return {f"warehouse_{i}": action[i].reshape(1) for i in range(params.num_warehouses)}


def make(**overrides):
    """`(RetailEnv, RetailParams)` with `overrides` (ValueError for unknown names or bad values)."""
    return make_demo(RetailEnv, overrides)
