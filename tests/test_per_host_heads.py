"""The on-policy learners' per-entry heads: a MultiDiscrete role (soc-hybrid's segment agents, one
choice per host) gets a row of logits per host (`onpolicy.head_logits`), a `FactoredCategorical`
over the env's `[hosts, choices]` masks, and actions `int32 [..., hosts]` that the env takes as
they are. Before, the generic learners could not act for these roles at all (they refuse them
since the roles' floats were cast to choice 0: tests/test_algo_scenarios.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc import algos, config as config_lib
from jaxsoc.algos import onpolicy
from jaxsoc.algos.common import RoleSpec, role_specs
from jaxsoc.distributions import FactoredCategorical, MaskedCategorical, TanhGaussian
from jaxsoc.evaluation import make_evaluator

HOSTS = 4


@pytest.fixture(scope="module")
def world():
    return soc.make("soc-hybrid", hosts_per_segment=HOSTS)


def _policy(env, shared=False):
    specs = tuple(role_specs(env, per_entry=True).values())
    return onpolicy.Policy(specs, shared=shared, hidden_sizes=(32,))


def test_segment_roles_are_multidiscrete_specs(world):
    env, _ = world
    specs = role_specs(env, per_entry=True)
    assert specs["segment_0"] == RoleSpec("segment_0", env.observation_space("segment_0").shape[0],
                                          "multidiscrete", 3, (3,) * HOSTS)
    assert specs["segment_0"].entries == HOSTS and specs["segment_0"].logits_size == 3 * HOSTS
    assert specs["network"].kind == "continuous"


@pytest.mark.parametrize("shared", [False, True])
def test_the_policy_chooses_per_host_with_exact_log_probs(world, shared):
    """Per-role and Single-DRL's shared actor: `[N, hosts]` int32 choices from every choice, whose
    stored log-prob is the sum of the hosts' own categorical log-probs."""
    env, params = world
    policy = _policy(env, shared)
    n = 512

    @jax.jit
    def act(key):
        k_init, k_reset, k_act, k_step = jax.random.split(key, 4)
        obs, state = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, n), params)
        masks = policy.masks(jax.vmap(env.get_avail_actions, (0, None))(state, params))
        dists = policy.dists(policy.init(k_init), obs, masks)
        actions, log_probs = onpolicy.sample(dists, k_act)
        env_actions = onpolicy.env_actions(actions, dists)
        # The env takes them as they are (its action check refuses floats for a MultiDiscrete role).
        jax.vmap(env.step, (0, 0, 0, None))(jax.random.split(k_step, n), state, env_actions, params)
        return masks, dists, actions, log_probs, env_actions

    masks, dists, actions, log_probs, env_actions = act(jax.random.key(0))
    assert masks["segment_0"].shape == (n, HOSTS, 3)
    assert isinstance(dists["segment_0"], FactoredCategorical) and isinstance(dists["network"], TanhGaussian)
    assert dists["segment_0"].logits.shape == (n, HOSTS, 3)
    a = np.asarray(actions["segment_0"])
    assert a.shape == (n, HOSTS) and a.dtype == np.int32
    np.testing.assert_array_equal(env_actions["segment_0"], a)
    # Near-uniform heads at init (gain 0.01): every choice drawn about a third of the time.
    np.testing.assert_allclose(np.bincount(a.ravel(), minlength=3) / a.size, 1 / 3, atol=0.04)
    per_host = MaskedCategorical(dists["segment_0"].logits, masks["segment_0"]).log_prob(actions["segment_0"])
    np.testing.assert_allclose(log_probs["segment_0"], per_host.sum(-1), rtol=1e-6)


def test_an_entry_with_fewer_choices_never_takes_the_missing_ones():
    """nvec (2, 3): the first entry's third logit is masked by the spec, whatever the env's mask."""
    spec = RoleSpec("r", 5, "multidiscrete", 3, (2, 3))
    policy = onpolicy.Policy((spec,), hidden_sizes=(8,))
    masks = policy.masks({"r": jnp.ones((1000, 2, 3), bool)})
    np.testing.assert_array_equal(masks["r"][0], [[True, True, False], [True, True, True]])
    p = policy.init(jax.random.key(0))
    dists = policy.dists(p, {"r": jax.random.normal(jax.random.key(1), (1000, 5))}, masks)
    a = np.asarray(onpolicy.sample(dists, jax.random.key(2))[0]["r"])
    assert a[:, 0].max() == 1 and a[:, 1].max() == 2


def test_sampling_is_unchanged_for_one_choice_and_continuous_heads():
    """`onpolicy.sample` draws every role's noise from one uniform block: the per-entry heads
    must leave the layout of the other kinds bit for bit (the order of the block, the widths)."""
    key = jax.random.key(3)
    cat = MaskedCategorical(jax.random.normal(jax.random.key(4), (6, 5)), jnp.ones((6, 5), bool).at[:, 4].set(False))
    gauss = TanhGaussian(jax.random.normal(jax.random.key(5), (6, 2)), jnp.full((6, 2), -0.5))
    actions, _ = onpolicy.sample({"c": cat, "g": gauss}, key)
    tiny = jnp.finfo(jnp.float32).tiny
    u = jax.random.uniform(key, (6, 7), minval=tiny, maxval=1.0)  # the layout written out
    expected_c = MaskedCategorical(cat.log_probs - jnp.log(-jnp.log(u[:, :5])), cat.mask).mode()
    expected_g = gauss.mean + jnp.exp(gauss.log_std) * jax.scipy.special.ndtri(u[:, 5:])
    np.testing.assert_array_equal(actions["c"], expected_c)
    np.testing.assert_array_equal(actions["g"], expected_g)


@pytest.mark.parametrize("algo", ["mappo", "single-drl", "trpo", "impala", "mappo-comm"])
def test_one_update_on_soc_hybrid_trains_the_segment_heads(world, algo):
    """One jitted update of each on-policy family on soc-hybrid: finite metrics, and the segment
    agents' parameters move (they acted and their log-probs had gradients)."""
    env, params = world
    talk = ["comm.comm_roles=all"] if algos.family_of(algo) == "comm" else []  # soc-hybrid has no tier-2 roles
    cfg = config_lib.resolve(flags={"algo": algo, "scenario": "soc-hybrid", "num_envs": 16},
                             sets=[f"{algos.family_of(algo)}.hidden_sizes=[16]"] + talk)
    trainer = algos.make_train(cfg, env, params)
    state = trainer.init(jax.random.key(0))
    new, metrics = jax.jit(trainer.update)(state)
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(metrics))
    before, after = trainer.policy_params(state), trainer.policy_params(new)
    seg = [(b, a) for path_b, b in jax.tree_util.tree_leaves_with_path(before)
           for path_a, a in jax.tree_util.tree_leaves_with_path(after)
           if path_a == path_b and "segment_0" in jax.tree_util.keystr(path_b)]
    if not seg:  # the shared actor (Single-DRL): its segment head
        seg = [(b, a) for path_b, b in jax.tree_util.tree_leaves_with_path(before)
               for path_a, a in jax.tree_util.tree_leaves_with_path(after)
               if path_a == path_b and "segment_0_logits" in jax.tree_util.keystr(path_b)]
    assert seg and any(not np.array_equal(b, a) for b, a in seg)


@pytest.mark.slow
def test_mappo_learns_on_soc_hybrid():
    """(~1 min) 64 envs x 200k steps of MAPPO on a 4-host-per-segment soc-hybrid: the greedy
    team's return beats the untrained team's (which investigates and locks down at random)."""
    env, params = soc.make("soc-hybrid", hosts_per_segment=HOSTS)
    cfg = config_lib.resolve(flags={"algo": "mappo", "scenario": "soc-hybrid", "num_envs": 64,
                                    "total_steps": 200_000})
    trainer = algos.make_train(cfg, env, params)
    state, _ = jax.jit(trainer.train)(jax.random.key(0))
    ev = jax.jit(make_evaluator(env, params, trainer.act, 256))
    trained = float(np.nanmean(ev(trainer.policy_params(state), jax.random.key(7))["return"]))
    untrained = float(np.nanmean(ev(trainer.policy_params(trainer.init(jax.random.key(0))), jax.random.key(7))["return"]))
    assert trained > untrained + 10.0, (trained, untrained)
