"""jaxsoc.xla: the programs a run compiles keep their matrix products out of YNNPACK (XLA:CPU's
default library for them), which made the learners' updates faster here (docs/benchmarks.md
"Which library computes the products")."""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsoc import engine, xla
from tests import engine_toys as toys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "eval"))
import profile_train as pt  # noqa: E402

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's library fusions")


def ynn_products(hlo_text: str) -> set:
    """The YNNPACK fusions of a compiled module that hold a matrix product."""
    return {k for k in pt.matmul_kernels(hlo_text) if k.startswith("ynn_fusion")}


def dense_relu(x, w, b):
    return jax.nn.relu(x @ w + b)


def test_jit_moves_products_out_of_ynnpack_with_the_same_values():
    k1, k2 = jax.random.split(jax.random.key(0))
    x, w, b = jax.random.normal(k1, (512, 256)), jax.random.normal(k2, (256, 256)) / 16, jnp.full((256,), 0.1)
    default = jax.jit(dense_relu).lower(x, w, b).compile()
    ours = xla.jit(dense_relu).lower(x, w, b).compile()
    # This jaxlib's default does put the product in YNNPACK (else the option changes nothing
    # and its measurement in docs/benchmarks.md is stale).
    assert ynn_products(default.as_text())
    assert not ynn_products(ours.as_text()) and pt.matmul_kernels(ours.as_text())
    np.testing.assert_allclose(ours(x, w, b), default(x, w, b), rtol=1e-5, atol=1e-5)


def test_the_engines_programs_use_the_options():
    cfg = toys.toy_config(num_envs=64, eval={"every_chunks": 1, "episodes": 8})
    env, env_params = toys.make_toy_env(cfg["scenario"], **cfg["env"])
    trainer = toys.make_train(cfg, env, env_params)
    program = engine.build_program(trainer, cfg, engine.make_mesh(1), env, env_params)
    compiled = engine.compile_program(program, cfg, 2)
    for exe in (compiled.chunk, compiled.evaluate):
        text = exe.as_text()
        assert pt.matmul_kernels(text) and not ynn_products(text)


def test_an_option_this_xla_refuses_is_left_out_and_the_program_still_compiles():
    # jaxlib 0.7 and 0.8 refuse the whole program for an option they do not know ("No such
    # compile option"); a value XLA does not know is refused the same way.
    assert xla.accepted(xla.COMPILER_OPTIONS) == xla.COMPILER_OPTIONS  # this jaxlib knows ours
    asked = {"xla_jaxsoc_no_such_option": 1, "xla_cpu_experimental_ynn_fusion_type": "NO_SUCH_VALUE",
             "xla_backend_optimization_level": 0}
    assert xla.accepted(asked) == {"xla_backend_optimization_level": 0}
    with pytest.raises(jax.errors.JaxRuntimeError, match="No such compile option"):
        jax.jit(dense_relu, compiler_options=asked).lower(*[jnp.ones((2, 2))] * 2, jnp.ones(2)).compile()
    x = jnp.arange(4.0).reshape(2, 2)
    np.testing.assert_allclose(xla.jit(dense_relu, options=asked)(x, x, jnp.ones(2)), dense_relu(x, x, jnp.ones(2)))
