"""The benchmark scripts' own logic (eval/bench_*.py): cheap checks, no timings asserted."""
from __future__ import annotations

import importlib.util
import pathlib

import jax.numpy as jnp
import pytest

EVAL = pathlib.Path(__file__).resolve().parents[1] / "eval"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EVAL / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_matmul_chain_keeps_its_values(dtype):
    bm = load("bench_matmul")
    # Products with the identity keep every value 0.5: a chain that overflowed or decayed into
    # denormals would time the slow path of the FPU, not the machine's matrix products.
    chain, a, b = bm.make_chain(16, dtype, reps=300)
    assert bool(jnp.all(chain(a, b) == 0.5))
    assert bm.matmul_gflops(16, dtype, reps=3, repeats=1) > 0


def test_reference_round_refuses_a_folder_that_is_not_the_original(tmp_path):
    bo = load("bench_offpolicy")
    with pytest.raises(SystemExit, match="not the original HMARL-SOC code/ folder"):
        bo.reference_round(str(tmp_path))
