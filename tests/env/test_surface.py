"""Every world's env has one JaxMARL surface and one identity (jaxsoc.env.surface.WorldEnv)."""
import jax
import numpy as np
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


@pytest.mark.parametrize("scenario, over, other", WORLDS, ids=[w[0] for w in WORLDS])
def test_world_state_opens_with_the_observers_observations(scenario, over, other):
    """`world_state_observers` is what on-policy critics rely on to keep only the rest of the
    world state (`onpolicy.Critic.kept`): its first features must be exactly those agents'
    observations, bit for bit, after a reset and after steps (both `get_world_state` and the
    step's `infos["world_state"]`); worlds laid out otherwise declare ()."""
    env, params = soc.make(scenario, **over)
    env = type(env)(params.replace(with_world_state=True))
    params = env.default_params
    assert set(env.world_state_observers) <= set(env.agents)
    expected = () if scenario == "banking" else tuple(env.agents)  # banking's world state is laid out otherwise
    assert env.world_state_observers == expected

    def check(obs, world):
        lead = sum(obs[a].shape[-1] for a in env.world_state_observers)
        assert world.shape[-1] >= lead
        if env.world_state_observers:
            opening = np.concatenate([np.asarray(obs[a]) for a in env.world_state_observers], -1)
            np.testing.assert_array_equal(np.asarray(world[..., :lead]), opening)

    # get_world_state against get_obs (one path: hmarl-soc-v1's observations from `get_obs` can
    # differ from `step`'s in their last bit, computed in another program), and a step's
    # infos["world_state"] against the observations that step returned (what a rollout stores).
    key = jax.random.PRNGKey(3)
    _, state = env.reset(key, params)
    check(env.get_obs(state, params), env.get_world_state(state, params))
    for t in range(4):
        actions = {a: env.action_space(a).sample(jax.random.fold_in(key, 10 * t + i))
                   for i, a in enumerate(env.agents)}
        obs, state, _, _, infos = env.step(jax.random.fold_in(key, t), state, actions, params)
        check(obs, infos["world_state"])
        check(env.get_obs(state, params), env.get_world_state(state, params))


@pytest.mark.parametrize("scenario", ["soc-v2", "cage4-like", "retail", "banking", "soc-hybrid"])
def test_an_unknown_agent_is_named_with_a_close_match(scenario):
    env, _ = soc.make(scenario)
    typo = env.agents[0][:-1]
    for space in (env.action_space, env.observation_space):
        assert space(env.agents[0]) is not None
        with pytest.raises(ValueError, match=rf"^unknown agent {typo!r} \(did you mean {env.agents[0]!r}.*\) \(agents: "):
            space(typo)
