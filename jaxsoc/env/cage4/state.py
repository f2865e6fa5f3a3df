"""`Cage4State`: one env's state. Host arrays are `[NUM_HOSTS]` (= 9 subnets x 16 slots)."""
from __future__ import annotations

import jax
from flax import struct


@struct.dataclass
class Counters:
    """Episode totals (the calibration metrics of docs/cage4.md), all float32 `[]` unless noted."""

    ret: jax.Array                # team return
    red_host_steps: jax.Array     # [3] sum over the phase's steps of hosts where red holds a session
    impact_attempts: jax.Array    # Impact actions executed
    impacts: jax.Array            # ... that stopped an OT service
    true_alerts: jax.Array        # event bits raised by red activity (host x step)
    false_alerts: jax.Array       # event bits raised only by green false positives
    local_fails: jax.Array        # green LocalWork failures
    access_fails: jax.Array       # green AccessService failures
    phishing: jax.Array           # sessions red gained by phishing
    exploits: jax.Array           # sessions red gained by ExploitRemoteService
    restores: jax.Array           # Restore actions started
    invalid: jax.Array            # masked actions submitted


@struct.dataclass
class Cage4State:
    t: jax.Array            # int32 []: steps taken
    present: jax.Array      # bool [H]: the slot holds a host this episode
    red: jax.Array          # int32 [H]: red's knowledge (params.UNKNOWN..ROOT); USER/ROOT = a session
    finder: jax.Array       # int32 [H]: red agent that learned of the host (acts on it while its zone's agent is idle)
    discovered: jax.Array   # bool [9]: red swept the subnet with DiscoverRemoteSystems ("D" states)
    red_src: jax.Array      # int32 [6]: subnet of each red agent's latest session (its exploits come from there)
    decoy: jax.Array        # bool [H]
    reliability: jax.Array  # int32 [H]: service reliability 0..100 (DegradeServices)
    ot_up: jax.Array        # bool [H]: OT service running (operational zones)
    blocked: jax.Array      # bool [9, 9]: [to, from] traffic blocked by blue
    red_host: jax.Array     # int32 [6]: pending red action's host
    red_action: jax.Array   # int32 [6]: pending red action (params.RED_ACTIONS)
    red_left: jax.Array     # int32 [6]: ticks until it executes (0 = idle)
    blue_action: jax.Array  # int32 [5]: pending blue action index
    blue_left: jax.Array    # int32 [5]
    proc: jax.Array         # bool [H]: process event seen on the host in the last step
    net: jax.Array          # bool [H]: network event seen on the host in the last step
    messages: jax.Array     # bool [5, 8]: the bits each blue agent sent in the last step
    counters: Counters
