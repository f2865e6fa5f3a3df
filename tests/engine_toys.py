"""A tiny env and a tiny learner with the real contracts, so the engine is tested in seconds.

ToyEnv: two agents see a one-hot `target` (3 values) and score when their action names it;
episodes end at `max_steps` (truncated) or with probability `p_end` (terminated); it auto-resets
and reports `infos["metrics"]` like the real env. ToyLearner ("toy" family): a shared linear
softmax policy trained by REINFORCE on the immediate reward with optax Adam.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxsoc import algos
from jaxsoc.algos.base import Trainer, mean_episode_metrics, per_update_trainer

AGENTS = ("a", "b")
N_ACTIONS = 3


class ToyParams(NamedTuple):
    max_steps: int = 6
    p_end: float = 0.15


class ToyState(NamedTuple):
    target: jax.Array
    t: jax.Array
    ret: jax.Array
    hits: jax.Array


class ToyEnv:
    agents = list(AGENTS)

    def __init__(self, params: ToyParams):
        self.params = params

    def _obs(self, state):
        one_hot = jax.nn.one_hot(state.target, N_ACTIONS)
        return {a: one_hot + 0.1 * i for i, a in enumerate(AGENTS)}

    def reset(self, key, params=None):
        state = ToyState(jax.random.randint(key, (), 0, N_ACTIONS), jnp.int32(0), jnp.float32(0), jnp.float32(0))
        return self._obs(state), state

    def step(self, key, state, actions, params=None):
        params = self.params if params is None else params
        k_end, k_target, k_reset = jax.random.split(key, 3)
        hits = jnp.stack([actions[a] == state.target for a in AGENTS]).astype(jnp.float32)
        reward = hits.mean()
        t = state.t + 1
        ret = state.ret + reward
        total_hits = state.hits + reward
        terminated = jax.random.uniform(k_end) < params.p_end
        truncated = (t >= params.max_steps) & ~terminated
        done = terminated | truncated
        metrics = {"return": ret, "length": t.astype(jnp.float32), "csr": total_hits / t}
        stepped = ToyState(jax.random.randint(k_target, (), 0, N_ACTIONS), t, ret, total_hits)
        final_obs = self._obs(stepped)
        reset_obs, reset_state = self.reset(k_reset)
        state = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_state, stepped)
        obs = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_obs, final_obs)
        rewards = {a: reward for a in AGENTS}
        dones = {a: done for a in AGENTS} | {"__all__": done}
        infos = {
            "terminated": terminated,
            "truncated": truncated,
            "discount": 1.0 - terminated.astype(jnp.float32),
            "final_obs": final_obs,
            "metrics": metrics,
        }
        return obs, state, rewards, dones, infos


def scenario_maker(name: str, env_cls, params_cls):
    """`make(scenario, **overrides) -> (env, params)` for the one toy scenario `name`, shaped
    like `jaxsoc.env.make` so the engine can take it as `make_env`."""

    def make(scenario: str, **overrides):
        if scenario != name:
            raise ValueError(f"unknown toy scenario {scenario!r}")
        params = params_cls(**overrides)
        return env_cls(params), params

    return make


make_toy_env = scenario_maker("toy", ToyEnv, ToyParams)


# ----------------------------------------------------------------------------- learner
DEFAULTS = {"lr": 0.1, "rollout": 4}
POSITIVE = ("lr", "rollout")
SWEEPABLE = ("lr",)  # jaxsoc/sweep.py: grid points of different lr share one program


class ToyTrainState(NamedTuple):
    params: Any
    opt_state: Any
    env_state: ToyState
    obs: Any
    key: jax.Array
    env_steps: jax.Array


def _logits(params, obs):
    return obs @ params["w"] + params["b"]


def make_train(config, env, env_params) -> Trainer:
    num_envs = config["num_envs"]
    rollout = config["toy"]["rollout"]
    optimizer = optax.adam(config["toy"]["lr"])
    steps_per_update = num_envs * rollout

    def act(params, key, obs, env_state, greedy):
        keys = jax.random.split(key, len(AGENTS))
        out = {}
        for k, a in zip(keys, AGENTS):  # agents, not envs: a fixed, tiny Python loop
            logits = _logits(params, obs[a])
            out[a] = jnp.argmax(logits) if greedy else jax.random.categorical(k, logits)
        return out

    batched_act = jax.vmap(act, in_axes=(None, 0, 0, 0, None))
    batched_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def init(key):
        k_params, k_reset, key = jax.random.split(key, 3)
        params = {
            "w": 0.01 * jax.random.normal(k_params, (N_ACTIONS, N_ACTIONS)),
            "b": jnp.zeros((N_ACTIONS,)),
        }
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(k_reset, num_envs), env_params
        )
        return ToyTrainState(params, optimizer.init(params), env_state, obs, key, jnp.int32(0))

    def update(s):
        def step(carry, _):
            env_state, obs, key = carry
            key, k_act, k_step = jax.random.split(key, 3)
            actions = batched_act(s.params, jax.random.split(k_act, num_envs), obs, env_state, False)
            next_obs, env_state, rewards, dones, infos = batched_step(
                jax.random.split(k_step, num_envs), env_state, actions, env_params
            )
            return (env_state, next_obs, key), (obs, actions, rewards["a"], infos["metrics"], dones["__all__"])

        (env_state, obs, key), (b_obs, b_act, b_rew, b_met, b_done) = jax.lax.scan(
            step, (s.env_state, s.obs, s.key), None, length=rollout
        )

        def loss_fn(params):
            advantage = b_rew - b_rew.mean()
            logp = sum(
                jnp.take_along_axis(jax.nn.log_softmax(_logits(params, b_obs[a])), b_act[a][..., None], -1)[..., 0]
                for a in AGENTS
            )
            return -(logp * advantage).mean()

        loss, grads = jax.value_and_grad(loss_fn)(s.params)
        updates, opt_state = optimizer.update(grads, s.opt_state, s.params)
        params = optax.apply_updates(s.params, updates)
        metrics = mean_episode_metrics(b_met, b_done)
        metrics["loss"] = loss
        env_steps = s.env_steps + steps_per_update
        metrics["env_steps"] = env_steps
        return ToyTrainState(params, opt_state, env_state, obs, key, env_steps), metrics

    return per_update_trainer(
        config, steps_per_update, init=init, update=update, act=act,
        policy_params=lambda s: s.params,
        env_axes=lambda s: s._replace(params=None, opt_state=None, env_state=0, obs=0, key=None, env_steps=None),
    )


def register() -> None:
    """Makes "toy" a known algorithm (family "toy", this module)."""
    algos.register("toy", "toy", module=__name__)


def toy_config(**flags):
    """A resolved config for the toy learner on the toy env; `flags` as for `config.resolve`."""
    from jaxsoc import config

    register()
    base = {"algo": "toy", "scenario": "toy", "num_envs": 8, "total_steps": 8 * 4 * 6,
            "run": {"chunk_updates": 2, "checkpoint_every": 2, "progress": False, "tensorboard": False}}
    return config.resolve(flags=config.merge(base, flags), scenarios=["toy"])


def trained_toy_run(root):
    """`root/toy`: a finished 2-seed toy run (6 updates, checkpoints 2, 4, 6) for the tests that
    load, evaluate or refuse a learner's run folder."""
    from jaxsoc import engine
    from tests.fast import fast_compile

    cfg = toy_config(num_seeds=2, run={"name": "toy", "dir": str(root)})
    with fast_compile():  # a toy that runs in milliseconds: compiling is its cost (tests/fast.py)
        engine.run(cfg, make_env=make_toy_env)
    return root / "toy"
