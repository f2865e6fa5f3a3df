"""`spaces.check_action_dict`: every env's step refuses an action dict with an unknown agent, a
missing one or a wrongly shaped action with one line naming it, at trace time, and adds nothing to
the program of a valid step."""
import jax
import jax.numpy as jnp
import pytest

import jaxsoc.env as soc
from jaxsoc.env.spaces import Box, Discrete, MultiDiscrete, check_action_dict

SPACES = {"pick": Discrete(3), "many": MultiDiscrete((2, 2, 2)), "dial": Box(-1.0, 1.0, (2, 4))}
GOOD = {"pick": jnp.int32(1), "many": jnp.zeros(3, jnp.int32), "dial": jnp.zeros((2, 4))}


def test_a_valid_dict_passes_and_optional_names_may_be_left_out():
    check_action_dict(GOOD, list(SPACES), SPACES)
    check_action_dict(GOOD, list(SPACES), {**SPACES, "extra": Box(0.0, 1.0, (5,))}, optional=["extra"])
    check_action_dict({**GOOD, "extra": jnp.ones(5)}, list(SPACES), {**SPACES, "extra": Box(0.0, 1.0, (5,))},
                      optional=["extra"])
    check_action_dict({**GOOD, "dial": jnp.zeros(8)}, list(SPACES), SPACES, any_shape=["dial"])
    check_action_dict({**GOOD, "dial": 7}, list(SPACES), {"pick": SPACES["pick"]})  # no space: not checked


@pytest.mark.parametrize("actions, message", [
    ([1, 2, 3], "actions must be a dict {agent: action}, got list"),
    ({**GOOD, "pik": 0}, "unknown agent 'pik' in actions (did you mean 'pick'?) (agents: pick, many, dial, extra)"),
    ({**GOOD, "zzz": 0}, "unknown agent 'zzz' in actions (agents: pick, many, dial, extra)"),
    ({k: v for k, v in GOOD.items() if k != "many"}, "actions is missing 'many' (agents: pick, many, dial, extra)"),
    ({**GOOD, "pick": jnp.zeros(1, jnp.int32)}, "actions['pick'] has shape (1,), expected ()"),
    ({**GOOD, "many": jnp.zeros((3, 1), jnp.int32)}, "actions['many'] has shape (3, 1), expected (3,)"),
    ({**GOOD, "dial": jnp.zeros(8)}, "actions['dial'] has shape (8,), expected (2, 4)"),
    ({**GOOD, "extra": jnp.zeros(4)}, "actions['extra'] has shape (4,), expected (5,)"),
    # A float choice would be cast to an index: every value in (-1, 1) to choice 0.
    ({**GOOD, "many": jnp.full(3, 0.7)}, "actions['many'] has dtype float32, expected integers (choice indices)"),
    ({**GOOD, "pick": jnp.float32(1.0)}, "actions['pick'] has dtype float32, expected integers (choice indices)"),
])
def test_each_problem_is_one_line_naming_the_agent(actions, message):
    spaces = {**SPACES, "extra": Box(0.0, 1.0, (5,))}
    with pytest.raises(ValueError) as err:
        check_action_dict(actions, list(SPACES), spaces, optional=["extra"])
    assert str(err.value) == message


def test_any_shape_still_needs_the_size():
    with pytest.raises(ValueError, match=r"^actions\['dial'\] has shape \(7,\), expected \(2, 4\)$"):
        check_action_dict({**GOOD, "dial": jnp.zeros(7)}, list(SPACES), SPACES, any_shape=["dial"])


# ---- every env's step ---------------------------------------------------------------------------
ENVS = {
    "retail": dict(num_warehouses=2, max_steps=5),
    "banking": dict(max_steps=5),
    "cage4-like": dict(max_steps=5),
    "soc-hybrid": dict(hosts_per_segment=2, max_steps=5),
}


@pytest.fixture(scope="module", params=list(ENVS))
def world(request):
    env, p = soc.make(request.param, **ENVS[request.param])
    state = jax.eval_shape(lambda k: env.reset(k, p)[1], jax.random.key(0))  # shapes are all a step checks
    actions = {a: env.action_space(a).sample(jax.random.key(i)) for i, a in enumerate(env.agents)}
    return request.param, env, p, state, actions


def steps(env, p):
    """The env's step functions that take an action dict (the demos have no step_env), traced
    only: `(key, state, actions)` -> their output's shapes."""
    fns = [env.step] + ([env.step_env] if hasattr(env, "step_env") else [])
    return [lambda k, s, a, f=f: jax.eval_shape(lambda k, s, a: f(k, s, a, p), k, s, a) for f in fns]


# What each env's step says for: an unknown agent, a missing one, a wrongly shaped action.
MESSAGES = {
    "retail": ("unknown agent 'Warehouse_1' in actions (did you mean 'warehouse_1'?) "
               "(agents: warehouse_0, warehouse_1)",
               "actions is missing 'warehouse_0' (agents: warehouse_0, warehouse_1)",
               "actions['warehouse_0'] has shape (), expected (1,)"),
    "banking": ("unknown agent 'router_3' in actions (did you mean 'router_2' or 'router_1' or 'router_0'?) "
                "(agents: router_0, router_1, router_2)",
                "actions is missing 'router_0' (agents: router_0, router_1, router_2)",
                "actions['router_0'] has shape (1,), expected ()"),
    "cage4-like": ("unknown agent 'blue_0' in actions (did you mean 'blue_agent_0'?) (agents: blue_agent_0, "
                   "blue_agent_1, blue_agent_2, blue_agent_3, blue_agent_4, messages)",
                   "actions is missing 'blue_agent_0' (agents: blue_agent_0, blue_agent_1, blue_agent_2, "
                   "blue_agent_3, blue_agent_4, messages)",
                   "actions['blue_agent_0'] has shape (1,), expected ()"),
    "soc-hybrid": ("unknown agent 'Network' in actions (did you mean 'network'?) (agents: segment_0, segment_1, "
                   "segment_2, segment_3, segment_4, network)",
                   "actions is missing 'segment_0' (agents: segment_0, segment_1, segment_2, segment_3, "
                   "segment_4, network)",
                   "actions['segment_0'] has shape (1, 2), expected (2,)"),
}
UNKNOWN = {"retail": "Warehouse_1", "banking": "router_3", "cage4-like": "blue_0", "soc-hybrid": "Network"}


def test_step_refuses_an_unknown_a_missing_and_a_wrongly_shaped_action(world):
    name, env, p, state, actions = world
    first = env.agents[0]
    # Shapes the steps used to reshape or broadcast silently, or to fail on deep inside JAX: a
    # scalar for retail's (1,) Box, an extra axis on a Discrete or MultiDiscrete action.
    wrong = actions[first].reshape(()) if name == "retail" else actions[first][None]
    changed = [{**actions, UNKNOWN[name]: actions[first]},
               {k: v for k, v in actions.items() if k != first},
               {**actions, first: wrong}]
    for bad, message in zip(changed, MESSAGES[name]):
        for step in steps(env, p):
            with pytest.raises(ValueError) as err:
                step(jax.random.key(1), state, bad)
            assert str(err.value) == message


def test_cage4_checks_the_optional_messages():
    env, p = soc.make("cage4-like", max_steps=5)
    state = jax.eval_shape(lambda k: env.reset(k, p)[1], jax.random.key(0))
    actions = env.idle_actions(p)
    for step in steps(env, p):
        step(jax.random.key(1), state, {**actions, "messages": jnp.ones((5, 8), bool)})
        with pytest.raises(ValueError) as err:
            step(jax.random.key(1), state, {**actions, "messages": jnp.ones(8, bool)})
        assert str(err.value) == "actions['messages'] has shape (8,), expected (5, 8)"
        with pytest.raises(ValueError) as err:
            step(jax.random.key(1), state, {**actions, "mesages": jnp.ones((5, 8), bool)})
        assert str(err.value).startswith("unknown agent 'mesages' in actions (did you mean 'messages'?)")


def test_the_check_adds_nothing_to_a_valid_step(world, monkeypatch):
    """The program of a valid step is the same with the check as without it (it is Python that
    runs at trace time), and a vmapped step checks one env's shapes."""
    name, env, p, state, actions = world
    module = {"retail": "jaxsoc.demos.base", "banking": "jaxsoc.demos.base", "cage4-like": "jaxsoc.env.cage4.core",
              "soc-hybrid": "jaxsoc.env.hybrid.core"}[name]
    # A new function per trace: JAX caches the trace of a function it has seen.
    def program():
        return str(jax.make_jaxpr(lambda k, s, a: env.step(k, s, a, p))(jax.random.key(1), state, actions))

    checked = program()
    monkeypatch.setattr(f"{module}.check_action_dict", lambda *args, **kwargs: None)
    assert program() == checked
    monkeypatch.undo()
    step = lambda k, s, a: env.step(k, s, a, p)  # noqa: E731
    batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct((2,) + x.shape, x.dtype), (state, actions))
    jax.eval_shape(jax.vmap(step), jax.random.split(jax.random.key(1), 2), *batch)


@pytest.mark.parametrize("scenario", ["soc-v2", "soc-v2-redblue"])
def test_soc_keeps_its_rules_any_shape_of_the_size_and_an_optional_red(scenario):
    env, p = soc.make(scenario, hosts_per_segment=4, max_steps=5)
    _, state = env.reset(jax.random.key(0), p)
    actions = env.idle_actions(p)
    reshaped = {**actions, "response_orchestrator": actions["response_orchestrator"].reshape(3, -1)}
    jax.eval_shape(env.step_env, jax.random.key(1), state, reshaped, p)
    if p.red_control:
        jax.eval_shape(env.step_env, jax.random.key(1), state, {k: v for k, v in actions.items() if k != "red"}, p)
        with pytest.raises(ValueError) as err:
            env.step_env(jax.random.key(1), state, {**actions, "redd": actions["red"]}, p)
        assert str(err.value) == ("unknown agent 'redd' in actions (did you mean 'red'?) (agents: coordinator, "
                                  "threat_hunter, alert_triage, response_orchestrator, red)")
