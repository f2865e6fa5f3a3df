"""make(): presets, overrides, YAML scenarios and the errors for bad input."""
import os

import jax
import pytest

import jaxsoc.env as soc
from jaxsoc.env.params import SWITCHES, EnvParams


def test_presets_and_switches():
    _, v1 = soc.make("hmarl-soc-v1")
    _, v2 = soc.make("soc-v2")
    assert all(getattr(v1, s) is False for s in SWITCHES)
    assert all(getattr(v2, s) is True for s in SWITCHES)
    assert v1.hosts_per_segment == (40,) * 5 and v1.max_steps == 200 and v1.directive_period == 5
    assert v1.num_hosts == 200 and v1.edges[:3] == ((0, 1), (0, 2), (1, 0)) and len(v1.edges) == 13
    # each switch is a documented static field of EnvParams, named after its defect
    fields = {f.name for f in __import__("dataclasses").fields(EnvParams)}
    for name, (defect, text) in SWITCHES.items():
        assert name in fields and name.startswith(f"fix_{defect.lower()}_") and len(text) > 40


def test_params_are_hashable_and_static_fields_in_treedef():
    _, p = soc.make("soc-v2")
    hash(p)
    leaves = jax.tree.leaves(p)
    assert 0.7 in leaves  # stealth is a leaf (vmappable)
    assert all(not isinstance(x, (str, bool)) for x in leaves)


def test_overrides_and_generated_topology():
    env, p = soc.make("soc-v2", hosts_per_segment=8, stealth=0.5)
    assert p.hosts_per_segment == (8,) * 5 and p.stealth == 0.5
    env, p = soc.make("soc-v2", num_segments=10, hosts_per_segment=12)
    assert p.num_segments == 10 and len(p.adjacency) == 10 and p.hosts_per_segment == (12,) * 10
    env, p = soc.make("soc-v2", hosts_per_segment=(3, 5, 4, 6, 2))
    assert p.max_hosts == 6 and p.num_hosts == 20


def test_yaml_scenario(tmp_path):
    f = tmp_path / "tiny.yaml"
    f.write_text("base: soc-v2\nhosts_per_segment: 6\nmax_steps: 50\n")
    _, p = soc.make(str(f))
    assert p.name == "tiny" and p.hosts_per_segment == (6,) * 5 and p.max_steps == 50 and p.fix_d5_containment
    repo_cfg = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "scenarios")
    for name in sorted(os.listdir(repo_cfg)):
        soc.make(os.path.join(repo_cfg, name))  # every shipped scenario file is valid


def test_a_scenario_file_reads_numbers_as_configs_do(tmp_path):
    """`1e-1` is a number in a config (docs/engine.md); PyYAML alone reads it as a string, and a
    scenario file refused it ("stealth must be a number, got '1e-1'")."""
    f = tmp_path / "sci.yaml"
    f.write_text("base: soc-v2\nstealth: 1e-1\nw_fp: -2E+0\n")
    _, p = soc.make(str(f))
    assert p.stealth == 0.1 and p.w_fp == -2.0


def test_a_scenario_file_without_base_is_refused(tmp_path):
    """No default: a forgotten `base:` built hmarl-soc-v1 (every defect on) without a word."""
    for text in ("hosts_per_segment: 6\n", ""):
        f = tmp_path / "nobase.yaml"
        f.write_text(text)
        with pytest.raises(ValueError, match=rf"^{f}: a scenario file needs base: the preset it changes "
                                             rf"\({', '.join(soc.preset_names())}\) or another scenario file$"):
            soc.make(str(f))
    f.write_text("base: soc-v3\n")
    with pytest.raises(ValueError, match=rf"^{f}: unknown base 'soc-v3' \(did you mean 'soc-v2'"):
        soc.make(str(f))


def test_a_scenario_files_stored_contents_build_what_the_file_builds(tmp_path, monkeypatch):
    """`read_scenario_file` is what a run stores (config scenario_spec); `scenario_params` builds
    the env from it, without the file, as `make(path)` does: a base file is stored inside it."""
    from jaxsoc.env.params import read_scenario_file, scenario_params

    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.yaml").write_text("base: soc-v2\nnum_segments: 3\nhosts_per_segment: 6\n")
    (tmp_path / "mine.yaml").write_text("base: small.yaml\nstealth: 0.25\n")
    spec = read_scenario_file("mine.yaml")
    assert spec == {"base": {"base": "soc-v2", "num_segments": 3, "hosts_per_segment": 6, "name": "small"},
                    "stealth": 0.25, "name": "mine"}
    _, from_file = soc.make("mine.yaml", max_steps=40)
    (tmp_path / "mine.yaml").unlink()
    (tmp_path / "small.yaml").unlink()
    p = scenario_params(spec, max_steps=40)
    assert p == from_file
    assert (p.name, p.stealth, p.max_steps, p.hosts_per_segment, p.fix_d1_hidden_truth) == (
        "mine", 0.25, 40, (6, 6, 6), True)
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ValueError, match="^loop.yaml: base loop.yaml leads back to itself$"):
        read_scenario_file("loop.yaml")


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="hmarl-soc-v2"), "did you mean 'hmarl-soc-v1'"),
    (dict(name="soc-v2", stelth=0.3), "did you mean 'stealth'"),
    (dict(name="soc-v2", hosts_per_segment=0), "positive integer"),
    (dict(name="soc-v2", hosts_per_segment=-3), "positive integer"),
    (dict(name="soc-v2", max_steps=0), "positive integer"),
    (dict(name="soc-v2", num_segments=0), "positive integer"),
    (dict(name="soc-v2", adjacency=((1,), (0, 7), (1,), (2,), (3,))), "segment 7, which does not exist"),
    (dict(name="soc-v2", entry_segments=(9,)), "does not exist"),
    (dict(name="soc-v2", segment_values=(1.0, 1.0)), "segment_values has 2 entries"),
    (dict(name="soc-v2", stealth=1.5), "probability"),
    (dict(name="soc-v2", rng_impl="mt19937"), "rng_impl"),
    (dict(name="soc-strategic", exfiltration_penalty=float("nan")), "exfiltration_penalty must be a finite"),
    (dict(name="soc-v2", w_fp=float("-inf")), "w_fp must be a finite"),
    (dict(name="soc-v2", telemetry_direction=(1.0,) * 7 + (float("inf"),)), "telemetry_direction must be a finite"),
    (dict(name="missing.yaml"), "not found"),
])
def test_bad_input_is_a_clear_error(kwargs, message):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=message):
        soc.make(name, **kwargs)
