"""Builders for hand-constructed env states used across the env tests."""
import jax
import jax.numpy as jnp
import numpy as np

import jaxsoc.env as soc
from jaxsoc.env import alerts
from jaxsoc.env.network import topology
from jaxsoc.env.state import NUM_ALERT_FIELDS


def fresh(params, key=0):
    """A freshly reset state for `params`."""
    return soc.initial_state(jax.random.key(key), params)


def with_hosts(state, **fields):
    """Replace host fields; values are numpy-like `[S, Hmax]`."""
    h = state.hosts
    cast = {f: jnp.asarray(v, getattr(h, f).dtype) for f, v in fields.items()}
    return state.replace(hosts=h.replace(**cast))


def host_mask(params, *ids):
    """`[S, Hmax]` bool with the given (segment, index) hosts set."""
    m = np.zeros((params.num_segments, topology(params).host_axis), bool)
    for s, j in ids:
        m[s, j] = True
    return m


def queue_of(params, rows):
    """A packed queue from a list of dicts (missing fields 0, valid 1)."""
    q = np.zeros((params.queue_capacity, NUM_ALERT_FIELDS), np.float32)
    names = ("severity", "confidence", "segment", "host", "is_tp", "timestamp", "noise", "valid")
    for i, r in enumerate(rows):
        r = {"valid": 1.0, "host": -1.0, **r}
        q[i] = [r.get(n, 0.0) for n in names]
    return jnp.asarray(q)


def no_alerts(k=2):
    return jnp.zeros((k, NUM_ALERT_FIELDS), jnp.float32)


def batch_rollout(env, params, policy, num_envs, num_steps, key):
    """Run `policy` on `num_envs` envs for `num_steps` steps; returns per-step (dones, episode, metrics)."""
    def run(key):
        k0, k1 = jax.random.split(key)
        obs, st = jax.vmap(lambda k: env.reset(k, params))(jax.random.split(k0, num_envs))

        def body(carry, k):
            obs, st = carry
            ka, ks = jax.random.split(k)
            acts = jax.vmap(policy, in_axes=(0, 0, 0, None))(jax.random.split(ka, num_envs), obs, st, params)
            obs2, st2, r, d, info = jax.vmap(lambda k, s, a: env.step(k, s, a, params))(
                jax.random.split(ks, num_envs), st, acts)
            return (obs2, st2), (d["__all__"], st.episode, info["metrics"], r["coordinator"])

        _, out = jax.lax.scan(body, (obs, st), jax.random.split(k1, num_steps))
        return out
    return jax.jit(run)(key)


def first_episodes(dones, episode, metrics, per_env):
    """Metrics of each env's first `per_env` episodes (no length bias), as numpy arrays."""
    dones, episode = np.asarray(dones), np.asarray(episode)
    sel = dones & (episode < per_env)
    return {k: np.asarray(v)[sel] for k, v in metrics.items()}, int(sel.sum())
