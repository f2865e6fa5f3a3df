"""MAPPO with learned communication between the SOC team's roles (family "comm", section `comm:`).

    make_train(config, env, env_params) -> Trainer        # see jaxsoc.algos.base

`mappo-comm` is MAPPO (`ppo.py`: own actor per role, one critic on the env's world state, the
clipped-surrogate loss unchanged) whose talking roles (`comm_roles`, the tier-2 roles by
default) exchange CommNet messages (Sukhbaatar et al. 2016) before they act. For a role `i`
among the `R` talking roles, in one joint forward pass of the team:

    h_i = torso_i(o_i)                                         [..., H]   (MAPPO's actor torso)
    for round k = 0 .. comm_rounds - 1:
        m_i = tanh(say_i^k h_i)                                [..., M]   M = message_dim
        z_i = gate_i^k h_i                                     [...]      the role's bid to speak
        s_i = 1[z_i is among the message_budget largest z]     hard top-k over the R roles
        w_i = s_i * sigmoid(z_i) * m_i                         what role i puts on the wire
        c_i = 1 / (R - 1) * sum_{j != i} w_j                   CommNet's mean of the others
        h_i = h_i + act(hear_i^k c_i)                          (no bias: c_i = 0 leaves h_i as it is)
    pi_i(. | o_i, messages) = head_i(h_i)                      (MAPPO's actor head)

Roles keep their own torsos, heads and message layers (their observations differ); messages share
one width. At most `message_budget` roles speak per round (the top-k is hard, exact under ties);
a speaker's message is scaled by its gate, so the gates learn from the policy gradient which role
is worth hearing (a mixture-of-experts style top-k, no extra loss term). The top-k compares the
R scalar bids: that and the wire are everything that passes between roles. The per-role
log-probabilities stay separate, so `ppo.loss` is unchanged; its gradient reaches a speaker's
parameters through its listeners' losses. With `message_budget: 0` nothing is ever sent and
every role acts exactly as the MAPPO actor with the same torso and head parameters; with
`message_dim: 0` or `comm_rounds: 0` the actors ARE MAPPO's (same parameter trees, same init).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxsoc.algos import onpolicy, ppo
from jaxsoc.algos.base import Trainer
from jaxsoc.algos.common import TIER2_ROLES, RoleSpec
from jaxsoc.argtypes import is_integer
from jaxsoc.networks import MLP, dense, get_activation, orthogonal

DEFAULTS = {
    **ppo.DEFAULTS,              # everything MAPPO has (policy must stay per_role)
    "message_dim": 16,           # M: width of every message; 0: no communication (MAPPO)
    "comm_rounds": 1,            # message rounds before acting; 0: no communication (MAPPO)
    "message_budget": 2,         # at most this many roles speak per round (hard top-k by gate); 0: silent
    "comm_roles": "tier2",       # tier2 (threat hunter, alert triage, response orchestrator) | all
}
POSITIVE = ppo.POSITIVE
# Keys the update only computes with: a sweep (jaxsoc/sweep.py) trains grid points that differ
# only in these in one program (tests/test_sweepable.py traces each and checks it is used).
SWEEPABLE = ppo.SWEEPABLE
COMM_ROLES = ("tier2", "all")


def validate(config: dict) -> None:
    from jaxsoc.config import ConfigError

    s = config["comm"]
    # The family's own reason first (the shared checks would name the critic instead).
    if ppo.resolve_variant(config["algo"], s)[0] == "single":
        raise ConfigError("comm.policy must be per_role (or auto): messages pass between the roles' own actors")
    ppo.check_section(config, "comm")
    for key in ("message_dim", "comm_rounds", "message_budget"):
        value = s[key]
        if not is_integer(value) or value < 0:
            raise ConfigError(f"comm.{key} must be an integer >= 0, got {value!r}")
    if s["comm_roles"] not in COMM_ROLES:
        raise ConfigError(f"comm.comm_roles must be one of {', '.join(COMM_ROLES)}, got {s['comm_roles']!r}")


# ----------------------------------------------------------------------------- networks
class CommActor(nn.Module):
    """One talking role's actor: MAPPO's torso and head (same names, so the same parameters from
    the same key) with `rounds` x (say, gate, hear) layers between them. Called in pieces by
    `CommPolicy.forward` (`encode`, `speak`, `listen`, `head`); `__call__` runs them once, with
    silence, to create every parameter.

    Shapes: obs `[..., obs_dim]`, hidden `[..., H]` (H = hidden_sizes[-1]), messages `[..., M]`.
    """

    spec: RoleSpec
    hidden_sizes: Sequence[int]
    activation: str
    message_dim: int
    rounds: int
    log_std_init: float = -0.5
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    def setup(self):
        self.torso = MLP(self.hidden_sizes, activation=self.activation)
        if self.spec.kind in onpolicy.CHOOSING:
            self.logits = dense(self.spec.logits_size, 0.01)
        else:
            self.mean = dense(self.spec.size, 0.01)
            self.log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), (self.spec.size,))
        width = self.hidden_sizes[-1]
        self.say = [dense(self.message_dim, 1.0) for _ in range(self.rounds)]
        # Small gain: every bid starts near 0 (gate 1/2), so who speaks first is near random.
        self.gate = [dense(1, 0.01) for _ in range(self.rounds)]
        self.hear = [nn.Dense(width, use_bias=False, kernel_init=orthogonal(1.0)) for _ in range(self.rounds)]

    def encode(self, obs: jax.Array) -> jax.Array:
        """`[..., obs_dim] -> [..., H]`."""
        return self.torso(obs)

    def speak(self, h: jax.Array, k: int) -> Tuple[jax.Array, jax.Array]:
        """Round `k`'s message `[..., M]` (in [-1, 1]) and bid `[...]` (a logit)."""
        return jnp.tanh(self.say[k](h)), self.gate[k](h)[..., 0]

    def listen(self, h: jax.Array, inbox: jax.Array, k: int) -> jax.Array:
        """`h + act(hear_k inbox)`: `[..., H]`, `[..., M] -> [..., H]`; an empty inbox (zeros)
        returns `h` exactly (no bias, act(0) = 0)."""
        return h + get_activation(self.activation)(self.hear[k](inbox))

    def head(self, h: jax.Array):
        """MAPPO's head: logits `[..., n]` (`[..., E, n]` per entry) or `(mean, log_std)` `[..., d]`
        (pre-tanh)."""
        if self.spec.kind in onpolicy.CHOOSING:
            return onpolicy.head_logits(self.spec, self.logits(h))
        mean = self.mean(h)
        log_std = jnp.clip(jnp.broadcast_to(self.log_std, mean.shape), self.log_std_min, self.log_std_max)
        return mean, log_std

    def __call__(self, obs: jax.Array):
        h = self.encode(obs)
        for k in range(self.rounds):
            message, _ = self.speak(h, k)
            h = self.listen(h, jnp.zeros_like(message), k)
        return self.head(h)


class Channel(NamedTuple):
    """What passed between the talking roles, `K = comm_rounds` rounds of `R` roles.

    wire: `[K, ..., R, M]` the messages as sent (0 for a role that did not speak).
    sent: `bool [K, ..., R]` which roles spoke.
    """

    wire: jax.Array
    sent: jax.Array


def top_k_mask(bids: jax.Array, k: int) -> jax.Array:
    """`bool [..., R]`: True for the `k` largest of `bids [..., R]` (exactly min(k, R) of them;
    ties go to the earlier role)."""
    r = bids.shape[-1]
    above = bids[..., None, :] > bids[..., :, None]                       # [..., i, j]: j outbids i
    tied_before = (bids[..., None, :] == bids[..., :, None]) & (jnp.arange(r)[None, :] < jnp.arange(r)[:, None])
    rank = jnp.sum(above | tied_before, axis=-1)
    return rank < k


@dataclasses.dataclass(frozen=True)
class CommPolicy(onpolicy.Policy):
    """The team's actors with CommNet messages among `talkers` (see the module docstring).

    A per-role `onpolicy.Policy` (`shared` stays False): params are `{role: flax variables}`;
    a role outside `talkers` has MAPPO's own actor. `outputs`, `dists`, `masks` keep
    `onpolicy.Policy`'s meaning, so the rollout, the PPO loss and `act` use it as they are.
    """

    talkers: Tuple[str, ...] = TIER2_ROLES
    message_dim: int = 16
    rounds: int = 1
    budget: int = 2

    @property
    def talks(self) -> bool:
        """Whether the talking roles have message layers at all (budget 0 has them, silent)."""
        return self.message_dim > 0 and self.rounds > 0 and len(self.talkers) > 0

    def _talker(self, s: RoleSpec) -> CommActor:
        return CommActor(s, self.hidden_sizes, self.activation, self.message_dim, self.rounds,
                         self.log_std_init, self.log_std_min, self.log_std_max)

    def role_module(self, s: RoleSpec) -> nn.Module:
        return self._talker(s) if self.talks and s.name in self.talkers else super().role_module(s)

    def forward(self, params: Any, obs: onpolicy.Obs, wire: Optional[jax.Array] = None
                ) -> Tuple[Dict[str, Any], Optional[Channel]]:
        """`(outputs, channel)` for observations `{role: [..., obs_dim]}`: `outputs` as
        `onpolicy.Policy.outputs`, `channel` a `Channel` (None when nobody talks).

        wire: optional `[K, ..., R, M]` messages to deliver instead of the ones the roles send
        (a tap on the channel: tests hold it fixed to show that a role hears the others only
        through it).
        """
        if not self.talks:
            return super().outputs(params, obs), None
        talkers = [s for s in self.specs if s.name in self.talkers]
        n = len(talkers)
        # Row i averages the others' messages: CommNet's 1 / (R - 1) sum_{j != i}.
        listen_to = (1.0 - jnp.eye(n)) / max(n - 1, 1)
        modules = {s.name: self._talker(s) for s in talkers}
        h = {r: m.apply(params[r], obs[r], method="encode") for r, m in modules.items()}
        wires, sents = [], []
        for k in range(self.rounds):
            said = {r: m.apply(params[r], h[r], k, method="speak") for r, m in modules.items()}
            bids = jnp.stack([said[r][1] for r in modules], axis=-1)                 # [..., R]
            sent = top_k_mask(bids, self.budget)
            if wire is None:
                messages = jnp.stack([said[r][0] for r in modules], axis=-2)         # [..., R, M]
                on_wire = jnp.where(sent, jax.nn.sigmoid(bids), 0.0)[..., None] * messages
            else:
                on_wire = wire[k]
            inbox = jnp.einsum("ij,...jm->...im", listen_to, on_wire)                # [..., R, M]
            h = {r: m.apply(params[r], h[r], inbox[..., i, :], k, method="listen")
                 for i, (r, m) in enumerate(modules.items())}
            wires.append(on_wire)
            sents.append(sent)
        out = {}
        for s in self.specs:
            if s.name in modules:
                out[s.name] = modules[s.name].apply(params[s.name], h[s.name], method="head")
            else:
                out[s.name] = onpolicy.head_logits(s, super().role_module(s).apply(params[s.name], obs[s.name]))
        return out, Channel(jnp.stack(wires), jnp.stack(sents))

    def outputs(self, params: Any, obs: onpolicy.Obs) -> Dict[str, Any]:
        return self.forward(params, obs)[0]

    def message_use(self, params: Any, obs: onpolicy.Obs) -> Dict[str, jax.Array]:
        """Measured use of the budget on observations `{role: [..., obs_dim]}`: `messages`, the
        mean number of messages sent per round (<= budget), and `sent/<role>`, the fraction of
        rounds in which each talking role spoke. Empty when nobody talks."""
        _, channel = self.forward(params, obs)
        if channel is None:
            return {}
        sent = channel.sent.astype(jnp.float32)
        use = {"messages": sent.sum(-1).mean()}
        talkers = [s.name for s in self.specs if s.name in self.talkers]
        use.update({f"sent/{r}": sent[..., i].mean() for i, r in enumerate(talkers)})
        return use


def make_policy(section: dict, specs: Tuple[RoleSpec, ...]) -> CommPolicy:
    """The `CommPolicy` of a `comm:` section for the env's role specs."""
    from jaxsoc.config import ConfigError

    names = tuple(s.name for s in specs)
    talkers = names if section["comm_roles"] == "all" else tuple(r for r in TIER2_ROLES if r in names)
    if len(talkers) < 2:  # nobody to talk to: it would train plain MAPPO under another name
        raise ConfigError(f"comm.comm_roles {section['comm_roles']}: this world's agents ({', '.join(names)}) "
                          f"hold {len(talkers)} of the SOC's tier-2 roles, so no messages would pass; give "
                          "comm.comm_roles=all")
    return CommPolicy(specs, shared=False, hidden_sizes=tuple(section["hidden_sizes"]),
                      activation=section["activation"], log_std_init=section["log_std_init"],
                      log_std_min=section["log_std_min"], log_std_max=section["log_std_max"],
                      talkers=talkers, message_dim=section["message_dim"], rounds=section["comm_rounds"],
                      budget=section["message_budget"])


# ----------------------------------------------------------------------------- trainer
def make_train(config: dict, env, env_params) -> Trainer:
    """MAPPO's trainer (`ppo.build_trainer`) with the communicating team; each update's metrics add
    the measured use of the message budget on the envs' current observations (`comm/messages`,
    `comm/sent/<role>`, see `CommPolicy.message_use`)."""
    s = config["comm"]
    built = {}

    def policy_of(specs):
        built["policy"] = make_policy(s, specs)
        return built["policy"]

    trainer = ppo.build_trainer(config, env, env_params, family="comm", loss_cfg=None, make_policy=policy_of)
    policy = built["policy"]

    def update(state):
        state, metrics = trainer.update(state)
        use = policy.message_use(state.params["actor"], state.obs)
        metrics.update({f"comm/{k}": v for k, v in use.items()})
        return state, metrics

    return dataclasses.replace(trainer, update=update)
