"""Config composition, overrides and validation (no JAX compilation: fast)."""
from __future__ import annotations

import pytest
import yaml

from jaxsoc import config
from jaxsoc.config import ConfigError

SCENARIOS = ["hmarl-soc-v1", "soc-v2", "soc-hybrid"]  # soc-hybrid: configs/hybrid.yaml


def resolve(*args, **kwargs):
    kwargs.setdefault("scenarios", SCENARIOS)
    return config.resolve(*args, **kwargs)


def test_defaults_resolve_to_a_plain_complete_dict():
    from jaxsoc import algos

    cfg = resolve()
    base = config.base_config()
    family = algos.family_of(base["algo"])
    assert set(base) | {family} == set(cfg)
    assert cfg["algo"] == base["algo"] and set(cfg[family]) == set(algos.default_section(base["algo"]))
    assert resolve(flags={"algo": "random"})["scripted"] == {"rollout": 128}
    assert cfg["run"]["name"].startswith(f"{cfg['algo']}-{cfg['scenario']}-")
    # Round-trips through YAML unchanged (plain types only).
    assert yaml.safe_load(yaml.safe_dump(cfg)) == cfg


def test_scientific_notation_is_a_number_everywhere(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("algo: random\ntotal_steps: 5e6\nscripted:\n  rollout: 1E2\n")
    cfg = resolve(path, sets=["num_envs=2.048e3"])
    assert cfg["total_steps"] == 5_000_000 and isinstance(cfg["total_steps"], int)
    assert cfg["scripted"]["rollout"] == 100 and isinstance(cfg["scripted"]["rollout"], int)
    assert cfg["num_envs"] == 2048
    assert config.parse_value("1e-4") == pytest.approx(1e-4)
    assert config.parse_value("-3E+2") == -300
    assert config.parse_value("5e6x") == "5e6x"
    assert resolve(flags={"total_steps": "5e6"})["total_steps"] == 5_000_000
    # A whole number without a dot is an integer, so it is one where no schema says so: an env's
    # sizes (refused as 100.0 before) and list entries; a dot or a negative exponent is a float.
    for text, value in (("1e2", 100), ("-2E+3", -2000), ("1_0e2", 1000), ("1e20", 10**20), ("[1e2, 64]", [100, 64])):
        assert config.parse_value(text) == value and type(config.parse_value(text)) is type(value)
    assert type(config.parse_value("2.5e3")) is float and type(config.parse_value("1e-4")) is float
    cfg = resolve(sets=["env.max_steps=1e2", "ppo.hidden_sizes=[1e2, 5e1]"])
    assert cfg["env"]["max_steps"] == 100 and cfg["ppo"]["hidden_sizes"] == [100, 50]


def test_layers_compose_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("num_envs: 64\nseed: 3\nrun: {chunk_updates: 7}\n")
    cfg = resolve(path, flags={"num_envs": 128, "run": {"name": "x"}}, sets=["seed=9", "env.max_steps=100"])
    assert (cfg["num_envs"], cfg["seed"], cfg["run"]["chunk_updates"]) == (128, 9, 7)
    assert cfg["run"]["name"] == "x" and cfg["env"] == {"max_steps": 100}
    assert cfg["run"]["dir"] == config.base_config()["run"]["dir"]  # untouched siblings stay


def test_algo_config_file_is_loaded_by_default(tmp_path, monkeypatch):
    (tmp_path / "base.yaml").write_text((config.CONFIG_DIR / "base.yaml").read_text())
    (tmp_path / "rule-soar.yaml").write_text("algo: rule-soar\nscripted: {rollout: 16}\n")
    monkeypatch.setattr(config, "CONFIG_DIR", tmp_path)
    assert resolve(flags={"algo": "rule-soar"})["scripted"]["rollout"] == 16
    assert resolve(flags={"algo": "random"})["scripted"]["rollout"] == 128


def test_saved_config_is_a_layer_and_hash_tracks_training_keys():
    saved = resolve(flags={"algo": "random", "num_envs": 64, "run": {"name": "a"}})
    again = resolve(saved=saved, sets=["run.chunk_updates=3", "eval.every_chunks=2", "devices=2"])
    assert again["num_envs"] == 64 and again["run"]["name"] == "a"
    assert config.training_hash(again) == config.training_hash(saved)
    changed = resolve(saved=saved, sets=["scripted.rollout=64"])
    assert config.training_hash(changed) != config.training_hash(saved)
    assert config.training_diff(saved, changed) == ["scripted.rollout: 128 -> 64"]
    assert config.training_hash(resolve(saved=saved, sets=["env.max_steps=9"])) != config.training_hash(saved)


def test_a_name_set_on_the_command_line_is_the_text_typed():
    # YAML would read these as a number and a date; --name takes them as they are.
    for text in ("123", "2024-01-01", "1e3"):
        assert resolve(sets=[f"run.name={text}"])["run"]["name"] == text
    assert resolve(sets=["run.name=null"])["run"]["name"].startswith("mappo-soc-v2-")  # null: the dated default


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sets=["num_env=4"]), "unknown config key 'num_env' (did you mean 'num_envs'"),
        (dict(sets=["run.chunk_update=4"]), "'run.chunk_update' (did you mean 'run.chunk_updates'"),
        (dict(flags={"algo": "random"}, sets=["scripted.rolout=4"]),
         "'scripted.rolout' (did you mean 'scripted.rollout'"),
        (dict(flags={"algo": "rule-sora"}), "unknown algorithm 'rule-sora' (did you mean 'rule-soar'"),
        (dict(flags={"scenario": "soc-v3"}), "unknown scenario 'soc-v3' (did you mean 'soc-v2'"),
        (dict(sets=["num_envs=0"]), "num_envs must be a positive integer, got 0"),
        (dict(sets=["num_seeds=-2"]), "num_seeds must be a positive integer"),
        (dict(sets=["total_steps=1.5"]), "total_steps must be an integer, got 1.5"),
        (dict(sets=["run.chunk_updates=0"]), "run.chunk_updates must be a positive integer"),
        (dict(flags={"algo": "random"}, sets=["scripted.rollout=0"]), "scripted.rollout must be positive"),
        (dict(sets=["num_envs=true"]), "num_envs must be an integer, got True"),
        (dict(sets=["num_envs=many"]), "num_envs must be an integer, got 'many'"),
        (dict(sets=["run.progress=1"]), "run.progress must be true or false"),
        (dict(flags={"run": {"name": 3}}), "run.name must be a str or null"),
        (dict(sets=["run.name=a/b"]), "run.name must be a plain folder name"),
        (dict(sets=["run.tensorboard=maybe"]), "run.tensorboard must be one of true, false, auto"),
        (dict(sets=["run.final_checkpoint=params"]), "run.final_checkpoint must be one of full, policy, got 'params'"),
        (dict(sets=["run=3"]), "run must be a mapping"),
        (dict(sets=["env=3"]), "env must be a mapping"),
        (dict(sets=["num_envs"]), "--set expects KEY=VALUE"),
        (dict(flags={"num_envs": 6, "devices": 4}), "num_envs (6) must be divisible by devices (4)"),
        (dict(sets=["seed=-1"]), "seed must be >= 0"),
        (dict(flags={"algo": "MAPPO"}), "unknown algorithm 'MAPPO' (did you mean 'mappo'"),
        (dict(flags={"scenario": "SOC-V2"}), "unknown scenario 'SOC-V2' (did you mean 'soc-v2'"),
        (dict(sets=["ppo.lr=.nan"]), "ppo.lr must be a finite number, got nan"),
        (dict(sets=["ppo.clip_eps=-.inf"]), "ppo.clip_eps must be a finite number, got -inf"),
        (dict(sets=["env.stealth=.inf"]), "env.stealth must be a finite number, got inf"),
        # finite in Python, inf in the float32 programs
        (dict(sets=["ppo.lr=1e39"]), "ppo.lr must be a finite float32 number (at most 3.403e+38), got 1e+39"),
        # a list of numbers, each (YAML reads `nan` as a string: a TypeError deep in hybrid's checks)
        (dict(flags={"algo": "hybrid", "scenario": "soc-hybrid"}, sets=["hybrid.explore_probs=[0.5, 0.5, nan]"]),
         "hybrid.explore_probs[2] must be a number, got 'nan'"),
        (dict(sets=["ppo.hidden_sizes=[64, x]"]), "ppo.hidden_sizes[1] must be an integer, got 'x'"),
        # a key one algorithm of the family reads and this one does not (it trained the same without it)
        (dict(flags={"algo": "vdn"}, sets=["dqn.mixer_embed=7"]), "dqn.mixer_embed is read by qmix only, not by --algo vdn"),
        (dict(flags={"algo": "dqn"}, sets=["dqn.th_bins=8"]), "dqn.th_bins is read by iql, vdn, qmix only"),
    ],
)
def test_validation_errors_are_clear(kwargs, message):
    with pytest.raises(ConfigError) as err:
        resolve(**kwargs)
    assert message in str(err.value)


def test_a_scenario_file_passes_through_to_the_env_and_names_the_run_by_its_stem(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs" / "scenarios").mkdir(parents=True)
    (tmp_path / "configs" / "scenarios" / "mine.yaml").write_text("base: soc-v2\n")
    cfg = resolve(flags={"scenario": "configs/scenarios/mine.yaml"})
    assert cfg["scenario"] == "configs/scenarios/mine.yaml"
    assert cfg["run"]["name"].startswith("mappo-mine-") and "/" not in cfg["run"]["name"]


# ----------------------------------------------------------------------------- scenario files
def scenario_config(path, **kwargs):
    return resolve(flags={"algo": "random", "scenario": str(path)}, **kwargs)


def test_a_scenario_files_contents_are_stored_beside_it_and_hashed(tmp_path, monkeypatch):
    """The run is self-contained: the file's resolved contents (name and base filled in, numbers
    in scientific notation read as numbers) are in the config and in its training hash."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.yaml").write_text("base: soc-v2\nstealth: 9e-1\nhosts_per_segment: 6\n")
    cfg = scenario_config("my.yaml")
    assert list(cfg)[:4] == ["algo", "scenario", "scenario_spec", "env"]  # config.yaml shows them together
    assert cfg["scenario"] == "my.yaml"
    assert cfg["scenario_spec"] == {"base": "soc-v2", "stealth": 0.9, "hosts_per_segment": 6, "name": "my"}
    assert yaml.safe_load(config.dump(cfg)) == cfg
    assert config.training_part(cfg)["scenario_spec"] == cfg["scenario_spec"]
    assert config.training_hash(scenario_config("my.yaml")) == config.training_hash(cfg)
    (tmp_path / "my.yaml").write_text("base: soc-v2\nstealth: 0.8\nhosts_per_segment: 6\n")
    edited = scenario_config("my.yaml")
    assert edited["scenario_spec"]["stealth"] == 0.8
    assert config.training_hash(edited) != config.training_hash(cfg)
    assert config.training_diff(cfg, edited) == ["scenario_spec.stealth: 0.9 -> 0.8"]
    # A preset stores nothing, so its hash (and every older run's) is what it was.
    assert "scenario_spec" not in resolve() and "scenario_spec" not in config.training_part(resolve())


def test_a_runs_config_yaml_on_a_scenario_file_is_a_config_file_again(tmp_path, monkeypatch):
    """`--config runs/x/config.yaml` (or --print-config's output) of a run on a scenario file: its
    stored contents go with the scenario (was: "unknown config key 'scenario_spec'")."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.yaml").write_text("base: soc-v2\nstealth: 0.9\n")
    cfg = scenario_config("my.yaml")
    (tmp_path / "run.yaml").write_text(config.dump(cfg))
    assert resolve(config_file=tmp_path / "run.yaml") == cfg  # round trip
    (tmp_path / "my.yaml").write_text("base: soc-v2\nstealth: 0.1\n")  # the record wins, as on resume
    assert resolve(config_file=tmp_path / "run.yaml")["scenario_spec"]["stealth"] == 0.9
    (tmp_path / "other.yaml").write_text("base: soc-v2\nstealth: 0.3\n")  # another scenario: its own file
    assert resolve(config_file=tmp_path / "run.yaml", sets=["scenario=other.yaml"])["scenario_spec"]["stealth"] == 0.3


def test_a_saved_run_keeps_the_scenario_it_stored_whatever_the_file_says_now(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.yaml").write_text("base: soc-v2\nstealth: 0.9\n")
    saved = yaml.safe_load(config.dump(scenario_config("my.yaml")))
    assert config.scenario_file_note(saved) is None  # the file reads as stored
    (tmp_path / "my.yaml").write_text("base: soc-v2\nstealth: 0.1\n")
    again = resolve(saved=saved)  # resume, load, evaluation
    assert again["scenario_spec"] == saved["scenario_spec"] == {"base": "soc-v2", "stealth": 0.9, "name": "my"}
    assert config.training_hash(again) == config.training_hash(saved)
    assert config.scenario_file_note(again) == (
        "scenario file my.yaml has changed since this run was trained: it goes on with the scenario "
        "stored in its config.yaml (scenario_spec), as trained")
    (tmp_path / "my.yaml").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a relative path from another folder: the file is not needed
    assert resolve(saved=saved)["scenario_spec"] == saved["scenario_spec"]
    assert config.scenario_file_note(saved) == (
        f"scenario file my.yaml cannot be read now (scenario file not found: my.yaml (relative to {elsewhere})): "
        "it goes on with the scenario stored in its config.yaml (scenario_spec), as trained")
    # A scripted run moved to another scenario drops what it stored for the old one.
    assert "scenario_spec" not in resolve(flags={"scenario": "soc-v2"}, saved=saved)


def test_a_run_saved_before_scenario_files_were_stored_loads_as_before(tmp_path, monkeypatch):
    """No scenario_spec: nothing is added (its hash would change and the run no longer load), and
    the file is read when the env is built, as it always was."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.yaml").write_text("base: soc-v2\n")
    old = scenario_config("my.yaml")
    del old["scenario_spec"]
    again = resolve(saved=old)
    assert "scenario_spec" not in again and config.training_hash(again) == config.training_hash(old)
    assert config.scenario_file_note(again) is None
    (tmp_path / "my.yaml").unlink()
    assert "scenario_spec" not in resolve(saved=old)  # not refused here: the env build says it


def test_scenario_file_problems_are_refused_when_the_config_is_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=rf"^scenario file not found: gone.yaml \(relative to {tmp_path}\)$"):
        scenario_config("gone.yaml")
    with pytest.raises(ConfigError, match=rf"^scenario file not found: {tmp_path}/gone.yaml$"):
        scenario_config(tmp_path / "gone.yaml")
    (tmp_path / "nobase.yaml").write_text("hosts_per_segment: 6\n")
    with pytest.raises(ConfigError, match=r"^nobase.yaml: a scenario file needs base: the preset it changes "
                                          r"\(hmarl-soc-v1, .*soc-v2.*\) or another scenario file$"):
        scenario_config("nobase.yaml")
    with pytest.raises(ConfigError, match=r"unknown config key 'scenario_spec'"):  # set by resolve only
        resolve(sets=["scenario_spec.base=soc-v2"])


def test_an_edited_stored_scenario_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.yaml").write_text("base: soc-v2\n")
    cfg = scenario_config("my.yaml")
    wrong = dict(cfg, scenario="soc-v2")
    with pytest.raises(ConfigError, match="^scenario_spec holds the contents of a scenario file, but scenario is "
                                          "'soc-v2', not a .yaml file"):
        config.validate(wrong, SCENARIOS)
    with pytest.raises(ConfigError, match="^scenario_spec must be the mapping of a scenario file's fields with its "
                                          "base"):
        resolve(saved=dict(cfg, scenario_spec={"stealth": 0.5}))


def test_non_finite_numbers_in_a_config_file_are_refused_by_name(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("ppo:\n  lr: .NaN\n")
    with pytest.raises(ConfigError, match="^ppo.lr must be a finite number, got nan$"):
        resolve(path)
    path.write_text("env:\n  segment_values: [0.5, .inf]\n")
    with pytest.raises(ConfigError, match=r"^env.segment_values\[1\] must be a finite number, got inf$"):
        resolve(path)


def test_errors_name_their_source_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("num_envz: 4\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: unknown config key 'num_envz' \(did you mean 'num_envs'"):
        resolve(path)
    path.write_text("num_envs: [4\n")
    with pytest.raises(ConfigError) as err:
        resolve(path)
    assert str(err.value) == (f"{path}: not valid YAML: while parsing a flow sequence expected ',' or ']', but "
                              "got '<stream end>' (line 2, column 1)")  # one line, no caret art
    with pytest.raises(ConfigError, match="not found"):
        resolve(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a folder; give the YAML file's path"):
        resolve(tmp_path)
    # PyYAML keeps the last of a key given twice: the first value was dropped without a word
    path.write_text("algo: mappo\nppo:\n  lr: 1e-3\n  lr: 3e-4\n")
    with pytest.raises(ConfigError, match=r"not valid YAML: key 'lr' is given twice \(line 4, column 3\)$"):
        resolve(path)
    path.write_text("base: &b {lr: 1}\nppo:\n  <<: *b\n  lr: 2\n")  # a merge key may be overridden
    assert config.load_yaml(path)["ppo"] == {"lr": 2}


def test_a_family_section_of_another_algorithm_is_refused(monkeypatch):
    from jaxsoc import algos

    monkeypatch.setitem(algos.ALGORITHMS, "mappo", "ppo")
    with pytest.raises(ConfigError, match="section 'ppo' configures .*mappo.*, but this run's algorithm uses section 'scripted'"):
        resolve(flags={"algo": "random"}, sets=["ppo.lr=1e-4"])


@pytest.mark.parametrize("path", sorted(config.CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_algorithm_config_file_resolves(path):
    # A named config (configs/iql-reference.yaml, ...) that no test loads would rot unnoticed.
    cfg = resolve(config_file=path)
    file_algo = config.load_yaml(path).get("algo")
    assert cfg["algo"] == (file_algo or config.base_config()["algo"])


def differing_keys(a: dict, b: dict, prefix: str = "") -> set:
    """Dotted keys whose values differ between two resolved configs (a key only one has counts),
    but for `run.name`: its default carries the second the config was resolved in, so two
    resolves straddling a second differ there (this failed once in a fresh-clone CI run)."""
    out = set()
    for key in set(a) | set(b):
        if f"{prefix}{key}" == "run.name":
            continue
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out |= differing_keys(x, y, f"{prefix}{key}.")
        elif x != y:
            out.add(f"{prefix}{key}")
    return out


def test_value_based_defaults_are_the_table_ratio_and_the_reference_is_named():
    # The defaults learn at table speed; the reference's one round per 4 env steps stays reachable.
    for algo in ("iql", "vdn", "qmix"):
        fast = resolve(flags={"algo": algo})
        ref = resolve(config_file=config.CONFIG_DIR / f"{algo}-reference.yaml")
        assert (fast["dqn"]["utd"], fast["dqn"]["rollout"]) == (0.002, 8)
        assert (ref["dqn"]["utd"], ref["dqn"]["rollout"]) == (0.25, 1)
        assert differing_keys(fast, ref) == {"dqn.utd", "dqn.rollout"}


def test_dqn_default_halves_the_reference_ratio_and_the_reference_is_named():
    # One gradient round per 100 env steps learned what train_fast's one per 50 did on soc-v2
    # (docs/offpolicy.md "Defaults"); the reference's ratio stays reachable by name.
    fast = resolve(flags={"algo": "dqn"})
    ref = resolve(config_file=config.CONFIG_DIR / "dqn-reference.yaml")
    assert (fast["dqn"]["utd"], ref["dqn"]["utd"]) == (0.01, 0.02)
    assert differing_keys(fast, ref) == {"dqn.utd"}


def test_actor_critic_defaults_differ_from_seed_004_in_the_learning_rate_only():
    # On soc-v2 seed 004's lr 0.05 collapses seeds; the defaults train at 3e-3 (docs/onpolicy.md,
    # "IAC and MAAC on soc-v2") and the seed's preset stays reachable by name.
    for algo in ("iac", "maac"):
        default = resolve(flags={"algo": algo})
        seed004 = resolve(config_file=config.CONFIG_DIR / f"{algo}-seed004.yaml")
        assert (default["a2c"]["lr"], seed004["a2c"]["lr"]) == (3e-3, 0.05)
        assert differing_keys(default, seed004) == {"a2c.lr"}


def test_hybrid_default_is_the_fast_ratio_and_the_reference_is_named():
    # The default spends a gradient round per 200 env steps (~16,600 training env-steps/s at 4,096
    # envs, docs/hybrid.md "Defaults"), the reference one per 50; both run 10 rounds per update
    # at 128 envs, and differ in nothing else; the default budget is 16,000 rounds (8,000 until
    # 2026-12-05; docs/hybrid.md "The network agent's cost").
    from jaxsoc.algos import offpolicy as op

    fast = resolve(flags={"algo": "hybrid"})
    ref = resolve(config_file=config.CONFIG_DIR / "hybrid-reference.yaml")
    changed = ("utd", "rollout", "buffer_size", "epsilon_decay")
    assert [fast["hybrid"][k] for k in changed] == [0.005, 16, 400_000, 80_000]
    assert [ref["hybrid"][k] for k in changed] == [0.02, 4, 100_000, 20_000]
    assert op.rounds_per_update(fast, fast["hybrid"]) == op.rounds_per_update(ref, ref["hybrid"]) == 10
    assert op.rounds_per_update({**fast, "num_envs": 4096}, fast["hybrid"]) == 328  # per 65,536 env steps
    updates = fast["total_steps"] // (fast["num_envs"] * fast["hybrid"]["rollout"])
    assert updates * op.rounds_per_update(fast, fast["hybrid"]) == 16_000
    # ... and the mixer's normalised world state (docs/hybrid.md "Why the QMIX mixer failed")
    assert (fast["hybrid"]["mixer_state_norm"], ref["hybrid"]["mixer_state_norm"]) == (True, False)
    assert differing_keys(fast, ref) == {f"hybrid.{k}" for k in changed + ("mixer_state_norm",)} | {"total_steps"}


def test_hybrid_iql_config_is_the_default_without_mixer_and_network_agent():
    # docs/hybrid.md compares this team with the default at the same ratio and budget: only the
    # two team keys may differ, or the comparison it documents no longer holds.
    default = resolve(flags={"algo": "hybrid"})
    iql = resolve(config_file=config.CONFIG_DIR / "hybrid-iql.yaml")
    assert (iql["hybrid"]["mixer"], iql["hybrid"]["network_agent"]) == ("none", "fixed")
    assert differing_keys(default, iql) == {"hybrid.mixer", "hybrid.network_agent"}


def test_mappo_hybrid_config_is_mappo_at_the_hybrids_envs_and_budget():
    # docs/hybrid.md "MAPPO on soc-hybrid" measured this run against the hybrid default: MAPPO's
    # own settings (configs/mappo.yaml) but its learning rate and entropy bonus, the hybrid's scenario,
    # envs and env steps.
    mappo = resolve(config_file=config.CONFIG_DIR / "mappo-hybrid.yaml")
    hybrid = resolve(flags={"algo": "hybrid"})
    plain = resolve(flags={"algo": "mappo", "scenario": "soc-hybrid", "num_envs": hybrid["num_envs"],
                           "total_steps": hybrid["total_steps"]})
    assert differing_keys(plain, mappo) == {"ppo.lr", "ppo.critic", "ppo.ent_coef"}
    assert mappo["ppo"]["lr"] == 1e-3 and mappo["ppo"]["ent_coef"] == 0.01  # what docs/hybrid.md measured
    # the critic is left to the algorithm: MAPPO's world state here, IPPO's own with --algo ippo
    from jaxsoc.algos import ppo

    assert ppo.resolve_variant("mappo", mappo["ppo"]) == ("per_role", "world")
    ippo = resolve(config_file=config.CONFIG_DIR / "mappo-hybrid.yaml", flags={"algo": "ippo"})
    assert ppo.resolve_variant("ippo", ippo["ppo"]) == ("per_role", "local")
    assert (mappo["scenario"], mappo["num_envs"], mappo["total_steps"]) == ("soc-hybrid", 128, 3_276_800)


@pytest.mark.parametrize("path", sorted(config.ADDED_KEYS), ids=".".join)
def test_keys_added_after_runs_were_saved_keep_those_runs_loadable(path):
    """A run saved before a key existed has no such key in its config.yaml: reloaded, it gets the
    key's old-behaviour value and the same training hash (so `--resume`, `eval/evaluate.py` and
    `load_policy` accept it); the same config with another value of the key is a different
    training. (Without its ADDED_KEYS entry, trpo.fisher_stride made every earlier MATRPO run
    unloadable: 'trained with a different config'.)"""
    import copy

    from jaxsoc import algos

    algo = next(a for a, fam in algos.ALGORITHMS.items() if fam == path[0])
    cfg = config.resolve(flags={"algo": algo})
    old = copy.deepcopy(cfg)
    # Such a run trained the old behaviour of every key added after it too (a config may set a
    # later key that needs this one otherwise: configs/coma.yaml's critic_fraction 0.25 needs
    # critic_epochs > 0).
    for added, was in config.ADDED_KEYS.items():
        section = old
        for key in added[:-1]:
            section = section.get(key, {})
        if added[-1] in section:
            section[added[-1]] = was
    section = old
    for key in path[:-1]:
        section = section[key]
    del section[path[-1]]
    reloaded = config.resolve(saved=old)
    value = reloaded
    for key in path:
        value = value[key]
    assert value == config.ADDED_KEYS[path]
    assert config.training_hash(reloaded) == config.training_hash(old)
    changed = copy.deepcopy(reloaded)
    section = changed
    for key in path[:-1]:
        section = section[key]
    other = {bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v + 0.25, str: lambda v: "attention",
             type(None): lambda v: 0.5}  # a nullable key's number (impala.clip_eps)
    section[path[-1]] = other[type(value)](value)
    assert config.training_hash(changed) != config.training_hash(old)


def test_every_new_training_key_declares_what_older_runs_trained():
    """Adding a key to a family's section changes the training hash of every run saved before
    it, which then no longer loads, unless the key is in `config.ADDED_KEYS` with the value those
    runs trained. tests/data/config_keys.txt lists the keys runs were saved with; a key in
    neither fails here (as trpo.fisher_stride would have, 2026-12-03)."""
    from pathlib import Path

    from jaxsoc import algos

    listed = {line.strip() for line in (Path(__file__).parent / "data" / "config_keys.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    added = {".".join(p) for p in config.ADDED_KEYS}
    current = set()

    def walk(x, prefix):
        if isinstance(x, dict) and x:
            for k, v in x.items():
                walk(v, prefix + (str(k),))
        else:
            current.add(".".join(prefix))

    families = set()
    for algo in list(algos.ALGORITHMS):
        if not algos.family_module(algo).__name__.startswith("jaxsoc."):
            continue  # a family the tests register for themselves (tests/engine_toys.py), not a saved run's
        cfg = config.resolve(flags={"algo": algo})
        family = algos.family_of(algo)
        families.add(family)
        walk({family: cfg[family], **{k: cfg[k] for k in config.TRAINING_KEYS}}, ())
    new = sorted(current - listed - added)
    # A family none of whose keys is listed is new: no run was saved without its keys, so listing
    # them is all it needs (ADDED_KEYS is for a key added to a family that older runs trained).
    new_family = [k for k in new if k.split(".")[0] in families
                  and not any(x.startswith(k.split(".")[0] + ".") for x in listed)]
    added_later = [k for k in new if k not in new_family]
    assert not added_later, (f"new training config keys {added_later}: add each to config.ADDED_KEYS with the value "
                             "that trains what older runs trained, then to tests/data/config_keys.txt")
    assert not new_family, (f"the keys of a new learner family {new_family}: list them in tests/data/config_keys.txt "
                            "(no older run lacks them, so config.ADDED_KEYS does not apply)")


def test_another_algorithms_config_file_cannot_hand_its_critic_to_the_algorithm_asked_for(tmp_path):
    """configs/mappo.yaml names `critic: world`; with `--algo ippo` the file's value won and the
    run was a MAPPO called IPPO. Refused in one line unless a --set decides."""
    from jaxsoc.algos import ppo

    mappo_file = config.CONFIG_DIR / "mappo.yaml"
    with pytest.raises(ConfigError, match=r"mappo.yaml names ppo.critic world for mappo, which would replace "
                                          r"ippo's own \(local\): add --set ppo.critic=auto for ippo's, or "
                                          r"--set ppo.critic=world to train ippo with it$"):
        resolve(config_file=mappo_file, flags={"algo": "ippo"})
    with pytest.raises(ConfigError, match=r"names ppo.policy single for single-drl, which would replace mappo's"):
        resolve(config_file=config.CONFIG_DIR / "single-drl.yaml", flags={"algo": "mappo"})
    for value, critic in (("auto", "local"), ("world", "world")):  # a --set decides, either way
        cfg = resolve(config_file=mappo_file, flags={"algo": "ippo"}, sets=[f"ppo.critic={value}"])
        assert ppo.resolve_variant("ippo", cfg["ppo"]) == ("per_role", critic)
    # the file's own algorithm, or a file naming no algorithm: as written
    assert ppo.resolve_variant("mappo", resolve(config_file=mappo_file)["ppo"]) == ("per_role", "world")
    own = tmp_path / "world-critic.yaml"
    own.write_text("ppo:\n  critic: world\n")
    assert ppo.resolve_variant("ippo", resolve(config_file=own, flags={"algo": "ippo"})["ppo"]) == ("per_role", "world")


def test_a_scenario_file_given_as_config_is_named_as_one():
    """It said "unknown config key 'base'"."""
    from pathlib import Path

    small = Path(__file__).resolve().parent.parent / "configs" / "scenarios" / "soc-v2-small.yaml"
    with pytest.raises(ConfigError, match=f"{small} is a scenario file \\(it has 'base: soc-v2'\\), not a run "
                                          f"config: give it as --scenario {small}"):
        resolve(str(small))
    assert resolve(flags={"scenario": str(small)})["scenario"] == str(small)
