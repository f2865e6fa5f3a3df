"""Programs vmapped over seeds never hand a batch of matrices to a LAPACK kernel.

jaxlib 0.10's CPU LAPACK kernels (QR, Cholesky, eigh...) split a batched factorisation over
XLA's intra-op thread pool and block a pool thread until the pieces are done; two of them in
flight on a 2-thread pool deadlock and the program never finishes (it hung `--num-seeds 5`
runs here). Orthogonal initialisation is the only factorisation we use: `networks.orthogonal`
factorises one matrix at a time even under `vmap`. These tests read the traced programs (no
compilation), so they are cheap and catch any new batched factorisation before it can hang.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import jaxsoc.env as soc
from jaxsoc import algos
from jaxsoc import config as config_lib
from jaxsoc.networks import orthogonal

# Primitives lowered to LAPACK custom calls on CPU.
FACTORISATIONS = {"qr", "geqrf", "geqp3", "householder_product", "cholesky", "eigh", "eig", "svd", "lu",
                  "schur", "hessenberg", "tridiagonal"}


def equations(closed_jaxpr):
    """Every equation of a traced program, nested ones (scan, cond, jit, custom calls) included."""
    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            yield eqn
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    if hasattr(sub, "eqns"):
                        yield from walk(sub)
                    elif hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
                        yield from walk(sub.jaxpr)

    return walk(closed_jaxpr.jaxpr)


def batched_factorisations(closed_jaxpr) -> list:
    """(primitive, operand shape) of every factorisation whose operand has more than 2 dims."""
    return [(e.primitive.name, e.invars[0].aval.shape) for e in equations(closed_jaxpr)
            if e.primitive.name in FACTORISATIONS and len(e.invars[0].aval.shape) > 2]


def count_primitive(closed_jaxpr, name: str) -> int:
    return sum(e.primitive.name == name for e in equations(closed_jaxpr))


@pytest.mark.parametrize("shape", [(5, 7), (7, 5), (16, 16), (3, 4, 6)])
def test_orthogonal_draws_what_flax_draws_and_is_orthogonal(shape):
    key = jax.random.PRNGKey(3)
    ours = orthogonal(1.5)(key, shape)
    np.testing.assert_array_equal(ours, nn.initializers.orthogonal(1.5)(key, shape))
    m = ours.reshape(-1, shape[-1]) / 1.5
    small = min(m.shape)
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-5)


def test_orthogonal_under_vmap_factorises_one_matrix_at_a_time():
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    init = jax.vmap(jax.vmap(lambda k: orthogonal(2.0)(k, (12, 8))), in_axes=1, out_axes=1)
    grid = jnp.stack([keys, keys[::-1]], axis=1)  # [4, 2] keys: two vmapped axes
    traced = jax.make_jaxpr(init)(grid)
    assert count_primitive(traced, "qr") >= 1
    assert batched_factorisations(traced) == []
    stacked = jnp.stack([jnp.stack([orthogonal(2.0)(k, (12, 8)) for k in row]) for row in grid])
    np.testing.assert_allclose(init(grid), stacked, atol=1e-6)


def _small_config(algo: str) -> dict:
    scenario = algos.HOME_SCENARIO.get(algo, "soc-v2")
    return config_lib.resolve(flags={"algo": algo, "scenario": scenario, "num_envs": 64, "num_seeds": 2,
                                     "total_steps": 65536, "env": {"hosts_per_segment": 4}})


LEARNERS = sorted(a for a, fam in algos.ALGORITHMS.items() if fam != "scripted")


@pytest.mark.parametrize("algo", LEARNERS)
def test_seed_vmapped_init_has_no_batched_factorisation(algo):
    cfg = _small_config(algo)
    env, env_params = soc.make(cfg["scenario"], **cfg["env"])
    trainer = algos.make_train(cfg, env, env_params)
    traced = jax.make_jaxpr(jax.vmap(trainer.init))(jax.random.split(jax.random.PRNGKey(0), 2))
    assert batched_factorisations(traced) == [], f"{algo}: a batched factorisation can deadlock XLA's CPU pool"
