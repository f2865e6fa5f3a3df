"""The explainer statistics (jaxsoc/analysis/explain.py) on hand-made decisions."""
import numpy as np
import pytest

from jaxsoc.analysis import explain


def _records():
    # 2 steps x 2 envs, 4 segments, 2 campaigns. Step 0 decides in both envs, step 1 only in env 1.
    att = np.array([[[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]],
                    [[0.0, 0.0, 0.0, 1.0], [0.1, 0.2, 0.3, 0.4]]])
    held = np.zeros((2, 2, 2, 4), bool)
    held[0, 0, 0, 0] = True   # env 0: the loud campaign (stealth 0.1) holds segment 0
    held[0, 0, 1, 2] = True   # env 0: the quiet one (0.9) holds segment 2
    held[0, 1, 1, 3] = True   # env 1: the quiet one holds segment 3
    held[1, 1, 0, 1] = True   # step 1, env 1: the loud one holds segment 1
    stealth = np.array([[0.1, 0.9], [0.1, 0.9]])[None].repeat(2, 0)
    return {"decides": np.array([[True, True], [False, True]]), "attention": att,
            "focus": np.array([[0, 1], [3, 3]]), "held": held, "stealth": stealth}


def test_attention_statistics_by_hand():
    st = explain.attention_statistics(_records())
    # decisions: (step 0, env 0), (0, 1), (1, 1); focus segments 0, 1, 3 -> weights 0.7, 0.25, 0.4
    assert st["decisions"] == 3 and st["uniform"] == 0.25
    assert st["focus"] == pytest.approx((0.7 + 0.25 + 0.4) / 3)
    # attacked: (0,0) segs 0,2 -> 0.7, 0.1; (0,1) seg 3 -> 0.25; (1,1) seg 1 -> 0.2
    assert st["attacked"] == pytest.approx((0.7 + 0.1 + 0.25 + 0.2) / 4)
    assert st["loud campaign"] == pytest.approx((0.7 + 0.2) / 2)
    assert st["quiet campaign"] == pytest.approx((0.1 + 0.25) / 2)
    assert st["clean"] == pytest.approx((0.1 + 0.1 + 0.25 + 0.25 + 0.25 + 0.1 + 0.3 + 0.4) / 8)
    # top segments: 0 (attacked), 0 (first of ties; clean), 3 (clean) -> 1/3; chance: 2/4, 1/4, 1/4
    assert st["top_attacked"] == pytest.approx(1 / 3)
    assert st["chance"] == pytest.approx((0.5 + 0.25 + 0.25) / 3)


def test_loud_and_quiet_follow_stealth_not_campaign_order():
    r = _records()
    r["stealth"] = r["stealth"][..., ::-1].copy()  # campaign 1 is now the loud one
    st = explain.attention_statistics(r)
    assert st["quiet campaign"] == pytest.approx((0.7 + 0.2) / 2)
    assert st["loud campaign"] == pytest.approx((0.1 + 0.25) / 2)


def test_example_decisions_skip_decisions_without_an_attack_and_go_on_to_the_next_episode():
    r = _records()
    r["held"][:] = False
    assert explain.example_decisions(r, 4) == []
    r = _records()
    ex = explain.example_decisions(r, 4)
    # env 0's one decision, then env 1's two (a short episode need not leave the figure one panel)
    assert [(e["episode"], e["step"], e["focus"]) for e in ex] == [(0, 0, 0), (1, 0, 1), (1, 1, 3)]
    np.testing.assert_allclose(ex[0]["attention"], [0.7, 0.1, 0.1, 0.1])
    np.testing.assert_allclose(ex[2]["attention"], [0.1, 0.2, 0.3, 0.4])
    assert [(e["episode"], e["step"]) for e in explain.example_decisions(r, 2)] == [(0, 0), (1, 0)]
    r["held"][0, 1] = False  # env 1's decision at step 0 has no attack: skipped
    assert [(e["episode"], e["step"]) for e in explain.example_decisions(r, 4)] == [(0, 0), (1, 1)]


def test_one_campaign_is_neither_loud_nor_quiet():
    r = _records()
    r["held"] = r["held"].any(axis=2, keepdims=True)  # one campaign holding what the two held
    r["stealth"] = r["stealth"][..., :1]
    st = explain.attention_statistics(r)
    assert np.isnan(st["loud campaign"]) and np.isnan(st["quiet campaign"])
    assert st["attacked"] == pytest.approx((0.7 + 0.1 + 0.25 + 0.2) / 4)
    table = explain.to_markdown({"one": st})
    assert "| n/a | n/a |" in table and "nan" not in table
    two = explain.attention_statistics(_records())
    mean = explain.mean_statistics([st, two])
    assert mean["loud campaign"] == pytest.approx(two["loud campaign"])  # the seeds that have it
    assert mean["attacked"] == pytest.approx(st["attacked"])
    assert np.isnan(explain.mean_statistics([st, st])["quiet campaign"])


def test_attention_with_truth_draws_what_it_is_given():
    from jaxsoc.analysis import figures
    from jaxsoc.analysis.runs import AnalysisError

    ex = explain.example_decisions(_records(), 4)
    fig, data = figures.attention_with_truth(ex, ["a", "b", "c", "d"], ["loud", "quiet"])
    np.testing.assert_allclose(data["attention"], [[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25],
                                                   [0.1, 0.2, 0.3, 0.4]])
    assert "episode 1, decision at step 1: focus d" in fig.axes[4].get_title()
    np.testing.assert_array_equal(data["held"][0], _records()["held"][0, 0])
    # each decision carries its episode's campaigns' stealth, and a panel may name them its own way
    # (eval/explain.py labelled every panel with episode 0's stealth)
    np.testing.assert_array_equal(ex[1]["stealth"], _records()["stealth"][0, 1])
    ex[2]["campaign_names"] = ["first", "second"]
    fig, _ = figures.attention_with_truth(ex, ["a", "b", "c", "d"], ["loud", "quiet"])
    assert [t.get_text() for t in fig.axes[4].get_yticklabels()] == ["attention", "first", "second"]
    assert [t.get_text() for t in fig.axes[2].get_yticklabels()] == ["attention", "loud", "quiet"]
    with pytest.raises(AnalysisError, match="no decisions"):
        figures.attention_with_truth([], ["a"], ["loud"])
    with pytest.raises(AnalysisError, match="3 segment"):
        figures.attention_with_truth(ex, ["a", "b", "c"], ["loud", "quiet"])


def test_a_near_uniform_attention_map_is_drawn_near_one_colour():
    """The colours spanned the weights' own range: weights 0.099-0.100 over 10 segments were drawn
    full yellow to purple (audit-strategic #10). Now from 0 to max(2/S, the largest weight)."""
    from jaxsoc.analysis import figures

    ex = explain.example_decisions(_records(), 4)
    for e in ex:
        e["attention"] = np.array([0.2495, 0.2505, 0.25, 0.25])
    fig, _ = figures.attention_with_truth(ex, ["a", "b", "c", "d"], ["loud", "quiet"])
    assert fig.axes[0].images[0].get_clim() == (0.0, 0.5)
    ex[0]["attention"] = np.array([0.85, 0.05, 0.05, 0.05])  # a sharp map keeps its peak in range
    fig, _ = figures.attention_with_truth(ex, ["a", "b", "c", "d"], ["loud", "quiet"])
    assert fig.axes[0].images[0].get_clim() == (0.0, 0.85)


@pytest.mark.slow  # CI budget (10 min on 2 cores): rolls out the oracle lead on soc-strategic (~60 CPU-s)
def test_decision_records_agree_with_the_oracle_lead():
    """On a small soc-strategic, under the oracle lead (it focuses the segment where live
    compromise weighs most), every decision with an attacked segment focuses an attacked one:
    `held` and `focus` read the same ground truth the oracle does. Decisions come every K steps
    of each env's first episode only."""
    import jax
    import jax.numpy as jnp

    import jaxsoc.env as soc
    from jaxsoc.env import leads

    from tests.fast import fast_compile

    env, p = soc.make("soc-strategic", hosts_per_segment=(6,) * 10, max_steps=40)
    act = lambda pp, k, o, s, greedy: leads.oracle_lead(k, o, s, p)  # noqa: E731
    uniform = lambda pp, obs: jnp.full((obs["coordinator"].shape[0], 2, 10), 0.1)  # noqa: E731
    with fast_compile():  # a 40-step rollout of 16 envs: compiling dominates
        r = explain.decision_records(env, p, act, (), uniform, jax.random.key(3), 16)
    t = np.arange(r["decides"].shape[0])
    assert not r["decides"][t % p.directive_period != 0].any()
    d = r["decides"]
    attacked = r["held"].any(axis=2)  # [T, N, S]
    at_focus = np.take_along_axis(attacked, r["focus"][..., None], axis=-1)[..., 0]
    some = d & attacked.any(axis=-1)
    assert some.sum() > 20, some.sum()
    assert at_focus[some].all()
    st = explain.attention_statistics(r)
    assert st["focus"] == pytest.approx(0.1)
    # Uniform attention ties everywhere and argmax takes the first segment: "top segment attacked"
    # is then the share of attacked decisions with segment 0 attacked.
    assert st["decisions_attacked"] == some.sum()
    assert st["top_attacked"] == pytest.approx(attacked[some][:, 0].mean())
    assert st["chance"] == pytest.approx(attacked[some].mean())
