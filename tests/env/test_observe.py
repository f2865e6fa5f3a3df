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
    ("soc-v2", {"num_segments": 7, "hosts_per_segment": 6}),
])
def test_every_feature_is_named(preset, overrides):
    env, p = soc.make(preset, **overrides)
    names = feature_names(p)
    for a in env.agents:
        assert len(names[a]) == env.observation_space(a).shape[0], a
    if p.fix_d1_hidden_truth:  # no ground truth (marked *) and no padding in the SOC view
        assert not any("*" in n or "noise" in n for v in names.values() for n in v)


def test_generated_docs_are_in_sync():
    with open(os.path.join(DOCS, "switches.md")) as f:
        assert switches_markdown() in f.read()
    with open(os.path.join(DOCS, "observations.md")) as f:
        text = f.read()
    for name in SWITCHES:
        assert name in open(os.path.join(DOCS, "switches.md")).read()
    _, p = soc.make("soc-v2")
    for role, names in feature_names(p).items():
        assert f"`{role}` ({len(names)})" in text


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
