"""Trust-region policy optimisation for the SOC team: TRPO and MATRPO (family "trpo", section `trpo:`).

    make_train(config, env, env_params) -> Trainer        # see jaxsoc.algos.base

TRPO (Schulman et al. 2015) with GAE. The rollout, networks, action heads (masked categoricals,
tanh-Gaussians with log-probs from the stored pre-tanh sample), truncation bootstrap and metrics
are PPO's (`ppo.build_trainer`); only the learning step differs. Per update and per role r, with
the role's advantages A_r (normalised) and weights w (0 where its action did not count):

    maximise  L_r(theta) = sum_t w_t pi(a_t|o_t) / pi_old(a_t|o_t) A_t / sum_t w_t
    subject to KL_r(theta) = sum_t w_t KL(pi_old(.|o_t) || pi(.|o_t)) / sum_t w_t <= max_kl

  1. g = grad L_r at theta_old; Fisher-vector products F v by forward-over-reverse autodiff of the
     mean KL (jax.jvp of jax.grad of KL_r at theta_old), plus `cg_damping * v`, on every
     k-th sample of the batch: the estimate of F needs fewer samples than the gradient, and its
     products are most of the step's cost. k = `fisher_stride`; 0 (the default) takes
     k = max(1, B // FISHER_SAMPLES), so F sees every sample of a batch under 8,192 and at least
     4,096 of a larger one, and its cost stops growing with the batch (`resolve_fisher_stride`);
  2. s = F^-1 g by `cg_iters` conjugate-gradient iterations (`lax.fori_loop`);
  3. full step beta s with beta = sqrt(2 max_kl / s^T F s) (the step the quadratic KL model
     puts on the constraint's boundary);
  4. backtracking line search (`lax.while_loop`): the first of 1, c, c^2, ... (c =
     `backtrack_coef`, at most `line_search_steps` tries) whose step improves L_r and keeps the
     exact mean KL_r <= max_kl; none: the role keeps its parameters.

The critic is fitted separately: `vf_epochs` x `vf_minibatches` Adam steps (`vf_lr`) on
`0.5 * mean((V - return)^2)`, each pass over a fresh random `vf_fraction` of the rollout
(`onpolicy.sgd`; 1: all of it).

**One trust region per role.** The roles' actors have disjoint parameters and the team's joint
policy is their product, so the joint KL is the sum of the roles' KLs and the Fisher is
block-diagonal. Each role is its own TRPO learner with its own constraint KL_r <= max_kl and its
own line search, as PPO here clips each role's own ratio (IPPO/MAPPO are independent learners
with a shared or separate critic): one role's noisy surrogate cannot veto the others' steps in a
shared line search, and a role with a small gradient keeps its full budget instead of ceding it.
It costs nothing extra: the blocks run together, in ONE conjugate-gradient loop and ONE line
search whose scalars (CG's alpha and beta, the step sizes, acceptance) are per role, and ONE
Fisher-vector product of the summed KL, whose role-r block is exactly F_r v_r.

| algo   | critic | what it is                                                      |
|--------|--------|-----------------------------------------------------------------|
| trpo   | local  | each role: own actor, own critic on its own observation (IPPO)  |
| matrpo | world  | each role: own actor; one centralised critic V(world state)     |

`policy: single` (one shared torso) is refused: its roles' parameters are not disjoint.
"""
from __future__ import annotations

from typing import Any, Dict, NamedTuple

import jax
import jax.numpy as jnp

from jaxsoc.algos import onpolicy
from jaxsoc.algos.base import Trainer
from jaxsoc.algos.ppo import Batch, Learner, build_trainer, check_section, normalise_advantages, resolve_variant

DEFAULTS = {
    "policy": "auto",            # auto | per_role (auto: per_role)
    "critic": "auto",            # auto | world | local | joint (auto: from the algorithm, table above)
    "rollout": 32,               # env steps per env per update (T)
    "max_kl": 0.01,              # trust region: mean KL(old || new) per role and update
    "cg_iters": 10,              # conjugate-gradient iterations for F^-1 g
    "cg_damping": 0.1,           # F + damping * I: CG on a well-conditioned system
    "fisher_stride": 0,          # F v on every k-th sample of the batch (1: all; 0: auto, F on >= FISHER_SAMPLES of a larger batch); the line search's KL is exact
    "line_search_steps": 10,     # backtracking tries: 1, c, c^2, ... of the full step
    "backtrack_coef": 0.5,       # c, in (0, 1)
    "vf_lr": 1.0e-3,             # critic: Adam
    "vf_epochs": 2,              # critic: passes over each rollout
    "vf_minibatches": 4,         # critic: minibatches per pass; num_envs * rollout must divide by it
    "vf_fraction": 1.0,          # critic: the share of the rollout each pass visits (a fresh subset each)
    "gae_lambda": 0.95,
    "normalize_advantages": True,  # per role over the whole rollout
    **onpolicy.TEAM_DEFAULTS,    # max_grad_norm and adam_eps: the critic's (the actors take natural steps)
}
POSITIVE = ("rollout", "max_kl", "cg_iters", "line_search_steps", "vf_lr", "vf_epochs", "vf_minibatches",
            "max_grad_norm", "adam_eps")
# Keys the update only computes with: a sweep (jaxsoc/sweep.py) trains grid points that differ
# only in these in one program (tests/test_sweepable.py traces each and checks it is used).
SWEEPABLE = ("gamma", "gae_lambda", "max_kl", "cg_damping", "backtrack_coef", "vf_lr", "max_grad_norm", "reward_scale")
# `fisher_stride: 0` puts the Fisher on at least this many samples of the batch (module docstring).
FISHER_SAMPLES = 4096


def validate(config: dict) -> None:
    """ConfigError (a ValueError) naming the first bad `trpo:` value, before anything is traced
    (the positive keys, `POSITIVE`, and integer types are checked by `jaxsoc.config`)."""
    from jaxsoc.config import ConfigError

    s = config["trpo"]
    # The family's own reason first (the shared checks would name the critic instead).
    if resolve_variant(config["algo"], s)[0] == "single":
        raise ConfigError("trpo.policy must be per_role: one trust region per role needs disjoint parameters")
    check_section(config, "trpo")
    if not 0.0 < s["backtrack_coef"] < 1.0:
        raise ConfigError(f"trpo.backtrack_coef must be in (0, 1), got {s['backtrack_coef']!r}")
    if s["cg_damping"] < 0.0:
        raise ConfigError(f"trpo.cg_damping must be >= 0, got {s['cg_damping']!r}")
    batch = config["num_envs"] * s["rollout"]
    if s["fisher_stride"] < 0:
        raise ConfigError(f"trpo.fisher_stride must be >= 0 (0: auto), got {s['fisher_stride']!r}")
    if s["fisher_stride"] > batch:
        raise ConfigError(f"trpo.fisher_stride ({s['fisher_stride']}) exceeds the batch, num_envs * trpo.rollout "
                          f"({batch}): the Fisher would see one sample")
    if batch % s["vf_minibatches"]:
        raise ConfigError(f"num_envs * trpo.rollout ({batch}) must be divisible by "
                          f"trpo.vf_minibatches ({s['vf_minibatches']})")
    onpolicy.check_pass_fraction("trpo.vf_fraction", s["vf_fraction"], batch, "trpo.vf_minibatches",
                                 s["vf_minibatches"])


def resolve_fisher_stride(config: dict) -> int:
    """The `k` of the Fisher's every-k-th sample for `config` (a resolved config): `trpo.fisher_stride`,
    or for 0 `max(1, B // FISHER_SAMPLES)` with `B = num_envs * trpo.rollout` (e.g. 4,096 envs x 32
    steps: 32; 1,024 x 32: 8; 256 x 32: 2; 128 x 32 and below: 1)."""
    stride = config["trpo"]["fisher_stride"]
    return stride if stride else max(1, config["num_envs"] * config["trpo"]["rollout"] // FISHER_SAMPLES)


class TRPOConfig(NamedTuple):
    """The actor step's hyper-parameters (the `trpo:` keys of the same names)."""

    max_kl: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 0.1
    fisher_stride: int = 1
    line_search_steps: int = 10
    backtrack_coef: float = 0.5
    normalize_advantages: bool = True


# ----------------------------------------------------------------------------- block algebra
# A "block vector" is `{block: pytree}` (here `{role: actor params}`); its inner product is one
# scalar per block, so CG and the line search run every role's system independently, together.
def block_dot(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, jax.Array]:
    """`{block: sum over the block's leaves of <a, b>}`, f32 scalars."""
    return {k: sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a[k]), jax.tree.leaves(b[k])))
            for k in a}


def block_axpy(alpha: Dict[str, jax.Array], x: Dict[str, Any], y: Dict[str, Any]) -> Dict[str, Any]:
    """`{block: alpha[block] * x[block] + y[block]}`."""
    return {k: jax.tree.map(lambda xi, yi, a=alpha[k]: a * xi + yi, x[k], y[k]) for k in x}


def conjugate_gradient(matvec, b: Dict[str, Any], iters: int) -> Dict[str, Any]:
    """`x ~= A^-1 b` by `iters` conjugate-gradient iterations from x = 0, per block.

    Args:
      matvec: `v -> A v` on block vectors, block-diagonal (block k of `A v` depends on `v[k]`
        only) and symmetric positive definite per block.
      b: `{block: pytree}` right-hand side.
      iters: a fixed count (`lax.fori_loop`); a block that has converged (residual 0) stops moving.

    Returns `{block: pytree}` shaped like `b`.
    """
    zero = {k: 0.0 for k in b}

    def body(_, carry):
        x, r, p, rr = carry
        ap = matvec(p)
        pap = block_dot(p, ap)
        # A block whose residual is already 0 would divide 0 by 0: it keeps its x.
        alpha = {k: jnp.where(pap[k] > 0, rr[k] / jnp.where(pap[k] > 0, pap[k], 1.0), 0.0) for k in b}
        x = block_axpy(alpha, p, x)
        r = block_axpy({k: -a for k, a in alpha.items()}, ap, r)
        rr_new = block_dot(r, r)
        beta = {k: jnp.where(rr[k] > 0, rr_new[k] / jnp.where(rr[k] > 0, rr[k], 1.0), 0.0) for k in b}
        p = block_axpy(beta, p, r)
        return x, r, p, rr_new

    x0 = block_axpy(zero, b, jax.tree.map(jnp.zeros_like, b))
    x, _, _, _ = jax.lax.fori_loop(0, iters, body, (x0, b, b, block_dot(b, b)))
    return x


# ----------------------------------------------------------------------------- KL and surrogate
def surrogate_and_kl(actor_params: Any, old_dists: Dict[str, Any], old_log_probs: Dict[str, jax.Array],
                     advantages: Dict[str, jax.Array], acted: onpolicy.Acted, policy: onpolicy.Policy):
    """`({role: L_r}, {role: KL_r})` of `actor_params` on a batch `[B]` (see the module docstring):
    the weighted mean of `ratio * A` and of KL(old || new), weights `acted.weights`."""
    dists = policy.dists(actor_params, acted.obs, acted.masks)
    log_probs = onpolicy.log_probs_of(dists, acted.actions)
    surrogate, kl = {}, {}
    for r in policy.roles:
        w = acted.weights[r]
        surrogate[r] = onpolicy.weighted_average(jnp.exp(log_probs[r] - old_log_probs[r]) * advantages[r], w)
        kl[r] = onpolicy.weighted_average(old_dists[r].kl_divergence(dists[r]), w)
    return surrogate, kl


def fisher_vector_product(actor_params: Any, acted: onpolicy.Acted, policy: onpolicy.Policy, damping: float):
    """`v -> F v + damping * v` at `actor_params` (per-role blocks `{role: params}`), with F the
    Hessian of the weighted mean KL(pi_at_params || pi) there: the Fisher information of the
    policy on the batch `[B]`. Forward-over-reverse: one `jax.jvp` of `jax.grad`, never F itself."""
    old = jax.lax.stop_gradient(policy.dists(actor_params, acted.obs, acted.masks))

    def mean_kl(p):
        dists = policy.dists(p, acted.obs, acted.masks)
        # Summed over roles: parameters are disjoint, so role r's block of the product is F_r v_r.
        return sum(onpolicy.weighted_average(old[r].kl_divergence(dists[r]), acted.weights[r])
                   for r in policy.roles)

    grad_kl = jax.grad(mean_kl)

    def fvp(v):
        hv = jax.jvp(grad_kl, (actor_params,), (v,))[1]
        return jax.tree.map(lambda h, x: h + damping * x, hv, v)

    return fvp


def fisher_samples(acted: onpolicy.Acted, stride: int) -> onpolicy.Acted:
    """Every `stride`-th sample of a flat batch `[B] -> [ceil(B / stride)]` (the Fisher's). A
    rollout's batch is time-major (`[T, N]` flattened), so when `stride` divides N this is whole
    trajectories of every `stride`-th env: no random draw, the same samples every update."""
    return acted if stride == 1 else jax.tree.map(lambda x: x[::stride], acted)


def natural_step(actor_params: Any, batch: Batch, policy: onpolicy.Policy, critic: onpolicy.Critic,
                 cfg: TRPOConfig):
    """One TRPO step of every role's actor on a flat `Batch` `[B]` (steps 1-4 of the module
    docstring). Returns `(new_actor_params, metrics)`: per role `kl/<role>` (the exact mean KL of
    the accepted step), `surrogate_gain/<role>` (its L_r - L_r(old)), `step_frac/<role>` (the
    accepted fraction of the full step, 0 when none passed) and `entropy/<role>` (before)."""
    acted = batch.acted
    roles = policy.roles
    old_dists = jax.lax.stop_gradient(policy.dists(actor_params, acted.obs, acted.masks))
    old_log_probs = onpolicy.log_probs_of(old_dists, acted.actions)
    advantages = {}
    for r in roles:
        adv = batch.advantages[:, critic.column(r)]
        advantages[r] = normalise_advantages(adv, acted.weights[r]) if cfg.normalize_advantages else adv

    def evaluate(p):
        return surrogate_and_kl(p, old_dists, old_log_probs, advantages, acted, policy)

    # 1-2. g = grad L, s = (F + damping I)^-1 g; role r's block of grad(sum L) is grad L_r.
    grads = jax.grad(lambda p: sum(evaluate(p)[0].values()))(actor_params)
    fvp = fisher_vector_product(actor_params, fisher_samples(acted, cfg.fisher_stride), policy, cfg.cg_damping)
    direction = conjugate_gradient(fvp, grads, cfg.cg_iters)
    # 3. beta = sqrt(2 max_kl / s^T F s): 0.5 beta^2 s^T F s = max_kl. A role without gradient
    #    (no weighted samples) gets s = 0 and no step.
    sfs = block_dot(direction, fvp(direction))
    beta = {r: jnp.where(sfs[r] > 0, jnp.sqrt(2.0 * cfg.max_kl / jnp.where(sfs[r] > 0, sfs[r], 1.0)), 0.0)
            for r in roles}
    full = {r: jax.tree.map(lambda x, b=beta[r]: b * x, direction[r]) for r in roles}
    surrogate0 = {r: onpolicy.weighted_average(advantages[r], acted.weights[r]) for r in roles}  # ratio 1

    # 4. Backtracking, every role at once: try coef^j for the roles still searching.
    def candidate(frac):
        return block_axpy(frac, full, actor_params)

    def cond(carry):
        j, found, _, _, _ = carry
        return (j < cfg.line_search_steps) & ~jnp.all(jnp.stack([found[r] for r in roles]))

    def body(carry):
        j, found, frac, gain, kl = carry
        trial = {r: jnp.where(found[r], frac[r], cfg.backtrack_coef ** j.astype(jnp.float32)) for r in roles}
        surrogate, trial_kl = evaluate(candidate(trial))
        ok = {r: ~found[r] & (surrogate[r] - surrogate0[r] > 0) & (trial_kl[r] <= cfg.max_kl) for r in roles}
        pick = lambda new, old: {r: jnp.where(ok[r], new[r], old[r]) for r in roles}  # noqa: E731
        return (j + 1, {r: found[r] | ok[r] for r in roles}, pick(trial, frac),
                pick({r: surrogate[r] - surrogate0[r] for r in roles}, gain), pick(trial_kl, kl))

    zeros = {r: jnp.zeros((), jnp.float32) for r in roles}
    init = (jnp.zeros((), jnp.int32), {r: jnp.zeros((), bool) for r in roles}, zeros, zeros, zeros)
    _, _, frac, gain, kl = jax.lax.while_loop(cond, body, init)

    entropy = onpolicy.entropies(old_dists)
    metrics: Dict[str, jax.Array] = {}
    for r in roles:
        metrics.update({f"kl/{r}": kl[r], f"surrogate_gain/{r}": gain[r], f"step_frac/{r}": frac[r],
                        f"entropy/{r}": onpolicy.weighted_average(entropy[r], acted.weights[r])})
    return candidate(frac), metrics


# ----------------------------------------------------------------------------- trainer
def make_learner(section: dict):
    """`(policy, critic) -> ppo.Learner`: the natural step on the actors and Adam on the critic."""
    cfg = TRPOConfig(max_kl=section["max_kl"], cg_iters=section["cg_iters"], cg_damping=section["cg_damping"],
                     fisher_stride=section["fisher_stride"],
                     line_search_steps=section["line_search_steps"], backtrack_coef=section["backtrack_coef"],
                     normalize_advantages=section["normalize_advantages"])

    def build(policy: onpolicy.Policy, critic: onpolicy.Critic) -> Learner:
        def optimizer(critic_params):
            return onpolicy.per_network_optimizer({"critic": critic_params}, section["vf_lr"],
                                                  section["max_grad_norm"], section["adam_eps"])

        def value_loss(p, mb):
            obs, world_state, returns = mb
            source = critic.source_kept(obs, world_state)
            loss = 0.5 * jnp.mean(jnp.square(critic.values(p["critic"], source) - returns))
            return loss, {"value_loss": loss}

        def step(key, params, opt_state, batch: Batch):
            actor, metrics = natural_step(params["actor"], batch, policy, critic, cfg)
            fitted, opt_state, value_metrics = onpolicy.sgd(
                key, {"critic": params["critic"]}, opt_state, (batch.acted.obs, batch.world_state, batch.returns),
                value_loss, optimizer(params["critic"]), section["vf_epochs"], section["vf_minibatches"],
                section["vf_fraction"])
            metrics.update(value_metrics)
            return {"actor": actor, "critic": fitted["critic"]}, opt_state, metrics

        return Learner(init=lambda params: optimizer(params["critic"]).init({"critic": params["critic"]}),
                       step=step)

    return build


def make_train(config: dict, env, env_params) -> Trainer:
    section = {**config["trpo"], "fisher_stride": resolve_fisher_stride(config)}
    return build_trainer(config, env, env_params, family="trpo", loss_cfg=None,
                         make_learner=make_learner(section))
