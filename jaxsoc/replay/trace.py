"""Recording episodes of a policy as a JSON-ready trace: what happened to every host, step by step.

`record(policy, seed, episodes)` rolls `episodes` episodes of one env each (vmapped, one jitted
scan of `env.step_env`, so the terminal state is kept rather than replaced by the next episode's
reset) and returns a trace:

    {"format", "algo", "scenario", "env", "run", "seed", "checkpoint_update", "greedy", "scripted",
     "segments": [S names], "high_value": [S bools], "hosts_per_segment": [S], "max_steps",
     "status_names": [8], "phase_names": [5], "triage_names": [4],
     "directive": {"kind": "discrete", "postures": [...]} or {"kind": "vector"},
     "reward_weights": {term: weight} (the reward is the weighted sum of the step's terms),
     "episodes": [{"index", "length", "outcome", "return", "metrics": {...}, "steps": [step, ...]}]}

and each step (after the step's transition, t = 1..length):

    {"t", "hosts": [S][Hmax] status codes (STATUS_NAMES index, -1 for padding),
     "counts": {status name: [S]}, "phase", "reward", "return" (so far), "reward_terms": {...},
     "queue": {"length", "true", "by_segment": [S], "true_by_segment": [S]},
     "directive": {"read": bool, "focus", "posture"} or {"read", "vector": [8]},
     "actions": {role: raw action}, "attention": {"weights": [heads][S], "decided_at": t} or null,
     "outcome": null, or on an episode's last step how it ended (contained, exfiltrated, time limit)}

A host's status is exclusive, in this order: isolated (compromised or clean), detected (compromised,
known, not isolated), compromised at stage 1..4 (initial access, execution, lateral movement,
exfiltration), else clean. Each step carries what its frame needs (the return so far, the decision
in force), so a frame is a function of one step (`jaxsoc.replay.frame`).

Episode keys: `split(fold_in(heldout_key(seed), REPLAY_STREAM), episodes)`, a stream of their own.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsoc import xla
from jaxsoc.env import defenders
from jaxsoc.run_log import json_safe
from jaxsoc.env.network import topology
from jaxsoc.env.params import PHASE_NAMES, posture_names
from jaxsoc.env.state import IS_TP, SEGMENT, VALID

FORMAT = 1
REPLAY_STREAM = 0x0E7A_BE1A  # fold_in constant of the replay episodes' keys
STATUS_NAMES = ("clean",) + PHASE_NAMES[1:] + ("detected", "isolated (compromised)", "isolated (clean)")
DETECTED, ISOLATED_COMPROMISED, ISOLATED_CLEAN = 5, 6, 7
PADDING = -1
TRIAGE_NAMES = ("escalate", "suppress", "correlate", "enrich")  # alerts.ESCALATE..ENRICH


def host_status(hosts, valid: np.ndarray) -> jax.Array:
    """Each host's status code (module docstring): int32 `[S, Hmax]`, PADDING where `valid` is False."""
    stage = jnp.clip(hosts.stage, 1, len(PHASE_NAMES) - 1)
    code = jnp.where(hosts.compromised, stage, 0)
    code = jnp.where(hosts.compromised & hosts.detected, DETECTED, code)
    code = jnp.where(hosts.isolated, jnp.where(hosts.compromised, ISOLATED_COMPROMISED, ISOLATED_CLEAN), code)
    return jnp.where(jnp.asarray(valid), code, PADDING).astype(jnp.int32)


def queue_by_segment(queue: jax.Array, num_segments: int) -> tuple[jax.Array, jax.Array]:
    """Queued alerts per segment, all and true ones: `([S], [S])` int32 from the `[Q, fields]` queue."""
    valid = queue[:, VALID] > 0.5
    onehot = jax.nn.one_hot(queue[:, SEGMENT].astype(jnp.int32), num_segments, dtype=jnp.int32) * valid[:, None]
    return onehot.sum(0), (onehot * (queue[:, IS_TP] > 0.5)[:, None]).sum(0)


def rollout(policy, keys: jax.Array, steps: int) -> tuple[dict, dict]:
    """`len(keys)` episodes of `steps` steps each from their reset: per-step records `{name:
    [E, steps, ...]}` (the `rec` dict built below: t, hosts, phase, reward and its terms, the
    queue per segment, the directive held and whether it was read, actions, done, metrics) and
    the observations each step acted on `{agent: [E, steps, obs]}`."""
    env, params = policy.env, policy.env_params
    valid = topology(params).host_valid
    s = params.num_segments

    def one(key):
        k_reset, k_run = jax.random.split(key)
        obs, state = env.reset(k_reset, params)

        def body(carry, k):
            obs, state = carry
            k_act, k_env = jax.random.split(k)
            actions = policy.act(k_act, obs, state)
            nobs, nstate, rewards, dones, infos = env.step_env(k_env, state, actions, params)
            queued, true = queue_by_segment(nstate.queue, s)
            rec = {"t": nstate.t, "hosts": host_status(nstate.hosts, valid), "phase": infos["attack_phase"],
                   "reward": rewards[env.agents[0]], "reward_terms": infos["reward_terms"],
                   "queued": queued, "queued_true": true,
                   "directive": defenders.held_directive(nstate, params),
                   "read": defenders.reads_directive(state.t, params),
                   "actions": actions, "done": dones["__all__"], "terminated": infos["terminated"],
                   "metrics": infos["metrics"]}
            return (nobs, nstate), (rec, obs)

        _, out = jax.lax.scan(body, (obs, state), jax.random.split(k_run, steps))
        return out

    # A replay is a handful of episodes, so compiling dominates: XLA's backend optimisations off
    # about halves it (measured 32 -> 13 s for rule-soar on soc-v2 on a 2-core CPU) for a slower run
    # nobody waits for.
    return xla.jit(jax.vmap(one), options={"xla_backend_optimization_level": 0})(keys)


def episode_keys(seed: int, episodes: int) -> jax.Array:
    """The replay's episode keys of `seed` (module docstring)."""
    from jaxsoc.analysis.protocols import heldout_key

    return jax.random.split(jax.random.fold_in(heldout_key(seed), REPLAY_STREAM), episodes)


def status_counts(grid: np.ndarray) -> dict[str, list]:
    """`{status name: [S] counts}` of a `[S, Hmax]` status grid (padding not counted)."""
    grid = np.asarray(grid)
    counts = (grid[..., None] == np.arange(len(STATUS_NAMES))).sum(-2)  # [S, statuses]
    return {name: counts[:, i].tolist() for i, name in enumerate(STATUS_NAMES)}


def _plain(x) -> Any:
    """A JSON value of a NumPy array or scalar: floats rounded to 6 decimals, NaN/inf -> null."""
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.floating):
        x = np.round(x.astype(np.float64), 6)
    return json_safe(x)


def _outcome(last: dict) -> str:
    if not last["done"]:
        return "running"
    if last["metrics"].get("exfiltrated"):
        return "exfiltrated"
    return "contained" if last["terminated"] else "time limit"


def _directive(value, read: bool, params) -> dict:
    if params.fix_d6_directive:
        index = int(value)
        return {"read": bool(read), "index": index, "focus": params.segment_names[index // params.num_postures],
                "posture": posture_names(params)[index % params.num_postures]}
    return {"read": bool(read), "vector": _plain(value)}


def _attention_in_force(weights: np.ndarray | None, read: np.ndarray):
    """Per step, the weights `[heads, S]` of the coordinator decision in force and its step index
    (the last step at or before it where the env read the directive); None before the first."""
    if weights is None:
        return [None] * len(read)
    idx = np.where(read, np.arange(len(read)), -1)
    last = np.maximum.accumulate(idx)
    return [None if j < 0 else {"weights": _plain(weights[j]), "decided_at": int(j) + 1} for j in last]


def episodes_json(policy, records: dict, obs: dict) -> list[dict]:
    """The trace's `episodes` list from `rollout`'s arrays (each cut at its first end)."""
    params = policy.env_params
    records = jax.device_get(records)
    out = []
    for e in range(np.asarray(records["done"]).shape[0]):  # episodes, on the host (a handful)
        rec = jax.tree.map(lambda x: np.asarray(x[e]), records)
        ends = np.flatnonzero(rec["done"])
        length = int(ends[0]) + 1 if ends.size else rec["done"].shape[0]
        attention = policy.attention({a: np.asarray(v[e][:length]) for a, v in obs.items()})
        weights = None if attention is None else np.asarray(attention[0])
        in_force = _attention_in_force(weights, rec["read"][:length])
        returns = np.cumsum(rec["reward"][:length])
        steps = []
        for i in range(length):  # steps of one episode, on the host: JSON building
            steps.append({
                "t": int(rec["t"][i]),
                "hosts": rec["hosts"][i].tolist(),
                "counts": status_counts(rec["hosts"][i]),
                "phase": int(rec["phase"][i]),
                "reward": _plain(rec["reward"][i]),
                "return": _plain(returns[i]),
                "reward_terms": {k: _plain(v[i]) for k, v in rec["reward_terms"].items()},
                "queue": {"length": int(rec["queued"][i].sum()), "true": int(rec["queued_true"][i].sum()),
                          "by_segment": rec["queued"][i].tolist(), "true_by_segment": rec["queued_true"][i].tolist()},
                "directive": _directive(rec["directive"][i], rec["read"][i], params),
                "actions": {a: _plain(v[i]) for a, v in rec["actions"].items()},
                "attention": in_force[i],
                "outcome": None,
            })
        last = {"done": bool(rec["done"][length - 1]), "terminated": bool(rec["terminated"][length - 1]),
                "metrics": {k: _plain(v[length - 1]) for k, v in rec["metrics"].items()}}
        steps[-1]["outcome"] = _outcome(last)
        out.append({"index": e, "length": length, "outcome": _outcome(last), "return": _plain(returns[-1]),
                    "metrics": last["metrics"] if last["done"] else {}, "steps": steps})
    return out


def header(policy, seed: int) -> dict:
    """The trace's fields other than `episodes` (module docstring)."""
    p = policy.env_params
    topo = topology(p)
    directive = ({"kind": "discrete", "postures": list(posture_names(p))} if p.fix_d6_directive
                 else {"kind": "vector"})
    return {
        "format": FORMAT, "algo": policy.algo, "scenario": policy.scenario, "env": dict(policy.config.get("env") or {}),
        "run": None if policy.run is None else str(policy.run), "seed": int(seed), "checkpoint_update": policy.update,
        "greedy": policy.greedy, "scripted": policy.scripted, "segments": list(p.segment_names), "high_value": topo.is_high_value.tolist(),
        "hosts_per_segment": list(p.hosts_per_segment), "max_steps": int(p.max_steps),
        "status_names": list(STATUS_NAMES), "phase_names": list(PHASE_NAMES), "triage_names": list(TRIAGE_NAMES),
        "directive": directive,
        "reward_weights": {"detect": float(p.w_detect), "response": float(p.w_response), "cost": float(p.w_cost),
                           "false_positive": float(p.w_fp)},
    }


def check_replayable(policy) -> None:
    """ValueError unless `policy` acts in a SOC world (`SOCEnv`): the trace is the SOC network's
    hosts, segments, alert queue and directive, which the other worlds (the demos, cage4-like,
    soc-hybrid) do not have; their episodes are evaluated by eval/evaluate.py."""
    from jaxsoc.env import SOCEnv

    if not isinstance(policy.env, SOCEnv):
        raise ValueError(f"a replay draws the SOC network (hosts, segments, alerts, the directive); "
                         f"scenario {policy.scenario!r} is another world "
                         f"({type(policy.env).__name__}): evaluate it with eval/evaluate.py")


def record(policy, seed: int, episodes: int) -> dict:
    """The trace of `episodes` greedy (per `policy.greedy`) episodes of `policy` (module docstring)."""
    check_replayable(policy)
    if episodes < 1:
        raise ValueError(f"episodes must be positive, got {episodes}")
    records, obs = rollout(policy, episode_keys(seed, episodes), int(policy.env_params.max_steps))
    return {**header(policy, seed), "episodes": episodes_json(policy, records, obs)}
