"""Does the explainer explain? Its attention against the ground truth over held-out decisions.

A coordinator's attention map (`attention_weights` of its family, head-mean: `[S]` per decision)
explains a directive only if it lands where the directive and the attack are. For every
coordinator decision (a step at which the env reads the directive, `defenders.reads_directive`)
of each env's first greedy held-out episode, `decision_records` keeps the head-mean attention,
the directive's focus and, from the ground truth, which segments each campaign holds (live:
compromised and still connected). `attention_statistics` then reports the mean weight a segment
gets when it is

* the directive's focus,
* attacked (any campaign holds it) — and, with competing campaigns, held by the *loud* campaign
  (lowest stealth: the decoy that draws the eye) or by the *quiet* one (highest stealth),
* clean (no campaign holds it),

against the uniform `1 / S`, and how often the map's top segment is attacked, against the
attacked share of segments (chance). Needs discrete directives (D6): the focus is a segment.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence

import numpy as np

CATEGORIES = ("focus", "attacked", "loud campaign", "quiet campaign", "clean")


def decision_records(env, env_params, act: Callable, policy_params, attention_fn: Callable, key,
                     num_envs: int) -> Dict[str, np.ndarray]:
    """Per step and env, over one episode limit: `decides [T, N]` (a coordinator decision of
    the env's first episode), `attention [T, N, S]` (head-mean), `focus [T, N]`, `held [T, N, C, S]`
    (campaign c holds a live host in segment s) and `stealth [T, N, C]`.

    `act(policy_params, key, obs, state, greedy)` acts for one env (`Trainer.act`);
    `attention_fn(policy_params, obs) -> [N, heads, S]` reads a batch of observations."""
    import jax
    import jax.numpy as jnp

    from jaxsoc import xla
    from jaxsoc.env import defenders
    from jaxsoc.env.network import topology
    from jaxsoc.evaluation import episode_limit

    valid = jnp.asarray(topology(env_params).host_valid)
    campaigns = jnp.arange(env_params.num_campaigns)
    batched_act = jax.vmap(lambda k, o, s: act(policy_params, k, o, s, True))
    batched_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def step(carry, k):
        obs, state, finished = carry
        k_act, k_env = jax.random.split(k)
        actions = batched_act(jax.random.split(k_act, num_envs), obs, state)
        h = state.hosts
        live = h.compromised & ~h.isolated & valid  # [N, S, H]
        held = jnp.any(live[:, None] & (h.owner[:, None] == campaigns[None, :, None, None]), axis=-1)
        stealth = jnp.broadcast_to(jnp.reshape(state.attacker.stealth, (num_envs, -1)),
                                   (num_envs, env_params.num_campaigns))
        record = {
            "decides": defenders.reads_directive(state.t, env_params) & ~finished,
            "attention": jnp.mean(attention_fn(policy_params, obs), axis=-2),
            "focus": actions["coordinator"] // env_params.num_postures,
            "held": held,
            "stealth": stealth,
        }
        obs, state, _, dones, _ = batched_step(jax.random.split(k_env, num_envs), state, actions, env_params)
        return (obs, state, finished | dones["__all__"]), record

    k_reset, k_run = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_envs), env_params)
    steps = episode_limit(env, env_params)
    run = xla.jit(lambda o, s, k: jax.lax.scan(step, (o, s, jnp.zeros((num_envs,), bool)),
                                               jax.random.split(k, steps))[1])
    return jax.tree.map(np.asarray, jax.device_get(run(obs, state, k_run)))


def attention_statistics(records: Dict[str, np.ndarray]) -> Dict[str, float]:
    """Mean attention per segment of each `CATEGORIES` kind over the decisions of `records`
    (`decision_records`), `uniform` (1/S), `top_attacked` (share of decisions with an attacked
    segment whose top-attention segment is attacked) and `chance` (mean attacked share of
    segments over those decisions), `decisions` and `decisions_attacked`. A kind no decision
    has is nan: the loud and the quiet campaign where there is one campaign (soc-v2)."""
    d = records["decides"].astype(bool)
    att = records["attention"][d]  # [D, S]
    focus = records["focus"][d]
    held = records["held"][d]  # [D, C, S]
    stealth = records["stealth"][d]  # [D, C]
    num, s = att.shape
    rows = np.arange(num)
    attacked = held.any(axis=1)  # [D, S]
    loud = held[rows, np.argmin(stealth, axis=1)]
    quiet = held[rows, np.argmax(stealth, axis=1)]
    focused = np.zeros_like(attacked)
    focused[rows, focus] = True
    masks = {"focus": focused, "attacked": attacked, "loud campaign": loud, "quiet campaign": quiet,
             "clean": ~attacked}
    if held.shape[1] < 2:  # one campaign is neither the loud nor the quiet one of a pair
        masks["loud campaign"] = masks["quiet campaign"] = np.zeros_like(attacked)
    out = {name: float(att[m].mean()) if m.any() else float("nan") for name, m in masks.items()}
    any_attack = attacked.any(axis=1)
    top = np.argmax(att, axis=1)
    out["top_attacked"] = float(attacked[rows, top][any_attack].mean()) if any_attack.any() else float("nan")
    out["chance"] = float(attacked[any_attack].mean()) if any_attack.any() else float("nan")
    out["uniform"] = 1.0 / s
    out["decisions"] = float(num)
    out["decisions_attacked"] = float(any_attack.sum())
    return out


def mean_statistics(per_seed: Sequence[Dict[str, float]]) -> Dict[str, float]:
    """The mean over seeds of each `attention_statistics` entry, over the seeds that have it
    (nan where none has: the loud and quiet campaign of a one-campaign world)."""
    out = {}
    for k in per_seed[0]:
        values = np.array([s[k] for s in per_seed], np.float64)
        values = values[~np.isnan(values)]
        out[k] = float(values.mean()) if values.size else float("nan")
    return out


def _cell(value: float) -> str:
    # nan: no decision of that kind (a single campaign, or no attack at all)
    return "n/a" if np.isnan(value) else f"{value:.3f}"


def to_markdown(rows: Dict[str, Dict[str, float]]) -> str:
    """One row per run (its `attention_statistics`)."""
    head = ("| run | decisions | uniform | " + " | ".join(CATEGORIES)
            + " | top segment attacked | chance |")
    lines = [head, "|---" * (len(CATEGORIES) + 5) + "|"]
    for name, st in rows.items():
        cells = [f"{int(st['decisions'])}", f"{st['uniform']:.3f}"]
        cells += [_cell(st[c]) for c in CATEGORIES]
        cells += [_cell(st["top_attacked"]), _cell(st["chance"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def example_decisions(records: Dict[str, np.ndarray], count: int) -> List[Dict[str, np.ndarray]]:
    """Up to `count` decisions at which some campaign holds a segment, env 0's first, then env 1's
    and so on (one episode may hold a single such decision, as on soc-v2, where a campaign is
    often contained within a few decisions): `{attention [S], focus, held [C, S], step, episode,
    stealth [C]}` each (the stealth of that episode's campaigns), for `figures.attention_with_truth`."""
    out = []
    held = records["held"]
    attacked = records["decides"] & held.any(axis=(-2, -1))  # [T, N]: a decision with a held segment
    for e in range(attacked.shape[1]):
        for t in np.flatnonzero(attacked[:, e]):
            out.append({"attention": records["attention"][t, e], "focus": int(records["focus"][t, e]),
                        "held": held[t, e], "step": int(t), "episode": e,
                        "stealth": records["stealth"][t, e]})
            if len(out) == count:
                return out
    return out
