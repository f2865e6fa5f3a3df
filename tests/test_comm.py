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


@pytest.mark.parametrize("budget", [0, 1, 2, 3])
def test_channel_shapes_and_the_budget_is_respected(budget):
    p = policy(budget=budget)
    params = p.init(jax.random.PRNGKey(0))
    obs = observations()
    out, channel = fast_jit(p.forward)(params, obs)
    assert channel.wire.shape == (2, 16, 3, 4) and channel.sent.shape == (2, 16, 3)
    assert out["alert_triage"].shape == (16, 4) and out["threat_hunter"][0].shape == (16, 2)
    # Exactly min(budget, 3) speakers in every round of every sample; the silent put 0 on the wire.
    np.testing.assert_array_equal(channel.sent.sum(-1), min(budget, 3))
    assert np.all(np.where(channel.sent[..., None], 0.0, np.abs(channel.wire)) == 0.0)
    use = p.message_use(params, obs)
    assert float(use["messages"]) == min(budget, 3)
    assert sum(float(use[f"sent/{r}"]) for r in TALKERS) == pytest.approx(min(budget, 3))
    # One env, no batch axis (what `act` sees).
    one, ch = p.forward(params, jax.tree.map(lambda x: x[3], obs))
    assert ch.wire.shape == (2, 3, 4)
    np.testing.assert_allclose(one["alert_triage"], out["alert_triage"][3], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- silence is MAPPO
def test_silent_team_acts_as_mappo_and_message_dim_0_is_mappo():
    mappo = onpolicy.Policy(SPECS, hidden_sizes=(8,))
    key = jax.random.PRNGKey(3)
    obs = observations()
    # budget 0: message layers exist but nothing is sent; torsos and heads are MAPPO's own
    # initialisation from the same key, and every role's output is MAPPO's, bit for bit.
    silent = policy(budget=0)
    params = silent.init(key)
    want = mappo.init(key)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), shared_part(params), want))
    got = silent.outputs(params, obs)
    for r, expected in mappo.outputs(want, obs).items():
        for a, b in zip(jax.tree.leaves(got[r]), jax.tree.leaves(expected)):
            np.testing.assert_array_equal(a, b)
    # message_dim 0 (or comm_rounds 0): no message layers at all, MAPPO's parameter tree.
    for off in (policy(message_dim=0), policy(rounds=0)):
        assert not off.talks
        p = off.init(key)
        assert jax.tree.structure(p) == jax.tree.structure(want)
        assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), p, want))


# ----------------------------------------------------------------------------- decentralised execution
def test_a_role_hears_another_only_through_its_messages():
    p = policy(budget=3)  # everybody speaks: the top-k cannot re-route a message
    params = p.init(jax.random.PRNGKey(1))
    obs = observations()
    moved = dict(obs, threat_hunter=obs["threat_hunter"] + 1.0)
    forward = fast_jit(p.forward)
    out, channel = forward(params, obs)
    out_moved, channel_moved = forward(params, moved)
    # The hunter's new observation changes what it says, and so what triage and the orchestrator do...
    assert not np.allclose(channel.wire[:, :, 0], channel_moved.wire[:, :, 0])
    for r in ("alert_triage", "response_orchestrator"):
        assert np.abs(np.asarray(jax.tree.leaves(out_moved[r])[0] - jax.tree.leaves(out[r])[0])).max() > 1e-4
    # ...but only through the wire: delivering the old messages gives the old actions bit for bit.
    held, _ = fast_jit(p.forward)(params, moved, channel.wire)
    for r in ("coordinator", "alert_triage", "response_orchestrator"):
        for a, b in zip(jax.tree.leaves(held[r]), jax.tree.leaves(out[r])):
            np.testing.assert_array_equal(a, b)
    # With messages off (budget 0) the hunter's observation does not reach triage at all: zero gradient.
    for silent in (policy(budget=0), policy(message_dim=0)):
        sp = silent.init(jax.random.PRNGKey(1))

        def triage_logits(hunter_obs, silent=silent, sp=sp):
            return silent.outputs(sp, dict(obs, threat_hunter=hunter_obs))["alert_triage"].sum()

        assert not np.any(jax.grad(triage_logits)(obs["threat_hunter"]))
    # ...while with messages the gradient is there (the channel is differentiable within a step).
    def triage_logits_talking(hunter_obs):
        return p.outputs(params, dict(obs, threat_hunter=hunter_obs))["alert_triage"].sum()

    assert np.abs(np.asarray(jax.grad(triage_logits_talking)(obs["threat_hunter"]))).max() > 0


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


# ----------------------------------------------------------------------------- a toy that needs talking
class CommToySOC(ToySOC):
    """tests/onpolicy_toys.py's team, except that alert triage's target (one of 4 choices, +1 a
    step when named) is shown to the threat hunter, not to triage: triage sees only the time.
    Without messages triage can only guess among its allowed choices (~0.45 a step); with them
    the hunter can tell it (1 a step)."""

    def __init__(self, params: ToyParams = ToyParams()):
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


UPDATES, NUM_ENVS, ROLLOUT = 40, 32, 16


def toy_trainer(algo="mappo-comm", updates=UPDATES, **sets):
    family = algos.family_of(algo)
    section = {"hidden_sizes": [32], "rollout": ROLLOUT, "lr": 3e-3, "minibatches": 2, **sets}
    cfg = config_lib.resolve(flags={"algo": algo, "scenario": "toy-comm", "num_envs": NUM_ENVS,
                                    "total_steps": NUM_ENVS * ROLLOUT * updates, family: section,
                                    "run": {"name": "x"}}, scenarios=["toy-comm"])
    env = CommToySOC()
    return algos.make_train(cfg, env, env.default_params)


def per_step_return(metrics):
    return np.asarray(metrics["return"]) / np.asarray(metrics["length"])


@pytest.fixture(scope="module")
def toy_runs():
    """The talking team and the same team without messages (message_dim 0: MAPPO), one seed."""
    out = {}
    for name, sets in (("talking", {}), ("silent", {"message_dim": 0})):
        trainer = toy_trainer(**sets)
        out[name] = jax.device_get(jax.jit(trainer.train)(jax.random.PRNGKey(0))[1])
    return out


def test_talking_beats_the_silent_team_where_only_messages_carry_the_target(toy_runs):
    talking, silent = (per_step_return(toy_runs[k]) for k in ("talking", "silent"))
    last = slice(-5, None)
    print(f"per-step return, last 5 updates: talking {talking[last].mean():.3f}, silent {silent[last].mean():.3f}; "
          f"first 5: {talking[:5].mean():.3f}, {silent[:5].mean():.3f}")
    # Triage's share of the reward is ~0.45 a step guessing and 1 when told: a margin of 0.25.
    assert talking[last].mean() > silent[last].mean() + 0.25
    # The budget (2 of 3 tier-2 roles per round) is respected and the hunter is the one that speaks.
    assert np.all(toy_runs["talking"]["comm/messages"] == 2.0)
    assert toy_runs["talking"]["comm/sent/threat_hunter"][last].mean() > 0.9
    assert "comm/messages" not in toy_runs["silent"]


def test_message_dim_0_trains_exactly_as_mappo(toy_runs):
    mappo = toy_trainer("mappo", updates=3)
    got = jax.device_get(jax.jit(mappo.train)(jax.random.PRNGKey(0))[1])
    for k, v in got.items():
        np.testing.assert_allclose(toy_runs["silent"][k][:3], v, rtol=1e-5, atol=1e-6, err_msg=k)


def test_same_seed_same_run_other_seed_other_run():
    trainer = toy_trainer(updates=2)
    train = jax.jit(trainer.train)
    (s0, m0), (s1, m1), (s2, _) = (train(jax.random.PRNGKey(k)) for k in (0, 0, 1))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves((s0, m0)), jax.tree.leaves((s1, m1))))
    assert not np.array_equal(jax.tree.leaves(s0.params)[0], jax.tree.leaves(s2.params)[0])
