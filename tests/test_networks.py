"""Tests for jaxsoc.networks: shapes, init, and the structural properties learners rely on."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsoc.networks import (
    MLP,
    CategoricalActor,
    ContinuousQ,
    DeterministicActor,
    MultiHeadAttention,
    QMixer,
    QNetwork,
    TanhGaussianActor,
    TokenAttentionEncoder,
    TwinQ,
    ValueCritic,
    count_params,
    get_activation,
    vdn_mix,
)

# Few distinct layer shapes keeps compilation (orthogonal init's QR per shape) cheap.
B, OBS, ACT, N_ACT = 5, 16, 4, 4
SMALL = (16, 16)
KEY = jax.random.PRNGKey(0)


def rand(seed, shape, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).normal(size=shape), jnp.float32)


@pytest.fixture(scope="module")
def obs():
    return rand(0, (B, OBS))


def init_apply(module, *args, **kwargs):
    # Eager on purpose: op-level compilations are cached across modules, and the tests share
    # layer shapes (most layers are 16 x 16), which beats compiling one program per module.
    params = module.init(KEY, *args, **kwargs)
    return params, module.apply(params, *args, **kwargs)


# ---------------------------------------------------------------------------------------------
# MLP and initialisation
# ---------------------------------------------------------------------------------------------


def test_mlp_default_is_three_by_256_relu(obs):
    # Shapes only (eval_shape): initialising 256-wide layers for real is slow on a shared CPU.
    params, out = jax.eval_shape(lambda o: init_apply(MLP(), o), obs)
    chex.assert_shape(out, (B, 256))
    chex.assert_type(out, jnp.float32)
    kernels = [params["params"][f"hidden_{i}"]["kernel"].shape for i in range(3)]
    assert kernels == [(OBS, 256), (256, 256), (256, 256)]
    assert count_params(params) == OBS * 256 + 256 + 2 * (256 * 256 + 256)
    assert MLP().activation == "relu"
    _, out = init_apply(MLP(SMALL), obs)
    assert np.all(np.asarray(out) >= 0.0) and np.any(np.asarray(out) > 0.0)  # ReLU output


def test_mlp_configurable_and_leading_axes():
    x = rand(1, (2, 3, OBS))  # e.g. [batch, n_agents, obs_dim]
    module = MLP((16, 16, 8), out_dim=4, activation="tanh", output_activation="tanh")
    params, out = init_apply(module, x)
    chex.assert_shape(out, (2, 3, 4))
    assert len(params["params"]) == 4
    assert np.all(np.abs(np.asarray(out)) <= 1.0)
    _, out = init_apply(MLP((), out_dim=4), x)  # no hidden layer: a linear map
    chex.assert_shape(out, (2, 3, 4))
    with pytest.raises(ValueError, match=r"^unknown activation 'nope'; expected one of \['elu', 'gelu', "):
        get_activation("nope")
    with pytest.raises(ValueError, match=r"^unknown activation 'rellu' \(did you mean 'relu' or 'elu' or 'gelu'\?\); "
                       r"expected one of \['elu', "):
        get_activation("rellu")


@pytest.mark.parametrize("gain", [math.sqrt(2.0), 0.5])
def test_orthogonal_init_square_layer(gain):
    module = MLP(SMALL, out_dim=16, hidden_gain=gain, output_gain=0.01)
    params = module.init(KEY, jnp.zeros((1, 16)))["params"]
    for name, g in [("hidden_0", gain), ("hidden_1", gain), ("out", 0.01)]:
        w = np.asarray(params[name]["kernel"], np.float64)
        np.testing.assert_allclose(w.T @ w, g**2 * np.eye(16), atol=1e-5 * max(1, g**2))
        np.testing.assert_array_equal(params[name]["bias"], 0.0)


# ---------------------------------------------------------------------------------------------
# Actors and critics
# ---------------------------------------------------------------------------------------------


def test_categorical_actor_shape_and_near_uniform_init(obs):
    params, logits = init_apply(CategoricalActor(N_ACT, SMALL), obs)
    chex.assert_shape(logits, (B, N_ACT))
    chex.assert_type(logits, jnp.float32)
    assert set(params["params"]) == {"torso", "logits"}
    assert float(jnp.max(jnp.abs(logits))) < 0.1  # output gain 0.01


def test_tanh_gaussian_actor_state_dependent_std_is_clamped(obs):
    module = TanhGaussianActor(ACT, SMALL, log_std_min=-5.0, log_std_max=1.0, log_std_gain=1.0)
    params, (mean, log_std) = init_apply(module, obs)
    chex.assert_shape([mean, log_std], [(B, ACT), (B, ACT)])
    # Huge inputs push the raw head far outside the range: the clamp must hold.
    _, log_std_big = jax.jit(module.apply)(params, 1e4 * obs)
    ls = np.asarray(log_std_big)
    assert ls.min() >= -5.0 and ls.max() <= 1.0
    assert np.any(ls == -5.0) and np.any(ls == 1.0)
    assert not np.allclose(log_std[0], log_std[1])  # it does depend on the state


def test_tanh_gaussian_actor_state_independent_std(obs):
    module = TanhGaussianActor(ACT, SMALL, state_dependent_std=False, log_std_init=-0.5)
    params, (mean, log_std) = init_apply(module, obs)
    chex.assert_shape([mean, log_std], [(B, ACT), (B, ACT)])
    chex.assert_shape(params["params"]["log_std"], (ACT,))
    np.testing.assert_allclose(log_std, -0.5)
    # Clamp applies to the parameter too.
    apply = jax.jit(module.apply)
    p = jax.tree_util.tree_map(lambda x: x, params)
    p["params"]["log_std"] = jnp.array([-100.0, 0.0, 100.0, 1.0])
    _, ls = apply(p, obs)
    np.testing.assert_allclose(ls, np.broadcast_to([-20.0, 0.0, 2.0, 1.0], (B, ACT)))
    # Soft clamp: inside the range and still differentiable at the extremes.
    soft = TanhGaussianActor(ACT, SMALL, state_dependent_std=False, soft_clamp=True,
                             log_std_min=-5.0, log_std_max=2.0)
    sp = soft.init(KEY, obs)
    sp["params"]["log_std"] = jnp.array([-3.0, 0.0, 3.0, 1.0])
    ls, g = jax.jit(jax.value_and_grad(lambda p: soft.apply(p, obs)[1].sum()))(sp)
    _, ls = jax.jit(soft.apply)(sp, obs)
    assert np.all((np.asarray(ls) > -5.0) & (np.asarray(ls) < 2.0))
    g = g["params"]["log_std"]
    assert np.all(np.asarray(g) > 0.0)


def test_deterministic_actor_and_value_critic(obs):
    params, act = init_apply(DeterministicActor(ACT, SMALL, output_gain=5.0), 100.0 * obs)
    chex.assert_shape(act, (B, ACT))
    assert np.all(np.abs(np.asarray(act)) <= 1.0) and np.any(np.abs(np.asarray(act)) > 0.5)
    _, v = init_apply(ValueCritic(SMALL), obs)
    chex.assert_shape(v, (B,))
    chex.assert_type(v, jnp.float32)


def test_qnetwork_shapes(obs):
    _, q = init_apply(QNetwork(N_ACT, SMALL), obs)
    chex.assert_shape(q, (B, N_ACT))
    params, qd = init_apply(QNetwork(N_ACT, SMALL, dueling=True), obs)
    chex.assert_shape(qd, (B, N_ACT))
    assert {"value", "advantage"} <= set(params["params"])


def test_dueling_identity(obs):
    module = QNetwork(N_ACT, SMALL, dueling=True, output_gain=1.0)
    params = module.init(KEY, obs)
    q, state = jax.jit(lambda p, o: module.apply(p, o, capture_intermediates=True))(params, obs)
    inter = state["intermediates"]
    adv = inter["advantage"]["__call__"][0]
    value = inter["value"]["__call__"][0]
    chex.assert_shape([adv, value], [(B, N_ACT), (B, 1)])
    np.testing.assert_allclose(q - q.mean(-1, keepdims=True), adv - adv.mean(-1, keepdims=True),
                               atol=1e-5)
    np.testing.assert_allclose(q.mean(-1), value[:, 0], atol=1e-5)  # V is recoverable


def test_continuous_q_and_twin_q(obs):
    action = rand(2, (B, ACT))
    _, q = init_apply(ContinuousQ(SMALL), obs, action)
    chex.assert_shape(q, (B,))
    params, (q1, q2) = init_apply(TwinQ(SMALL), obs, action)
    chex.assert_shape([q1, q2], [(B,), (B,)])
    assert set(params["params"]) == {"q1", "q2"}
    assert not np.allclose(q1, q2)  # independently initialised heads
    single = count_params(jax.eval_shape(ContinuousQ(SMALL).init, KEY, obs, action))
    assert count_params(params) == 2 * single
    # Each head depends only on its own parameters.
    g = jax.jit(jax.grad(lambda p: TwinQ(SMALL).apply(p, obs, action)[0].sum()))(params)
    g = g["params"]
    assert all(np.all(np.asarray(x) == 0.0) for x in jax.tree_util.tree_leaves(g["q2"]))
    assert any(np.any(np.asarray(x) != 0.0) for x in jax.tree_util.tree_leaves(g["q1"]))


# ---------------------------------------------------------------------------------------------
# Mixers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qmix():
    n_agents, state_dim = 3, 6
    module = QMixer(embed_dim=8, hypernet_hidden=16)
    params = module.init(KEY, jnp.zeros((1, n_agents)), jnp.zeros((1, state_dim)))
    return module, params, jax.jit(module.apply)


def test_qmix_shapes_and_monotonicity(qmix):
    module, params, apply = qmix
    qs, state = rand(3, (64, 3), 3.0), rand(4, (64, 6), 2.0)
    q_tot = apply(params, qs, state)
    chex.assert_shape(q_tot, (64,))
    # Per-sample gradient of Q_tot w.r.t. each agent's Q (batch rows are independent).
    dq = jax.jit(jax.grad(lambda p, q, s: module.apply(p, q, s).sum(), argnums=1))
    grads = dq(params, qs, state)
    chex.assert_shape(grads, (64, 3))
    assert np.all(np.asarray(grads) >= 0.0)
    assert np.mean(np.asarray(grads) > 0.0) > 0.5  # not trivially flat
    # Monotone also for other (random) parameters, not just this init.
    for seed in range(3):
        p = jax.tree_util.tree_map(lambda x: x + rand(seed, x.shape, 0.5), params)
        assert np.all(np.asarray(dq(p, qs, state)) >= 0.0)
    # The mixing really is state-conditioned.
    assert not np.allclose(apply(params, qs, state), apply(params, qs, state + 1.0))


def test_qmix_leading_axes(qmix):
    _, params, apply = qmix
    qs, state = rand(5, (4, 2, 3)), rand(6, (4, 2, 6))
    out = apply(params, qs, state)
    chex.assert_shape(out, (4, 2))
    np.testing.assert_allclose(out[1], apply(params, qs[1], state[1]), rtol=1e-5, atol=1e-6)


def test_qmix_state_norm_makes_the_mixer_blind_to_the_state_scale(qmix):
    """`state_norm` centres the state and scales it to unit length first: the mixer (and its gain dQ_tot/dQ_i) is the
    same for a state scaled by 10, where the plain mixer's gain at init grows with the scale
    (its ReLU hypernetworks are homogeneous in the state)."""
    plain, plain_params, _ = qmix
    normed = QMixer(embed_dim=8, hypernet_hidden=16, state_norm=True)
    params = normed.init(KEY, jnp.zeros((1, 3)), jnp.zeros((1, 6)))
    qs, state = rand(3, (64, 3), 3.0), rand(4, (64, 6), 2.0)

    def gain(module, p, s):
        return jax.grad(lambda q: module.apply(p, q, s).sum())(qs)

    np.testing.assert_allclose(normed.apply(params, qs, 10.0 * state), normed.apply(params, qs, state),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gain(normed, params, 10.0 * state), gain(normed, params, state), rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(gain(normed, params, state)) >= 0.0)  # still monotone
    g1, g10 = gain(plain, plain_params, state), gain(plain, plain_params, 10.0 * state)
    assert float(np.mean(g10)) > 3.0 * float(np.mean(g1))


def test_vdn_sums():
    qs = rand(7, (B, 4))
    chex.assert_shape(vdn_mix(qs), (B,))
    np.testing.assert_allclose(vdn_mix(qs), np.asarray(qs).sum(-1), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda q: vdn_mix(q).sum())(qs), 1.0)


# ---------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------

N_TOK, TOK_DIM = 6, 16


@pytest.fixture(scope="module")
def attn():
    query, tokens = rand(8, (B, OBS)), rand(9, (B, N_TOK, TOK_DIM))
    mask = np.ones((B, N_TOK), bool)
    mask[0, [1, 4]] = False
    mask[2, 0] = False
    mask[3, :] = False  # nothing to attend to
    module = MultiHeadAttention(num_heads=2, d_k=8, out_dim=10)
    params = module.init(KEY, query, tokens, mask)
    return module, params, jax.jit(module.apply), query, tokens, jnp.asarray(mask)


def test_attention_defaults_and_shapes(attn):
    _, _, apply, query, tokens, mask = attn
    params, (out, w) = jax.eval_shape(lambda q, t: init_apply(MultiHeadAttention(), q, t),
                                      query, tokens)
    chex.assert_shape([out, w], [(B, 4 * 64), (B, 4, N_TOK)])
    chex.assert_shape(params["params"]["query"]["kernel"], (OBS, 4 * 64))
    module, params, apply, *_ = attn
    q_multi = rand(10, (B, 3, OBS))
    out, w = apply(params, q_multi, tokens, mask)
    chex.assert_shape([out, w], [(B, 3, 10), (B, 2, 3, N_TOK)])
    out1, w1 = apply(params, q_multi[:, 1], tokens, mask)
    np.testing.assert_allclose(out[:, 1], out1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w[:, :, 1], w1, rtol=1e-5, atol=1e-6)


def test_attention_weights_are_masked_distributions(attn):
    _, params, apply, query, tokens, mask = attn
    out, w = apply(params, query, tokens, mask)
    chex.assert_shape([out, w], [(B, 10), (B, 2, N_TOK)])
    w, m = np.asarray(w), np.asarray(mask)
    assert np.all(np.isfinite(np.asarray(out))) and np.all(np.isfinite(w))
    has_any = m.any(-1)
    np.testing.assert_allclose(w[has_any].sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.broadcast_to(~m[:, None, :], w.shape) <= (w == 0.0))
    assert np.all(w[~has_any] == 0.0)  # documented: all-masked row -> zero weights
    assert np.all(w[has_any][np.broadcast_to(m[:, None], w.shape)[has_any]] > 0.0)
    # Masked tokens cannot influence the output.
    noisy = jnp.where(mask[..., None], tokens, 1e3 * rand(11, tokens.shape))
    np.testing.assert_allclose(apply(params, query, noisy, mask)[0], out, rtol=1e-5, atol=1e-5)


def test_attention_is_scaled_dot_product(attn):
    _, params, apply, query, tokens, mask = attn
    p = params["params"]
    q = np.asarray(query @ p["query"]["kernel"] + p["query"]["bias"]).reshape(B, 2, 8)
    k = np.asarray(tokens @ p["key"]["kernel"] + p["key"]["bias"]).reshape(B, N_TOK, 2, 8)
    scores = np.einsum("bhd,bthd->bht", q, k) / np.sqrt(8)
    ok = np.asarray(mask).any(-1)  # rows with something to attend to
    scores = np.where(np.asarray(mask)[:, None], scores, -np.inf)[ok]
    e = np.exp(scores - scores.max(-1, keepdims=True))
    ref = e / e.sum(-1, keepdims=True)
    _, w = apply(params, query, tokens, mask)
    np.testing.assert_allclose(np.asarray(w)[ok], ref, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def encoder_setup():
    tokens, gobs = rand(12, (B, N_TOK, TOK_DIM)), rand(13, (B, OBS))
    mask = jnp.asarray(np.arange(N_TOK)[None] < np.array([[6], [4], [6], [2], [5]]))
    return tokens, gobs, mask


def test_token_encoder_shapes_and_distribution(encoder_setup):
    tokens, gobs, mask = encoder_setup
    enc = TokenAttentionEncoder(embed_dim=16, token_hidden=(16,), num_heads=2, d_k=8, out_dim=6)
    for kwargs in [dict(), dict(query_features=gobs), dict(query_features=gobs, mask=mask)]:
        _, (emb, w) = init_apply(enc, tokens, **kwargs)
        chex.assert_shape([emb, w], [(B, 6), (B, 2, N_TOK)])
        np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, rtol=1e-5)
        if "mask" in kwargs:
            assert np.all(np.asarray(w)[np.broadcast_to(~np.asarray(mask)[:, None], w.shape)] == 0)
    with_ids = TokenAttentionEncoder(embed_dim=16, token_hidden=(16,), num_heads=2, d_k=8,
                                     token_ids=N_TOK)
    params, (emb, _) = init_apply(with_ids, tokens)
    chex.assert_shape(emb, (B, 16))
    chex.assert_shape(params["params"]["token_id_embed"], (N_TOK, 16))
    with pytest.raises(ValueError, match=f"^expected {N_TOK} tokens, got 3(\n|$)"):  # a note JAX may add follows
        jax.eval_shape(with_ids.init, KEY, tokens[:, :3])


@pytest.mark.parametrize("use_obs_query", [False, True])
def test_token_encoder_attention_gets_gradient_through_policy(encoder_setup, use_obs_query):
    tokens, gobs, mask = encoder_setup
    enc = TokenAttentionEncoder(embed_dim=16, token_hidden=(16,), num_heads=2, d_k=8)
    actor = CategoricalActor(N_ACT, (16,))

    def init(key):
        k1, k2 = jax.random.split(key)
        pe = enc.init(k1, tokens, gobs if use_obs_query else None, mask)
        emb, _ = enc.apply(pe, tokens, gobs if use_obs_query else None, mask)
        return {"enc": pe, "actor": actor.init(k2, emb)}

    params = init(KEY)

    @jax.jit
    def loss_and_grad(p):
        def loss(p):
            emb, w = enc.apply(p["enc"], tokens, gobs if use_obs_query else None, mask)
            logits = actor.apply(p["actor"], emb)
            return -jax.nn.log_softmax(logits)[:, 0].mean(), w  # loss uses the output only

        return jax.grad(loss, has_aux=True)(p)

    grads, w = loss_and_grad(params)
    attn_grads = grads["enc"]["params"]["attention"]
    # The key projection influences the loss only through the attention weights, so a non-zero
    # gradient there means the weights are trained by the policy loss.
    for name in ["key", "query"]:
        assert np.abs(np.asarray(attn_grads[name]["kernel"])).max() > 1e-6, name
    query_grad = (grads["enc"]["params"]["query_proj"]["kernel"] if use_obs_query
                  else grads["enc"]["params"]["query"])
    assert np.abs(np.asarray(query_grad)).max() > 1e-6
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves)
    np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, rtol=1e-5)


def test_count_params():
    params = jax.eval_shape(MLP((3,), out_dim=2).init, KEY, jnp.zeros((1, 4)))
    assert count_params(params) == (4 * 3 + 3) + (3 * 2 + 2)
    assert count_params(params["params"]) == count_params(params)
    assert count_params({}) == 0
