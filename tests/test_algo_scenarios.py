"""Which algorithm trains on which scenario: a learner built on the SOC roles refuses another
world in one line before its team is built (it failed deep in the setup with an AttributeError
or KeyError), a team learner refuses a learnable red, and the CAGE-4-like world has scripted
policies of its own (`--algo random` failed there)."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc import algos, config as config_lib
from jaxsoc.config import ConfigError
from jaxsoc.env.cage4 import blue

SOC_TEAM_ALGOS = sorted(a for a in algos.ALGORITHMS if getattr(algos.family_module(a), "SOC_TEAM", False))
OTHER_WORLDS = {"retail": {}, "banking": {}, "cage4-like": {}, "soc-hybrid": {"hosts_per_segment": 4}}


def make_train(algo, scenario, env_overrides=None, sets=()):
    env, params = soc.make(scenario, **(env_overrides or {}))
    cfg = config_lib.resolve(flags={"algo": algo, "scenario": scenario, "num_envs": 64}, sets=list(sets))
    return algos.make_train(cfg, env, params)


def test_the_soc_team_learners_are_the_ones_built_on_the_soc_roles():
    assert SOC_TEAM_ALGOS == ["coma", "dqn", "hmarl", "iql", "qmix", "vdn"]


@pytest.mark.parametrize("scenario", sorted(OTHER_WORLDS))
@pytest.mark.parametrize("algo", SOC_TEAM_ALGOS)
def test_a_soc_team_learner_refuses_another_world_in_one_line(algo, scenario):
    env, _ = soc.make(scenario, **OTHER_WORLDS[scenario])
    with pytest.raises(ConfigError) as err:
        make_train(algo, scenario, OTHER_WORLDS[scenario])
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"--algo {algo} acts through the SOC team's roles (coordinator, threat_hunter, "
                          f"alert_triage, response_orchestrator)")
    assert f"scenario {scenario!r} has other agents ({', '.join(env.agents)})" in msg


@pytest.mark.parametrize("algo", SOC_TEAM_ALGOS + ["mappo", "sac"])
def test_team_learners_refuse_a_learnable_red_as_a_config_error(algo):
    """The DQN family failed with KeyError: 'red' (its fixed roles were built first)."""
    with pytest.raises(ConfigError, match=r"^this scenario has a learnable red agent \(red_control\)"):
        make_train(algo, "soc-v2-redblue")


# Reptile is left out: it trains across tasks that vary a world's numeric fields (`meta.tasks`),
# and soc-hybrid's are static; meta's own check refuses them.
LEARNERS = sorted(a for a in algos.ALGORITHMS if algos.family_of(a) not in ("scripted", "meta")
                  and a not in algos.HOME_SCENARIO and a not in SOC_TEAM_ALGOS)


@pytest.mark.parametrize("algo", LEARNERS)
def test_soc_hybrid_trains_exactly_with_the_learners_that_have_per_host_heads(algo):
    """soc-hybrid's segment agents choose per host (MultiDiscrete). The on-policy family has
    per-entry heads (`FactoredCategorical`); the others refuse in one line (read as a Box, their
    floats were cast to choice 0 by the env, so the segments never acted and nothing said so).
    `common.PER_ENTRY_LEARNERS`, which the refusal names, is that set."""
    from jaxsoc.algos.common import PER_ENTRY_LEARNERS

    if algo in PER_ENTRY_LEARNERS:
        # mappo-comm's talkers there are all its agents (the default, the SOC's tier-2 roles, is none)
        sets = ["comm.comm_roles=all"] if algos.family_of(algo) == "comm" else []
        trainer = make_train(algo, "soc-hybrid", {"hosts_per_segment": 4}, sets)
        assert trainer is not None
        return
    with pytest.raises(ConfigError) as err:
        make_train(algo, "soc-hybrid", {"hosts_per_segment": 4})
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("role 'segment_0' chooses one of 3 actions for each of its 4 hosts (MultiDiscrete)")
    assert msg.endswith(f"train this scenario with --algo hybrid or one of the on-policy learners "
                        f"({', '.join(PER_ENTRY_LEARNERS)})")


def test_the_per_host_learners_are_registered_on_policy_learners():
    from jaxsoc.algos.common import PER_ENTRY_LEARNERS

    assert set(PER_ENTRY_LEARNERS) <= set(LEARNERS)
    assert {algos.family_of(a) for a in PER_ENTRY_LEARNERS} == {"ppo", "a2c", "trpo", "impala", "comm"}


def test_a_scripted_lead_refuses_a_world_without_the_discrete_directive_as_a_config_error():
    with pytest.raises(ConfigError, match=r"^scripted leads need the discrete directive and the SOC view"):
        make_train("lead-oracle", "hmarl-soc-v1")


def test_the_command_line_refuses_a_mismatch_with_exit_status_2(tmp_path, capsys):
    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location("run_tool", pathlib.Path(__file__).parents[1] / "train" / "run.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for argv, match in ((["--algo", "iql", "--scenario", "retail"], "--algo iql acts through the SOC team's roles"),
                        (["--algo", "qmix", "--scenario", "soc-v2-redblue"], "this scenario has a learnable red agent"),
                        (["--algo", "lead-informed", "--scenario", "hmarl-soc-v1"], "scripted leads need")):
        assert tool.main(argv + ["--set", f"run.dir={tmp_path}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err
    assert not any(tmp_path.iterdir())  # nothing written


def test_the_cage4_world_has_its_own_scripted_policies():
    env, params = soc.make("cage4-like")
    assert sorted(env.policies) == ["no-defender", "random"]
    with pytest.raises(ConfigError, match=r"scripted policy 'rule-soar' does not act on this scenario; "
                                          r"it has: no-defender, random"):
        make_train("rule-soar", "cage4-like")
    obs, state = env.reset(jax.random.key(0), params)
    masks = env.get_avail_actions(state, params)
    idle = env.policies["no-defender"](jax.random.key(1), obs, state, params)
    assert {a: int(x) for a, x in idle.items()} == {a: int(blue.MONITOR_ACTION[i]) for i, a in enumerate(env.agents)}
    draws = jax.vmap(lambda k: env.policies["random"](k, obs, state, params))(jax.random.split(jax.random.key(2), 200))
    for a in env.agents:
        taken = np.asarray(draws[a])
        assert np.asarray(masks[a])[taken].all()  # only legal actions
        assert len(np.unique(taken)) > 10  # spread over the legal ones
    # Both train through the scripted family (one update; the trainer runs the env's own policy).
    for algo in ("random", "no-defender"):
        trainer = make_train(algo, "cage4-like")
        state0 = trainer.init(jax.random.key(3))
        _, metrics = jax.jit(trainer.update)(state0)
        assert np.isfinite(float(jnp.mean(metrics["reward"])))


@pytest.mark.parametrize("world", ["retail", "cage4-like"])
def test_soc_only_analyses_refuse_another_world_in_one_line(world):
    """The leads (eval/strategic.py) and the detectors' telemetry (detector_quality, train_detector)
    read the SOC network: other worlds failed with AttributeErrors."""
    from jaxsoc import detectors as det
    from jaxsoc.env import leads

    _, params = soc.make(world)
    with pytest.raises(ValueError, match=r"^scripted leads direct the SOC team .* is another world: use soc-strategic"):
        leads.check_scenario(params)
    with pytest.raises(ValueError, match=rf"^scenario '{world}' has no SOC network whose host telemetry"):
        det.telemetry_world(world)
    env, p = det.telemetry_world("soc-hybrid", hosts_per_segment=4)  # its SOC world, as before
    assert isinstance(env, soc.SOCEnv) and p.name == "soc-hybrid"


@pytest.mark.parametrize("scenario, has", [("retail", "this scenario has no coordinator"),
                                           ("soc-v2", "this scenario's coordinator is already discrete (D6)")])
def test_a_v1_coordinator_encoding_is_refused_naming_why(scenario, has):
    """A world without a coordinator was told its coordinator was already discrete."""
    with pytest.raises(ConfigError, match=rf"coordinator encoding 'hmarl' maps 8 choices .*; {re.escape(has)}: "
                                          "use 'native'"):
        make_train("mappo", scenario, sets=["ppo.coordinator=hmarl"])
