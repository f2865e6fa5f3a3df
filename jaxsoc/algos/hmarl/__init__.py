"""The "hmarl" family: the HMARL-SOC team trained end to end, with the hierarchy actually learned.

    python train/run.py --algo hmarl --scenario soc-v2 --num-envs 4096 --num-seeds 5

Rooms (read `train.py` first: one update, top to bottom):

  * `train.py`: `make_train` -> `Trainer`; `init`, `env_step`/`collect`, `coordinator_update`,
    `tier2_round`/`learn` (on the off-policy loop's public hook `offpolicy.learn_rounds`),
    `update`, `act`, each a named function of the run's static `Parts` (`make_parts`).
  * `coordinator.py`: tier 1 and tier 3, the strategic coordinator: PPO (`ppo.weighted_head_loss`,
    `onpolicy.sgd`) on macro-transitions (`jaxsoc/algos/hierarchy.py`), deciding through the
    attention explainer; `attention_weights` for `eval/`.
  * `team.py`: tier 2, the SAC threat hunter, DQN alert triage and MADDPG response orchestrator
    conditioned on the directive in force, and one update round of all three.
  * `defaults.py`: the `hmarl:` config section (`DEFAULTS`, `validate`).

Tier 1, strategic coordinator (PPO with temporal abstraction): the env reads its directive every K
env steps (`EnvParams.directive_period`, or `hmarl.k`; the schedule is the env's
`defenders.reads_directive`); it decides on its own observation through an attention encoder over
per-segment tokens (tier 3). Its samples are macro-transitions: the directive actually executed and
its log-probability at acting time (the reference re-sampled them at update time, D15), the
reward discounted over the k steps it lasted, gamma^k bootstrapping, GAE over macro-steps, and
truncation bootstrapped.

Tier 2, updated from one shared replay (`shared_buffer`), each conditioned on the directive in
force (the SOC view shows it; with `condition_on_directive: true` it is appended on the v1
layouts, whose observations do not carry it). Each update round samples ONE batch that all three
learn from; the PER priority of an item is its learners' TD errors combined by `priority_rule`
(`mean`, as the reference, or `max`); the importance weights enter every loss (D18). With
`shared_buffer: false` each learner samples its own batches with its own priorities (the stored
transitions are the same, so one storage holds them and each learner keeps its own priority tree).

Tier 3, the attention explainer: multi-head attention (`num_heads` heads, `d_k`) inside the
coordinator's policy, over one token per network segment (`observe.segment_token_layout`), queried
by the global features, trained by the policy loss; `attention_weights(policy_params, obs, config,
env_params)` returns the weights of a batch of decisions (`[decisions, heads, segments]`).
With `coordinator.focus_head: attention` (discrete directives) the focus is read off the
explainer: P(focus = segment) is the head-mean attention on it (to the power 1 / `focus_temperature`,
normalised) and the posture comes from the MLP, so the map is where the coordinator looks
(`eval/explain.py` checks it against the ground truth).

Ablations (config switches): `train_coordinator: false` (no coordinator: a fixed directive,
`coordinator_action` on soc-v2, the all-zero directive on v1), `shared_buffer: false`, both (flat),
`k` (the K sweep), `per: false` (uniform replay).
"""
from jaxsoc.algos.hmarl.coordinator import Coordinator, CoordinatorState, attention_weights, build_coordinator
from jaxsoc.algos.hmarl.defaults import (COORDINATOR_DEFAULTS, DEFAULTS, POSITIVE, SOC_TEAM, SWEEPABLE, env_overrides,
                                         validate)
from jaxsoc.algos.hmarl.team import TIER2, Setup, Team
from jaxsoc.algos.hmarl.train import HMARLState, Parts, StepTrace, collect, make_parts, make_train

__all__ = [
    "COORDINATOR_DEFAULTS", "DEFAULTS", "POSITIVE", "SOC_TEAM", "SWEEPABLE", "TIER2", "Coordinator", "CoordinatorState", "HMARLState",
    "Parts", "Setup", "StepTrace", "Team", "attention_weights", "build_coordinator", "collect", "env_overrides",
    "make_parts", "make_train", "validate",
]
