"""Every world's env has one JaxMARL surface and one identity (jaxsoc.env.surface.WorldEnv)."""
import pytest

import jaxsoc.env as soc
from jaxsoc.env.surface import WorldEnv

# Small versions of every world, so building them is cheap; the second entry is another world of
# the same kind (one override changed).
WORLDS = [
    ("soc-v2", {"hosts_per_segment": 4}, {"max_steps": 7}),
    ("hmarl-soc-v1", {"hosts_per_segment": 4}, {"hosts_per_segment": 5}),
    ("cage4-like", {}, {"max_steps": 7}),
    ("soc-hybrid", {"hosts_per_segment": 4}, {"max_steps": 7}),
    ("retail", {"num_warehouses": 2}, {"num_warehouses": 3}),
    ("banking", {}, {"max_steps": 7}),
]


@pytest.mark.parametrize("scenario, over, other", WORLDS, ids=[w[0] for w in WORLDS])
def test_every_world_has_one_surface_and_is_its_params(scenario, over, other):
    env, params = soc.make(scenario, **over)
    again, _ = soc.make(scenario, **over)
    different, _ = soc.make(scenario, **{**over, **other})
    assert isinstance(env, WorldEnv) and env.name == scenario
    # identity: equal params are one env to jax.jit (one compiled program per world), others not
    assert again is not env and again == env and hash(again) == hash(env)
    assert different != env and env != object()
    assert env.params_or_default(None) is env.default_params
    assert env.params_or_default(params) is params
    for agent in env.agents:
        assert env.observation_space(agent) is env.observation_spaces[agent]
        assert env.action_space(agent) is env.action_spaces[agent]
    assert sorted(a for group in env.agent_classes.values() for a in group) == sorted(env.agents)


def test_worlds_of_different_kinds_are_never_equal():
    envs = [soc.make(scenario, **over)[0] for scenario, over, _ in WORLDS]
    for i, a in enumerate(envs):
        for b in envs[i + 1:]:
            assert a != b and b != a
