"""What every world's env shares: JaxMARL's surface and an identity by the value of its params.

    class MyEnv(WorldEnv):
        def __init__(self, params):
            self.default_params = params
            self.agents, self.action_spaces, self.observation_spaces = ...

The SOC env (`jaxsoc.env.core.SOCEnv`), soc-hybrid, cage4-like and the demo worlds
(`jaxsoc.demos.base.DemoEnv`) subclass it; the wrappers that re-present one of them to a side or a
task (`jaxsoc.algos.redblue.SideEnv`, `jaxsoc.algos.meta.TaskMixture`) delegate to theirs instead.

Identity: an env holds nothing but what its params decide (agents, spaces), and its methods are
jitted with the env as a static argument, so two envs of one class with equal params must be one
static argument: a second `make` of a world then reuses the first one's compiled programs (a
vector env's step is 8-10 s of compilation on this 2-core CPU). `identity()` is that value; a
world whose params are arrays (soc-hybrid's detector) overrides it with a key taken once.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from jaxsoc.names import suggest


class WorldEnv:
    """Base of every world's env (module docstring). Subclasses set `default_params`, `agents`,
    `action_spaces` and `observation_spaces` (`{agent: space}`) in `__init__`."""

    # Declared, not given: each env sets its own in `__init__` (a class-level list or dict here
    # would be one object shared by every env that forgot to).
    default_params: Any
    agents: List[str]
    action_spaces: Dict
    observation_spaces: Dict
    # The agents whose observations open the world state (`get_world_state`, `infos["world_state"]`),
    # in order: its first features are exactly their observations, concatenated, so a learner that
    # already stores the observations keeps only the rest of it (`onpolicy.Critic.kept`). () where
    # the world state is not laid out that way (a tuple: immutable, so one shared default is safe).
    world_state_observers: Tuple[str, ...] = ()
    # The agents every action of which is always legal (`get_avail_actions` all True, whatever the
    # state): a learner that stores next-state masks for its targets (the off-policy family) skips
    # them. () is the safe default: masks are read for every agent.
    always_legal: Tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.default_params.name

    @property
    def agent_classes(self) -> dict:
        """`{class name: [agents]}`: one class per agent unless a world groups them."""
        return {a: [a] for a in self.agents}

    def observation_space(self, agent: str):
        return self.observation_spaces[self.known_agent(agent)]

    def action_space(self, agent: str):
        return self.action_spaces[self.known_agent(agent)]

    def known_agent(self, agent: str) -> str:
        """`agent`, or a one-line `ValueError` with a close match (a bare KeyError named no agent)."""
        if agent not in self.action_spaces:
            raise ValueError(f"unknown agent {agent!r}{suggest(str(agent), self.agents)} (agents: {', '.join(self.agents)})")
        return agent

    def params_or_default(self, params):
        """`params`, or `default_params` where a method was called with `params=None`."""
        return self.default_params if params is None else params

    def identity(self):
        """A hashable value two envs share exactly when they are the same world: the class and
        the params (hashable by value: their fields are static, or see soc-hybrid's)."""
        return type(self), self.default_params

    def __hash__(self):
        return hash(self.identity())

    def __eq__(self, other):
        return isinstance(other, WorldEnv) and other.identity() == self.identity()
