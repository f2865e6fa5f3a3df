"""jaxsoc's worlds for code that does not speak JAX: numpy in, numpy out, the standard APIs.

Each adapter takes a scenario name (any of `jaxsoc.env.scenario_names()`: the SOC presets and
scenario files, retail, banking, cage4-like, soc-hybrid) and `jaxsoc.env.make`s it; it reads only
what every env has (reset, step_env, step, idle_actions, get_avail_actions, get_world_state,
the infos' terminated/truncated/metrics; `reward_terms` where present).

    parallel_env.py   SOCParallelEnv: PettingZoo's ParallelEnv (one dict entry per role, action
                      masks in the infos); passes pettingzoo.test.parallel_api_test
    single_agent.py   SOCJointEnv: a Gymnasium Env seeing the team as one agent (every role's
                      observation concatenated, the joint action flattened, as Single-DRL sees it);
                      passes gymnasium.utils.env_checker.check_env; registered as "jaxsoc/SOC-v0"
    vector_env.py     SOCVectorEnv: the joint view batched, a gymnasium.vector.VectorEnv stepping
                      every env in one jitted call, same-step autoreset
    joint.py          the joint view itself (concatenating observations, decoding a flat action)
    spaces.py         jaxsoc's spaces as Gymnasium's (the env's int32 for Discrete and MultiDiscrete)

Each needs the `adapters` extra (`pip install -e ".[adapters]"`: pettingzoo, gymnasium); importing
this package alone imports neither. See docs/tools.md.
"""
