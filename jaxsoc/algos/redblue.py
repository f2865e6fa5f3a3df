"""Red vs blue on the SOC engine: PPO for the learnable red agent (family "redblue", section `redblue:`).

    make_train(config, env, env_params) -> Trainer        # see jaxsoc.algos.base

Needs a scenario with `red_control` (`soc-v2-redblue`; docs/redblue.md): red is one more agent of
the env, with a zero-sum reward (minus the SOC team's). Each side is trained by PPO (`ppo.build_trainer`,
unchanged) on a `SideEnv`: the env as one side sees it, the other side acting inside `step` with
parameters passed in the env params (`Versus.opponent`), so a side's opponent can change between
updates inside one compiled program.

| algo      | what                                                                                 |
|-----------|--------------------------------------------------------------------------------------|
| red-ppo   | PPO for red against a fixed SOC team (`redblue.blue`: a `POLICIES` name or a run      |
|           | folder holding a SOC team, e.g. a finished `redblue` run: `check_blue_run`)           |
| redblue   | alternating training in one program: each round `rounds_updates` PPO updates of red  |
|           | against the current blue team, then as many of blue (MAPPO-style world critic, or    |
|           | `blue_critic: local`) against the updated red; `lax.scan` over rounds, vmapped over seeds |

Red's actor and critic read only red's observation (an intruder's view); blue's actors read their
roles' observations, its critic the SOC world state. Both sides share the PPO hyper-parameters of
the section. `Trainer.act` returns every agent's action (red's and the SOC team's), so
`eval/evaluate.py` and the engine evaluate a run on the redblue scenario as any other.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
from flax import struct

from jaxsoc.algos import onpolicy
from jaxsoc.algos.base import Trainer
from jaxsoc.algos.common import RoleSpec
from jaxsoc.config import ConfigError
from jaxsoc.algos.ppo import DEFAULTS as PPO_DEFAULTS
from jaxsoc.algos.ppo import build_trainer, check_section
from jaxsoc.env.attacker import RED_ADVANCE
from jaxsoc.env.params import NUM_PHASES, EnvParams
from jaxsoc.env.policies import POLICIES

DEFAULTS = {
    **PPO_DEFAULTS,
    "critic": "auto",        # blue's critic under redblue: auto (= world) | world | local; red's is local
    "hidden_sizes": [128, 128],
    "rounds_updates": 4,     # redblue: PPO updates per side per round
    "blue": "rule-soar",     # red-ppo: the fixed SOC team: a scripted policy of jaxsoc.env.POLICIES, or a
                             # run folder whose SOC team it loads (jaxsoc.load_policy; see `blue_run`)
}
# Runs whose policy includes a SOC team that red-ppo can load as its fixed opponent: the
# alternating self-play's blue team, or a scripted SOC policy run on the red-control scenario.
BLUE_RUN_ALGOS = ("redblue",)
POSITIVE = ("rollout", "epochs", "minibatches", "lr", "adam_eps", "max_grad_norm", "clip_eps", "rounds_updates")
SIDES = ("red", "blue")


# The switches of soc-v2-redblue (on there) the scripted leads need (`jaxsoc.env.leads`).
LEAD_SWITCHES = ("fix_d6_directive", "fix_d1_hidden_truth")
# The keys one of the two learners reads and the other does not (refused there when changed).
RED_PPO_ONLY = ("blue",)
REDBLUE_ONLY = ("rounds_updates", "critic")


def validate(config: dict) -> None:
    s = config["redblue"]
    # This family's own choices first: PPO's check would list choices it refuses here.
    if s["policy"] not in ("auto", "per_role"):
        raise ConfigError(f"redblue.policy must be auto or per_role, got {s['policy']!r}")
    if s["critic"] not in ("auto", "world", "local"):
        raise ConfigError(f"redblue.critic (blue's critic) must be auto, world or local, got {s['critic']!r}")
    check_section(config, "redblue")
    if s["coordinator"] != "native":  # red's side has no coordinator; blue's acts as the env takes it
        raise ConfigError(f"redblue.coordinator must be native here (each side's actions are the env's own), "
                          f"got {s['coordinator']!r}")
    if not isinstance(s["rounds_updates"], int) or s["rounds_updates"] < 1:
        raise ConfigError(f"redblue.rounds_updates must be a positive integer, got {s['rounds_updates']!r}")
    unread = [k for k in (REDBLUE_ONLY if config["algo"] == "red-ppo" else RED_PPO_ONLY) if s[k] != DEFAULTS[k]]
    if unread:
        raise ConfigError(f"redblue.{unread[0]} " + ("is redblue's (blue's critic, the alternation); red-ppo trains "
                                                      "red alone against a fixed SOC team (redblue.blue)"
                                                      if config["algo"] == "red-ppo" else
                                                      "is red-ppo's fixed SOC team; redblue trains its own blue"))
    if s["blue"] in POLICIES:
        env = config.get("env") or {}
        if s["blue"].startswith("lead-") and not all(env.get(k, True) for k in LEAD_SWITCHES):
            raise ConfigError(f"redblue.blue {s['blue']} issues discrete directives and reads the SOC view: "
                              f"it needs env.{' and env.'.join(LEAD_SWITCHES)} on")
    else:
        try:
            check_blue_run(s["blue"], config["scenario"], config.get("env", {}))
        except ValueError as e:
            raise ConfigError(f"redblue.blue must be a scripted SOC policy ({', '.join(POLICIES)}) or a "
                              f"run folder holding a SOC team: {e}") from None
        # Kept as an absolute path: the run's config.yaml is read again from other folders (an
        # evaluation, a resume), where a path relative to where it was trained finds nothing.
        s["blue"] = str(Path(s["blue"]).resolve())


def check_budgets(per_update: int, budgets: dict) -> None:
    """ConfigError (a ValueError) unless each env-step budget of `budgets`, keyed by the name its
    caller knows it by (`{"--red-steps": n}` for the evidence tools, `{"red_steps": n}` for
    `game.socgame.SOCGame`), covers at least one PPO update of `per_update` env steps (num_envs x
    rollout)."""
    for name, steps in budgets.items():
        if not steps >= per_update:  # NaN too
            raise ConfigError(f"{name} must cover at least one PPO update (num_envs x rollout = {per_update} "
                              f"env steps), got {steps}")


def check_tool_sets(sets) -> None:
    """For the evidence tools (eval/redblue.py, eval/psro_soc.py), which train each side with
    `side_trainer` and set the envs, budgets, seeds and env by their own flags: every `--set` must
    be a `redblue.KEY` they read (ConfigError otherwise: it was taken and then ignored)."""
    from jaxsoc.cli import set_keys_problem

    problem = set_keys_problem(sets, ("redblue.",))
    if problem:
        raise ConfigError(problem)
    for item in sets:
        key = str(item).split("=", 1)[0].strip()
        if key.removeprefix("redblue.") in ("blue", "rounds_updates"):
            raise ConfigError(f"--set {item}: this tool does not read {key} (it trains each side on its own)")


def check_blue_run(path: str, scenario: str, env_overrides: dict):
    """The run folder `path` as red-ppo's fixed SOC team, checked before any JAX work: a finished
    run (config and checkpoint) of the same scenario and env overrides as this run, whose policy
    acts for the SOC team (a `redblue` run's blue team, or a scripted SOC policy). Returns its
    `jaxsoc.policy.Checked`; ValueError (AnalysisError) naming the problem otherwise."""
    from jaxsoc.analysis.runs import AnalysisError, read_run
    from jaxsoc.policy import check_run, is_scripted

    run = read_run(path)  # what the run is first; its checkpoints (check_run) after
    if run.scenario != scenario:
        raise AnalysisError(f"{run.path} was trained on {run.scenario!r}, not this run's {scenario!r}")
    algo = run.algo
    if not (algo in BLUE_RUN_ALGOS or (is_scripted(algo) and algo in POLICIES)):
        side = "red's policy (a red-ppo run)" if algo == "red-ppo" else f"a {algo!r} policy"
        raise AnalysisError(f"{run.path} holds {side}, not a SOC team: use a redblue run or a scripted SOC policy")
    theirs = dict(run.config.get("env") or {})
    if theirs != dict(env_overrides or {}):
        raise AnalysisError(f"{run.path} was trained with env overrides {theirs}, this run has {dict(env_overrides or {})}"
                            " (the SOC roles' observations would not match)")
    return check_run(path)


def blue_run(path: str) -> Opponent:
    """The SOC team of run folder `path` (checked by `check_blue_run`) as red's fixed opponent:
    its first seed's newest checkpoint, acting greedily as `jaxsoc.load_policy` does (the actions
    `eval/evaluate.py` evaluates); red's own action of that policy, if any, is dropped."""
    from jaxsoc.analysis.runs import AnalysisError
    from jaxsoc.policy import load_policy

    try:
        team = load_policy(path)
    except AnalysisError as e:  # e.g. a damaged checkpoint: a refusal of this run's config, one line
        raise ConfigError(f"redblue.blue: {e}") from None
    soc_roles = [a for a in team.env.agents if a != "red"]

    def act(_params, key, obs, state, env_params):
        actions = team.act(key, obs, state)
        return {a: actions[a] for a in soc_roles}

    return act


def blue_opponent(name_or_run: str) -> Opponent:
    """red-ppo's fixed SOC team: a scripted policy name (`scripted_blue`) or a run folder (`blue_run`)."""
    return scripted_blue(name_or_run) if name_or_run in POLICIES else blue_run(name_or_run)


# ----------------------------------------------------------------------------- one side's env
class Versus(NamedTuple):
    """Env params of a `SideEnv`: the SOC world's `EnvParams` and the opponent's parameters (any
    pytree, or None for a scripted opponent). Attributes not found here are the world's, so
    learners read `max_steps`, `directive_period`... as from `EnvParams`."""

    env: EnvParams
    opponent: Any = None

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.env, name)

    def replace(self, **kw) -> "Versus":
        return self._replace(env=self.env.replace(**kw))


class Mixture(NamedTuple):
    """An opponent that is a mixture of policies (PSRO's meta-strategy over a population), as
    `Versus.opponent`: at every episode reset each env draws one member with probability `meta`
    and plays it for the whole episode.

    policies: the members' parameters, every leaf `[capacity, ...]` (`psro.Population.policies`);
    meta: `[capacity]` probabilities (0 on slots that hold no member)."""

    policies: Any
    meta: jax.Array


# The member draw's key stream, folded into the env's reset/step key so the world's draws are
# the same as without a mixture.
MEMBER_STREAM = 0x6D6978


def draw_member(key: jax.Array, meta: jax.Array) -> jax.Array:
    """int32 []: a member index drawn with probabilities `meta [capacity]` (zero-weight slots never)."""
    logits = jnp.where(meta > 0, jnp.log(jnp.maximum(meta, 1e-30)), -jnp.inf)
    return jax.random.categorical(jax.random.fold_in(key, MEMBER_STREAM), logits).astype(jnp.int32)


@struct.dataclass
class SideState:
    """A `SideEnv`'s state: the world's and every agent's current observation (the opponent acts
    on its own). `t` is the world's clock (the directive schedule reads it). `member`: int32 [],
    the opponent member this env plays in its current episode when the opponent is a `Mixture`
    (None otherwise)."""

    inner: Any
    obs: Dict[str, jax.Array]
    member: Any = None

    @property
    def t(self):
        return self.inner.t


# opponent(opponent_params, key, obs {agent: [obs_dim]}, world state, EnvParams) -> the other side's actions
Opponent = Callable[[Any, jax.Array, Dict[str, jax.Array], Any, EnvParams], Dict[str, jax.Array]]


class SideEnv:
    """The red-control SOC env as one side sees it (`side` "red" or "blue"): `agents` are that
    side's, the other side's actions come from `opponent(params.opponent, ...)` inside `step`.
    For ONE env, like `SOCEnv`; `params` is a `Versus`."""

    def __init__(self, inner, side: str, opponent: Opponent):
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        self.inner, self.side, self.opponent = inner, side, opponent
        self.agents = ["red"] if side == "red" else [a for a in inner.agents if a != "red"]
        self.num_agents = len(self.agents)
        self.default_params = Versus(inner.default_params)
        self.world_state_size = inner.world_state_size

    def observation_space(self, agent):
        return self.inner.observation_space(agent)

    def action_space(self, agent):
        return self.inner.action_space(agent)

    def _mine(self, d):
        return {a: d[a] for a in self.agents}

    def reset(self, key, params: Versus):
        """`key -> (obs {agent: [obs_dim]} of this side, SideState)`; against a `Mixture` the
        episode's opponent member is drawn here."""
        obs, st = self.inner.reset(key, params.env)
        member = draw_member(key, params.opponent.meta) if isinstance(params.opponent, Mixture) else None
        return self._mine(obs), SideState(st, obs, member)

    def step(self, key, state: SideState, actions, params: Versus):
        """One auto-resetting world step with the opponent acting: `SOCEnv.step`'s outputs, the
        per-agent dicts (and `infos["final_obs"]`) restricted to this side's agents. Against a
        `Mixture` the opponent plays its member's parameters (gathered per env: under the
        learners' vmap over envs each env reads its own slot) and an env whose episode ended
        draws the next episode's member."""
        k_opp, k_env = jax.random.split(key)
        mixture = isinstance(params.opponent, Mixture)
        opp_params = (jax.tree.map(lambda x: x[state.member], params.opponent.policies) if mixture
                      else params.opponent)
        other = self.opponent(opp_params, k_opp, state.obs, state.inner, params.env)
        obs, st, rewards, dones, infos = self.inner.step(k_env, state.inner, {**other, **actions}, params.env)
        infos = dict(infos, final_obs=self._mine(infos["final_obs"]))
        member = state.member
        if mixture:
            member = jnp.where(dones["__all__"], draw_member(k_env, params.opponent.meta), member)
        return (self._mine(obs), SideState(st, obs, member), self._mine(rewards),
                {**self._mine(dones), "__all__": dones["__all__"]}, infos)

    def get_avail_actions(self, state: SideState, params: Versus):
        return self._mine(self.inner.get_avail_actions(state.inner, params.env))

    def get_world_state(self, state: SideState, params: Versus):
        return self.inner.get_world_state(state.inner, params.env)


def scripted_blue(name: str) -> Opponent:
    """A scripted SOC team (`jaxsoc.env.POLICIES[name]`) as red's opponent."""
    policy = POLICIES[name]
    return lambda _params, key, obs, state, env_params: policy(key, obs, state, env_params)


def scripted_red(_params, key, obs, state, env_params):
    """The scripted campaign as blue's opponent: red advances every step."""
    return {"red": jnp.asarray(RED_ADVANCE, jnp.int32)}


def learned(env, env_params: EnvParams, policy: onpolicy.Policy, greedy: bool = False) -> Opponent:
    """A PPO side (`policy` over its roles) as the other side's opponent; params come per call."""
    act = onpolicy.make_act(env, env_params, policy)
    return lambda params, key, obs, state, _p: act(params, key, obs, state, greedy)


# ----------------------------------------------------------------------------- trainers
def side_config(config: dict, side: str) -> dict:
    """The config `ppo.build_trainer` reads for one side: red's critic is always its own (local)."""
    s = dict(config["redblue"])
    s["policy"] = "per_role"
    s["critic"] = "local" if side == "red" else ("world" if s["critic"] == "auto" else s["critic"])
    return {**config, "redblue": s}


def side_policy(env, config: dict, side: str) -> onpolicy.Policy:
    """The actors `ppo.build_trainer` builds for `side` (same specs, sizes and heads)."""
    s = config["redblue"]
    agents = ["red"] if side == "red" else [a for a in env.agents if a != "red"]
    specs = []
    for a in agents:
        space, obs_dim = env.action_space(a), env.observation_space(a).shape[0]
        kind, size = ("discrete", space.n) if hasattr(space, "n") else ("continuous", space.shape[0])
        specs.append(RoleSpec(a, obs_dim, kind, size))
    return onpolicy.Policy(tuple(specs), hidden_sizes=tuple(s["hidden_sizes"]), activation=s["activation"],
                           log_std_init=s["log_std_init"], log_std_min=s["log_std_min"],
                           log_std_max=s["log_std_max"])


def side_trainer(config: dict, env, env_params: EnvParams, side: str, opponent: Opponent,
                 opponent_params: Any = None) -> Trainer:
    """PPO for `side` against `opponent` (with `opponent_params`, which may be traced): a
    `ppo.build_trainer` on the `SideEnv`. Cheap to build, so a program builds one per opponent."""
    cfg = side_config(config, side)
    inner = env
    if side == "blue" and cfg["redblue"]["critic"] == "world" and not env_params.with_world_state:
        env_params = env_params.replace(with_world_state=True)
        inner = type(env)(env_params)
    return build_trainer(cfg, SideEnv(inner, side, opponent), Versus(env_params, opponent_params),
                         family="redblue", loss_cfg=None)


class RedBlueState(NamedTuple):
    """Train state of one seed under `redblue`: each side's PPO state (own envs, own optimiser)."""

    red: Any
    blue: Any


def _prefixed(metrics: Dict[str, jax.Array], side: str) -> Dict[str, jax.Array]:
    return {f"{side}/{k}": v for k, v in metrics.items() if k != "env_steps"}


def make_train(config: dict, env, env_params) -> Trainer:
    if not getattr(env_params, "red_control", False):
        raise ConfigError(f"{config['algo']} trains the learnable red agent: use a scenario with "
                         f"red_control (soc-v2-redblue), not {config['scenario']!r}")
    s = config["redblue"]
    red_policy = side_policy(env, config, "red")
    blue_policy = side_policy(env, config, "blue")
    red_act = onpolicy.make_act(env, env_params, red_policy)
    blue_act = onpolicy.make_act(env, env_params, blue_policy)

    if config["algo"] == "red-ppo":
        blue = blue_opponent(s["blue"])
        tr = side_trainer(config, env, env_params, "red", blue)

        def act(params, key, obs, env_state, greedy):
            k_red, k_blue = jax.random.split(key)
            return {**blue(None, k_blue, obs, env_state, env_params),
                    **red_act(params, k_red, obs, env_state, greedy)}

        return Trainer(init=tr.init, update=tr.update, num_updates=tr.num_updates,
                       env_steps_per_update=tr.env_steps_per_update, act=act,
                       policy_params=tr.policy_params, name=config["algo"], env_axes=tr.env_axes)

    # redblue: alternating rounds.
    k = s["rounds_updates"]
    red_vs_blue = learned(env, env_params, blue_policy)
    blue_vs_red = learned(env, env_params, red_policy)
    steps = config["num_envs"] * s["rollout"]
    per_round = 2 * k * steps
    # Each side trains k of every round's 2k updates: its own budget is what sizes its trainer
    # (anneal_lr's schedule; with the run's whole budget each side's rate ended near half).
    rounds = max(config["total_steps"] // per_round, 1)
    side_cfg = {**config, "total_steps": rounds * k * steps}

    def init(key):
        k_red, k_blue = jax.random.split(key)
        return RedBlueState(side_trainer(side_cfg, env, env_params, "red", red_vs_blue).init(k_red),
                            side_trainer(side_cfg, env, env_params, "blue", blue_vs_red).init(k_blue))

    def update(state: RedBlueState):
        def train(side, opponent, params, st):
            tr = side_trainer(side_cfg, env, env_params, side, opponent, params)
            return jax.lax.scan(lambda x, _: tr.update(x), st, None, length=k)

        red, red_m = train("red", red_vs_blue, state.blue.params["actor"], state.red)
        blue, blue_m = train("blue", blue_vs_red, red.params["actor"], state.blue)
        last = lambda m: jax.tree.map(lambda x: x[-1], m)  # noqa: E731
        # The episode metrics of blue's last update are the run's (the SOC team's view, as every
        # other learner reports); each side's losses and rewards under its prefix.
        metrics = {**last(blue_m), **_prefixed(last(red_m), "red"), **_prefixed(last(blue_m), "blue")}
        metrics["env_steps"] = red.env_steps + blue.env_steps
        return RedBlueState(red, blue), metrics

    def act(params, key, obs, env_state, greedy):
        k_red, k_blue = jax.random.split(key)
        return {**blue_act(params["blue"], k_blue, obs, env_state, greedy),
                **red_act(params["red"], k_red, obs, env_state, greedy)}

    return Trainer(
        init=init, update=update, num_updates=config["total_steps"] // per_round,
        env_steps_per_update=per_round, act=act,
        policy_params=lambda st: {"red": st.red.params["actor"], "blue": st.blue.params["actor"]},
        name=config["algo"],
        env_axes=lambda st: RedBlueState(*(x._replace(params=None, opt_state=None, env_state=0, obs=0,
                                                       world_state=None if x.world_state is None else 0,
                                                       key=None, env_steps=None, updates=None)
                                           for x in (st.red, st.blue))),
    )


# ----------------------------------------------------------------------------- evaluation
def play(env, params, blue_fn, red_fn, key, num_envs, blue_args=None, red_args=None):
    """`num_envs` episodes (each env's first, `params.max_steps` steps of play) of `blue_fn`
    against `red_fn`, and what red did in them: the campaign timeline of docs/redblue.md.

    `blue_fn(key, obs, state) -> SOC actions`, `red_fn(key, obs, state) -> {"red": a}`, for ONE
    env (pass greedy policies for an evaluation). `blue_args` / `red_args` (optional pytrees, every
    leaf `[num_envs, ...]`): per-env arguments passed to that side's function as a fourth argument
    (`blue_fn(key, obs, state, arg)`), e.g. each env's member of a mixture (`mixture_play_args`).
    Returns per env: `return`, `exfiltrated`, `csr`,
    `hosts_compromised` `[N]` (the episode's metrics), `phase_steps [N, 5]` (steps the campaign
    spent in each phase), `first_step [N, 5]` (the step it first acted in each phase, -1: never),
    `actions [N, A]` (red's choices, counted).
    """
    n_actions = env.action_space("red").n
    k_reset, k_run = jax.random.split(key)

    def side(fn, args):
        return jax.vmap(fn) if args is None else (lambda k, o, s: jax.vmap(fn)(k, o, s, args))

    obs, st = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_envs), params)

    def body(carry, k):
        obs, st, alive, out = carry
        kb, kr, ks = jax.random.split(k, 3)
        acts = {**side(blue_fn, blue_args)(jax.random.split(kb, num_envs), obs, st),
                **side(red_fn, red_args)(jax.random.split(kr, num_envs), obs, st)}
        phase = st.attacker.phase
        obs2, st2, r, d, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(ks, num_envs), st, acts, params)
        done = d["__all__"] & alive
        m = info["metrics"]
        out = dict(out)
        for name in ("return", "exfiltrated", "csr", "hosts_compromised"):
            out[name] = jnp.where(done, m[name].astype(jnp.float32), out[name])
        here = jax.nn.one_hot(phase, NUM_PHASES) * alive[:, None]
        out["phase_steps"] = out["phase_steps"] + here
        out["first_step"] = jnp.where((out["first_step"] < 0) & (here > 0), st.t[:, None], out["first_step"])
        out["actions"] = out["actions"] + jax.nn.one_hot(acts["red"], n_actions) * alive[:, None]
        return (obs2, st2, alive & ~d["__all__"], out), None

    z = jnp.zeros((num_envs,), jnp.float32)
    out = {"return": z, "exfiltrated": z, "csr": z, "hosts_compromised": z,
           "phase_steps": jnp.zeros((num_envs, NUM_PHASES)), "first_step": -jnp.ones((num_envs, NUM_PHASES), jnp.int32),
           "actions": jnp.zeros((num_envs, n_actions))}
    alive = jnp.ones((num_envs,), bool)
    (_, _, _, out), _ = jax.lax.scan(body, (obs, st, alive, out), jax.random.split(k_run, params.max_steps))
    return out


def mixture_play_args(key, mixture: Mixture, num_envs: int):
    """`(members [num_envs], params)`: each env's member of `mixture`, drawn with its `meta`, and
    that member's parameters (every leaf `[num_envs, ...]`): `play`'s `blue_args`/`red_args` for
    a mixture that picks one member per episode."""
    members = jax.vmap(draw_member, in_axes=(0, None))(jax.random.split(key, num_envs), mixture.meta)
    return members, jax.tree.map(lambda x: x[members], mixture.policies)
