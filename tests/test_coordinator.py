"""The strategic coordinator's focus head (`hmarl.coordinator.focus_head`)."""
import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc.algos.hmarl import DEFAULTS, build_coordinator
from tests.fast import fast_compile


def _config(**coordinator):
    config = {"hmarl": copy.deepcopy(DEFAULTS)}
    config["hmarl"]["coordinator"].update(coordinator)
    return config


@pytest.mark.slow  # CI budget (10 min on 2 cores): one compile per focus head (~60 CPU-s); test_auto_focus_head_is_attention_exactly stays
@fast_compile()  # one forward pass per head: compiling dominates (tests/fast.py)
def test_attention_focus_head_makes_the_explainer_the_focus_distribution():
    """With `focus_head: attention` the policy's marginal over focus segments IS the head-mean
    attention map (directive index = focus x postures + posture), so the map explains where the
    coordinator looks; the MLP head has no such tie."""
    env, p = soc.make("soc-strategic")
    # Observations need not be reachable for an identity of the network (no env program to compile).
    obs = jax.random.uniform(jax.random.key(1), (8, env.observation_space("coordinator").shape[0]))
    for head, tied in (("attention", True), ("mlp", False)):
        c = build_coordinator(_config(focus_head=head), p)
        st = c.init(jax.random.key(0))
        # Move the explainer off its near-uniform start so that a tie is not a coincidence.
        params = jax.tree_util.tree_map_with_path(
            lambda path, x: x * 8.0 if "explainer" in jax.tree_util.keystr(path) else x, st.actor_params)
        st = st._replace(actor_params=params)
        dist, weights = c.dist(st.actor_params, obs)
        focus = jax.nn.softmax(dist.logits).reshape(8, p.num_segments, p.num_postures).sum(-1)
        attention = weights.mean(axis=-2)  # [8, S]
        assert float(jnp.max(jnp.abs(attention - 0.1))) > 0.01  # not uniform: a real test of the tie
        gap = float(jnp.max(jnp.abs(focus - attention)))
        assert (gap < 1e-5) if tied else (gap > 1e-3), (head, gap)


def test_attention_focus_head_refuses_a_scenario_without_a_focus_choice():
    _, v1 = soc.make("hmarl-soc-v1")
    with pytest.raises(ValueError, match="discrete directives"):
        build_coordinator(_config(focus_head="attention"), v1)
    _, v2 = soc.make("soc-v2")
    with pytest.raises(ValueError, match="attention: true"):
        build_coordinator(_config(focus_head="attention", attention=False), v2)
    np.testing.assert_equal(build_coordinator(_config(focus_head="attention"), v2).num_postures, v2.num_postures)


def test_runs_saved_before_focus_head_existed_keep_their_training_hash():
    """`focus_head` was added after runs were saved: at "mlp" (what they trained) it leaves the
    training hash unchanged, so they load and resume; "attention" is a change."""
    from jaxsoc import config as config_lib

    cfg = config_lib.resolve(flags={"algo": "hmarl"})
    old = copy.deepcopy(cfg)
    del old["hmarl"]["coordinator"]["focus_head"]
    # The default is now "auto" (attention on soc-v2): a saved run without the key loads as the
    # "mlp" it trained, never as the newer default, and keeps its hash.
    reloaded = config_lib.resolve(saved=old)
    assert reloaded["hmarl"]["coordinator"]["focus_head"] == "mlp"
    assert config_lib.training_hash(reloaded) == config_lib.training_hash(old)
    for head in ("attention", "auto"):
        cfg["hmarl"]["coordinator"]["focus_head"] = head
        assert config_lib.training_hash(cfg) != config_lib.training_hash(old)


def test_auto_focus_head_is_attention_exactly_where_it_can_be():
    for name, attention, tied in (("soc-v2", True, True), ("soc-strategic", True, True),
                                  ("hmarl-soc-v1", True, False), ("soc-v2", False, False)):
        _, p = soc.make(name)
        c = build_coordinator(_config(focus_head="auto", attention=attention), p)
        assert c.num_postures == (p.num_postures if tied else 0), (name, attention)


@fast_compile()  # two small forward passes
def test_focus_temperature_sharpens_the_focus_in_the_maps_order():
    """`focus_temperature` T: P(focus = s) is the head-mean attention to the power 1/T,
    normalised: T = 1 is the map itself, T < 1 the same order, sharper."""
    env, p = soc.make("soc-v2")
    obs = jax.random.uniform(jax.random.key(1), (6, env.observation_space("coordinator").shape[0]))
    for temperature in (1.0, 0.25):
        cfg = _config(focus_head="attention", focus_temperature=temperature, num_heads=2, d_k=8, embed_dim=8)
        cfg["hmarl"]["hidden_sizes"] = [16]
        c = build_coordinator(cfg, p)
        st = c.init(jax.random.key(0))
        params = jax.tree_util.tree_map_with_path(  # off the near-uniform start, short of one-hot heads
            lambda path, x: x * 2.0 if "explainer" in jax.tree_util.keystr(path) else x, st.actor_params)
        dist, weights = c.dist(params, obs)
        focus = jax.nn.softmax(dist.logits).reshape(6, p.num_segments, p.num_postures).sum(-1)
        attention = weights.mean(axis=-2)  # [6, S]
        assert float(jnp.max(jnp.abs(attention - 1 / p.num_segments))) > 0.01
        powered = attention ** (1 / temperature)
        np.testing.assert_allclose(focus, powered / powered.sum(-1, keepdims=True), atol=1e-5)
        np.testing.assert_array_equal(jnp.argmax(focus, -1), jnp.argmax(attention, -1))
        if temperature < 1:
            assert bool(jnp.all(focus.max(-1) > attention.max(-1) + 0.01))


def test_focus_temperature_is_refused_where_it_would_be_ignored():
    _, v1 = soc.make("hmarl-soc-v1")
    with pytest.raises(ValueError, match="has an MLP head, which would ignore it"):
        build_coordinator(_config(focus_temperature=0.5), v1)  # auto -> mlp on v1
    _, v2 = soc.make("soc-v2")
    with pytest.raises(ValueError, match="focus_head=mlp has an MLP head"):
        build_coordinator(_config(focus_head="mlp", focus_temperature=0.5), v2)
    assert build_coordinator(_config(focus_temperature=0.5), v2).focus_temperature == 0.5
    assert build_coordinator(_config(), v2).focus_temperature == 1.0  # the default, the map itself
    assert build_coordinator(_config(focus_head="mlp"), v2).focus_temperature == 1.0  # a no-op: fine anywhere
    from jaxsoc import config as config_lib

    for bad, message in ((0, "must be positive, got 0"), (-1, "must be positive, got -1"), ("x", "must be a number"),
                         (".nan", "must be a finite number")):
        with pytest.raises(config_lib.ConfigError, match=message):
            config_lib.resolve(flags={"algo": "hmarl"}, sets=[f"hmarl.coordinator.focus_temperature={bad}"])


def test_runs_saved_before_focus_temperature_existed_keep_their_training_hash():
    from jaxsoc import config as config_lib

    cfg = config_lib.resolve(flags={"algo": "hmarl"})
    old = copy.deepcopy(cfg)
    del old["hmarl"]["coordinator"]["focus_temperature"]
    reloaded = config_lib.resolve(saved=old)
    assert reloaded["hmarl"]["coordinator"]["focus_temperature"] == 1.0  # what they trained
    assert config_lib.training_hash(reloaded) == config_lib.training_hash(old)
    cfg["hmarl"]["coordinator"]["focus_temperature"] = 0.5
    assert config_lib.training_hash(cfg) != config_lib.training_hash(old)
