"""eval/profile_train.py: which kernels are matrix products, and the split of a learner's kernel time."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "eval"))
import profile_env as pe  # noqa: E402
import profile_train as pt  # noqa: E402

from tests.cli_checks import no_work, refused  # noqa: E402

# A module as XLA:CPU prints it: a bare dot, a YNN fusion holding a dot (a Dense layer with its
# bias and ReLU), a multi-output fusion (tuple shape) that holds a dot only through a nested
# fusion, a YNN fusion that only reduces (a bias gradient: no product), an env kernel and a copy.
HLO = """HloModule jit_run_chunk, is_scheduled=true

FileNames
1 "/repo/jaxsoc/env/core.py"
2 "/repo/jaxsoc/networks.py"

FunctionNames
1 "SOCEnv.step"
2 "MLP.__call__"

FileLocations
1 {file_name_id=1 function_name_id=1 line=362 end_line=362 column=1 end_column=2}
2 {file_name_id=2 function_name_id=2 line=145 end_line=145 column=1 end_column=2}

StackFrames
1 {file_location_id=1 parent_frame_id=0}
2 {file_location_id=2 parent_frame_id=0}

%fused_computation.1 (param_0: f32[64,70], param_1: f32[70,256], param_2: f32[256]) -> f32[64,256] {
  %param_0 = f32[64,70]{1,0} parameter(0)
  %param_1 = f32[70,256]{1,0} parameter(1)
  %dot.7 = f32[64,256]{1,0} dot(%param_0, %param_1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  %param_2 = f32[256]{0} parameter(2)
  %broadcast.1 = f32[64,256]{1,0} broadcast(%param_2), dimensions={1}
  ROOT %add.1 = f32[64,256]{1,0} add(%dot.7, %broadcast.1)
}

%inner_computation (param_0: f32[8,4], param_1: f32[4,4]) -> f32[8,4] {
  %param_0 = f32[8,4]{1,0} parameter(0)
  %param_1 = f32[4,4]{1,0} parameter(1)
  ROOT %dot.9 = f32[8,4]{1,0} dot(%param_0, %param_1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%outer_computation (param_0: f32[8,4], param_1: f32[4,4]) -> (f32[8,4], f32[8]) {
  %param_0 = f32[8,4]{1,0} parameter(0)
  %param_1 = f32[4,4]{1,0} parameter(1)
  %nested = f32[8,4]{1,0} fusion(%param_0, %param_1), kind=kOutput, calls=%inner_computation
  %zero = f32[] constant(0)
  %sum = f32[8]{0} reduce(%nested, %zero), dimensions={1}, to_apply=%add_f32
  ROOT %tuple.1 = (f32[8,4]{1,0}, f32[8]{0}) tuple(%nested, %sum)
}

%reduce_computation (param_0: f32[64,256]) -> f32[256] {
  %param_0 = f32[64,256]{1,0} parameter(0)
  %zero = f32[] constant(0)
  ROOT %reduce_sum.3 = f32[256]{0} reduce(%param_0, %zero), dimensions={0}, to_apply=%add_f32
}

%env_computation (param_0: s32[8]) -> s32[8] {
  %param_0 = s32[8]{0} parameter(0)
  ROOT %negate.2 = s32[8]{0} negate(%param_0), metadata={op_name="neg" stack_frame_id=1}
}

ENTRY %main {
  %dot.373 = f32[64,256]{1,0} dot(%a, %b), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  %ynn_fusion.56 = f32[64,256]{1,0} fusion(%x, %w, %bias), kind=kCustom, calls=%fused_computation.1, metadata={op_name="dot_general" stack_frame_id=2}
  %multi_fusion.4 = (f32[8,4]{1,0}, f32[8]{0}) fusion(%p, %q), kind=kLoop, calls=%outer_computation
  %ynn_fusion.26 = f32[256]{0} fusion(%g), kind=kCustom, calls=%reduce_computation
  %env_fusion = s32[8]{0} fusion(%s), kind=kLoop, calls=%env_computation, metadata={op_name="neg" stack_frame_id=1}
  %copy.5 = f32[8]{0} copy(%d)
}
"""


def test_matrix_product_kernels_are_the_dots_and_the_fusions_that_hold_one():
    found = pt.matmul_kernels(HLO)
    assert {"dot.373", "ynn_fusion.56", "multi_fusion.4"} <= found
    assert not {"ynn_fusion.26", "env_fusion", "copy.5"} & found
    assert found == {"dot.373", "ynn_fusion.56", "multi_fusion.4", "dot.7", "dot.9", "nested"}  # + inner names


def test_kernel_time_splits_into_products_env_and_the_rest():
    times = {"dot.373": 100, "ynn_fusion.56": 400, "multi_fusion.4": 50, "ynn_fusion.26": 30,
             "env_fusion": 200, "copy.5": 20, pe.RUNTIME: 7}
    split = pt.shares(times, pe.source_frames(HLO), pt.matmul_kernels(HLO))
    assert split == {pt.MATMUL: 550, "env": 200, "rest": 50, pe.RUNTIME: 7}
    assert sum(split.values()) == sum(times.values())


def test_the_env_share_counts_each_worlds_own_env_code():
    import jaxsoc.env as soc

    # retail's and banking's envs live in jaxsoc/demos/: charged only to jaxsoc/env/, their env share was 0 %
    code = {s: pt.env_code(soc.make(s)[0]) for s in ("retail", "banking", "soc-v2", "cage4-like", "soc-hybrid")}
    assert code["retail"] == code["banking"] == ("jaxsoc/env/", "jaxsoc/demos/")
    assert code["soc-v2"] == code["cage4-like"] == code["soc-hybrid"] == ("jaxsoc/env/",)
    demo = HLO.replace('"/repo/jaxsoc/env/core.py"', '"/repo/jaxsoc/demos/retail.py"')
    times = {"ynn_fusion.56": 400, "env_fusion": 200, "copy.5": 20}
    frames, matmuls = pe.source_frames(demo), pt.matmul_kernels(demo)
    assert pt.shares(times, frames, matmuls, code["retail"])["env"] == 200
    assert pt.shares(times, frames, matmuls, code["soc-v2"])["env"] == 0  # another world's env code is not this one's


@pytest.mark.parametrize("argv, match", [
    (["--algo", "mapo"], "unknown algorithm 'mapo' (did you mean 'mappo'"),
    (["--algo", "mappo", "--scenario", "no-such"], "unknown scenario 'no-such'; known: "),
    (["--algo", "mappo", "--envs", "0"], "argument --envs: expected a positive integer, got '0'"),
    (["--algo", "mappo", "--set", "ppo.lrr=1"],
     "--set: unknown config key 'ppo.lrr' (did you mean 'ppo.lr' or 'ppo.anneal_lr'?)"),
    ([], "the following arguments are required: --algo"),
])
def test_bad_arguments_are_refused_before_any_work(capsys, monkeypatch, argv, match):
    import jaxsoc.env as soc

    monkeypatch.setattr(soc, "make", no_work(soc, "the env"))  # the first work: the env, then the trainer
    refused(pt.main, argv, capsys, match)


def test_a_world_the_learner_cannot_act_in_is_refused_in_one_line(capsys):
    """Its env is built (no compile): the learner's refusal was a traceback (make_train ran outside
    the tool's checks)."""
    refused(pt.main, ["--algo", "dqn", "--scenario", "retail"], capsys, "--algo dqn acts through the SOC team's roles")


@pytest.mark.slow  # compiles and profiles a real MAPPO update (~30 CPU-s)
def test_a_real_profile_finds_products_and_env_kernels(capsys):
    pt.main(["--algo", "mappo", "--num-seeds", "1", "--envs", "16", "--set", "ppo.rollout=4", "--top", "3"])
    out = capsys.readouterr().out
    share = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0] in (pt.MATMUL, "env", "rest"):
            share[cells[0]] = float(cells[1].rstrip(" %"))
    assert set(share) == {pt.MATMUL, "env", "rest"}
    assert share[pt.MATMUL] > 5 and share["env"] > 5  # both kinds of kernel were found and timed
    assert 99 <= sum(share.values()) <= 101


@pytest.mark.slow  # compiles and profiles a real MAPPO update on retail (~25 CPU-s)
def test_a_real_profile_on_retail_counts_its_env(capsys):
    # its step (jaxsoc/demos/retail.py) is most of the kernel time; the env row said 0.0 %
    pt.main(["--algo", "mappo", "--scenario", "retail", "--num-seeds", "1", "--envs", "4", "--top", "3"])
    share = {}
    for line in capsys.readouterr().out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0] in (pt.MATMUL, "env", "rest"):
            share[cells[0]] = float(cells[1].rstrip(" %"))
    assert share["env"] > 10, share
