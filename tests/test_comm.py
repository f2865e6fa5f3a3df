"""MAPPO with learned communication (jaxsoc/algos/comm.py, `mappo-comm`).

  * shapes of the channel, the hard top-k budget (exact under ties, never exceeded);
  * silence is MAPPO: with `message_budget: 0` every role acts exactly as MAPPO's actor with the
    same torso and head; with `message_dim: 0` the actors are MAPPO's (same init, same training);
  * decentralised execution: a role hears another only through the wire;
  * learning on a toy where communication is necessary (alert triage's target is seen only by the
    threat hunter): the talking team beats the same team without messages by a stated margin;
  * determinism per seed; config checks.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsoc import algos, config as config_lib
from jaxsoc.algos import comm, onpolicy
from jaxsoc.algos.common import RoleSpec
from jaxsoc.config import ConfigError
from jaxsoc.env.spaces import Box
from tests.fast import fast_jit
from tests.test_engine import leaves_equal
from tests.onpolicy_toys import D_TH, N_TRIAGE, ToyParams, ToySOC

SPECS = (RoleSpec("coordinator", 5, "discrete", 3), RoleSpec("threat_hunter", 4, "continuous", 2),
         RoleSpec("alert_triage", 6, "discrete", 4), RoleSpec("response_orchestrator", 3, "continuous", 2))
TALKERS = ("threat_hunter", "alert_triage", "response_orchestrator")


def policy(**kw):
    return comm.CommPolicy(SPECS, hidden_sizes=(8,), **{"message_dim": 4, "rounds": 2, "budget": 2, **kw})


def observations(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return {s.name: jnp.asarray(rng.normal(size=(n, s.obs_dim)), jnp.float32) for s in SPECS}


def shared_part(params):
    """A talking role's parameters without its message layers: MAPPO's torso and head."""
    return {r: {"params": {k: v for k, v in p["params"].items() if not k.startswith(("say_", "gate_", "hear_"))}}
            for r, p in params.items()}


# ----------------------------------------------------------------------------- channel and budget
def test_top_k_by_hand_and_under_ties():
    bids = jnp.array([[0.3, -1.0, 2.0], [0.5, 0.5, 0.5], [0.0, 1.0, 1.0]])
    np.testing.assert_array_equal(comm.top_k_mask(bids, 1), [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(comm.top_k_mask(bids, 2), [[1, 0, 1], [1, 1, 0], [0, 1, 1]])
    np.testing.assert_array_equal(comm.top_k_mask(bids, 0), np.zeros((3, 3), bool))
    np.testing.assert_array_equal(comm.top_k_mask(bids, 5), np.ones((3, 3), bool))
    np.testing.assert_array_equal(comm.top_k_mask(jnp.array([2.0, 1.0]), 1), [True, False])  # no batch axis


BUDGETS = (0, 1, 4)


@pytest.fixture(scope="module")
def computed():
    """Every policy-level quantity the tests below check. The budget does not change the
    parameters, so every talking policy here shares one initialisation (flax inits are eager: an
    orthogonal init inside a program compiles a QR per layer), and the forward passes and
    gradients are ONE program compiled unoptimised (tests/fast.py)."""
    obs = observations()
    moved = dict(obs, threat_hunter=obs["threat_hunter"] + 1.0)  # the hunter sees something else
    key = jax.random.PRNGKey(3)
    mappo = onpolicy.Policy(SPECS, hidden_sizes=(8,))
    talking = policy(budget=3)  # everybody speaks: the top-k cannot re-route a message
    params = {"talking": talking.init(key), "mappo": mappo.init(key), "dim0": policy(message_dim=0).init(key),
              "rounds0": policy(rounds=0).init(key)}

    def triage_gradient(p, params):
        """d sum(triage's logits) / d (hunter's observation), `[16, 4]`."""
        return jax.grad(lambda o: p.outputs(params, dict(obs, threat_hunter=o))["alert_triage"].sum())(
            obs["threat_hunter"])

    def run(params):
        out = {"budget": {}}
        for budget in BUDGETS:
            p = policy(budget=budget)
            out["budget"][budget] = (*p.forward(params["talking"], obs), p.message_use(params["talking"], obs))
        out["one"] = policy(budget=1).forward(params["talking"], jax.tree.map(lambda x: x[3], obs))  # no batch axis (`act`)
        out["mappo"] = mappo.outputs(params["mappo"], obs)
        silent, off = policy(budget=0), policy(message_dim=0)
        out["silent"] = {"budget0": (out["budget"][0][0], triage_gradient(silent, params["talking"])),
                         "dim0": (off.outputs(params["dim0"], obs), triage_gradient(off, params["dim0"])),
                         "rounds0": (policy(rounds=0).outputs(params["rounds0"], obs), None)}
        heard, channel = talking.forward(params["talking"], obs)
        heard_moved, channel_moved = talking.forward(params["talking"], moved)
        held, _ = talking.forward(params["talking"], moved, channel.wire)  # the old messages delivered
        out["hears"] = (heard, channel, heard_moved, channel_moved, held, triage_gradient(talking, params["talking"]))
        return out

    return jax.device_get(params), jax.device_get(fast_jit(run)(params))


@pytest.mark.slow  # CI budget (10 min on 2 cores): the channel fixture compiles a MAPPO-comm update (~16 CPU-s); top-k's hand-worked test stays
def test_channel_shapes_and_the_budget_is_respected(computed):
    _, computed = computed
    for budget in BUDGETS:
        out, channel, use = computed["budget"][budget]
        assert channel.wire.shape == (2, 16, 3, 4) and channel.sent.shape == (2, 16, 3)  # [K, ..., R, M]
        assert out["alert_triage"].shape == (16, 4) and out["threat_hunter"][0].shape == (16, 2)
        # Exactly min(budget, 3) speakers in every round of every sample; the silent put 0 on the wire.
        np.testing.assert_array_equal(channel.sent.sum(-1), min(budget, 3))
        assert np.all(np.where(channel.sent[..., None], 0.0, np.abs(channel.wire)) == 0.0)
        assert float(use["messages"]) == min(budget, 3)
        assert sum(float(use[f"sent/{r}"]) for r in TALKERS) == pytest.approx(min(budget, 3))
    one, one_channel = computed["one"]
    assert one_channel.wire.shape == (2, 3, 4)
    np.testing.assert_allclose(one["alert_triage"], computed["budget"][1][0]["alert_triage"][3], rtol=1e-5, atol=1e-6)
    # With budget 1 the speaker changes from sample to sample (the bids depend on the observations).
    sent = computed["budget"][1][1].sent
    assert len({tuple(row) for row in sent.reshape(-1, 3).tolist()}) > 1


# ----------------------------------------------------------------------------- silence is MAPPO
@pytest.mark.slow  # CI budget (10 min on 2 cores): the channel fixture compiles a MAPPO-comm update (~16 CPU-s); top-k's hand-worked test stays
def test_silent_team_acts_as_mappo_and_message_dim_0_is_mappo(computed):
    params, computed = computed
    want = computed["mappo"]
    # budget 0: message layers exist but nothing is sent; torsos and heads are MAPPO's own
    # initialisation from the same key, and every role's output is MAPPO's, bit for bit.
    assert leaves_equal(shared_part(params["talking"]), params["mappo"])
    assert leaves_equal(computed["silent"]["budget0"][0], want)
    # message_dim 0 or comm_rounds 0: no message layers at all, MAPPO's parameter tree and outputs.
    for name in ("dim0", "rounds0"):
        assert leaves_equal(params[name], params["mappo"])
        assert leaves_equal(computed["silent"][name][0], want)


# ----------------------------------------------------------------------------- decentralised execution
@pytest.mark.slow  # CI budget (10 min on 2 cores): the channel fixture compiles a MAPPO-comm update (~16 CPU-s); top-k's hand-worked test stays
def test_a_role_hears_another_only_through_its_messages(computed):
    _, computed = computed
    heard, channel, heard_moved, channel_moved, held, gradient = computed["hears"]
    # The hunter's new observation changes what it says, and so what triage and the orchestrator do...
    assert not np.allclose(channel.wire[:, :, 0], channel_moved.wire[:, :, 0])
    for r in ("alert_triage", "response_orchestrator"):
        assert np.abs(jax.tree.leaves(heard_moved[r])[0] - jax.tree.leaves(heard[r])[0]).max() > 1e-4
    # ...but only through the wire: delivering the old messages gives the old actions bit for bit
    # (the coordinator does not talk: never affected).
    assert leaves_equal({r: held[r] for r in ("coordinator", "alert_triage", "response_orchestrator")},
                        {r: heard[r] for r in ("coordinator", "alert_triage", "response_orchestrator")})
    # The channel is differentiable within a step: triage's logits have a gradient in the
    # hunter's observation; with messages off (budget 0, message_dim 0) exactly none.
    assert np.abs(gradient).max() > 0
    for name in ("budget0", "dim0"):
        assert not np.any(computed["silent"][name][1])


# ----------------------------------------------------------------------------- config
def test_config_checks():
    flags = {"algo": "mappo-comm", "scenario": "soc-v2", "run": {"name": "x"}}
    cfg = config_lib.resolve(flags=flags, scenarios=["soc-v2"])
    assert algos.family_of("mappo-comm") == "comm"
    s = cfg["comm"]
    assert (s["message_dim"], s["comm_rounds"], s["message_budget"], s["comm_roles"]) == (16, 1, 2, "tier2")
    bad = {
        "comm.message_budget=-1": "comm.message_budget must be an integer >= 0",
        "comm.message_dim=2.5": "comm.message_dim must be an integer",
        "comm.comm_rounds=-2": "comm.comm_rounds must be an integer >= 0",
        "comm.comm_roles=some": "comm.comm_roles must be one of tier2, all",
        "comm.policy=single": "comm.policy must be per_role",
        "comm.critic=central": "comm.critic must be one of auto, world, local, joint",
    }
    for item, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            config_lib.resolve(flags=flags, sets=[item], scenarios=["soc-v2"])
    # a world without the SOC's tier-2 roles: nobody talks under comm_roles tier2 (it trained plain
    # MAPPO without a word); with comm_roles all its agents talk
    import jaxsoc.env as soc

    retail = config_lib.resolve(flags=dict(flags, scenario="retail"))
    env, params = soc.make("retail")
    with pytest.raises(ConfigError, match="hold 0 of the SOC's tier-2 roles, so no messages would pass"):
        algos.make_train(retail, env, params)
    talking = config_lib.resolve(flags=dict(flags, scenario="retail"), sets=["comm.comm_roles=all"])
    assert algos.make_train(talking, env, params).num_updates > 0


# ----------------------------------------------------------------------------- a toy that needs talking
class CommToySOC(ToySOC):
    """tests/onpolicy_toys.py's team on a task that needs talking: the only reward is +1 a step
    when alert triage names its target (one of 4, uniform, redrawn every step, every choice
    allowed), and that target is shown to the threat hunter, not to triage, which sees only the
    time. The other roles' actions do nothing. Episodes last `max_steps` steps.

    Without messages no team does better than chance: 1/4 a step. With them the hunter can tell
    triage the target: up to 1 a step.
    """

    def __init__(self, params: ToyParams = ToyParams(p_end=0.0)):
        super().__init__(params)
        dims = {"coordinator": 5 + 1, "threat_hunter": D_TH + N_TRIAGE + 1, "alert_triage": 1,
                "response_orchestrator": 2 + 1}
        self.observation_spaces = {a: Box(-jnp.inf, jnp.inf, (d,)) for a, d in dims.items()}
        self.world_state_size = sum(dims.values()) + 2

    def get_obs(self, s, params=None):
        obs = super().get_obs(s, params)
        tau = obs["alert_triage"][-1:]
        return dict(obs, threat_hunter=jnp.concatenate([s.th_target, jax.nn.one_hot(s.triage_target, N_TRIAGE), tau]),
                    alert_triage=tau)

    def get_avail_actions(self, s, params=None):
        return dict(super().get_avail_actions(s, params), alert_triage=jnp.ones((N_TRIAGE,), bool))

    def step(self, key, s, actions, params=None):
        p = self.default_params if params is None else params
        k_next, k_reset = jax.random.split(key)
        reward = (actions["alert_triage"].astype(jnp.int32) == s.triage_target).astype(jnp.float32)
        t = s.t + 1
        stepped = self._draw(k_next, t, s.ret + reward, s.masked)
        done = t >= p.max_steps
        _, fresh = self.reset(k_reset, p)
        state = jax.tree.map(lambda r, x: jnp.where(done, r, x), fresh, stepped)
        infos = {"terminated": jnp.zeros((), bool), "truncated": done, "discount": 1.0 - done.astype(jnp.float32),
                 "final_obs": self.get_obs(stepped, p), "final_world_state": self.get_world_state(stepped, p),
                 "world_state": self.get_world_state(state, p),
                 "metrics": {"return": stepped.ret, "length": t.astype(jnp.float32)}}
        return (self.get_obs(state, p), state, {ag: reward for ag in self.agents}, dict.fromkeys(self.agents, done)
                | {"__all__": done}, infos)


UPDATES, NUM_ENVS, ROLLOUT = 100, 32, 16
CHANCE = 1 / N_TRIAGE  # the best per-step return of any team without messages


def toy_trainer(algo="mappo-comm", updates=UPDATES, **sets):
    family = algos.family_of(algo)
    # lr and entropy set here: the two configs' own values may differ (MAPPO's entropy is 0.001
    # since 2026-12-06, mappo-comm's 0.01), and the silent team must compile to MAPPO's program.
    section = {"hidden_sizes": [32], "rollout": ROLLOUT, "lr": 3e-3, "ent_coef": 0.01, "minibatches": 2, **sets}
    cfg = config_lib.resolve(flags={"algo": algo, "scenario": "toy-comm", "num_envs": NUM_ENVS,
                                    "total_steps": NUM_ENVS * ROLLOUT * updates, family: section,
                                    "run": {"name": "x"}}, scenarios=["toy-comm"])
    env = CommToySOC()
    return algos.make_train(cfg, env, env.default_params)


def per_step_return(metrics):
    """`[updates]`: the fraction of steps on which triage named its target (8-step episodes)."""
    return np.asarray(metrics["return"]) / np.asarray(metrics["length"])


def train_toy(**sets):
    """`(compiled train, (final state, [updates] metrics) of seed 0)`. Compiled unoptimised
    (tests/fast.py): 13 CPU-s against 25 optimised, and 100 updates still run in under 2 s."""
    train = fast_jit(toy_trainer(**sets).train)
    return train, jax.device_get(train(jax.random.PRNGKey(0)))


@pytest.fixture(scope="module")
def talking():
    return train_toy()


@pytest.mark.slow  # CI budget (10 min on 2 cores): the talking toy team's training (~35 CPU-s); the channel's hand-worked tests stay
def test_talking_team_beats_any_silent_team_where_only_messages_carry_the_target(talking):
    _, (_, metrics) = talking
    hits = per_step_return(metrics)
    last = slice(-10, None)
    print(f"triage hits per step: first 10 updates {hits[:10].mean():.3f}, last 10 {hits[last].mean():.3f} "
          f"(any silent team: {CHANCE}); hunter speaks in {metrics['comm/sent/threat_hunter'][last].mean():.2f} "
          "of the rounds")
    # Measured (seed 0, 100 updates): 0.28 -> 0.96. The silent team trained alike stays at chance
    # (test_the_silent_team_trained_alike_stays_at_chance, -m slow: 0.25).
    assert hits[:10].mean() < CHANCE + 0.1
    assert hits[last].mean() > CHANCE + 0.5
    # The budget (2 of the 3 tier-2 roles per round) is used in full, and the hunter is always among
    # the speakers (every role's bid starts near 0: at first it speaks in ~2/3 of the rounds).
    np.testing.assert_array_equal(metrics["comm/messages"], 2.0)
    assert metrics["comm/sent/threat_hunter"][last].mean() > 0.95


@pytest.mark.slow  # CI budget (10 min on 2 cores): the talking toy team's training (~35 CPU-s); the channel's hand-worked tests stay
def test_same_seed_same_run(talking):
    train, first = talking
    again = jax.device_get(train(jax.random.PRNGKey(0)))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again)))
    other = jax.device_get(train(jax.random.PRNGKey(1)))
    assert not np.array_equal(first[1]["return"], other[1]["return"])


@pytest.mark.slow  # CI budget: one more toy program (~10 CPU-s cold)
def test_the_silent_team_trained_alike_stays_at_chance():
    _, (_, metrics) = train_toy(message_dim=0)
    hits = per_step_return(metrics)
    print(f"silent team: triage hits per step, last 10 updates {hits[-10:].mean():.3f}")
    assert abs(hits[-10:].mean() - CHANCE) < 0.05
    assert "comm/messages" not in metrics


@pytest.mark.slow  # CI budget: tracing two trainers (~5 CPU-s)
def test_message_dim_0_compiles_to_mappo_s_program():
    """The silent team's training program is MAPPO's, op for op (so it trains exactly as MAPPO)."""
    key = jax.random.PRNGKey(0)
    silent = jax.jit(toy_trainer(message_dim=0, updates=2).train).lower(key).as_text()
    mappo = jax.jit(toy_trainer("mappo", updates=2).train).lower(key).as_text()
    assert silent == mappo
