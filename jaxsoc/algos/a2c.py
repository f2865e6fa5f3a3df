"""Advantage actor-critic for the SOC team: IAC and MAAC (family "a2c", config section `a2c:`).

    make_train(config, env, env_params) -> Trainer        # see jaxsoc.algos.base

Synchronous A2C (Mnih et al. 2016, with many envs instead of asynchronous workers): every
`rollout` env steps, one Adam step on the whole rollout of

    - mean(w * A * log pi(a|o)) + vf_coef * 0.5 * mean((V - R)^2) - ent_coef * mean(w * H)

where A is the GAE advantage (`gae_lambda: 0` is the one-step "empirical action value"
r + gamma V(s') - V(s) of seed 004, `1` the n-step return to the rollout's end). The rollout,
networks, action heads, masks, truncation bootstrap and metrics are PPO's (`ppo.build_trainer`);
only the loss (no ratio, no clipping) and the single full-batch step differ.

| algo | critic | what it is                                                        |
|------|--------|-------------------------------------------------------------------|
| iac  | local  | independent actor-critic: each role, own actor and own critic     |
| maac | joint  | each role, own actor; one centralised critic on all observations  |

Each role keeps its own parameters and spaces (no parameter sharing), as in seed 004. Its
hyper-parameters (2 x 64 ReLU, Adam, lr 0.05, gamma 0.99, an update every 50 steps) are the
presets `configs/{iac,maac}-seed004.yaml`; `configs/iac.yaml` and `configs/maac.yaml` are the same
at lr 3e-3, which learns on soc-v2 (docs/onpolicy.md); the defaults below are conventional A2C ones.
"""
from __future__ import annotations

from jaxsoc.algos import onpolicy
from jaxsoc.algos.base import Trainer
from jaxsoc.algos.ppo import LossConfig, build_trainer, check_section, resolve_variant

DEFAULTS = {
    "policy": "auto",            # auto | per_role | single (auto: from the algorithm, table above)
    "critic": "auto",            # auto | world | local | joint
    "rollout": 16,               # env steps per env per update
    "lr": 7.0e-4,
    "anneal_lr": False,
    "gae_lambda": 1.0,           # 1: n-step returns; 0: one-step TD advantage
    "vf_coef": 0.5,
    "ent_coef": 0.01,
    "normalize_advantages": False,
    **onpolicy.TEAM_DEFAULTS,
}
POSITIVE = ("rollout", "lr", "adam_eps", "max_grad_norm")
# Keys the update only computes with: a sweep (jaxsoc/sweep.py) trains grid points that differ
# only in these in one program (tests/test_sweepable.py traces each and checks it is used).
SWEEPABLE = ("lr", "ent_coef", "vf_coef", "max_grad_norm", "gamma", "gae_lambda", "reward_scale")


def validate(config: dict) -> None:
    check_section(config, "a2c")


def make_train(config: dict, env, env_params) -> Trainer:
    s = config["a2c"]
    policy_kind, _ = resolve_variant(config["algo"], s)
    loss_cfg = LossConfig(clip_eps=None, clip_value=False, vf_coef=s["vf_coef"], ent_coef=s["ent_coef"],
                          normalize_advantages=s["normalize_advantages"], joint_ratio=policy_kind == "single")
    return build_trainer(config, env, env_params, family="a2c", loss_cfg=loss_cfg, epochs=1, minibatches=1)
