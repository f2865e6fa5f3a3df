"""Config values that are impossible, or that the run would never read, are refused in one line
when the config is resolved, and so by `train/run.py --print-config` too: each of these trained
(or printed a config) as if the value were not there, while config.yaml recorded it."""
from __future__ import annotations

import pytest

from jaxsoc.config import ConfigError, resolve
from tests.test_cli_run import main as train_cli


def print_config(argv):
    """(exit status, stdout, stderr) of `train/run.py ARGV --print-config`."""
    return train_cli([*argv, "--print-config"])


HYBRID = {"algo": "hybrid", "scenario": "soc-hybrid"}


@pytest.mark.parametrize("flags, sets, message", [
    # epsilon is a probability: 5 trained, and metrics.jsonl logged "epsilon": 4.999
    ({"algo": "dqn"}, ["dqn.epsilon_start=5"], "dqn.epsilon_start must be in [0, 1], got 5.0"),
    ({"algo": "dqn"}, ["dqn.epsilon_end=-0.5"], "dqn.epsilon_end must be in [0, 1], got -0.5"),
    ({"algo": "sac"}, ["sac.dqn.epsilon_start=1.5"], "sac.dqn.epsilon_start must be in [0, 1]"),
    ({"algo": "maddpg"}, ["maddpg.dqn.epsilon_end=-0.1"], "maddpg.dqn.epsilon_end must be in [0, 1]"),
    (HYBRID, ["hybrid.epsilon_end=-1"], "hybrid.epsilon_end must be in [0, 1], got -1.0"),
    ({"algo": "hmarl"}, ["hmarl.dqn.epsilon_start=2"], "hmarl.dqn.epsilon_start must be in [0, 1]"),
    # PER exponents: a negative alpha trained silently; beta0 1.5 was a traceback from the buffer
    ({"algo": "dqn"}, ["dqn.per_alpha=-1"], "dqn.per_alpha must be >= 0, got -1.0"),
    ({"algo": "dqn"}, ["dqn.per_beta0=1.5"], "dqn.per_beta0 must be in [0, 1], got 1.5"),
    ({"algo": "sac"}, ["sac.per_beta0=-0.2"], "sac.per_beta0 must be in [0, 1], got -0.2"),
    # ... and none of them is read by uniform replay
    ({"algo": "dqn"}, ["dqn.per=false", "dqn.per_alpha=0.9"],
     "dqn.per_alpha is read by prioritized replay only, not with dqn.per: false"),
    ({"algo": "iql"}, ["dqn.per_beta0=0.5"], "dqn.per_beta0 is read by prioritized replay only"),
    ({"algo": "hmarl"}, ["hmarl.per=false", "hmarl.per_beta_steps=10"], "hmarl.per_beta_steps is read by"),
    # a negative clip norm clipped nothing, as 0 does
    ({"algo": "dqn"}, ["dqn.max_grad_norm=-1"], "dqn.max_grad_norm must be >= 0 (0: no clipping), got -1.0"),
    ({"algo": "sac"}, ["sac.max_grad_norm=-3"], "sac.max_grad_norm must be >= 0"),
    ({"algo": "maddpg"}, ["maddpg.max_grad_norm=-1"], "maddpg.max_grad_norm must be >= 0"),
    ({"algo": "sac"}, ["sac.dqn.max_grad_norm=-1"], "sac.dqn.max_grad_norm must be >= 0"),
    (HYBRID, ["hybrid.maddpg.max_grad_norm=-1"], "hybrid.maddpg.max_grad_norm must be >= 0"),
    ({"algo": "hmarl"}, ["hmarl.sac.max_grad_norm=-1"], "hmarl.sac.max_grad_norm must be >= 0"),
    # bin levels are raw env actions in [-1, 1]: the env clipped them and bins merged
    ({"algo": "iql"}, ["dqn.bin_low=5", "dqn.bin_high=-3"], "-1 <= bin_low <= bin_high <= 1, got 5.0, -3.0"),
    ({"algo": "qmix"}, ["dqn.bin_low=0.8", "dqn.bin_high=0.5"], "-1 <= bin_low <= bin_high <= 1"),
    ({"algo": "vdn"}, ["dqn.bin_high=1.5"], "-1 <= bin_low <= bin_high <= 1"),
    # the learned coordinator's encoding is iql's; the fixed one's directive the others'
    ({"algo": "dqn"}, ["dqn.coordinator=hmarl"], "dqn.coordinator is read by iql only, not by --algo dqn"),
    ({"algo": "qmix"}, ["dqn.coordinator=hmarl"], "dqn.coordinator is read by iql only, not by --algo qmix"),
    ({"algo": "iql"}, ["dqn.coordinator_action=7"],
     "dqn.coordinator_action is read by dqn, vdn, qmix only, not by --algo iql"),
    # a switch is no directive period (K = 1 was trained)
    ({"algo": "hmarl"}, ["hmarl.k=true"], "hmarl.k must be a positive integer or null, got True"),
    # no coordinator is trained: none of its keys is read
    ({"algo": "hmarl"}, ["hmarl.train_coordinator=false", "hmarl.coordinator.lr=0.1"],
     "hmarl.coordinator.lr configures the trained coordinator; hmarl.train_coordinator: false has none"),
    ({"algo": "hmarl"}, ["hmarl.train_coordinator=false", "hmarl.coordinator.focus_temperature=0.2"],
     "hmarl.coordinator.focus_temperature configures the trained coordinator"),
    ({"algo": "hmarl"}, ["hmarl.train_coordinator=false", "hmarl.coordinator.encoding=onehot"],
     "hmarl.coordinator.encoding configures the trained coordinator"),
    # the explainer's sizes, without the explainer
    ({"algo": "hmarl"}, ["hmarl.coordinator.attention=false", "hmarl.coordinator.num_heads=8"],
     "hmarl.coordinator.num_heads shapes the attention explainer; hmarl.coordinator.attention: false"),
    ({"algo": "hmarl"}, ["hmarl.coordinator.attention=false", "hmarl.coordinator.d_k=32"],
     "hmarl.coordinator.d_k shapes the attention explainer"),
])
def test_an_impossible_or_unread_value_is_refused_when_resolved(flags, sets, message):
    with pytest.raises(ConfigError) as err:
        resolve(flags=flags, sets=sets)
    assert message in str(err.value) and "\n" not in str(err.value)


V1, V2 = "hmarl-soc-v1", "soc-v2"
DISCRETE = "has a discrete coordinator already (D6), which would ignore it"
ALL_ZERO = "fixes the all-zero v1 directive, which would ignore it"


@pytest.mark.parametrize("argv, message", [
    # what the world leaves unread: refused when the trainer is built, which --print-config does
    (["--algo", "iql", "--scenario", V2, "--set", "dqn.coordinator=hmarl"], f"dqn.coordinator maps 8 choices to "
     f"the v1 directive vector; this scenario {DISCRETE}"),
    (["--algo", "vdn", "--scenario", V1, "--set", "dqn.coordinator_action=7"], f"dqn.coordinator_action is a "
     f"directive index of the discrete-directive scenarios; this scenario {ALL_ZERO}"),
    (["--algo", "dqn", "--scenario", V1, "--set", "dqn.coordinator_action=3"], ALL_ZERO),
    (["--algo", "sac", "--scenario", V1, "--set", "sac.coordinator_action=3"], f"sac.coordinator_action is a "
     f"directive index of the discrete-directive scenarios; this scenario {ALL_ZERO}"),
    (["--algo", "maddpg", "--scenario", "banking", "--set", "maddpg.coordinator_action=1"],
     "maddpg.coordinator_action is a directive index of the discrete-directive scenarios; this scenario "
     "has no coordinator"),
    (["--algo", "coma", "--scenario", V2, "--set", "coma.coordinator=hmarl"], f"coma.coordinator maps 8 choices "
     f"to the v1 directive vector; this scenario {DISCRETE}"),
    (["--algo", "hmarl", "--scenario", "soc-strategic", "--set", "hmarl.coordinator.encoding=onehot"],
     f"hmarl.coordinator.encoding maps 8 choices to the v1 directive vector; this scenario {DISCRETE}"),
    (["--algo", "hmarl", "--scenario", V1, "--set", "hmarl.train_coordinator=false", "--set",
      "hmarl.coordinator_action=999"], f"hmarl.coordinator_action is a directive index of the discrete-directive "
     f"scenarios; this scenario {ALL_ZERO}"),
    (["--algo", "mappo", "--scenario", "cage4-like", "--set", "ppo.log_std_init=-1.0"],
     "ppo.log_std_init: this scenario has no continuous action, which would ignore it"),
    (["--algo", "impala", "--scenario", "cage4-like", "--set", "impala.log_std_max=1.0"],
     "impala.log_std_max: this scenario has no continuous action"),
    (["--algo", "mappo", "--scenario", "cage4-like", "--set", "ppo.decisions_only=false"],
     "ppo.decisions_only: this scenario has no coordinator, which would ignore it"),
    (["--algo", "ippo", "--scenario", "soc-hybrid", "--set", "ppo.decisions_only=false"],
     "ppo.decisions_only: this scenario has no coordinator"),
])
def test_a_key_the_world_leaves_unread_is_refused_by_print_config(argv, message):
    code, out, err = print_config([*argv, "--num-envs", "64", "--total-steps", "1000000"])
    assert code == 2 and out == "" and err.count("\n") == 1, (code, out, err)
    assert err.startswith("train/run.py: error: ") and message in err, err


@pytest.mark.parametrize("argv", [
    # the same keys where they are read
    ["--algo", "iql", "--scenario", V1, "--set", "dqn.coordinator=hmarl"],
    ["--algo", "vdn", "--scenario", V2, "--set", "dqn.coordinator_action=7"],
    ["--algo", "sac", "--scenario", V2, "--set", "sac.coordinator_action=3"],
    ["--algo", "coma", "--scenario", V1, "--set", "coma.coordinator=hmarl"],
    ["--algo", "hmarl", "--scenario", V1, "--set", "hmarl.coordinator.encoding=onehot"],
    ["--algo", "hmarl", "--scenario", V2, "--set", "hmarl.train_coordinator=false", "--set",
     "hmarl.coordinator_action=7"],
    ["--algo", "mappo", "--scenario", "retail", "--set", "ppo.log_std_init=-1.0"],
    ["--algo", "single-drl", "--scenario", "cage4-like"],  # its preset's log-std range is no change
    ["--algo", "mappo", "--scenario", V2, "--set", "ppo.decisions_only=false"],
    ["--algo", "dqn", "--scenario", V2, "--set", "dqn.per=false", "--set", "dqn.max_grad_norm=0",
     "--set", "dqn.epsilon_end=0", "--set", "dqn.epsilon_start=1"],
])
def test_the_same_keys_are_taken_where_they_are_read(argv):
    code, out, err = print_config([*argv, "--num-envs", "64", "--total-steps", "1000000"])
    assert code == 0 and err == "", err


def test_a_saved_run_is_rebuilt_with_the_unread_keys_it_recorded():
    """The refusals of unread keys are for new runs: a run saved before them, or before a default
    it recorded changed (hmarl's coordinator lr was 3e-4 until 2026-12-02, and a "w/o SC" run
    records it), still resolves, so it loads, evaluates and resumes."""
    saved = resolve(flags={"algo": "hmarl"}, sets=["hmarl.train_coordinator=false"])
    saved["hmarl"]["coordinator"]["lr"] = 3e-4
    assert resolve(saved=saved)["hmarl"]["coordinator"]["lr"] == 3e-4
    with pytest.raises(ConfigError, match="configures the trained coordinator"):
        resolve(flags={"algo": "hmarl"}, sets=["hmarl.train_coordinator=false", "hmarl.coordinator.lr=3e-4"])
    dqn = resolve(flags={"algo": "dqn"})
    dqn["dqn"].update(per=False, per_alpha=0.9)
    assert resolve(saved=dqn)["dqn"]["per_alpha"] == 0.9
