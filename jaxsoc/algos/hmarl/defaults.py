"""The `hmarl:` config section: its defaults (the one source of every default) and its checks."""
from __future__ import annotations

from jaxsoc.algos import offpolicy as op
from jaxsoc.algos.maddpg import AGENT_DEFAULTS as MADDPG_AGENT_DEFAULTS
from jaxsoc.algos.maddpg import validate_agent as validate_maddpg_agent
from jaxsoc.algos.sac import DEFAULTS as SAC_DEFAULTS
from jaxsoc.algos.sac import SAC_KWARGS, SAC_POSITIVE
from jaxsoc.algos.sac import validate_agent as validate_sac_agent
from jaxsoc.argtypes import is_integer

# lr 1e-3 and entropy 0.001 with the attention-tied focus head: what learns on soc-strategic (5 of 5
# seeds above the constant action, the explainer's weights far from uniform) and on soc-v2 (docs/strategic.md,
# docs/hmarl.md); the paper's 3e-4 / 0.01 left the attention within 0.001 of uniform.
COORDINATOR_DEFAULTS = {
    "lr": 1e-3,
    "clip_eps": 0.2,
    "ent_coef": 0.001,
    "vf_coef": 0.5,
    "epochs": 2,
    "minibatches": 2,
    "gae_lambda": 0.95,
    "max_grad_norm": 0.5,
    "discounting": "smdp",         # smdp: R discounted within the macro-step, gamma^k across; reference
    "bootstrap_truncation": True,  # bootstrap time-limit truncation from the terminal observation
    "encoding": "hmarl",           # v1 only: 8 choices -> directive via HMARL-SOC's get_directive, or onehot
    "attention": True,             # the tier-3 explainer in front of the policy
    "num_heads": 4,
    "d_k": 64,
    "embed_dim": 64,
    "focus_head": "auto",          # mlp: one logit per directive; attention: P(focus) is the explainer's
                                   # head-mean attention, the posture from the MLP (needs discrete
                                   # directives, D6, and the explainer); auto: attention where both are
                                   # there (soc-v2, soc-strategic), else mlp (hmarl-soc-v1: the paper's)
    "focus_temperature": 1.0,      # T, attention head only: P(focus) ~ attention ** (1 / T); 1: the map
                                   # itself (0.2 was tried: not better on fresh seeds, docs/hmarl.md)
    "capacity": 0.5,               # macro-transitions kept per update, x (num_envs * rollout / K): a
                                   # random subset when fewer than were emitted (unbiased, cheaper)
}
# The explainer's sizes (`CoordinatorActor` builds no attention without `attention`).
ATTENTION_KEYS = ("num_heads", "d_k", "embed_dim")
DEFAULTS = {
    **op.COMMON_DEFAULTS,
    "rollout": 20,                 # env steps per env per update
    "utd": 0.002,                  # tier-2 update rounds per env transition (batch 256): 41 rounds
                                   # per update of 1024 envs x 20 steps (docs/hmarl.md: what learns)
    "learning_starts": 10_000,
    "k": None,                     # directive period K; null: the scenario's (5)
    "train_coordinator": True,     # false: no coordinator (a fixed directive), the "w/o SC" ablation
    "shared_buffer": True,         # false: each tier-2 learner samples its own batches and priorities
    "condition_on_directive": "auto",  # auto: as the scenario shows it; true: append on v1 too; false
    "coordinator": dict(COORDINATOR_DEFAULTS),
    # the threat hunter; its temperature learns 10x faster than SAC's own default (docs/hmarl.md)
    "sac": {**{k: v for k, v in SAC_DEFAULTS.items() if k in SAC_KWARGS}, "alpha_lr": 3e-3},
    "dqn": dict(op.DQN_DEFAULTS),                                             # the alert triage
    "maddpg": dict(MADDPG_AGENT_DEFAULTS),  # the response orchestrator
}
# Dotted keys reach the nested sections (config.validate checks each before `validate` runs).
POSITIVE = (op.POSITIVE + tuple(f"sac.{k}" for k in SAC_POSITIVE)
            + tuple(f"coordinator.{k}" for k in ("lr", "clip_eps", "vf_coef", "capacity", "num_heads", "d_k",
                                                  "embed_dim")))
# Keys the update only computes with: a sweep (jaxsoc/sweep.py) trains grid points that differ
# only in these in one program (tests/test_sweepable.py traces each and checks it is used).
# The hierarchy is the SOC team's (a coordinator over the three tier-2 roles): SOC worlds only
# (`common.check_soc_team`).
SOC_TEAM = True
SWEEPABLE = ("gamma", "coordinator.lr", "coordinator.ent_coef", "sac.actor_lr", "sac.critic_lr", "sac.alpha_lr",
             "dqn.lr", "maddpg.actor_lr", "maddpg.critic_lr", "maddpg.noise_std")


def env_overrides(config: dict) -> dict:
    """`hmarl.k` is the env's directive period (`algos.env_overrides`): every rebuild of the run
    (evaluation, replay, the explainer) then steps the env at the K it was trained at."""
    k = (config.get("hmarl") or {}).get("k")
    return {} if k is None else {"directive_period": int(k)}


def validate(config: dict) -> None:
    from jaxsoc.config import ConfigError, check_choice, check_unit_interval, refuse_unread

    op.validate_common(config, "hmarl")
    c = config["hmarl"]
    op.validate_dqn(c["dqn"], "hmarl.dqn")
    cc = c["coordinator"]
    check_choice("hmarl.coordinator.discounting", cc["discounting"], ("smdp", "reference"))
    check_choice("hmarl.coordinator.encoding", cc["encoding"], ("hmarl", "onehot"))
    check_choice("hmarl.coordinator.focus_head", cc["focus_head"], ("auto", "mlp", "attention"))
    check_choice("hmarl.condition_on_directive", c["condition_on_directive"], ("auto", True, False))
    if c["k"] is not None and (not is_integer(c["k"]) or c["k"] < 1):  # `true` is no K
        raise ConfigError(f"hmarl.k must be a positive integer or null, got {c['k']!r}")
    period = (config.get("env") or {}).get("directive_period")
    if c["k"] is not None and period is not None and period != c["k"]:
        raise ConfigError(f"hmarl.k {c['k']} and env.directive_period {period} name two directive periods; "
                          "give one (hmarl.k sets the env's)")
    # The fixed directive of the runs without a coordinator: unread when one is trained.
    if c["train_coordinator"] and c["coordinator_action"] != DEFAULTS["coordinator_action"]:
        raise ConfigError("hmarl.coordinator_action is the fixed directive of hmarl.train_coordinator: false; "
                          "the trained coordinator chooses its own")
    # Keys nothing reads in this run: refused rather than recorded in config.yaml as if trained with.
    changed = [k for k in COORDINATOR_DEFAULTS if cc[k] != COORDINATOR_DEFAULTS[k]]
    if changed and not c["train_coordinator"]:
        refuse_unread(f"hmarl.coordinator.{changed[0]} configures the trained coordinator; "
                          "hmarl.train_coordinator: false has none, which would ignore it")
    unread = [k for k in ATTENTION_KEYS if cc[k] != COORDINATOR_DEFAULTS[k]]
    if unread and not cc["attention"]:
        refuse_unread(f"hmarl.coordinator.{unread[0]} shapes the attention explainer; "
                          "hmarl.coordinator.attention: false has an MLP policy, which would ignore it")
    for key in ("epochs", "minibatches"):
        if not is_integer(cc[key]) or cc[key] < 1:
            raise ConfigError(f"hmarl.coordinator.{key} must be a positive integer")
    if not cc["focus_temperature"] > 0:
        raise ConfigError(f"hmarl.coordinator.focus_temperature must be positive, got {cc['focus_temperature']}")
    validate_maddpg_agent(c["maddpg"], "hmarl.maddpg")
    validate_sac_agent(c["sac"], "hmarl.sac")
    check_unit_interval("hmarl.coordinator.gae_lambda", cc["gae_lambda"])
    if not cc["ent_coef"] >= 0 or not cc["max_grad_norm"] >= 0:
        raise ConfigError("hmarl.coordinator: need ent_coef >= 0 and max_grad_norm >= 0, got "
                          f"{cc['ent_coef']} and {cc['max_grad_norm']}")
