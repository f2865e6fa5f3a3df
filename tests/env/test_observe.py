"""Observation layouts: every feature is named, and the generated docs are in sync."""
import os

import jax
import pytest

import jaxsoc.env as soc
from jaxsoc.env.observe import feature_names
from jaxsoc.env.params import SWITCHES, switches_markdown

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs")


@pytest.mark.parametrize("preset, overrides", [
    ("hmarl-soc-v1", {}), ("soc-v2", {}), ("hmarl-soc-v1", {"fix_d11_no_padding": True}),
    ("hmarl-soc-v1", {"fix_d6_directive": True}), ("soc-v2", {"fix_d6_directive": False}),
    ("soc-v2", {"num_segments": 7, "hosts_per_segment": 6}), ("soc-v2-redblue", {}),
])
def test_every_feature_is_named(preset, overrides):
    env, p = soc.make(preset, **overrides)
    names = feature_names(p)
    for a in env.agents:
        assert len(names[a]) == env.observation_space(a).shape[0], a
    if p.fix_d1_hidden_truth:  # no ground truth (marked *) and no padding in the SOC view
        assert not any("*" in n or "noise" in n for v in names.values() for n in v)


def test_generated_switches_doc_is_in_sync():
    with open(os.path.join(DOCS, "switches.md")) as f:
        text = f.read()
    assert switches_markdown() in text
    assert all(name in switches_markdown() for name in SWITCHES)  # the generated table lists every switch


def test_hand_written_observations_doc_states_the_env_sizes():
    """docs/observations.md is written by hand: its sizes (5 segments) against the envs'."""
    with open(os.path.join(DOCS, "observations.md")) as f:
        text = " ".join(f.read().split())  # sentences wrap across lines
    head, rest = text.split("## v1 layouts", 1)
    v1_part, v2_part = rest.split("## The SOC view", 1)
    v1, p1 = soc.make("hmarl-soc-v1")
    v2, p2 = soc.make("soc-v2")
    assert p1.num_segments == p2.num_segments == 5
    for part, p in ((v1_part, p1), (v2_part, p2)):
        for role, names in feature_names(p).items():
            assert f"`{role}` ({len(names)})" in part, role
    # v1's switches: no padding (sizes in the agents' order) and the directive appended to every role.
    _, bare = soc.make("hmarl-soc-v1", fix_d11_no_padding=True)
    sizes = " / ".join(str(len(feature_names(bare)[a])) for a in v1.agents)
    assert f"`fix_d11_no_padding` drops the noise and zero features ({sizes} floats)" in v1_part
    _, directed = soc.make("hmarl-soc-v1", fix_d6_directive=True)
    for role, names in feature_names(p1).items():
        assert len(feature_names(directed)[role]) == len(names) + p1.num_segments + 3  # focus S + posture 3
    assert f"{v1.world_state_size} floats under v1, {v2.world_state_size} under v2." in head


@pytest.mark.parametrize("preset", ["hmarl-soc-v1", "soc-v2"])
def test_segment_tokens_cover_the_observation(preset):
    from jaxsoc.env.observe import segment_token_layout
    env, p = soc.make(preset)
    for role in ("coordinator", "response_orchestrator", "threat_hunter"):
        tokens, rest, names = segment_token_layout(p, role)
        assert tokens.shape[0] == p.num_segments
        assert sorted(tokens.reshape(-1).tolist() + rest.tolist()) == list(range(env.observation_space(role).shape[0]))
    tokens, rest, names = segment_token_layout(p, "coordinator")
    if preset == "soc-v2":
        assert names[:4] == ["alerts_queued", "detected_pending", "isolated", "value"]
    else:
        assert names == ["compromised*", "stage*", "detected", "isolated"]


def test_v1_host_features_count_real_hosts_only_with_uneven_segments():
    # Corporate's first host is real host 6 (DMZ has 6); the feature named host6 must move with it,
    # not host8 (host6 and host7 were DMZ's padding slots up to the largest segment's 8: audit-envrules #9).
    env, p = soc.make("hmarl-soc-v1", hosts_per_segment=[6, 8, 4, 5, 7])
    _, st = env.reset(jax.random.key(0), p)
    h = st.hosts
    hit = st.replace(hosts=h.replace(stage=h.stage.at[1, 0].set(4), compromised=h.compromised.at[1, 0].set(True)))
    names = feature_names(p)["threat_hunter"]
    before, after = env.get_obs(st, p)["threat_hunter"], env.get_obs(hit, p)["threat_hunter"]
    moved = {names[i] for i in range(len(names)) if before[i] != after[i] and names[i].startswith("host")}
    assert moved == {"host6.stage*+noise"}
