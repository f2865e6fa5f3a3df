"""Scripted policies, and the faithful preset against the paper's published Rule-SOAR row."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc
from jaxsoc.env import defenders

from .helpers import batch_rollout, first_episodes, fresh

# Table II, Rule-SOAR (docs/reference.md §3.1): mean and std over 5 seeds (networks) of 2,000 episodes each.
PAPER = {"return": (-1238.2, 26.6), "mttd": (8.0, 0.1), "mttr": (136.9, 3.1), "fpr": (0.0514, 0.0001),
         "csr": (0.352, 0.018)}


@pytest.fixture(scope="module")
def rule_soar_v1():
    env, p = soc.make("hmarl-soc-v1")
    out = batch_rollout(env, p, soc.POLICIES["rule-soar"], 1024, 430, jax.random.key(2024))
    return first_episodes(*out[:3], per_env=2)


@pytest.mark.slow  # CI budget (10 min on 2 cores): tests/test_eval.py reproduces the Rule-SOAR row in the default run
def test_rule_soar_reproduces_table_ii(rule_soar_v1):
    """Within sampling error: ours (random networks, first 2 episodes of 1024 envs) vs the paper's mean
    of 5 networks. Tolerance = 3 x sqrt(our standard error^2 + (paper std)^2 / 5), FPR at least 0.05 pp."""
    m, n = rule_soar_v1
    assert n == 2048
    for key, (mean, sd) in PAPER.items():
        ours = m[key]
        se = ours.std() / np.sqrt(len(ours))
        tol = 3 * np.sqrt(se ** 2 + sd ** 2 / 5)
        if key == "fpr":
            tol = max(tol, 0.0005)
        assert abs(ours.mean() - mean) < tol, f"{key}: ours {ours.mean():.4f} vs paper {mean} (tol {tol:.4f})"


def test_scripted_policies_act_inside_their_spaces():
    from jaxsoc.env import leads

    for name in ("hmarl-soc-v1", "soc-v2", "soc-strategic"):
        env, p = soc.make(name)
        obs, state = env.reset(jax.random.key(0))
        for pname, policy in soc.POLICIES.items():
            if pname in leads.LEADS and not p.fix_d6_directive:
                with pytest.raises(ValueError, match="scripted leads need"):
                    leads.check_scenario(p)  # refused before anything acts
                continue
            acts = policy(jax.random.key(1), obs, state, p)
            for a in env.agents:
                assert bool(env.action_space(a).contains(acts[a])), (name, pname, a)


def test_rule_soar_uses_ground_truth_only_under_v1():
    for name in ("hmarl-soc-v1", "soc-v2"):
        env, p = soc.make(name)
        st = fresh(p)
        hidden = st.replace(hosts=st.hosts.replace(compromised=st.hosts.compromised.at[1, 1].set(True)))
        a0 = soc.POLICIES["rule-soar"](None, None, st, p)["response_orchestrator"]
        a1 = soc.POLICIES["rule-soar"](None, None, hidden, p)["response_orchestrator"]
        s = p.num_segments
        assert float(a0[:s].max()) == 0.0
        assert float(a1[0]) == (0.5 if name == "hmarl-soc-v1" else 0.0)


@pytest.mark.slow  # CI budget (10 min on 2 cores): ~30 CPU-s of compiling; the policies' space checks stay
def test_no_defender_and_constant_under_v1():
    env, p = soc.make("hmarl-soc-v1")
    for name, check in [
        # docs/reference.md §4 D4: with no defender about 5% of episodes exfiltrate, none is contained
        ("no-defender", lambda m: m["csr"].mean() == 0 and 0.03 < m["exfiltrated"].mean() < 0.08),
        # D5: the all-zero action contains nearly every attack and out-scores every published learner
        ("constant", lambda m: m["csr"].mean() > 0.93 and m["return"].mean() > 6.9),
    ]:
        out = batch_rollout(env, p, soc.POLICIES[name], 512, 410, jax.random.key(7))
        m, n = first_episodes(*out[:3], per_env=2)
        assert n == 1024 and check(m), (name, {k: float(np.nanmean(v)) for k, v in m.items()})


@pytest.mark.slow  # CI budget (10 min on 2 cores): ~35 CPU-s of statistics
def test_threefry_and_hash_generators_agree():
    """The fast counter-hash generator and jax.random give the same statistics (Rule-SOAR, v1)."""
    stats = {}
    for impl in ("hash", "threefry"):
        env, p = soc.make("hmarl-soc-v1", rng_impl=impl)
        out = batch_rollout(env, p, soc.POLICIES["rule-soar"], 512, 410, jax.random.key(11))
        stats[impl], _ = first_episodes(*out[:3], per_env=2)
    for key in ("csr", "mttr", "return", "fpr"):
        a, b = stats["hash"][key], stats["threefry"][key]
        se = np.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) < 4 * se + 1e-4, key
