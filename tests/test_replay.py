"""Watching a policy defend (jaxsoc/replay, eval/replay.py).

* host statuses and their counts by hand (an exclusive status per host, padding not counted);
* a frame is drawn from its trace step alone: the map shows the step's grid, the counts table
  the step's counts, the reward bars the weighted terms; the same step draws the same pixels and
  a changed step draws other ones;
* the command line on a tiny soc-v2 (rule-soar): the trace's invariants (every host counted once,
  the return is the sum of the rewards and equals the env's own episode return, an episode ends
  once), one animation frame per step, the summary; bad input is one line, a non-zero exit and
  nothing written.
"""
from __future__ import annotations

import copy
import json

import matplotlib

matplotlib.use("Agg", force=True)

import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxsoc.replay import frame, trace  # noqa: E402


def test_host_status_by_hand():
    class Hosts:  # the four fields host_status reads, [S=2, Hmax=4]
        compromised = jnp.array([[0, 1, 1, 1], [1, 0, 1, 0]], bool)
        stage = jnp.array([[2, 1, 4, 3], [3, 0, 2, 0]])  # v1 may leave a stage on a clean host (D3)
        detected = jnp.array([[0, 0, 1, 0], [0, 0, 0, 0]], bool)
        isolated = jnp.array([[0, 0, 0, 0], [1, 1, 0, 0]], bool)

    valid = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], bool)
    grid = np.asarray(trace.host_status(Hosts, valid))
    # clean (stage ignored), stage 1, detected (beats stage 4), stage 3 | isolated compromised,
    # isolated clean, stage 2, padding
    np.testing.assert_array_equal(grid, [[0, 1, 5, 3], [6, 7, 2, -1]])
    counts = trace.status_counts(grid)
    assert counts["clean"] == [1, 0] and counts["initial access"] == [1, 0] and counts["execution"] == [0, 1]
    assert counts["detected"] == [1, 0] and counts["isolated (compromised)"] == [0, 1]
    assert counts["isolated (clean)"] == [0, 1] and counts["exfiltration"] == [0, 0]
    assert sum(sum(v) for v in counts.values()) == valid.sum()  # every real host once, padding never


def synthetic():
    """A hand-made one-step trace: 2 segments of 3 and 2 hosts, v2 directive, attention."""
    grid = [[0, 3, 5], [6, 7, -1]]
    step = {"t": 7, "hosts": grid, "counts": trace.status_counts(np.array(grid)), "phase": 3,
            "reward": -1.3, "return": -4.5,
            "reward_terms": {"detect": 0.6, "response": 0.0, "cost": 1.0, "false_positive": 0.5},
            "queue": {"length": 3, "true": 1, "by_segment": [1, 2], "true_by_segment": [1, 0]},
            "directive": {"read": True, "index": 5, "focus": "B", "posture": "contain"},
            "actions": {"coordinator": 5, "threat_hunter": [1.0, -1.0, 0.0, 0.0], "alert_triage": 0,
                        "response_orchestrator": [0.0, 1.0, -1.0, -1.0, -1.0, -1.0]},
            "attention": {"weights": [[0.25, 0.75], [0.75, 0.25]], "decided_at": 6}, "outcome": None}
    return {"algo": "toy", "scenario": "hand", "segments": ["A", "B"], "high_value": [False, True],
            "hosts_per_segment": [3, 2], "max_steps": 20, "status_names": list(trace.STATUS_NAMES),
            "phase_names": ["reconnaissance", "initial access", "execution", "lateral movement", "exfiltration"],
            "triage_names": list(trace.TRIAGE_NAMES), "directive": {"kind": "discrete", "postures": ["w", "h", "c"]},
            "reward_weights": {"detect": 1.0, "response": 1.5, "cost": -0.3, "false_positive": -2.0},
            "episodes": [{"index": 0, "steps": [step]}]}


def pixels(tr, step):
    fig = plt.figure(figsize=frame.FIGSIZE, dpi=40)
    try:
        axes = frame.draw_frame(fig, tr, step, 0)
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba()).copy(), axes, fig._suptitle.get_text()
    finally:
        plt.close(fig)


def cell_texts(ax, rows, cols):
    """The numbers written in a table-like panel, `[rows, cols]`, by their cell centre."""
    out = np.full((rows, cols), None, dtype=object)
    for t in ax.texts:
        x, y = t.get_position()
        out[int(round(y)), int(round(x))] = t.get_text()
    return out


def test_a_frame_is_drawn_from_its_step_alone():
    tr = synthetic()
    step = tr["episodes"][0]["steps"][0]
    img, axes, title = pixels(tr, step)
    np.testing.assert_array_equal(axes["map"].images[0].get_array(), step["hosts"])
    # The env pads the host axis (soc-strategic's 20-host segments are stored 24 wide): the padding
    # past the largest segment is not drawn as hosts.
    padded = dict(step, hosts=[row + [-1, -1] for row in step["hosts"]])
    _, axes_padded, _ = pixels(tr, padded)
    np.testing.assert_array_equal(axes_padded["map"].images[0].get_array(), step["hosts"])
    # Counts table: clean, compromised, detected, isolated, isolated clean per segment, by hand.
    np.testing.assert_array_equal(cell_texts(axes["counts"], 2, 5), [["1", "1", "1", "0", "0"],
                                                                    ["0", "0", "0", "1", "1"]])
    assert [t.get_text() for t in axes["map"].get_yticklabels()] == ["A", "B (HV)"]
    # Actions as the env reads them, (a + 1) / 2: hunt A=1, B=0; isolate A=0.5, B=1; remediate and
    # release 0; then the attention of the decision in force, the mean of the two heads.
    np.testing.assert_array_equal(cell_texts(axes["actions"], 2, 5), [["1.00", "0.50", "0.00", "0.00", "0.50"],
                                                                     ["0.00", "1.00", "0.00", "0.00", "0.50"]])
    assert "of step 6" in axes["coordinator"].texts[0].get_text()
    # Reward bars: weight x term, summing to the reward (0.6 - 0.3 - 1.0 = -0.7 drawn; the step says -1.3
    # on purpose: the bars are the terms, the title the step's own reward).
    widths = [p.get_width() for p in axes["reward"].patches]
    np.testing.assert_allclose(widths, [0.6, 0.0, -0.3, -1.0])
    assert axes["reward"].get_title(loc="left") == "reward -1.30 = sum of"
    assert "step 7/20" in title and "lateral movement" in title and "escalate" in title and "-4.50" in title

    again, _, _ = pixels(copy.deepcopy(tr), copy.deepcopy(step))
    np.testing.assert_array_equal(img, again)  # the same step, the same pixels
    changed = copy.deepcopy(step)
    changed["hosts"][0][0] = 4  # host A0 now exfiltration-stage
    changed["counts"] = trace.status_counts(np.array(changed["hosts"]))
    img2, axes2, _ = pixels(tr, changed)
    assert not np.array_equal(img, img2)
    np.testing.assert_array_equal(axes2["map"].images[0].get_array(), changed["hosts"])
    assert cell_texts(axes2["counts"], 2, 5)[0].tolist() == ["0", "2", "1", "0", "0"]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """eval/replay.py on rule-soar, soc-v2 with 3 hosts per segment and 8-step episodes."""
    import importlib.util
    from pathlib import Path

    from tests.fast import fast_compile

    spec = importlib.util.spec_from_file_location("replay_cli", Path(__file__).parent.parent / "eval" / "replay.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = tmp_path_factory.mktemp("replay") / "out"
    with fast_compile():  # 3 episodes of 8 steps: compiling is the cost (tests/fast.py)
        code = cli.main(["--algo", "rule-soar", "--scenario", "soc-v2", "--set", "env.hosts_per_segment=3",
                         "--set", "env.max_steps=8", "--episodes", "3", "--animate", "1", "--format", "gif",
                         "--out", str(out), "--seed", "4"])
    assert code == 0
    return cli, out, json.loads((out / "trace.json").read_text())


def test_the_trace_holds_together(replayed):
    _, out, tr = replayed
    assert (tr["algo"], tr["scenario"], tr["seed"], tr["scripted"]) == ("rule-soar", "soc-v2", 4, True)
    assert len(tr["episodes"]) == 3
    for ep in tr["episodes"]:
        steps = ep["steps"]
        assert [s["t"] for s in steps] == list(range(1, ep["length"] + 1)) and ep["length"] <= 8
        assert [s["outcome"] is not None for s in steps] == [False] * (ep["length"] - 1) + [True]
        assert ep["outcome"] in ("contained", "exfiltrated", "time limit")
        for s in steps:
            per_segment = np.sum([s["counts"][n] for n in tr["status_names"]], axis=0)
            np.testing.assert_array_equal(per_segment, tr["hosts_per_segment"])  # every host once
            assert s["queue"]["length"] == sum(s["queue"]["by_segment"]) >= s["queue"]["true"]
            assert s["directive"]["focus"] in tr["segments"]
        np.testing.assert_allclose(steps[-1]["return"], sum(s["reward"] for s in steps), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(ep["return"], ep["metrics"]["return"], rtol=1e-5, atol=1e-4)  # the env's own


def test_one_frame_per_step_and_a_summary(replayed):
    from PIL import Image

    from jaxsoc.replay import animate

    _, out, tr = replayed
    with Image.open(out / "episode_0.gif") as gif:  # 4 frames per second
        assert gif.n_frames == tr["episodes"][0]["length"]
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
    assert durations == [250] * (len(durations) - 1) + [animate.HOLD_SECONDS * 1000]
    assert not (out / "episode_1.gif").exists()  # --animate 1
    with Image.open(out / "summary.png") as png:
        assert png.size == (1280, 1000)


@pytest.mark.parametrize("argv, message", [
    (["/no/such/run"], "does not exist"),
    (["--algo", "rule_soar", "--scenario", "soc-v2"], "unknown scripted policy 'rule_soar'"),
    (["--algo", "mappo", "--scenario", "soc-v2"], "'mappo' is a learner"),
    (["--algo", "rule-soar", "--scenario", "soc-v2", "--episodes", "0"], "expected a positive integer"),
    (["--algo", "rule-soar", "--scenario", "soc-v2", "--episodes", "-2"], "expected a positive integer"),
    (["--algo", "rule-soar"], "--algo needs --scenario"),
    # a GIF frame past 655 s: PIL failed after trace.json was written
    (["--algo", "rule-soar", "--scenario", "soc-v2", "--fps", "0.0001"], "--fps must lie in [0.01, 100] frames"),
    (["--algo", "rule-soar", "--scenario", "soc-v2", "--episodes", "1", "--animate", "2"], "more than --episodes"),
    # The other worlds have no SOC network to draw (the trace failed with AttributeErrors).
    (["--algo", "random", "--scenario", "banking"], "a replay draws the SOC network (hosts, segments, alerts, "
     "the directive); scenario 'banking' is another world (BankingEnv): evaluate it with eval/evaluate.py"),
    (["--algo", "random", "--scenario", "cage4-like"], "scenario 'cage4-like' is another world (Cage4Env)"),
])
def test_bad_input_is_one_line_and_writes_nothing(replayed, tmp_path, capsys, argv, message):
    cli = replayed[0]
    out = tmp_path / "out"
    try:
        code = cli.main(argv + ["--out", str(out)])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code != 0 and message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_a_trace_refuses_a_world_without_the_soc_network():
    import jaxsoc

    with pytest.raises(ValueError, match=r"^a replay draws the SOC network .* scenario 'retail' is another world"):
        trace.record(jaxsoc.scripted_policy("random", "retail"), seed=0, episodes=1)
