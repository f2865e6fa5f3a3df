"""Per-host telemetry, gathered from vmapped envs into streams of sliding windows.

The env shows its agents only per-SEGMENT telemetry summaries (`jaxsoc.env.observe.telemetry_summary`).
A host-level anomaly detector needs what those summaries average over: each host's own feature
vector, step after step. This module draws it from an `EnvState` with the same generative model,

    x_host = drift(stage) * telemetry_direction + telemetry_noise * N(0, I_F)     (compromised)
    x_host =                                      telemetry_noise * N(0, I_F)     (clean)
    x_host = 0, connected = False                                                   (isolated)

with `drift(stage) = telemetry_stage_drift[stage]` for stages >= 1 (as the summary: a stage-0
"compromised" host does not drift), from an explicit key, without touching the env's step or any
of its random streams: gathered trajectories are the env's own, bit for bit.

One knob goes beyond the env's model: `stealth_damping` scales a compromised host's drift by
`1 - stealth_damping * stealth`, with `stealth` the stealth of the campaign that owns the host. The
env's telemetry ignores stealth (it only dims alerts and hunting); a quieter attacker that also
blends into host telemetry is what "detection quality per stealth level" needs. 0 (the default)
is exactly the env's model.

Shapes: one env's telemetry is `[num_hosts, F]` over the network's real hosts in host-id order
(segment by segment, padding removed); a gathered stream is time-major, `[T, num_envs, num_hosts, F]`.
A window is the last `W` steps of one host, `[W, F]`, labelled by the host's state at its last step.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxsoc.env.network import table_lookup, topology
from jaxsoc.env.params import EnvParams
from jaxsoc.env.policies import no_defender
from jaxsoc.env.state import EnvState


def check_stealth_damping(stealth_damping) -> None:
    """ValueError unless a Python `stealth_damping` lies in [0, 1] (traced values are not checked)."""
    if isinstance(stealth_damping, (int, float)) and not (0.0 <= float(stealth_damping) <= 1.0):
        raise ValueError(f"stealth_damping scales drift by 1 - damping * stealth and must lie in "
                         f"[0, 1], got {stealth_damping}")


def telemetry_world(scenario: str, **overrides):
    """`(env, params)` of the SOC world whose host telemetry a detector of `scenario` reads: the
    scenario itself, or for `soc-hybrid` its SOC world (`params.soc`, named `soc-hybrid`, so its
    detectors are saved for that scenario). Unknown names or keys raise `ValueError`."""
    import jaxsoc.env as soc  # the env's registry imports this package's users: resolved when called

    env, params = soc.make(scenario, **overrides)
    if hasattr(params, "soc"):
        return soc.SOCEnv(params.soc), params.soc
    if not isinstance(env, soc.SOCEnv):  # a demo world or cage4-like: no SOC hosts to watch
        raise ValueError(f"scenario {scenario!r} has no SOC network whose host telemetry a detector "
                         "reads: use a SOC scenario (soc-v2, hmarl-soc-v1, ...) or soc-hybrid")
    return env, params


def check_windows(windows, window: int, features: int, what: str = "telemetry windows") -> None:
    """ValueError unless `windows` is `[..., window, features]` (a clear message for a wrong width:
    telemetry from another scenario, or frames passed where windows are expected)."""
    shape = tuple(np.shape(windows))
    if len(shape) < 2:
        raise ValueError(f"{what} must be [..., W={window}, F={features}], got shape {shape}")
    if shape[-1] != features:
        raise ValueError(f"{what} have {shape[-1]} features per step but this detector was fit on "
                         f"F={features} (telemetry of another scenario?); shape {shape}")
    if shape[-2] != window:
        raise ValueError(f"{what} are {shape[-2]} steps long but this detector reads windows of "
                         f"W={window} steps; shape {shape}")


def flatten_hosts(x: jax.Array, params: EnvParams) -> jax.Array:
    """`[S, Hmax, ...] -> [num_hosts, ...]`: the real hosts in host-id order, padding removed.

    Equal segments are a static slice and a reshape; uneven ones a gather with static indices.
    """
    topo = topology(params)
    if len(set(params.hosts_per_segment)) == 1:
        h = params.hosts_per_segment[0]
        return x[:, :h].reshape((topo.num_segments * h,) + x.shape[2:])
    flat = x.reshape((topo.num_segments * topo.host_axis,) + x.shape[2:])
    return flat[np.flatnonzero(topo.host_valid.reshape(-1))]


def host_labels(state: EnvState, params: EnvParams) -> dict:
    """Ground truth per host, for evaluation only (no detector reads it).

    Returns `{"compromised": bool [num_hosts], "stage": int32 [num_hosts] (0 for clean hosts),
    "stealth": f32 [num_hosts] (the stealth of the campaign owning the host; campaign 0's, i.e.
    the env's, for clean hosts), "connected": bool [num_hosts] (not isolated)}`.
    """
    h = state.hosts
    # One campaign keeps a scalar stealth; competing campaigns one per campaign (`Hosts.owner`).
    stealth = table_lookup(jnp.atleast_1d(state.attacker.stealth), h.owner)
    return {
        "compromised": flatten_hosts(h.compromised, params),
        "stage": flatten_hosts(jnp.where(h.compromised, h.stage, 0), params),
        "stealth": flatten_hosts(stealth.astype(jnp.float32), params),
        "connected": flatten_hosts(~h.isolated, params),
    }


def host_telemetry(key: jax.Array, state: EnvState, params: EnvParams,
                   stealth_damping: float = 0.0) -> Tuple[jax.Array, jax.Array]:
    """One env's per-host telemetry at `state`: `(x [num_hosts, F] f32, connected [num_hosts] bool)`.

    The model of `telemetry_summary`, per host instead of per segment mean (module docstring);
    isolated hosts are off the network: zeros and `connected=False`. `key` is the caller's own
    (never the env's `obs_seed`), so drawing telemetry changes nothing the env does. Vmapped over
    envs (keys and states): `[num_envs, num_hosts, F]` and `[num_envs, num_hosts]`.
    """
    check_stealth_damping(stealth_damping)
    h = state.hosts
    table = jnp.asarray(params.telemetry_stage_drift, jnp.float32)
    # The summary adds drift for stages 1.. only; the clip keeps v1's odd stages inside the table.
    drift = jnp.where(h.compromised & (h.stage >= 1),
                      table_lookup(table, jnp.clip(h.stage, 0, table.shape[0] - 1)), 0.0)
    stealth = table_lookup(jnp.atleast_1d(state.attacker.stealth), h.owner)
    drift = drift * (1.0 - stealth_damping * stealth)
    drift = flatten_hosts(drift, params)  # [num_hosts]
    connected = flatten_hosts(~h.isolated, params)
    direction = jnp.asarray(params.telemetry_direction, jnp.float32)
    noise = jax.random.normal(key, (drift.shape[0], params.telemetry_features), jnp.float32)
    x = drift[:, None] * direction[None, :] + params.telemetry_noise * noise
    return jnp.where(connected[:, None], x, 0.0), connected


def prefill_window(key: jax.Array, state: EnvState, params: EnvParams, window: int,
                   stealth_damping: float = 0.0) -> jax.Array:
    """A full telemetry window `[window, num_hosts, F]` at the start of an episode: `window` independent
    draws of `host_telemetry` at `state` (a fresh episode's hosts are clean and connected), so the
    first step's scores already read a whole window instead of zero padding."""
    return jax.vmap(lambda k: host_telemetry(k, state, params, stealth_damping)[0])(jax.random.split(key, window))


def push_frame(key: jax.Array, window: jax.Array, state: EnvState, params: EnvParams,
               stealth_damping: float = 0.0) -> jax.Array:
    """The window `[W, num_hosts, F]` one step on: the oldest frame out, `state`'s telemetry in."""
    x, _ = host_telemetry(key, state, params, stealth_damping)
    return jnp.concatenate([window[1:], x[None]], axis=0)


@struct.dataclass
class TelemetryStream:
    """Telemetry and ground truth of `num_envs` envs over `T` steps, time-major.

    telemetry:   f32  [T, num_envs, num_hosts, F]  what a detector reads
    compromised: bool [T, num_envs, num_hosts]     labels, for evaluation only
    stage:       int8 [T, num_envs, num_hosts]     0 clean, 1..4 the host's attack stage
    stealth:     f32  [T, num_envs, num_hosts]     stealth of the campaign owning the host
    connected:   bool [T, num_envs, num_hosts]     False while isolated (telemetry is 0 then)
    episode:     int32 [T, num_envs]               episodes started in the env slot (auto-reset count)
    step:        int32 [T, num_envs]               the env's `t` within its episode
    """

    telemetry: jax.Array
    compromised: jax.Array
    stage: jax.Array
    stealth: jax.Array
    connected: jax.Array
    episode: jax.Array
    step: jax.Array

    @property
    def shape(self) -> Tuple[int, int, int, int]:
        """`(T, num_envs, num_hosts, F)`."""
        return tuple(self.telemetry.shape)


@functools.partial(jax.jit, static_argnames=("env", "policy", "num_envs", "num_steps", "per_env_stealth"))
def _gather(key, params, stealth, damping, *, env, policy, num_envs, num_steps, per_env_stealth):
    k_reset, k_steps = jax.random.split(key)
    if per_env_stealth:
        # The env's numeric fields are leaves, so each env can run its own stealth (docs/env.md).
        batch = jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), (num_envs,) + jnp.shape(x)), params)
        batch = batch.replace(stealth=stealth)
        p_axis = 0
    else:
        batch, p_axis = params, None
    reset = jax.vmap(env.reset, in_axes=(0, p_axis))
    step = jax.vmap(env.step, in_axes=(0, 0, 0, p_axis))
    act = jax.vmap(policy, in_axes=(0, 0, 0, p_axis))
    tele = jax.vmap(host_telemetry, in_axes=(0, 0, p_axis, None))
    labels = jax.vmap(host_labels, in_axes=(0, p_axis))
    obs, state = reset(jax.random.split(k_reset, num_envs), batch)

    def body(carry, k):
        obs, state = carry
        k_act, k_env, k_tel = jax.random.split(k, 3)
        actions = act(jax.random.split(k_act, num_envs), obs, state, batch)
        obs, state, _, _, _ = step(jax.random.split(k_env, num_envs), state, actions, batch)
        x, _ = tele(jax.random.split(k_tel, num_envs), state, batch, damping)
        lab = labels(state, batch)
        frame = TelemetryStream(telemetry=x, compromised=lab["compromised"],
                                stage=lab["stage"].astype(jnp.int8), stealth=lab["stealth"],
                                connected=lab["connected"], episode=state.episode, step=state.t)
        return (obs, state), frame

    _, stream = jax.lax.scan(body, (obs, state), jax.random.split(k_steps, num_steps))
    return stream


def gather_telemetry(key: jax.Array, env, params: EnvParams, num_envs: int, num_steps: int,
                     policy: Optional[Callable] = None, stealth=None,
                     stealth_damping: float = 0.0) -> TelemetryStream:
    """Run `num_envs` envs for `num_steps` steps under a scripted policy and record every host.

    One jitted `lax.scan` over steps of the vmapped env (auto-reset on). Each step records the
    state the env returned (after an episode ends, the next episode's first state).

    Args:
      key: the stream's key (resets, actions, env steps and telemetry noise all derive from it).
      env, params: from `jaxsoc.env.make`.
      policy: `policy(key, obs, state, params) -> actions` for one env (default: no defender, so
        attacks run their course; `jaxsoc.env.POLICIES` has others).
      stealth: optional `[num_envs]` per-env attacker stealth (the single-campaign `stealth`
        parameter, vmapped); not for presets with competing campaigns, which draw their own.
      stealth_damping: see the module docstring (0: the env's telemetry model).
    Returns:
      a `TelemetryStream` of `[num_steps, num_envs, num_hosts, ...]` arrays.
    """
    for name, v in (("num_envs", num_envs), ("num_steps", num_steps)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    check_stealth_damping(stealth_damping)
    per_env = stealth is not None
    if per_env:
        if params.multi_campaign:
            raise ValueError(f"{params.name!r} draws each campaign's stealth per reset "
                             "(campaign_stealth_low/high); a per-env stealth would be ignored")
        stealth = jnp.asarray(stealth, jnp.float32)
        if stealth.shape != (num_envs,):
            raise ValueError(f"stealth must be [num_envs={num_envs}], got shape {stealth.shape}")
        if not bool(jnp.all((stealth >= 0) & (stealth <= 1))):
            raise ValueError("stealth values are probabilities-like levels and must lie in [0, 1]")
    else:
        stealth = jnp.zeros((num_envs,), jnp.float32)
    return _gather(key, params, stealth, jnp.float32(stealth_damping), env=env,
                   policy=no_defender if policy is None else policy, num_envs=int(num_envs),
                   num_steps=int(num_steps), per_env_stealth=per_env)


def window_valid(stream: TelemetryStream, window: int) -> jax.Array:
    """`[T, num_envs, num_hosts]` bool: whether the window of `window` steps ENDING at each step
    is usable — it lies inside one episode and the host was connected at every one of its steps.

    The first `window - 1` steps of a stream (and of each episode) have no full window.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1 step, got {window}")
    t = stream.episode.shape[0]
    if window > t:
        return jnp.zeros(stream.connected.shape, bool)
    ep, conn = stream.episode, stream.connected
    # episode counts only grow, so equal counts at both ends mean one episode throughout
    same = ep[window - 1:] == ep[: t - window + 1]  # [T-W+1, N]
    up = conn[window - 1:]
    for lag in range(1, window):  # a handful of shifted views (W is small), not a loop over hosts
        up = up & conn[window - 1 - lag: t - lag]
    valid = same[:, :, None] & up
    return jnp.concatenate([jnp.zeros((window - 1,) + valid.shape[1:], bool), valid])


def windows_at(telemetry, t, env, host, window: int):
    """Gather windows: telemetry `[T, num_envs, num_hosts, F]`, index arrays `[M]` of the windows'
    LAST steps, envs and hosts -> `[M, window, F]` (steps t-window+1..t, oldest first)."""
    lags = np.arange(window - 1, -1, -1)
    tt = np.asarray(t)[:, None] - lags[None, :]
    if np.any(tt < 0):
        raise ValueError(f"a window of {window} steps needs its last step >= {window - 1}")
    return telemetry[tt, np.asarray(env)[:, None], np.asarray(host)[:, None]]


def sample_windows(key: jax.Array, stream: TelemetryStream, window: int, num: int,
                   attacked_share: Optional[float] = None):
    """`num` windows `[num, window, F]` from a stream's valid windows, with their labels.

    `attacked_share=None` samples uniformly: the training stream is contaminated at the rate
    attacks happen to occur (what a SOC collects). A number composes the stream instead with that
    share of windows whose host is compromised at the window's last step (an experimental knob to
    measure robustness to contamination; the labels choose the mix, the detector never sees them).
    Sampled without replacement when there are enough windows, with replacement otherwise.

    Returns `(windows [num, window, F], labels {"compromised", "stage", "stealth": [num]})`.
    """
    if attacked_share is not None and not (0.0 <= attacked_share <= 1.0):
        raise ValueError(f"attacked_share must lie in [0, 1], got {attacked_share}")
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    valid = np.asarray(window_valid(stream, window))
    comp = np.asarray(stream.compromised)

    def pick(mask, k):
        idx = np.flatnonzero(mask)
        if k == 0:
            return idx[:0]
        if idx.size == 0:
            raise ValueError("the stream has no valid window of the kind asked for "
                             "(gather more envs or steps, or lower attacked_share)")
        return rng.choice(idx, size=k, replace=k > idx.size)

    if attacked_share is None:
        flat = pick(valid, num)
    else:
        n_att = int(round(num * attacked_share))
        flat = np.concatenate([pick(valid & comp, n_att), pick(valid & ~comp, num - n_att)])
        flat = flat[rng.permutation(flat.size)]
    t, e, h = np.unravel_index(flat, valid.shape)
    windows = windows_at(np.asarray(stream.telemetry), t, e, h, window)
    labels = {"compromised": comp[t, e, h], "stage": np.asarray(stream.stage)[t, e, h],
              "stealth": np.asarray(stream.stealth)[t, e, h]}
    return jnp.asarray(windows), labels


@functools.partial(jax.jit, static_argnames=("score_fn", "window"))
def sliding_scores(score_fn: Callable, detector, telemetry: jax.Array, window: int) -> jax.Array:
    """Score the window ending at every step: telemetry `[T, num_envs, num_hosts, F]` ->
    `[T, num_envs, num_hosts]` f32 (`-inf` for the first `window - 1` steps).

    `score_fn(detector, windows [..., window, F]) -> [...]`. Windows are cut one end-step at a time
    inside `lax.map`, so the `window`-fold copy of the stream is never materialised. Mask the
    result with `window_valid` (windows across an episode boundary or an isolation are scored
    too, meaninglessly).
    """
    t = telemetry.shape[0]

    def at(end):
        w = jax.lax.dynamic_slice_in_dim(telemetry, end - window + 1, window, axis=0)  # [W, N, H, F]
        return score_fn(detector, jnp.moveaxis(w, 0, -2)).astype(jnp.float32)

    # batch_size: a few end-steps per iteration amortise the loop's per-iteration cost
    scores = jax.lax.map(at, jnp.arange(window - 1, t), batch_size=8)
    pad = jnp.full((window - 1,) + scores.shape[1:], -jnp.inf, jnp.float32)
    return jnp.concatenate([pad, scores])
