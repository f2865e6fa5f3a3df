"""PSRO on the SOC game: populations of PPO blue teams and red attackers.

    game = socgame.SOCGame(config, env, env_params, blue_steps=1.5e5, red_steps=1e5, episodes=64)
    zs, trained = game.zero_sum()                         # psro.ZeroSumGame, oracles batched over seeds
    blue0, red0 = game.initial(keys)                      # fresh networks, leaves [S, ...]
    result = psro.run_psro_batch(zs, blue0, red0, keys, iterations=3)

The game is `soc-v2-redblue` (a `red_control` scenario; docs/redblue.md) seen as a two-player
zero-sum game between policies. The row player is blue (the SOC team's actors, the maximiser), the
column player red; a policy is one side's actor parameters (`redblue.side_policy`, the same
architecture for every member, so a population stacks them: `psro.Population`).

* payoff(key, blue, red) -> []: blue's mean return over `episodes` held-out episodes of the
  pairing, both sides greedy (`redblue.play`); PSRO vmaps it over every pairing (and seeds), so a
  row or column of the meta-game is one compiled program.
* oracles: PPO best responses (`redblue.side_trainer`) against the opponent's meta-strategy
  mixture: the opponent is a `redblue.Mixture` (its population's parameters and the meta-strategy),
  so every env draws an opponent member at each episode reset and plays its parameters, gathered
  per env; the opponent samples its actions while the response trains (as in eval/redblue.py).
  Batched over seeds: one call trains S responses in one vmapped program.
* warm start (default on): each side's response starts from its previous response's parameters
  (actor and critic) instead of fresh networks, so a run of k iterations trains each side's
  chain of responses for k x steps, not k separate runs of `steps`; the first responses start fresh.

No exact exploitability exists for this game; PSRO reports the fresh responses' gain over the
meta-game value (`psro` module docstring), a lower bound on the meta-strategies' NashConv.
"""
from __future__ import annotations

from typing import Any, List, Tuple

import jax
import jax.numpy as jnp

from jaxsoc.algos import redblue
from jaxsoc.game.psro import Population, ZeroSumGame

__all__ = ["SOCGame", "OTHER"]

OTHER = {"blue": "red", "red": "blue"}


class SOCGame:
    """The red-vs-blue SOC game's payoff and best-response oracles (module docstring).

    config: a resolved config with a `redblue` section (network sizes, PPO hyper-parameters,
    `num_envs`); env, env_params: a `red_control` scenario; blue_steps / red_steps: env steps per
    seed of each best response; episodes: held-out episodes per pairing; warm_start: see above.
    Compiled programs are built once per `SOCGame` and shared by every `zero_sum()` run.
    """

    def __init__(self, config: dict, env, env_params, *, blue_steps: float, red_steps: float,
                 episodes: int, warm_start: bool = True):
        if not getattr(env_params, "red_control", False):
            raise ValueError("the SOC game needs a red_control scenario (soc-v2-redblue), not "
                             + repr(getattr(env_params, "name", env_params)))
        redblue.check_budgets(config["num_envs"] * config["redblue"]["rollout"],
                              {"blue_steps": blue_steps, "red_steps": red_steps})
        if not (isinstance(episodes, int) and episodes >= 1):
            raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
        self.config, self.env, self.env_params = config, env, env_params
        self.steps = {"blue": int(blue_steps), "red": int(red_steps)}
        self.episodes, self.warm_start = episodes, warm_start
        self.policy = {side: redblue.side_policy(env, config, side) for side in ("blue", "red")}
        greedy = {side: redblue.learned(env, env_params, self.policy[side], greedy=True) for side in self.policy}
        self.greedy = greedy
        p = env_params

        def payoff(key, blue_actor, red_actor):
            out = redblue.play(env, p, lambda k, o, s: greedy["blue"](blue_actor, k, o, s, p),
                               lambda k, o, s: greedy["red"](red_actor, k, o, s, p), key, episodes)
            return jnp.mean(out["return"])

        self.payoff = payoff  # one function object: psro's compiled pairing programs cache on it
        self._train = {}

    # ------------------------------------------------------------------------- best responses
    def trainer(self, side: str, opponent: Any, steps: int):
        """PPO for `side` (steps env steps per seed) against the other side's learned policy with
        parameters `opponent` (a `redblue.Mixture` or one member's actor params)."""
        cfg = dict(self.config, total_steps=int(steps))
        other = redblue.learned(self.env, self.env_params, self.policy[OTHER[side]])
        return redblue.side_trainer(cfg, self.env, self.env_params, side, other, opponent)

    def train_program(self, side: str, steps: int):
        """`jit(vmap(train))`: `(keys [S], policies (leaves [S, capacity, ...]), meta [S, capacity],
        start (params leaves [S, ...]), use_start bool [S]) -> (params, metrics [S, updates])`:
        S best responses of `side` to the mixtures, from `start` where `use_start` (else fresh)."""
        if (side, steps) not in self._train:
            def train(key, policies, meta, start, use_start):
                tr = self.trainer(side, redblue.Mixture(policies, meta), steps)
                state = tr.init(key)
                params = jax.tree.map(lambda a, b: jnp.where(use_start, a, b), start, state.params)
                state = state._replace(params=params)  # Adam's moments start at zero either way
                state, metrics = jax.lax.scan(lambda s, _: tr.update(s), state, None, length=tr.num_updates)
                return state.params, metrics

            self._train[side, steps] = jax.jit(jax.vmap(train))
        return self._train[side, steps]

    def params_shape(self, side: str, population: Population):
        """The abstract (shape-only) full params {actor, critic} of `side`'s trainer, leaves [S, ...]."""
        def one(key, policies, meta):
            return self.trainer(side, redblue.Mixture(policies, meta), self.steps[side]).init(key).params

        keys = jax.random.split(jax.random.key(0), population.size.shape[0])
        meta = jnp.zeros(population.size.shape + (jax.tree.leaves(population.policies)[0].shape[1],))
        return jax.eval_shape(jax.vmap(one), keys, population.policies, meta)

    def best_response(self, side: str, keys, opponent: Population, meta, *, steps=None, start=None):
        """S best responses of `side` to the opponent mixtures: `(params {actor, critic} leaves
        [S, ...], metrics [S, updates])`. keys [S]; opponent: the other side's population (leaves
        [S, capacity, ...]); meta [S, capacity]; start: params to warm-start from (None: fresh)."""
        steps = self.steps[side] if steps is None else int(steps)
        use = jnp.full(keys.shape, start is not None)
        if start is None:
            start = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), self.params_shape(side, opponent))
        return self.train_program(side, steps)(keys, opponent.policies, meta, start, use)

    def zero_sum(self) -> Tuple[ZeroSumGame, List[dict]]:
        """A fresh PSRO run's `ZeroSumGame` (oracles batched over seeds, for `psro.run_psro_batch`)
        and the list its oracles append to: per call {"side", "call", "metrics" (np, [S, updates])}.
        Each run keeps its own warm-start parameters, so two runs with the same keys are equal."""
        last = {"blue": None, "red": None}
        trained: List[dict] = []

        def oracle(side):
            def respond(keys, opponent: Population, meta):
                start = last[side] if self.warm_start else None
                params, metrics = self.best_response(side, keys, opponent, meta, start=start)
                last[side] = params
                trained.append({"side": side, "call": sum(t["side"] == side for t in trained),
                                "metrics": jax.tree.map(jax.device_get, metrics)})
                return params["actor"]
            return respond

        return ZeroSumGame(self.payoff, oracle("blue"), oracle("red")), trained

    # ------------------------------------------------------------------------- first members
    def initial(self, keys) -> tuple:
        """(blue actors, red actors), leaves [S, ...]: freshly initialised networks, one per seed
        (keys [S]): the populations' first members."""
        def one(key):
            k_blue, k_red = jax.random.split(key)
            return self.policy["blue"].init(k_blue), self.policy["red"].init(k_red)

        return jax.jit(jax.vmap(one))(keys)
