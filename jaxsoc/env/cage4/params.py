"""`Cage4Params` and the static tables of the CAGE-4-like scenario (docs/cage4.md).

Layout: 9 subnets in CAGE-4's alphabetical observation order, each with 16 host slots (servers
0-5, users 6-15), flattened to `NUM_HOSTS = 144` slots; a host slot is `subnet * 16 + slot`.
Routers and the internet host are not slots (nothing acts on them). Which slots exist is drawn per
reset (`generator.py`) and carried as a mask, so every shape is static.

Every field of `Cage4Params` is static (hashable, part of the treedef): the scenario is small and
changing a probability recompiles, which keeps the step graph free of parameter plumbing.
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxsoc.env.params import check_fields
from jaxsoc.names import suggest

# ---- network -----------------------------------------------------------------------------------
SUBNETS = ("admin", "contractor", "internet", "office", "operational_zone_a", "operational_zone_b",
           "public_access_zone", "restricted_zone_a", "restricted_zone_b")
ADMIN, CONTRACTOR, INTERNET, OFFICE, OZ_A, OZ_B, PAZ, RZ_A, RZ_B = range(9)
NUM_SUBNETS = 9
SLOTS = 16            # host slots per subnet
MAX_SERVERS = 6       # slots 0..5
MAX_USERS = 10        # slots 6..15
NUM_HOSTS = NUM_SUBNETS * SLOTS
HOST_SUBNET = np.repeat(np.arange(NUM_SUBNETS), SLOTS)            # [144]
HOST_SLOT = np.tile(np.arange(SLOTS), NUM_SUBNETS)                # [144]
IS_USER = HOST_SLOT >= MAX_SERVERS                                # [144]
OPERATIONAL = np.isin(HOST_SUBNET, [OZ_A, OZ_B])                  # [144] hosts with the OT service


def per_host(x: jax.Array) -> jax.Array:
    """`[..., 9] -> [..., H]`: each subnet's value on its 16 host slots. By broadcasting, not a
    gather at `HOST_SUBNET`: under vmap a gather's output is laid out index-major and XLA:CPU then
    transposes it in every kernel that reads it (measured: the red step ran 1.5x slower)."""
    return jnp.broadcast_to(x[..., None], x.shape + (SLOTS,)).reshape(x.shape[:-1] + (NUM_HOSTS,))

# server_host_0 of a subnet carries the links red learns on root there (CAGE-4's pivot path):
# LINKS[s, d] means root on s's server 0 reveals d's server 0.
LINKS = np.zeros((NUM_SUBNETS, NUM_SUBNETS), bool)
for _s, _ds in {CONTRACTOR: (RZ_A, RZ_B, PAZ), RZ_A: (OZ_A,), RZ_B: (OZ_B,), PAZ: (ADMIN, OFFICE)}.items():
    LINKS[_s, list(_ds)] = True

# ---- agents -------------------------------------------------------------------------------------
BLUE_AGENTS = tuple(f"blue_agent_{i}" for i in range(5))
BLUE_SUBNETS = ((RZ_A,), (OZ_A,), (RZ_B,), (OZ_B,), (ADMIN, OFFICE, PAZ))  # alphabetical within agent 4
NUM_RED = 6   # 0 contractor, then one per defended zone group in blue order (RZ-A, OZ-A, RZ-B, OZ-B, HQ)
# The red agent in charge of each subnet's hosts (the internet has no host slots).
SUBNET_RED = np.array([5, 0, 0, 5, 2, 4, 5, 1, 3])
HOST_RED = SUBNET_RED[HOST_SUBNET]                                # [144]
RED_ZONE = SUBNET_RED[None, :] == np.arange(NUM_RED)[:, None]      # [6, 9]: the subnets of each red agent's zone

# ---- red finite-state machine -------------------------------------------------------------------
# Red's knowledge of a host: 0 unknown, then CAGE-4's K(nown), S(canned), U(ser), R(oot).
UNKNOWN, KNOWN, SCANNED, USER, ROOT = range(5)
RED_ACTIONS = ("DiscoverRemoteSystems", "AggressiveServiceDiscovery", "StealthServiceDiscovery",
               "DiscoverDeception", "ExploitRemoteService", "PrivilegeEscalate", "Impact",
               "DegradeServices", "Withdraw")
DRS, AGGRESSIVE, STEALTH, DECEPTION, EXPLOIT, PRIVESC, IMPACT, DEGRADE, WITHDRAW = range(9)
RED_TICKS = np.array([1, 1, 3, 2, 4, 2, 2, 2, 1])
# Rows K, KD, S, SD, U, UD, R, RD ("D": the host's subnet has been swept by DiscoverRemoteSystems);
# row index = 2 * (state - 1) + discovered. CAGE-4's FiniteStateRedAgent table.
FSM = np.array([
    [.50, .25, .25, 0, 0, 0, 0, 0, 0],
    [0, .50, .50, 0, 0, 0, 0, 0, 0],
    [.25, 0, 0, .25, .50, 0, 0, 0, 0],
    [0, 0, 0, .25, .75, 0, 0, 0, 0],
    [.50, 0, 0, 0, 0, .50, 0, 0, 0],
    [0, 0, 0, 0, 0, 1.0, 0, 0, 0],
    [.50, 0, 0, 0, 0, 0, .25, .25, 0],
    [0, 0, 0, 0, 0, 0, .50, .50, 0],
], np.float32)

# ---- blue ---------------------------------------------------------------------------------------
BLUE_KINDS = ("Analyse", "DeployDecoy", "Remove", "Restore", "AllowTrafficZone", "BlockTrafficZone",
              "Monitor", "Sleep")
ANALYSE, DECOY, REMOVE, RESTORE, ALLOW, BLOCK, MONITOR, SLEEP = range(8)
BLUE_TICKS = np.array([2, 2, 3, 5, 1, 1, 1, 1])

# ---- missions, policy, rewards ------------------------------------------------------------------
PHASES = ("pre-planning", "mission A", "mission B")
# Reward rows: the zone a green host / impacted host is in.
ZONES = ("HQ", "contractor", "restricted_zone_a", "operational_zone_a", "restricted_zone_b",
         "operational_zone_b", "internet")
SUBNET_ZONE = np.array([0, 1, 6, 0, 3, 5, 0, 2, 4])
# [phase, zone, (local work fails, access service fails, red impact)] (CAGE-4's BlueRewardMachine).
REWARD_TABLE = np.array([
    [[-1, -1, -3], [0, -5, -5], [-1, -3, -1], [-1, -1, -1], [-1, -3, -1], [-1, -1, -1], [0, 0, 0]],
    [[-1, -1, -3], [0, 0, 0], [-2, -1, -3], [-10, 0, -10], [-1, -1, -1], [-1, -1, -1], [0, 0, 0]],
    [[-1, -1, -3], [0, 0, 0], [-1, -3, -3], [-1, -1, -1], [-2, -1, -3], [-10, 0, -10], [0, 0, 0]],
], np.float32)


def _policy() -> np.ndarray:
    """`[phase, to, from]` bool: the mission's communication policy says "to blocks from".

    Phase 1 allows everything. In mission A, operational zone A is cut off from every other subnet
    and restricted zone A talks only to HQ (admin, office, public access zone); mission B mirrors it.
    """
    pol = np.zeros((3, NUM_SUBNETS, NUM_SUBNETS), bool)
    hq = [ADMIN, OFFICE, PAZ]
    for phase, (oz, rz) in ((1, (OZ_A, RZ_A)), (2, (OZ_B, RZ_B))):
        for s in range(NUM_SUBNETS):
            if s != oz:
                pol[phase, oz, s] = pol[phase, s, oz] = True
            if s != rz and s not in hq:
                pol[phase, rz, s] = pol[phase, s, rz] = True
    return pol


POLICY = _policy()
# Blue agents whose zone the mission cuts off: no messages reach or leave them in that phase.
ISOLATED = np.zeros((3, 5), bool)
ISOLATED[1, 1] = ISOLATED[2, 3] = True


@struct.dataclass
class Cage4Params:
    """Static configuration of the CAGE-4-like scenario (defaults: CAGE-4's values, docs/cage4.md)."""

    name: str = struct.field(pytree_node=False, default="cage4-like")
    max_steps: int = struct.field(pytree_node=False, default=500)
    min_users: int = struct.field(pytree_node=False, default=3)
    max_users: int = struct.field(pytree_node=False, default=10)
    min_servers: int = struct.field(pytree_node=False, default=1)
    max_servers: int = struct.field(pytree_node=False, default=6)
    # Chance that a detectable red action raises its host's event bit (CAGE-4's detection rates).
    p_detect_aggressive: float = struct.field(pytree_node=False, default=0.75)
    p_detect_stealth: float = struct.field(pytree_node=False, default=0.25)
    p_detect_exploit: float = struct.field(pytree_node=False, default=0.95)
    # Chance that an exploit on a host with a decoy picks the decoy (fails, always raises an event).
    p_decoy_trap: float = struct.field(pytree_node=False, default=0.5)
    p_green_fp: float = struct.field(pytree_node=False, default=0.01)
    p_phishing: float = struct.field(pytree_node=False, default=0.01)
    degrade_step: int = struct.field(pytree_node=False, default=20)   # reliability points per DegradeServices
    restore_cost: float = struct.field(pytree_node=False, default=-1.0)
    invalid_cost: float = struct.field(pytree_node=False, default=-0.1)
    pad_spaces: bool = struct.field(pytree_node=False, default=False)
    with_world_state: bool = struct.field(pytree_node=False, default=True)
    rng_impl: str = struct.field(pytree_node=False, default="hash")

    def phase_lengths(self) -> Tuple[int, int, int]:
        """CAGE-4's split: `divmod(max_steps, 3)`, the remainder to the first phases (500 -> 167, 167, 166)."""
        q, r = divmod(self.max_steps, 3)
        return tuple(q + (i < r) for i in range(3))


FIELDS = tuple(f.name for f in dataclasses.fields(Cage4Params))


def build(name: str = "cage4-like", /, **overrides) -> Cage4Params:
    """`Cage4Params` with `overrides`; unknown keys or bad values raise a one-line `ValueError`."""
    if name != "cage4-like":
        raise ValueError(f"unknown CAGE-4 scenario {name!r}; the only one is 'cage4-like'")
    for k in overrides:
        if k == "name":
            raise ValueError("name is the scenario's ('cage4-like') and is not a parameter to override")
        if k not in FIELDS:
            raise ValueError(f"unknown cage4 parameter {k!r}{suggest(k, FIELDS)}")
    check_fields(Cage4Params, overrides)  # types first: "yes" is no switch, nan no cost
    p = Cage4Params(**overrides)
    if p.max_steps < 3:
        raise ValueError(f"max_steps must be >= 3 (three mission phases), got {p.max_steps}")
    if not 1 <= p.min_users <= p.max_users <= MAX_USERS:
        raise ValueError(f"need 1 <= min_users <= max_users <= {MAX_USERS}, got {p.min_users}, {p.max_users}")
    if not 1 <= p.min_servers <= p.max_servers <= MAX_SERVERS:
        raise ValueError(f"need 1 <= min_servers <= max_servers <= {MAX_SERVERS}, got {p.min_servers}, {p.max_servers}")
    for k in ("p_detect_aggressive", "p_detect_stealth", "p_detect_exploit", "p_decoy_trap", "p_green_fp",
              "p_phishing"):
        if not 0.0 <= getattr(p, k) <= 1.0:
            raise ValueError(f"{k} must be in [0, 1], got {getattr(p, k)}")
    if not 0 <= p.degrade_step <= 100:
        raise ValueError(f"degrade_step must be in 0..100, got {p.degrade_step}")
    if p.rng_impl not in ("hash", "threefry"):
        raise ValueError(f"rng_impl must be 'hash' or 'threefry', got {p.rng_impl!r}")
    for k in ("restore_cost", "invalid_cost"):  # added to the reward: a positive one would pay the action
        if getattr(p, k) > 0:
            raise ValueError(f"{k} is a cost, added to the reward as it is (default {Cage4Params.__dataclass_fields__[k].default}), "
                             f"so it must be <= 0, got {getattr(p, k)}")
    return p
