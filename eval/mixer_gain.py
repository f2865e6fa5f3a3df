#!/usr/bin/env python
"""What a trained hybrid team's mixer does with its agents' values: on world states from greedy
rollouts of each seed's policy, the agents' Q_i, the mixed Q_tot, the gain dQ_tot/dQ_i and the
reward per step the policy actually earns (docs/hybrid.md "Why the QMIX mixer failed").

    python eval/mixer_gain.py runs/hy-default                     # every seed of the run
    python eval/mixer_gain.py runs/hy-default --seeds 0,3 --envs 64 --steps 40

A Q_tot far above anything the rewards can add up to, with a gain well above 1 (VDN's is 1), is
the over-estimation that made QMIX collapse on soc-hybrid with the raw world state. Prints one
markdown row per seed: the world state's length (mean, 95th percentile), Q_i (mean, std over
agents and states), Q_tot, the mixer's value at Q_i = 0 (its state-only part), the gain (mean,
min, max) and the mean reward per step of the rollouts (greedy, `--envs` x `--steps`, auto-reset).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxsoc import cli  # noqa: E402


def build_parser():
    p = cli.Parser(prog="eval/mixer_gain.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a run folder of --algo hybrid with mixer qmix or vdn")
    p.add_argument("--seeds", type=cli.parse_seeds, default=None, help="training seeds to read (default: all)")
    p.add_argument("--envs", type=cli.parse_positive_int, default=64, help="rollout envs per seed (64)")
    p.add_argument("--steps", type=cli.parse_positive_int, default=40, help="rollout steps per env (40)")
    p.add_argument("--key", type=cli.parse_int, default=0, help="rollout key (0)")
    return p


def rollout_states(policy, team, env, params, key, envs: int, steps: int):
    """Greedy rollouts: stacked segment obs `[envs*steps, S, obs_dim]`, their actions `[envs*steps,
    S, H]`, world states `[envs*steps, ws]` and the team reward `[envs*steps]`."""
    import jax

    from jaxsoc.algos import common

    k_reset, k_run = jax.random.split(key)
    obs, state = common.batched_reset(env, params, k_reset, envs)
    ws = jax.vmap(env.get_world_state, in_axes=(0, None))(state, params)

    def step(carry, k):
        obs, state, ws = carry
        k_act, k_step = jax.random.split(k)
        act = jax.vmap(policy.act)(jax.random.split(k_act, envs), obs)
        nobs, state, reward, _, info = common.batched_step(env, params, k_step, state, act)
        return (nobs, state, info["world_state"]), (team.stack_obs(obs), team.stack_obs(act), ws, reward["network"])

    _, out = jax.lax.scan(step, (obs, state, ws), jax.random.split(k_run, steps))
    return tuple(x.reshape((-1,) + x.shape[2:]) for x in out)


def make_measure(policy, envs: int, steps: int):
    """`measure(key, params, env_params) -> 10 floats` (module docstring) for any seed of
    `policy`'s run: jitted once, the seed's parameters and world passed in, so every seed of a run
    reuses one program."""
    import dataclasses

    import jax.numpy as jnp

    from jaxsoc import xla
    from jaxsoc.algos import common, hybrid

    env = common.with_world_state(policy.env)
    team = hybrid.make_team(policy.config, env)
    q = team.q

    @xla.jit
    def measure(k, params, env_params):
        acting = dataclasses.replace(policy, params=params, env_params=env_params)
        agents = params.agents.segments.params
        obs, act, ws, reward = rollout_states(acting, team, env, env_params, k, envs, steps)
        qs = q.agent_values(agents, obs, act)
        length = jnp.linalg.norm(ws, axis=-1)
        gain = q.mixer_gain(agents, qs, ws)
        return (length.mean(), jnp.percentile(length, 95), qs.mean(), qs.std(), q.mix(agents, qs, ws).mean(),
                q.mix(agents, jnp.zeros_like(qs), ws).mean(), gain.mean(), gain.min(), gain.max(), reward.mean())

    return measure


def seed_row(measure, policy, key: int) -> str:
    """One markdown row for one seed's `Policy` (module docstring)."""
    import jax

    env_params = policy.env_params.replace(with_world_state=True)
    v = [float(x) for x in measure(jax.random.PRNGKey(key), policy.params, env_params)]
    return (f"| {policy.seed} | {v[0]:.2f} ({v[1]:.2f}) | {v[2]:+.2f} ± {v[3]:.2f} | {v[4]:+.2f} | {v[5]:+.2f} | "
            f"{v[6]:.2f} [{v[7]:.2f}, {v[8]:.2f}] | {v[9]:+.3f} |")


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    from jaxsoc.policy import check_run

    try:
        run = check_run(args.run, algo="hybrid").run
    except ValueError as e:
        p.error(str(e))
    mixer = run.config.get("hybrid", {}).get("mixer")
    if mixer not in ("qmix", "vdn"):
        p.error(f"{args.run} trained independent learners (hybrid.mixer {mixer!r}): there is no mixer to measure")
    from jaxsoc import load_policies

    try:
        policies = load_policies(args.run, seeds=args.seeds)
    except ValueError as e:
        p.error(str(e))
    print(f"{args.run}: mixer {mixer}, greedy rollouts of {args.envs} envs x {args.steps} steps per seed\n")
    print("| seed | world state length (p95) | Q_i | Q_tot | mixer at Q_i = 0 | gain dQ_tot/dQ_i [min, max] | reward per step |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    measure = make_measure(policies[0], args.envs, args.steps)
    for policy in policies:
        print(seed_row(measure, policy, args.key), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main, "eval/mixer_gain.py"))
