"""eval/profile_env.py: kernels charged to the jaxsoc line they came from (hand-made HLO text)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "eval"))
import profile_env as pe  # noqa: E402

from tests.cli_checks import no_work, refused  # noqa: E402

# A module as XLA prints it with metadata: two call chains (bench -> core.step -> rng.words and
# bench -> attacker._lateral), a fusion that names its frame, a wrapped kernel whose frame sits on
# the operation inside it, and a copy with no metadata at all.
HLO = """HloModule jit_run, is_scheduled=true

FileNames
1 "/somewhere/eval/bench_env.py"
2 "/repo/jaxsoc/env/core.py"
3 "/repo/jaxsoc/env/rng.py"
4 "/repo/jaxsoc/env/attacker.py"

FunctionNames
1 "run"
2 "SOCEnv.step"
3 "Draws.words"
4 "_lateral"

FileLocations
1 {file_name_id=1 function_name_id=1 line=70 end_line=70 column=1 end_column=2}
2 {file_name_id=2 function_name_id=2 line=357 end_line=357 column=1 end_column=2}
3 {file_name_id=3 function_name_id=3 line=99 end_line=99 column=1 end_column=2}
4 {file_name_id=4 function_name_id=4 line=136 end_line=136 column=1 end_column=2}

StackFrames
1 {file_location_id=1 parent_frame_id=0}
2 {file_location_id=2 parent_frame_id=1}
3 {file_location_id=3 parent_frame_id=2}
4 {file_location_id=4 parent_frame_id=1}

%wrapped_max_computation (param_0: s32[8,40]) -> s32[8] {
  %param_0 = s32[8,40]{1,0} parameter(0)
  ROOT %reduce.1 = s32[8]{0} reduce(%param_0), dimensions={1}, metadata={op_name="reduce_max" stack_frame_id=4}
}

ENTRY %main {
  %select_fusion = f32[8]{0} fusion(%a), kind=kLoop, calls=%fused_computation, metadata={op_name="select_n" stack_frame_id=3}
  %wrapped_max = s32[8]{0} fusion(%b), kind=kLoop, calls=%wrapped_max_computation
  %harness_fusion = u32[8]{0} fusion(%c), kind=kLoop, calls=%fused_computation.2, metadata={op_name="add" stack_frame_id=1}
  %copy.5 = pred[8]{0} copy(%d)
}
"""


def test_kernels_are_charged_to_their_innermost_jaxsoc_line_past_the_random_plumbing():
    frames = pe.source_frames(HLO)
    assert [f.line for f in frames["select_fusion"]] == [99, 357, 70]  # innermost first
    assert frames["select_fusion"][0].file == "jaxsoc/env/rng.py"
    # rng.py is plumbing: the kernel belongs to the line that asked for the numbers.
    assert pe.attribute(frames["select_fusion"]) == "jaxsoc/env/core.py:SOCEnv.step:357"
    assert pe.attribute(frames["select_fusion"], by="function") == "jaxsoc/env/core.py:SOCEnv.step"
    assert pe.attribute(frames["select_fusion"], by="file") == "jaxsoc/env/core.py"
    # The wrapped kernel takes the frame of the reduction inside it.
    assert pe.attribute(frames["wrapped_max"]) == "jaxsoc/env/attacker.py:_lateral:136"
    assert pe.attribute(frames["harness_fusion"]) == pe.HARNESS
    assert "copy.5" not in frames and pe.attribute([]) == pe.UNKNOWN


def test_nested_events_are_counted_once():
    """A `while` loop's event spans its body's kernels on the same thread (each with an event of
    its own): it was summed in full besides them (23 % of the summed time at 64 envs of v1)."""
    # a loop [0, 100) holding kernels [10, 30) and [40, 90), itself holding [50, 60); then [100, 120)
    events = [(0, 100), (10, 20), (40, 50), (50, 10), (100, 20)]
    assert pe.self_times(events) == [30, 20, 40, 10, 20]
    assert sum(pe.self_times(events)) == 120  # the thread's busy time, once
    assert pe.self_times([(5, 3), (0, 10)]) == [3, 7]  # whatever order the trace lists them in


def test_breakdown_sums_kernels_per_row_costliest_first():
    frames = pe.source_frames(HLO)
    times = {"select_fusion": 300, "wrapped_max": 500, "harness_fusion": 100, "copy.5": 40,
             pe.RUNTIME: 60}
    rows = pe.breakdown(times, frames)
    assert rows == [("jaxsoc/env/attacker.py:_lateral:136", 500, "wrapped_max"),
                    ("jaxsoc/env/core.py:SOCEnv.step:357", 300, "select_fusion"),
                    (pe.HARNESS, 100, "harness_fusion"),
                    (pe.RUNTIME, 60, pe.RUNTIME),
                    ("(no source: copy)", 40, "copy.5")]
    assert sum(ns for _, ns, _ in rows) == sum(times.values())
    by_file = dict((r, ns) for r, ns, _ in pe.breakdown(times, frames, by="file"))
    assert by_file["jaxsoc/env/core.py"] == 300


@pytest.mark.parametrize("argv, match", [
    (["--presets", "no-such-preset"], "unknown preset 'no-such-preset'; known: cage4-like, hmarl-soc-v1, "),
    (["--presets", "soc-v3"], "unknown preset 'soc-v3' (did you mean 'soc-v2'?); known: cage4-like, "),
    (["--presets", "soc-v2", "soc-v3", "cage4"],
     "unknown presets 'soc-v3' (did you mean 'soc-v2'?), 'cage4' (did you mean 'cage4-like'?); known: "),
    (["--envs", "0"], "argument --envs: expected a positive integer, got '0'"),
])
def test_bad_arguments_are_refused_before_any_work(capsys, monkeypatch, argv, match):
    monkeypatch.setattr(pe, "profile", no_work(pe, "the profile"))
    refused(pe.main, argv, capsys, match)


@pytest.mark.slow  # compiles and profiles a real step (~20 CPU-s)
def test_a_real_profile_charges_the_step_to_the_env_files():
    rows, ns_per_step = pe.profile("soc-v2", 256, 8, 1, "file")
    shares = {r: ns for r, ns, _ in rows}
    env = {r: ns for r, ns in shares.items() if r.startswith("jaxsoc/env/")}
    assert ns_per_step > 0
    assert {"jaxsoc/env/attacker.py", "jaxsoc/env/defenders.py", "jaxsoc/env/alerts.py"} <= set(env)
    assert sum(env.values()) > 0.3 * sum(shares.values())
