"""TRPO (jaxsoc/algos/trpo.py): the natural-gradient step's parts against hand-worked and explicitly
built numbers, one step's trust region checked with an independent float64 KL, and learning on the
tiny SOC-shaped toy team (tests/onpolicy_toys.py), deterministically per seed.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxsoc import algos, config as config_lib
from jaxsoc.algos import onpolicy, ppo, trpo
from jaxsoc.algos.common import RoleSpec
from jaxsoc.config import ConfigError
from tests.fast import fast_jit
from tests.onpolicy_toys import make_toy_soc
from tests.test_engine import leaves_equal


# ----------------------------------------------------------------------------- conjugate gradient
def test_conjugate_gradient_solves_each_block_of_an_spd_system():
    # Block "a": [[4, 1], [1, 3]] x = [1, 2] has x = [1/11, 7/11] (by Cramer's rule: det 11,
    # x1 = (1*3 - 1*2) / 11, x2 = (4*2 - 1*1) / 11). Block "b": a 3 x 3 SPD system, solved by
    # numpy. Block "z": right-hand side 0 stays 0 (no 0/0). CG is exact in n steps for n x n, and
    # each block has its own step sizes: 3 iterations solve both ("a" idles once converged).
    a = jnp.array([[4.0, 1.0], [1.0, 3.0]])
    b = jnp.array([[6.0, 2.0, 1.0], [2.0, 5.0, 2.0], [1.0, 2.0, 4.0]])
    z = jnp.eye(2)
    mats = {"a": a, "b": b, "z": z}
    rhs = {"a": {"w": jnp.array([1.0, 2.0])}, "b": {"w": jnp.array([1.0, -2.0, 3.0])}, "z": {"w": jnp.zeros(2)}}
    matvec = lambda v: {k: {"w": mats[k] @ v[k]["w"]} for k in v}  # noqa: E731
    x = jax.jit(lambda r: trpo.conjugate_gradient(matvec, r, 3))(rhs)
    np.testing.assert_allclose(x["a"]["w"], [1 / 11, 7 / 11], rtol=1e-5)
    np.testing.assert_allclose(x["b"]["w"], np.linalg.solve(np.asarray(b, np.float64), [1.0, -2.0, 3.0]),
                               rtol=1e-5)
    np.testing.assert_array_equal(x["z"]["w"], [0.0, 0.0])
    # One iteration is the steepest-descent step along b: for "a", Ab = [6, 7], b.b = 5, b.Ab = 20,
    # so x = (5 / 20) [1, 2].
    one = trpo.conjugate_gradient(matvec, rhs, 1)
    np.testing.assert_allclose(one["a"]["w"], [0.25, 0.5], rtol=1e-6)


# ----------------------------------------------------------------------------- Fisher-vector product
def test_fisher_vector_product_equals_the_explicit_fisher_matrix_times_v():
    """A linear categorical policy (logits = W o + c, 4 choices, some masked) on 6 observations,
    one with weight 0: F = sum_s w_s sum_a p(a|s) grad log p(a|s) grad log p(a|s)^T / sum_s w_s,
    built from the Jacobian of the log-probs in float64, against the forward-over-reverse product."""
    policy = onpolicy.Policy((RoleSpec("pick", 3, "discrete", 4),), hidden_sizes=())
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: x + jnp.asarray(rng.normal(size=x.shape), jnp.float32),
                          policy.init(jax.random.PRNGKey(0)))
    obs = {"pick": jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)}
    mask = np.ones((6, 4), bool)
    mask[1, 2] = mask[3, 0] = mask[3, 3] = False
    acted = onpolicy.Acted(obs, {"pick": jnp.asarray(mask)}, {"pick": jnp.zeros(6, jnp.int32)},
                           {"pick": jnp.zeros(6)}, {"pick": jnp.array([1.0, 1, 1, 0, 1, 1])})
    flat, unravel = ravel_pytree(params)  # 3 x 4 weights + 4 biases
    v = jnp.asarray(rng.normal(size=flat.shape), jnp.float32)

    damping = 0.25

    def log_probs(theta):  # [S, 4]
        return policy.dists(unravel(theta), obs, {"pick": jnp.asarray(mask)})["pick"].log_probs

    @fast_jit  # one small program instead of many eager ops
    def both(theta, v):
        fv = ravel_pytree(trpo.fisher_vector_product(unravel(theta), acted, policy, damping)(unravel(v)))[0]
        return fv, jax.jacobian(lambda t: jnp.where(mask, log_probs(t), 0.0))(theta), log_probs(theta)

    got, jac, lp = both(flat, v)
    jac = np.asarray(jac, np.float64)  # [S, 4, P]
    p = np.where(mask, np.exp(np.asarray(lp, np.float64)), 0.0)
    w = np.asarray(acted.weights["pick"], np.float64)
    fisher = np.einsum("s,sa,sap,saq->pq", w, p, jac, jac) / w.sum()
    np.testing.assert_allclose(got, fisher @ np.asarray(v, np.float64) + damping * np.asarray(v), rtol=1e-4,
                               atol=1e-6)


# ----------------------------------------------------------------------------- one step
SPECS = (RoleSpec("pick", 3, "discrete", 4), RoleSpec("aim", 2, "continuous", 2))


def float64_kl_and_surrogate(policy, old_params, new_params, acted, advantages):
    """Per role, in float64 and independently of trpo.py: the weighted mean KL(old || new)
    (categorical by its probabilities; the pre-tanh Gaussians' closed form) and the weighted
    mean of ratio * A."""
    old = policy.outputs(old_params, acted.obs)
    new = policy.outputs(new_params, acted.obs)
    f64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
    out = {}
    for role in ("pick", "aim"):
        w = f64(acted.weights[role])
        if role == "pick":
            mask = np.asarray(acted.masks["pick"])
            lo = np.where(mask, f64(old["pick"]), -np.inf)
            ln = np.where(mask, f64(new["pick"]), -np.inf)
            # normalised, then 0 (not -inf) at masked choices, whose probability is 0
            lo = np.where(mask, lo - np.logaddexp.reduce(lo, -1, keepdims=True), 0.0)
            ln = np.where(mask, ln - np.logaddexp.reduce(ln, -1, keepdims=True), 0.0)
            kl = np.sum(np.where(mask, np.exp(lo) * (lo - ln), 0.0), -1)
            a = np.asarray(acted.actions["pick"])  # always an allowed choice
            log_ratio = np.take_along_axis(ln - lo, a[:, None], -1)[:, 0]
        else:
            (m0, s0), (m1, s1) = [(f64(m), f64(ls)) for m, ls in (old["aim"], new["aim"])]
            kl = np.sum(s1 - s0 + (np.exp(2 * s0) + (m0 - m1) ** 2) / (2 * np.exp(2 * s1)) - 0.5, -1)
            u = f64(acted.actions["aim"])
            gauss = lambda m, ls: np.sum(-0.5 * ((u - m) / np.exp(ls)) ** 2 - ls, -1)  # noqa: E731
            log_ratio = gauss(m1, s1) - gauss(m0, s0)  # the tanh Jacobian cancels
        out[role] = (np.sum(w * kl) / w.sum(), np.sum(w * np.exp(log_ratio) * f64(advantages[role])) / w.sum())
    return out


def test_fisher_samples_take_every_kth_row_of_every_leaf():
    acted = onpolicy.Acted({"pick": jnp.arange(12.0).reshape(6, 2)}, {"pick": jnp.ones((6, 4), bool)},
                           {"pick": jnp.arange(6)}, {"pick": jnp.zeros(6)}, {"pick": jnp.arange(6.0) / 10})
    assert trpo.fisher_samples(acted, 1) is acted
    sub = trpo.fisher_samples(acted, 4)  # rows 0 and 4
    np.testing.assert_array_equal(sub.obs["pick"], [[0.0, 1.0], [8.0, 9.0]])
    np.testing.assert_array_equal(sub.actions["pick"], [0, 4])
    np.testing.assert_allclose(sub.weights["pick"], [0.0, 0.4])
    assert sub.masks["pick"].shape == (2, 4)


def record_fisher_sizes(monkeypatch, role: str) -> list:
    """A list that receives the batch size of every `trpo.fisher_vector_product` built from now on
    (read from `role`'s weights), the product itself unchanged."""
    sizes, product = [], trpo.fisher_vector_product

    def recording(actor_params, fisher_acted, *args):
        sizes.append(fisher_acted.weights[role].shape[0])
        return product(actor_params, fisher_acted, *args)

    monkeypatch.setattr(trpo, "fisher_vector_product", recording)
    return sizes


@pytest.mark.parametrize("fisher_stride", [1, 3])
def test_one_natural_step_stays_in_the_trust_region_and_improves_the_surrogate(fisher_stride, monkeypatch):
    """512 samples of a masked choice and a tanh-Gaussian head (half the choice's samples with
    weight 0, as the coordinator's off-schedule steps), advantages that favour choice 0 and
    positive aims: each role's step must keep its own exact mean KL <= max_kl, improve its own
    surrogate, and use most of the trust region (the quadratic KL model is good at this size).
    With `fisher_stride` 3 the Fisher-vector products see 171 of the samples, half of them weighted
    (the line search's KL stays exact, so the trust region still holds)."""
    n, max_kl = 512, 0.01
    policy = onpolicy.Policy(SPECS, hidden_sizes=(8,))
    critic = onpolicy.Critic("local", policy.roles, (8,))
    params = policy.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(1)
    obs = {s.name: jnp.asarray(rng.normal(size=(n, s.obs_dim)), jnp.float32) for s in SPECS}
    mask = rng.random((n, 4)) < 0.6
    mask[:, 0] = True
    masks = {"pick": jnp.asarray(mask)}
    actions, log_probs = onpolicy.sample(policy.dists(params, obs, masks), jax.random.PRNGKey(2))
    weights = {"pick": jnp.asarray(np.arange(n) % 2, jnp.float32), "aim": jnp.ones(n)}
    acted = onpolicy.Acted(obs, masks, actions, log_probs, weights)
    adv_pick = (np.asarray(actions["pick"]) == 0) + 0.5 * rng.normal(size=n)
    adv_aim = np.asarray(actions["aim"]).sum(-1) + 0.5 * rng.normal(size=n)
    advantages = jnp.asarray(np.stack([adv_pick, adv_aim], -1), jnp.float32)  # [B, C]: local critics
    batch = ppo.Batch(acted, None, advantages, advantages, jnp.zeros_like(advantages))  # local critics: no world state
    cfg = trpo.TRPOConfig(max_kl=max_kl, cg_iters=10, cg_damping=0.01, fisher_stride=fisher_stride,
                          normalize_advantages=False)
    fisher_sizes = record_fisher_sizes(monkeypatch, "pick")
    new, metrics = fast_jit(lambda p: trpo.natural_step(p, batch, policy, critic, cfg))(params)
    assert fisher_sizes == [-(-n // fisher_stride)]
    checked = float64_kl_and_surrogate(policy, params, new, acted, {"pick": adv_pick, "aim": adv_aim})
    for col, role in enumerate(("pick", "aim")):
        kl, surrogate = checked[role]
        w = np.asarray(weights[role], np.float64)
        before = np.sum(w * np.asarray(advantages[:, col], np.float64)) / w.sum()  # ratio 1
        print(f"{role}: KL {kl:.5f} (max {max_kl}), surrogate {before:.4f} -> {surrogate:.4f}, "
              f"step fraction {float(metrics[f'step_frac/{role}'])}")
        assert kl <= max_kl * 1.001
        # A real step, not a rejected one. A Fisher from a third of the samples can put the full
        # step just past the exact KL: at most one halving (a quarter of the KL) is allowed then.
        assert kl > (0.3 if fisher_stride == 1 else 0.2) * max_kl
        assert float(metrics[f"step_frac/{role}"]) >= (1.0 if fisher_stride == 1 else 0.5)
        assert surrogate > before
        assert float(metrics[f"kl/{role}"]) == pytest.approx(kl, rel=1e-3)
        assert float(metrics[f"surrogate_gain/{role}"]) == pytest.approx(surrogate - before, rel=1e-2)


# ----------------------------------------------------------------------------- the trainer
def toy_trainer(algo: str, updates: int, **section):
    cfg = config_lib.resolve(flags={"algo": algo, "scenario": "toy-soc", "num_envs": 32,
                                    "total_steps": 32 * 16 * updates, "run": {"name": algo},
                                    "trpo": {"hidden_sizes": [32], "rollout": 16, **section}},
                             scenarios=["toy-soc"])
    env, env_params = make_toy_soc("toy-soc")
    return algos.make_train(cfg, env, env_params)


@pytest.mark.slow  # CI budget (10 min on 2 cores): toy training (~28 CPU-s); the natural step's hand-worked tests stay
def test_trpo_learns_the_toy_team_deterministically_per_seed():
    """20 updates of 32 envs x 16 steps (10k env steps). Random play scores about -0.3 per step,
    and so does update 1 (the initial policy acts almost uniformly); the best team about +1.5
    (tests/onpolicy_toys.py). Measured: -0.18 in update 1, +1.0 to +1.2 from update 9 on."""
    trainer = toy_trainer("trpo", 20, max_kl=0.05)
    train = fast_jit(trainer.train)  # one program, ~1.4 s per run
    state, metrics = train(jax.random.PRNGKey(0))
    per_step = np.asarray(metrics["return"]) / np.asarray(metrics["length"])
    print("return per step, by update:", np.round(per_step, 2))
    assert np.all(np.asarray(metrics["masked"]) == 0.0)  # masked choices are never taken
    assert per_step[0] < 0.0
    assert np.mean(per_step[-5:]) > 0.8
    assert np.mean(per_step[-5:]) > per_step[0] + 1.0
    for role in ("coordinator", "threat_hunter", "alert_triage", "response_orchestrator"):
        assert np.all(np.asarray(metrics[f"kl/{role}"]) <= 0.05 * 1.001)
    # Determinism: the same seed gives the same run bit for bit (a third run, of another seed, would
    # cost 1/4 of this test to show what `init`'s key already decides).
    again = train(jax.random.PRNGKey(0))
    assert leaves_equal(again, (state, metrics))


def test_matrpo_traces_with_a_world_critic():
    """MATRPO: one update traced (not compiled): one value column, every role's metrics."""
    trainer = toy_trainer("matrpo", 1)
    state = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))
    assert state.world_state is not None
    new_state, metrics = jax.eval_shape(trainer.update, state)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    roles = ("coordinator", "threat_hunter", "alert_triage", "response_orchestrator")
    want = {"value_loss", "explained_variance", "return", "env_steps"}
    want |= {f"{m}/{r}" for m in ("kl", "surrogate_gain", "step_frac", "entropy") for r in roles}
    assert want <= set(metrics)


def test_the_default_fisher_stride_keeps_the_fisher_on_at_least_4096_samples(monkeypatch):
    """`fisher_stride: 0` (the default) resolves to max(1, num_envs * rollout // 4096), hand-worked
    below; an explicit stride is kept. The trainer builds its natural step with the resolved stride:
    with FISHER_SAMPLES lowered to 128, the toy's 32 envs x 16 steps (512 samples) put every 4th
    sample, 128 of them, into the Fisher-vector products (traced, not compiled)."""
    def stride(num_envs, rollout=32, fisher_stride=0):
        return trpo.resolve_fisher_stride({"num_envs": num_envs,
                                           "trpo": {"rollout": rollout, "fisher_stride": fisher_stride}})

    assert [stride(n) for n in (4096, 1024, 256, 128, 64, 1)] == [32, 8, 2, 1, 1, 1]
    assert stride(4096, rollout=20) == 20  # 81,920 // 4,096
    assert stride(1000) == 7               # 32,000 // 4,096: F on 4,572 samples
    assert stride(4096, fisher_stride=1) == 1 and stride(64, fisher_stride=3) == 3

    monkeypatch.setattr(trpo, "FISHER_SAMPLES", 128)
    sizes = record_fisher_sizes(monkeypatch, "coordinator")
    for section, want in (({}, 128), ({"fisher_stride": 1}, 512), ({"fisher_stride": 3}, 171)):
        sizes.clear()
        trainer = toy_trainer("matrpo", 1, **section)
        jax.eval_shape(trainer.update, jax.eval_shape(trainer.init, jax.random.PRNGKey(0)))
        assert sizes == [want], section


def test_the_critic_passes_visit_a_fresh_share_of_the_rollout_when_asked():
    """`vf_fraction` reaches the critic's passes: the minibatch `value_loss` is traced with is the
    share's (32 envs x 16 steps = 512 samples in 4 minibatches: 128 each at 1.0, 64 at 0.5, 32 at
    0.25); which samples each pass takes is `onpolicy.sgd`'s (tests/test_ppo.py counts its visits).
    Traced, not compiled."""
    sgd = onpolicy.sgd
    for fraction, want in ((1.0, 128), (0.5, 64), (0.25, 32)):
        sizes = []

        def recording(key, params, opt_state, batch, loss_fn, *args):
            def counted(p, minibatch):
                sizes.append(jax.tree.leaves(minibatch)[0].shape[0])
                return loss_fn(p, minibatch)
            return sgd(key, params, opt_state, batch, counted, *args)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(onpolicy, "sgd", recording)
            trainer = toy_trainer("trpo", 1, vf_epochs=3, vf_fraction=fraction)
            jax.eval_shape(trainer.update, jax.eval_shape(trainer.init, jax.random.PRNGKey(0)))
        # the loss is traced once per scanned step function (the minibatch scan's body)
        assert sizes and set(sizes) == {want}, (fraction, sizes)


def test_config_defaults_variants_and_checks():
    flags = {"scenario": "soc-v2", "run": {"name": "x"}, "num_envs": 8}
    resolve = lambda algo, *sets: config_lib.resolve(flags={**flags, "algo": algo}, sets=sets)  # noqa: E731
    assert ppo.resolve_variant("trpo", resolve("trpo")["trpo"]) == ("per_role", "local")
    assert ppo.resolve_variant("matrpo", resolve("matrpo")["trpo"]) == ("per_role", "world")
    s = resolve("matrpo")["trpo"]
    assert (s["max_kl"], s["cg_iters"], s["cg_damping"], s["fisher_stride"], s["line_search_steps"],
            s["backtrack_coef"], s["vf_lr"], s["vf_epochs"]) == (0.04, 10, 0.1, 0, 10, 0.5, 1e-3, 3)
    assert trpo.DEFAULTS["max_kl"] == 0.01  # the paper's step size stays the family default (docs/trpo.md)
    assert resolve("trpo")["trpo"]["vf_epochs"] == 2  # four local critics: 2 passes learn as 5 did
    assert resolve("trpo")["trpo"]["max_kl"] == 0.04  # both configs: 0.04 learned more at the table budget
    bad = {
        "trpo.max_kl=0": "trpo.max_kl must be positive",
        "trpo.cg_iters=0": "trpo.cg_iters must be positive",
        "trpo.cg_iters=2.5": "trpo.cg_iters must be an integer",  # jaxsoc.config, from the default's type
        "trpo.cg_damping=-0.1": r"trpo.cg_damping must be >= 0",
        "trpo.fisher_stride=-1": r"trpo.fisher_stride must be >= 0 \(0: auto\)",
        "trpo.fisher_stride=300": r"trpo.fisher_stride \(300\) exceeds the batch, num_envs \* trpo.rollout \(256\)",
        "trpo.line_search_steps=-1": "trpo.line_search_steps must be positive",
        "trpo.backtrack_coef=1.0": r"trpo.backtrack_coef must be in \(0, 1\)",
        "trpo.vf_lr=0": "trpo.vf_lr must be positive",
        "trpo.vf_epochs=0": "trpo.vf_epochs must be positive",
        "trpo.vf_minibatches=3": r"must be divisible by trpo.vf_minibatches \(3\)",
        "trpo.vf_fraction=0": r"trpo.vf_fraction must be a number in \(0, 1\], got 0",
        "trpo.vf_fraction=1.5": r"trpo.vf_fraction must be a number in \(0, 1\]",
        "trpo.vf_fraction=true": r"trpo.vf_fraction must be a number, got True",  # jaxsoc.config
        # 8 envs x 32 steps = 256 samples: 0.01 of them is 2, fewer than the 4 minibatches
        "trpo.vf_fraction=0.01": r"trpo.vf_fraction 0.01 of 256 samples per update leaves fewer than "
                                 r"trpo.vf_minibatches \(4\) samples per pass",
        "trpo.gamma=1.5": r"trpo.gamma must be in \[0, 1\]",
        "trpo.policy=single": "trpo.policy must be per_role",
        "trpo.critic=central": "trpo.critic must be one of auto, world, local, joint",
    }
    for item, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            resolve("matrpo", item)
