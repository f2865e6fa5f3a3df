"""The "hybrid" family: seed 000's team on `soc-hybrid` (docs/hybrid.md) — QMIX over the
per-segment agents plus an independent MADDPG network agent, on the anomaly scores of a detector
that is frozen or trained online in the same program.

Segment agents (`SegmentQMix`): one Q-network shared by the S segment agents AND by the H hosts of
each: for every host it reads the host's own features (score, found, cleared, locked), their means
over the segment, the segment's one-hot id and t / T, and returns a value per choice (no action,
investigate, lock down), so `[obs_dim] -> [H, 3]` and every host's experience trains one network.
A segment agent's joint action is its H per-host choices, and its value is their sum (a per-host
decomposition inside the agent, so the greedy joint action is the per-host argmax instead of a
search over 3^H joint actions):

    Q_i(o_i, a_i) = sum_h Q(o_i)[h, a_ih]                                    [B, S]
    Q_tot = QMixer([Q_i]_i, s)   (mixer qmix)  |  sum_i Q_i  (vdn)
            s = the world state, centred and scaled to unit length (mixer_state_norm, the default)
    y     = r + gamma * discount * Q_tot,target(s')      with a'_ih = argmax Q(o'_i)[h] (double) or
                                                         the target network's argmax
    loss  = mean(w * (Q_tot - y)^2)
    mixer none (IQL): every agent regresses its own Q_i on y_i = r + gamma * d * Q_i,target(o'_i)

Network agent: a `maddpg.MADDPG` (deterministic actor on its own observation, `[S]` thresholds in
[-1, 1]; critic on the world state and every segment agent's per-host choices, one-hot, as the
others' actions; next actions: the segment agents' greedy target choices), or fixed at
`network_action` (`network_agent: fixed`).

Both are updated on the same sampled batch each round (shared replay, `offpolicy.learn_rounds`);
PER priorities combine their TD errors by `priority_rule`.

Detector (`detector`): `frozen` reads the scores of the env's detector (`HybridParams.detector`:
the clean-model z-score, or a checkpoint via `env.detector_path`). `online` trains one inside the
training program, unsupervised, on the telemetry of the envs being defended (contaminated by the
attacks in them), and passes it to every env step (`env_params.replace(detector=...)`):
  * zscore: running mean / variance of the connected hosts' newest telemetry frames, rate
    `max(1 / updates, online_rate)`;
  * autoencoder: the same running standardisation, then `online_steps` Adam steps per update on
    the trimmed reconstruction loss (`detectors.autoencoder.trimmed_loss`) of `online_batch`
    windows drawn from the connected hosts;
  the threshold follows the `1 - target_fpr` quantile of the connected hosts' scores (same rate).
The policy is the team and the detector together (`HybridPolicy`): evaluation (`eval/evaluate.py`),
`load_policy` and replays of an online run score the telemetry with the run's own learned detector
and threshold (`Trainer.policy_env_params`), a frozen run with the scenario's.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from jaxsoc import buffers
from jaxsoc.algos import common
from jaxsoc.algos import offpolicy as op
from jaxsoc.algos.common import clipped_adam
from jaxsoc.algos.base import mean_episode_metrics, per_update_trainer
from jaxsoc.algos.dqn import VDState, td_step
from jaxsoc.algos.maddpg import AGENT_DEFAULTS as MADDPG_AGENT_DEFAULTS
from jaxsoc.algos.maddpg import MADDPG, maddpg_kwargs, validate_agent
from jaxsoc.detectors.autoencoder import (AutoencoderConfig, AutoencoderDetector, autoencoder_scores, init_params,
                                          trimmed_loss)
from jaxsoc.detectors.autoencoder import optimizer as autoencoder_optimizer
from jaxsoc.detectors.telemetry import flatten_hosts
from jaxsoc.detectors.threshold import check_target_fpr
from jaxsoc.detectors.zscore import ZScoreDetector, standardize, zscore_scores
from jaxsoc.networks import QMixer, QNetwork, vdn_mix

PyTree = Any
CHOICES = 3  # no action, investigate, lock down
HOST_FEATURES = 4  # per host in a segment agent's observation (jaxsoc.env.hybrid.params.HOST_FEATURES)

DEFAULTS = {
    **{k: v for k, v in op.COMMON_DEFAULTS.items() if k != "coordinator_action"},
    **op.DQN_DEFAULTS,
    "rollout": 4,
    "utd": 0.02,               # 10 rounds per update at 128 envs x rollout 4
    "buffer_size": 100_000,
    "learning_starts": 2_000,
    "hidden_sizes": [64, 64],   # one network for every host: its batch is B x S x H rows
    "per": False,
    "target_period": 200,
    # per host and step: a random choice w.p. epsilon, drawn from explore_probs (none, investigate,
    # lock down). Lock-downs cannot be undone, so exploring as single-choice learners do (1 -> 0.05,
    # uniform) isolates most hosts of every episode.
    "epsilon_start": 0.1,
    "epsilon_end": 0.01,
    "epsilon_decay": 20_000,
    "explore_probs": [0.45, 0.45, 0.1],
    "mixer": "qmix",           # qmix | vdn | none (independent learners: IQL)
    "mixer_embed": 32,
    "hypernet_hidden": 64,
    # qmix: the hypernetworks read the world state centred and scaled to unit length; without it
    # QMIX over-estimated and collapsed on soc-hybrid (docs/hybrid.md "Why the QMIX mixer failed")
    "mixer_state_norm": True,
    "dueling": False,
    "network_agent": "maddpg",  # maddpg | fixed
    "network_action": 0.0,     # the fixed network agent's action (0: threshold x sqrt(low * high))
    "maddpg": dict(MADDPG_AGENT_DEFAULTS),  # the network agent
    "detector": "frozen",      # frozen | online
    "online_kind": "zscore",   # zscore | autoencoder (detector: online)
    "online_rate": 0.01,
    "online_steps": 1,
    "online_batch": 256,
    "online_lr": 3e-3,
    "target_fpr": 0.01,        # online threshold: the (1 - target_fpr) quantile of the scores
}
# The keys only the online detector reads (`detector: online`).
ONLINE_KEYS = ("online_kind", "online_rate", "online_steps", "online_batch", "online_lr", "target_fpr")
POSITIVE = op.POSITIVE + ("mixer_embed", "hypernet_hidden", "online_rate", "online_steps", "online_batch",
                          "online_lr")


def validate(config: dict) -> None:
    """Checks `config["hybrid"]` (and that the scenario is soc-hybrid); one-line ConfigError."""
    from jaxsoc.config import ConfigError, check_choice

    if config["scenario"] != "soc-hybrid":  # first: the sizes below are this scenario's to judge
        raise ConfigError(f"--algo {config['algo']} trains the soc-hybrid team; scenario {config['scenario']!r} "
                          "has no segment agents (use --scenario soc-hybrid)")
    op.validate_common(config, "hybrid")
    op.validate_dqn(config["hybrid"], "hybrid")
    c = config["hybrid"]
    check_choice("hybrid.mixer", c["mixer"], ("qmix", "vdn", "none"))
    check_choice("hybrid.network_agent", c["network_agent"], ("maddpg", "fixed"))
    check_choice("hybrid.detector", c["detector"], ("frozen", "online"))
    check_choice("hybrid.online_kind", c["online_kind"], ("zscore", "autoencoder"))
    try:
        check_target_fpr(c["target_fpr"])
    except ValueError as e:
        raise ConfigError(f"hybrid.target_fpr: {e}") from None
    if not 0 < c["online_rate"] <= 1:
        raise ConfigError(f"hybrid.online_rate must lie in (0, 1], got {c['online_rate']}")
    probs = c["explore_probs"]
    if (not isinstance(probs, (list, tuple)) or len(probs) != CHOICES or any(p < 0 for p in probs)
            or abs(sum(probs) - 1.0) > 1e-6):
        raise ConfigError(f"hybrid.explore_probs must be 3 probabilities (none, investigate, lock down) "
                          f"summing to 1, got {probs!r}")
    if not -1.0 <= c["network_action"] <= 1.0:
        raise ConfigError(f"hybrid.network_action must lie in [-1, 1], got {c['network_action']}")
    validate_agent(c["maddpg"], "hybrid.maddpg")
    # Settings the chosen network agent or detector would not read are refused rather than ignored.
    if c["network_agent"] == "fixed" and c["maddpg"] != DEFAULTS["maddpg"]:
        changed = sorted(k for k in c["maddpg"] if c["maddpg"][k] != DEFAULTS["maddpg"].get(k))
        raise ConfigError(f"hybrid.maddpg.{changed[0]} trains the network agent, but hybrid.network_agent is fixed")
    if c["network_agent"] == "maddpg" and c["network_action"] != DEFAULTS["network_action"]:
        raise ConfigError("hybrid.network_action is the fixed network agent's action; hybrid.network_agent maddpg "
                          "learns its own (add --set hybrid.network_agent=fixed)")
    if c["detector"] == "frozen":
        unread = [k for k in ONLINE_KEYS if c[k] != DEFAULTS[k]]
        if unread:
            raise ConfigError(f"hybrid.{unread[0]} sets the online detector, but hybrid.detector is frozen "
                              "(the env's own: env.detector_path, env.target_fpr); add --set hybrid.detector=online")
    elif (config.get("env") or {}).get("detector_path"):
        raise ConfigError("hybrid.detector=online trains its own detector from the start: the saved detector of "
                          "env.detector_path would give it its threshold only; drop one of the two")


# ------------------------------------------------------------------------------ segment agents
@dataclasses.dataclass(frozen=True)
class SegmentQMix:
    """QMIX / VDN / independent learners over S segment agents sharing one per-host Q-network."""

    obs_dim: int
    hosts: int
    segments: int
    state_dim: int
    mixer: str = "qmix"
    hidden: Tuple[int, ...] = (128, 128)
    dueling: bool = False
    gamma: float = 0.99
    lr: float = 3e-4
    double: bool = True
    loss: str = "mse"
    max_grad_norm: float = 10.0
    tau: float = 1.0
    target_period: int = 200
    mixer_embed: int = 32
    hypernet_hidden: int = 64
    mixer_state_norm: bool = True
    explore_probs: Tuple[float, ...] = (0.45, 0.45, 0.1)

    @property
    def network(self) -> QNetwork:
        return QNetwork(CHOICES, self.hidden, dueling=self.dueling)

    @property
    def mixer_module(self) -> QMixer:
        return QMixer(self.mixer_embed, self.hypernet_hidden, state_norm=self.mixer_state_norm)

    @property
    def host_input_dim(self) -> int:
        return 2 * HOST_FEATURES + self.obs_dim - HOST_FEATURES * self.hosts

    def host_inputs(self, obs: jax.Array) -> jax.Array:
        """`[..., obs_dim] -> [..., H, host_input_dim]`: each host's features, the segment's means of
        them, and the rest of the observation (segment id, t / T)."""
        per_host = obs[..., : HOST_FEATURES * self.hosts].reshape(obs.shape[:-1] + (self.hosts, HOST_FEATURES))
        shared = jnp.concatenate([per_host.mean(-2), obs[..., HOST_FEATURES * self.hosts:]], axis=-1)
        return jnp.concatenate([per_host, jnp.broadcast_to(shared[..., None, :], per_host.shape[:-1] + shared.shape[-1:])],
                               axis=-1)

    @property
    def optimizer(self) -> optax.GradientTransformation:
        return clipped_adam(self.lr, self.max_grad_norm)

    def init(self, key: jax.Array) -> VDState:
        k_q, k_mix = jax.random.split(key)
        params = {"q": self.network.init(k_q, jnp.zeros((1, self.host_input_dim), jnp.float32))}
        if self.mixer == "qmix":
            params["mixer"] = self.mixer_module.init(
                k_mix, jnp.zeros((1, self.segments)), jnp.zeros((1, self.state_dim)))
        return VDState(params, op.copy_tree(params), self.optimizer.init(params), jnp.zeros((), jnp.int32))

    def q_values(self, params: PyTree, obs: jax.Array) -> jax.Array:
        """`[..., obs_dim] -> [..., H, 3]`: per host and choice."""
        return self.network.apply(params["q"], self.host_inputs(obs))

    def greedy(self, params: PyTree, obs: jax.Array) -> jax.Array:
        """`[..., obs_dim] -> [..., H]` int32 per-host argmax."""
        return jnp.argmax(self.q_values(params, obs), axis=-1).astype(jnp.int32)

    def policy(self, params, obs, key, greedy: bool, epsilon) -> jax.Array:
        """Epsilon-greedy per host: `[..., obs_dim] -> [..., H]` int32; exploring hosts draw their
        choice from `explore_probs`."""
        best = self.greedy(params, obs)
        if greedy:
            return best
        k_explore, k_action = jax.random.split(key)
        explore = jax.random.uniform(k_explore, best.shape) < epsilon
        random = jax.random.choice(k_action, CHOICES, best.shape, p=jnp.asarray(self.explore_probs))
        return jnp.where(explore, random.astype(jnp.int32), best)

    def agent_values(self, params, obs: jax.Array, actions: jax.Array) -> jax.Array:
        """`Q_i = sum_h Q(o_i)[h, a_ih]`: obs `[B, S, obs_dim]`, actions `[B, S, H]` -> `[B, S]`."""
        q = self.q_values(params, obs)
        return jnp.sum(jnp.take_along_axis(q, actions[..., None].astype(jnp.int32), axis=-1)[..., 0], axis=-1)

    def next_values(self, state: VDState, next_obs: jax.Array) -> jax.Array:
        """`[B, S]`: the target network's values of each agent's next joint action."""
        chooser = state.params if self.double else state.target_params
        return self.agent_values(state.target_params, next_obs, self.greedy(chooser, next_obs))

    def mix(self, params, qs: jax.Array, ws: jax.Array) -> jax.Array:
        """`[B, S] -> [B]` (qmix, vdn) or `[B, S]` unchanged (none)."""
        if self.mixer == "qmix":
            return self.mixer_module.apply(params["mixer"], qs, ws)
        if self.mixer == "vdn":
            return vdn_mix(qs)
        return qs

    def mixer_gain(self, params, qs: jax.Array, ws: jax.Array) -> jax.Array:
        """dQ_tot / dQ_i at each row: qs `[B, S]`, world states ws `[B, state_dim]` -> `[B, S]`
        (1 everywhere for vdn; qmix's is the mixing weights' product, docs/hybrid.md "Why the QMIX
        mixer failed"). Raises ValueError for independent learners (no Q_tot)."""
        if self.mixer == "none":
            raise ValueError("independent learners (mixer none) have no Q_tot, so no mixer gain")
        return jax.vmap(jax.grad(lambda q, w: self.mix(params, q[None], w[None])[0]))(qs, ws)

    def update(self, state: VDState, batch: Dict[str, Any], weights: jax.Array):
        """`batch`: obs/next_obs `[B, S, obs_dim]`, action `[B, S, H]`, reward/discount `[B]`,
        world_state/next_world_state `[B, ws]`. Returns `(state, |td| [B], metrics)`."""
        r, d = batch["reward"], batch["discount"]
        if self.mixer == "none":
            r, d, weights = r[:, None], d[:, None], weights[:, None]
        next_tot = self.mix(state.target_params, self.next_values(state, batch["next_obs"]), batch["next_world_state"])
        target = jax.lax.stop_gradient(r + self.gamma * d * next_tot)

        def q_tot(params):
            return self.mix(params, self.agent_values(params, batch["obs"], batch["action"]), batch["world_state"])

        state, td, loss, q = td_step(self, state, q_tot, target, weights)
        td = jnp.abs(td)
        return state, (td.mean(-1) if td.ndim == 2 else td), {"q_loss": loss, "q_tot": jnp.mean(q)}


# ------------------------------------------------------------------------------------ team
class HybridAgents(NamedTuple):
    """segments: `VDState`; network: `MADDPGState` or None (fixed)."""

    segments: PyTree
    network: PyTree


class HybridTeam:
    """The segment agents and the network agent as pure functions (module docstring)."""

    def __init__(self, env, section: dict):
        self.segment_agents = list(env.segment_agents)
        p = env.default_params
        self.segments, self.hosts = p.num_segments, p.hosts_per_segment
        hidden = tuple(section["hidden_sizes"])
        self.q = SegmentQMix(env.segment_obs_dim, self.hosts, self.segments, env.world_state_size,
                             mixer=section["mixer"], hidden=hidden, dueling=section["dueling"],
                             gamma=section["gamma"], lr=section["lr"], double=section["double"],
                             loss=section["loss"], max_grad_norm=section["max_grad_norm"], tau=section["tau"],
                             target_period=section["target_period"], mixer_embed=section["mixer_embed"],
                             hypernet_hidden=section["hypernet_hidden"], mixer_state_norm=section["mixer_state_norm"],
                             explore_probs=tuple(float(x) for x in section["explore_probs"]))
        self.eps = op.epsilon_schedule(section["epsilon_start"], section["epsilon_end"], section["epsilon_decay"],
                                       section["epsilon_schedule"])
        self.epsilon_end = section["epsilon_end"]
        self.net: Optional[MADDPG] = None
        if section["network_agent"] == "maddpg":
            self.net = MADDPG(env.network_obs_dim, self.segments, env.world_state_size,
                              self.segments * self.hosts * CHOICES,
                              **maddpg_kwargs({**section["maddpg"], "hidden_sizes": hidden,
                                               "gamma": section["gamma"]}))
        self.network_action = float(section["network_action"])
        self.priority_rule = section["priority_rule"]

    def init(self, key: jax.Array) -> HybridAgents:
        k_q, k_net = jax.random.split(key)
        return HybridAgents(self.q.init(k_q), None if self.net is None else self.net.init(k_net))

    def epsilon(self, env_steps: Optional[jax.Array]) -> jax.Array:
        if env_steps is None:
            return jnp.asarray(self.epsilon_end, jnp.float32)
        return jnp.asarray(self.eps(env_steps), jnp.float32)

    def stack_obs(self, obs: Dict[str, jax.Array]) -> jax.Array:
        """`{segment_i: [..., obs_dim]} -> [..., S, obs_dim]`."""
        return jnp.stack([obs[a] for a in self.segment_agents], axis=-2)

    def act(self, agents: HybridAgents, obs: Dict[str, jax.Array], key: jax.Array, greedy: bool,
            env_steps: Optional[jax.Array]) -> Dict[str, jax.Array]:
        """Env actions for ONE env: `{segment_i: [H] int32, network: [S] f32}`."""
        k_q, k_net = jax.random.split(key)
        choice = self.q.policy(agents.segments.params, self.stack_obs(obs), k_q, greedy, self.epsilon(env_steps))
        out = {a: choice[i] for i, a in enumerate(self.segment_agents)}
        if self.net is None:
            out["network"] = jnp.full((self.segments,), self.network_action, jnp.float32)
        else:
            out["network"] = self.net.act(agents.network, obs["network"], k_net, greedy)
        return out

    def item(self, obs, next_obs, actions, reward, discount, ws, next_ws) -> Dict[str, Any]:
        """A replay item (leading axes kept): see `example_transition`."""
        return {"obs": {"segments": self.stack_obs(obs), "network": obs["network"]},
                "next_obs": {"segments": self.stack_obs(next_obs), "network": next_obs["network"]},
                "action": {"segments": self.stack_obs(actions), "network": actions["network"]},
                "reward": reward, "discount": discount, "world_state": ws, "next_world_state": next_ws}

    def example_transition(self, env) -> Dict[str, Any]:
        f32 = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32)  # noqa: E731
        obs = {"segments": f32(self.segments, env.segment_obs_dim), "network": f32(env.network_obs_dim)}
        return {"obs": obs, "next_obs": obs,
                "action": {"segments": jax.ShapeDtypeStruct((self.segments, self.hosts), jnp.int32),
                           "network": f32(self.segments)},
                "reward": f32(), "discount": f32(), "world_state": f32(env.world_state_size),
                "next_world_state": f32(env.world_state_size)}

    def update(self, agents: HybridAgents, batch, weights: jax.Array, key: jax.Array):
        """One round on a sampled batch: `(agents, |td| [B], metrics)`. `key` draws the network
        agent's target smoothing (`maddpg.target_noise` > 0); the segment agents' update is
        deterministic given the batch."""
        q_batch = {"obs": batch["obs"]["segments"], "next_obs": batch["next_obs"]["segments"],
                   "action": batch["action"]["segments"], "reward": batch["reward"], "discount": batch["discount"],
                   "world_state": batch["world_state"], "next_world_state": batch["next_world_state"]}
        # The network agent's critic reads the segment agents' target choices at s' (before the update).
        next_choice = self.q.greedy(agents.segments.target_params, batch["next_obs"]["segments"])
        segments, td_q, metrics = self.q.update(agents.segments, q_batch, weights)
        metrics = {f"seg/{k}": v for k, v in metrics.items()}
        if self.net is None:
            return HybridAgents(segments, None), td_q, metrics
        b = batch["reward"].shape[0]
        onehot = lambda a: jax.nn.one_hot(a, CHOICES, dtype=jnp.float32).reshape(b, -1)  # noqa: E731
        view = {"obs": batch["obs"]["network"], "next_obs": batch["next_obs"]["network"],
                "action": batch["action"]["network"], "reward": batch["reward"], "discount": batch["discount"],
                "critic_obs": batch["world_state"], "next_critic_obs": batch["next_world_state"],
                "others_action": onehot(batch["action"]["segments"]), "next_others_action": onehot(next_choice)}
        network, td_net, m = self.net.update(agents.network, view, weights, key)
        metrics.update({f"net/{k}": v for k, v in m.items()})
        return HybridAgents(segments, network), buffers.combine_td_errors([td_q, td_net], self.priority_rule), metrics


# ------------------------------------------------------------------------------ online detector
class OnlineDetector(NamedTuple):
    """A detector trained in the training program: running `mean`/`var` `[F]` of the telemetry,
    `count` updates seen, the autoencoder's `params`/`opt` (None for zscore), `threshold` `[]`."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array
    params: PyTree
    opt: PyTree
    threshold: jax.Array


def online_detector(kind: str, window: int, features: int, params: PyTree = None):
    """The detector pytree the env scores with, from the online state's parts."""
    def make(state: OnlineDetector):
        scale = jnp.sqrt(jnp.maximum(state.var, 1e-6))
        if kind == "zscore":
            return ZScoreDetector(center=state.mean, scale=scale, window=window)
        return AutoencoderDetector(params=state.params, center=state.mean, scale=scale,
                                   config=AutoencoderConfig(window=window, features=features))
    return make


def detector_update(state: OnlineDetector, key: jax.Array, window: jax.Array, connected: jax.Array,
                    kind: str, section: dict, score, to_detector) -> OnlineDetector:
    """One update from the envs' current telemetry windows `[num_envs, W, N, F]` and `connected`
    `[num_envs, N]` (no labels are read). Returns the new state."""
    w = jnp.swapaxes(window, 1, 2).reshape((-1,) + window.shape[1:2] + window.shape[3:])  # [E*N, W, F]
    m = connected.reshape(-1).astype(jnp.float32)                                      # [E*N]
    frames = w[:, -1]
    n = jnp.maximum(m.sum(), 1.0)
    # Every host of every env locked down: nothing to learn from, the detector stays as it is.
    seen = m.sum() > 0
    b_mean = jnp.sum(frames * m[:, None], 0) / n
    b_var = jnp.sum(jnp.square(frames - b_mean) * m[:, None], 0) / n
    rate = jnp.where(seen, jnp.maximum(1.0 / (state.count + 1.0), section["online_rate"]), 0.0)
    state = state._replace(mean=state.mean + rate * (b_mean - state.mean), var=state.var + rate * (b_var - state.var),
                           count=state.count + seen.astype(jnp.int32))
    k_pick, key = jax.random.split(key)
    if kind == "autoencoder":
        cfg = AutoencoderConfig(window=w.shape[1], features=w.shape[2], learning_rate=section["online_lr"])
        tx = autoencoder_optimizer(cfg)

        def adam_step(carry, k):
            params, opt = carry
            # (with no connected host, uniform draws; the step is then discarded below)
            idx = jax.random.choice(k, w.shape[0], (section["online_batch"],),
                                    p=jnp.where(seen, m / n, 1.0 / m.shape[0]))
            x = standardize(state.mean, jnp.sqrt(jnp.maximum(state.var, 1e-6)), w[idx]).reshape(idx.shape[0], -1)
            grads = jax.grad(trimmed_loss)(params, cfg, x)
            updates, opt = tx.update(grads, opt, params)
            return (optax.apply_updates(params, updates), opt), None

        (params, opt), _ = jax.lax.scan(adam_step, (state.params, state.opt),
                                        jax.random.split(key, section["online_steps"]))
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(seen, a, b), new, old)  # noqa: E731
        state = state._replace(params=keep(params, state.params), opt=keep(opt, state.opt))
    s = score(to_detector(state), w)
    q = jnp.nanquantile(jnp.where(m > 0, s, jnp.nan), 1.0 - section["target_fpr"])
    first = state.count == 1
    threshold = jnp.where(first, q, state.threshold + rate * (q - state.threshold))
    threshold = jnp.where(seen & jnp.isfinite(q), threshold, state.threshold)
    return state._replace(threshold=threshold)


# ------------------------------------------------------------------------------------ trainer
class HybridPolicy(NamedTuple):
    """What a trained hybrid run acts with: the team's `agents` and the online `detector` its
    observations' scores come from (None when frozen: the scenario's detector)."""

    agents: HybridAgents
    detector: Optional[OnlineDetector]


class HybridTrainState(NamedTuple):
    """One seed: the team's agents, the replay buffer, envs `[num_envs, ...]` (state, obs, world
    state), the online detector (None when frozen), key, env steps, update rounds done."""

    agents: HybridAgents
    buffer: PyTree
    env_state: PyTree
    obs: PyTree
    world_state: jax.Array
    detector: Optional[OnlineDetector]
    key: jax.Array
    env_steps: jax.Array
    grad_steps: jax.Array


def make_team(config: dict, env) -> HybridTeam:
    return HybridTeam(env, config["hybrid"])


def make_train(config: dict, env, env_params):
    """The `Trainer` of `--algo hybrid` on `soc-hybrid` (module docstring)."""
    c = config["hybrid"]
    num_envs, rollout = config["num_envs"], c["rollout"]
    steps_per_update = num_envs * rollout
    rounds = op.rounds_per_update(config, c)
    batch_size = c["batch_size"]
    learning_starts = max(c["learning_starts"], batch_size)
    env = common.with_world_state(env)
    env_params = env_params.replace(with_world_state=True)
    team = make_team(config, env)
    example = team.example_transition(env)
    online = c["detector"] == "online"
    kind = c["online_kind"]
    window, features = env_params.window, env_params.features
    to_detector = online_detector(kind, window, features)
    cfg = AutoencoderConfig(window=window, features=features, learning_rate=c["online_lr"])
    score = autoencoder_scores if kind == "autoencoder" else zscore_scores

    def with_detector(p, detector):
        """`p` scoring with `detector` (an `OnlineDetector`), or `p` itself for None (frozen)."""
        if detector is None:
            return p
        return p.replace(detector=to_detector(detector), threshold=detector.threshold)

    def params_for(detector):
        return with_detector(env_params, detector)

    def act(policy: HybridPolicy, key, obs, env_state, greedy):
        del env_state  # the team reads its observations only
        return team.act(policy.agents, obs, key, greedy, None)

    def init(key):
        k_agents, k_reset, k_det, key = jax.random.split(key, 4)
        detector = None
        if online:
            f = features
            ae = init_params(k_det, cfg) if kind == "autoencoder" else None
            opt = autoencoder_optimizer(cfg).init(ae) if kind == "autoencoder" else None
            detector = OnlineDetector(jnp.zeros((f,)), jnp.ones((f,)), jnp.zeros((), jnp.int32), ae, opt,
                                      env_params.threshold)
        p = params_for(detector)
        obs, env_state = common.batched_reset(env, p, k_reset, num_envs)
        ws = jax.vmap(env.get_world_state, in_axes=(0, None))(env_state, p)
        return HybridTrainState(team.init(k_agents), op.init_buffer(c, example), env_state, obs, ws, detector, key,
                                jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    batched_act = jax.vmap(team.act, in_axes=(None, 0, 0, None, None))

    def round_fn(agents, buffer, key):
        return op.learn_round(team, agents, buffer, key, batch_size)

    def update(state: HybridTrainState):
        p = params_for(state.detector)

        def env_step(carry, _):
            agents, buffer, env_state, obs, ws, key, env_steps = carry
            key, k_act, k_step = jax.random.split(key, 3)
            actions = batched_act(agents, obs, jax.random.split(k_act, num_envs), False, env_steps)
            next_obs, env_state, rewards, dones, infos = common.batched_step(env, p, k_step, env_state, actions)
            reward = rewards["network"].astype(jnp.float32)  # the team reward (every agent's)
            buffer = buffers.add(buffer, team.item(obs, infos["final_obs"], actions, reward,
                                                   infos["discount"].astype(jnp.float32), ws,
                                                   infos["final_world_state"]))
            carry = (agents, buffer, env_state, next_obs, infos["world_state"], key, env_steps + num_envs)
            return carry, (infos["metrics"], dones["__all__"], reward)

        carry = (state.agents, state.buffer, state.env_state, state.obs, state.world_state, state.key,
                 state.env_steps)
        carry, (ep_metrics, done, reward) = jax.lax.scan(env_step, carry, None, length=rollout)
        agents, buffer, env_state, obs, ws, key, env_steps = carry
        key, k_learn, k_det = jax.random.split(key, 3)
        ready = buffers.can_sample(buffer, learning_starts)
        agents, buffer, learn_metrics = op.learn_rounds(round_fn, agents, buffer, k_learn, rounds, ready)
        grad_steps = state.grad_steps + jnp.where(ready, rounds, 0).astype(jnp.int32)
        detector = state.detector
        if online:
            connected = jax.vmap(lambda h: ~flatten_hosts(h.isolated, env_params.soc))(env_state.soc.hosts)
            detector = detector_update(detector, k_det, env_state.window, connected, kind, c, score, to_detector)

        out = mean_episode_metrics(ep_metrics, done)
        out["reward"] = reward.mean()
        out["env_steps"] = env_steps
        out["grad_steps"] = grad_steps
        out["epsilon"] = team.epsilon(env_steps)
        if online:
            out["detector/threshold"] = detector.threshold
        out.update(learn_metrics)
        return HybridTrainState(agents, buffer, env_state, obs, ws, detector, key, env_steps, grad_steps), out

    return per_update_trainer(
        config, steps_per_update, init=init, update=update, act=act,
        policy_params=lambda s: HybridPolicy(s.agents, s.detector),
        policy_env_params=lambda policy, p: with_detector(p, policy.detector),
        env_axes=lambda s: HybridTrainState(agents=None, buffer=None, env_state=0, obs=0, world_state=0,
                                            detector=None, key=None, env_steps=None, grad_steps=None))


__all__ = ["DEFAULTS", "HybridAgents", "HybridPolicy", "HybridTeam", "HybridTrainState", "OnlineDetector", "SegmentQMix",
           "detector_update", "make_team", "make_train", "validate"]
