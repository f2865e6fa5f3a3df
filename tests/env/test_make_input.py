"""make(): every world refuses wrongly typed, non-finite or impossible values with a one-line
error naming the field, before anything is traced; and the SOC step checks its action dict."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsoc.env as soc

NAN = float("nan")


@pytest.mark.parametrize("scenario, overrides, message", [
    # 1. switches take True/False only: a string is truthy and would turn the switch ON
    ("hmarl-soc-v1", dict(fix_d1_hidden_truth="no"), "fix_d1_hidden_truth must be true or false, got 'no'"),
    ("soc-v2", dict(with_world_state="false"), "with_world_state must be true or false, got 'false'"),
    ("soc-v2", dict(lanes=1), "lanes must be true or false, got 1"),
    ("retail", dict(with_world_state="yes"), "with_world_state must be true or false, got 'yes'"),
    ("banking", dict(with_world_state="yes"), "with_world_state must be true or false"),
    ("cage4-like", dict(with_world_state="yes"), "with_world_state must be true or false"),
    ("cage4-like", dict(pad_spaces="yes"), "pad_spaces must be true or false, got 'yes'"),
    ("soc-hybrid", dict(with_world_state="yes"), "with_world_state must be true or false"),
    ("soc-hybrid", dict(use_scores="yes"), "use_scores must be true or false, got 'yes'"),
    # 2. numbers of the wrong type
    ("soc-v2", dict(stealth="0.5"), "stealth must be a number, got '0.5'"),
    ("soc-v2", dict(stealth=None), "stealth must be a number, got None"),
    ("soc-v2", dict(stealth=[0.5, 0.6]), r"stealth must be a number, got \[0.5, 0.6\]"),
    ("soc-v2", dict(hosts_per_segment=8.0), "hosts_per_segment must be a positive integer or a list of them, got 8.0"),
    ("soc-v2", dict(hosts_per_segment=None), "hosts_per_segment must be a positive integer or a list of them"),
    ("soc-v2", dict(hosts_per_segment=NAN), "hosts_per_segment must be a positive integer or a list of them"),
    ("soc-v2", dict(hosts_per_segment=[8, 8, 2.5, 8, 8]), r"hosts_per_segment\[2\] must be an integer, got 2.5"),
    ("soc-v2", dict(segment_values=[1, 1, "a", 1, 1]), r"segment_values\[2\] must be a number, got 'a'"),
    ("retail", dict(demand_min="0.5"), "demand_min must be a number, got '0.5'"),
    ("banking", dict(latency_target_ms="0.5"), "latency_target_ms must be a number, got '0.5'"),
    ("banking", dict(channel_names=["a", 2, "c"]), r"channel_names\[1\] must be a string, got 2"),
    ("soc-hybrid", dict(catch_reward="0.5"), "catch_reward must be a number, got '0.5'"),
    # 3. NaN, inf and non-integers in the other worlds
    ("soc-hybrid", dict(false_alarm_cost=NAN), "false_alarm_cost must be a finite number, got nan"),
    ("soc-hybrid", dict(catch_reward=NAN), "catch_reward must be a finite number"),
    ("soc-hybrid", dict(score_clip=NAN), "score_clip must be a finite number"),
    ("cage4-like", dict(restore_cost=NAN), "restore_cost must be a finite number"),
    ("cage4-like", dict(invalid_cost=float("-inf")), "invalid_cost must be a finite number"),
    ("cage4-like", dict(min_users=2.5), "min_users must be an integer, got 2.5"),
    ("cage4-like", dict(degrade_step=2.5), "degrade_step must be an integer, got 2.5"),
    ("banking", dict(latency_target_ms=NAN), "latency_target_ms must be a finite number"),
    ("banking", dict(latency_target_ms=-1), "latency_target_ms must be > 0, got -1"),
    ("cage4-like", dict(restore_cost=5), "restore_cost is a cost, added to the reward as it is"),
    ("soc-hybrid", dict(telemetry_noise=0.0), "telemetry_noise must be > 0, got 0.0"),
    ("soc-hybrid", dict(detector_scores="detectors/x"), "detector_scores is soc-v2's"),
    # 4. SOC settings that cannot work
    ("soc-v2", dict(vuln_min=0.9, vuln_max=0.1), "need vuln_min <= vuln_max, got 0.9 > 0.1"),
    ("soc-v2", dict(tp_confidence_low=0.9, tp_confidence_high=0.1), "need tp_confidence_low <= tp_confidence_high"),
    ("soc-v2", dict(phase_noise=(0.1, 0.3, -1, 0.4, 0.6)), r"phase_noise\[2\] must be >= 0, got -1"),
    ("soc-v2", dict(telemetry_noise=-1.0), "telemetry_noise must be >= 0, got -1.0"),
    ("soc-v2", dict(reentry_cooldown=-3), "reentry_cooldown must be >= 0, got -3"),
    ("soc-v2", dict(reentry_cooldown=2.5), "reentry_cooldown must be an integer, got 2.5"),
    ("soc-v2", dict(entry_segments=(0, 0)), r"entry_segments repeats a segment: \(0, 0\)"),
    ("soc-v2", dict(detector_score_roles=("coordinator_x",)),
     "detector_score_roles names unknown role 'coordinator_x' \\(did you mean 'coordinator'\\?\\)\\. Roles: "),
    ("soc-v2", dict(p_lateral=True), "p_lateral must be a number, got True"),
    # values the scenario's switches never read: the same world, silently (soc-strategic's
    # stealth 0.0 and 1.0 stepped bit for bit alike)
    ("soc-strategic", dict(stealth=0.0), "stealth is not read by scenario 'soc-strategic': each campaign draws"),
    ("soc-v2", dict(red_quiet_noise=0.3), r"red_quiet_noise is not read by scenario 'soc-v2': only a learnable red"),
    ("soc-v2", dict(red_quiet_anywhere=True), "red_quiet_anywhere is not read by scenario 'soc-v2'"),
    ("soc-v2", dict(detector_score_roles=["coordinator"]), "detector_score_roles is not read by scenario 'soc-v2'"),
    # impossible numbers (a breach that pays, a negative alert rate, a vulnerability of 5)
    ("soc-v2", dict(segment_values=[-1, 1, 1, 1, 1]), r"segment_values\[0\] must be >= 0, got -1.0"),
    ("soc-v2", dict(tp_host_alert_scale=-1.0), "tp_host_alert_scale must be >= 0, got -1.0"),
    ("soc-v2", dict(vuln_means=[5] * 5), r"vuln_means must lie in \[0, 1\], got \[5.0, 5.0"),
    ("soc-v2", dict(hunt_threshold=5.0), r"hunt_threshold must lie in \[0, 1\], got 5.0"),
    # a threshold outside [0, 1] makes a role always or never act, a stealth factor above 1 a
    # negative detection probability, a triage filter above 1 drops every alert (audit-envrules #6)
    ("soc-v2", dict(detect_stealth_factor=3.0), r"detect_stealth_factor must lie in \[0, 1\], got 3.0"),
    ("soc-v2", dict(isolate_threshold=1.5), r"isolate_threshold must lie in \[0, 1\], got 1.5"),
    ("soc-v2", dict(release_threshold=7.0), r"release_threshold must lie in \[0, 1\], got 7.0"),
    ("soc-v2", dict(false_scan_threshold=2.0), r"false_scan_threshold must lie in \[0, 1\], got 2.0"),
    ("soc-v2", dict(remediate_threshold=-3.0), r"remediate_threshold must lie in \[0, 1\], got -3.0"),
    ("soc-v2", dict(blind_isolation_threshold=-1.0), r"blind_isolation_threshold must lie in \[0, 1\], got -1.0"),
    ("soc-v2", dict(posture_triage_filter=(2, 2, 2)), r"posture_triage_filter must lie in \[0, 1\], got \[2.0, 2.0, 2.0\]"),
    ("soc-v2", dict(enrich_gain=-0.5), "enrich_gain must be >= 0, got -0.5"),
    # one generated segment: the entry is the high-value one, with no edges (audit-envrules #10)
    ("soc-v2", dict(num_segments=1), "num_segments=1: a generated network needs at least 2 segments"),
    ("soc-v2", dict(name=5), "name must be a string, got 5"),
    ("soc-v2", dict(queue_capacity=10**8), "queue_capacity is too large: a size of 100000000 needs"),
    ("soc-v2", dict(max_steps=2**31), r"max_steps must fit in int32 \(\|max_steps\| <= 2147483647\), got 2147483648"),
    # 5. unknown names, with the suggestions config.resolve gives
    ("SOC-V2", {}, r"unknown scenario 'SOC-V2' \(did you mean 'soc-v2'\?\)\. Known"),
    ("Retail", {}, r"\(did you mean 'retail'\?\)\. Known scenarios: banking, cage4-like, .*soc-hybrid"),
    ("soc-v2", dict(hosts=8), r"unknown env parameter 'hosts' for scenario 'soc-v2' \(did you mean 'hosts_per_segment'\?\)$"),
])
def test_bad_input_is_refused_with_a_named_one_line_error(scenario, overrides, message):
    with pytest.raises(ValueError, match=message) as err:
        soc.make(scenario, **overrides)
    assert "\n" not in str(err.value)


def test_valid_values_of_every_type_still_build_the_same_params():
    _, p = soc.make("soc-v2", fix_d1_hidden_truth=np.bool_(True), stealth=np.float32(0.5), max_steps=np.int64(50),
                    hosts_per_segment=np.int64(8), segment_values=np.ones(5), reentry_cooldown=0, p_lateral=1)
    assert p.hosts_per_segment == (8,) * 5 and p.segment_values == (1.0,) * 5 and p.stealth == 0.5
    _, q = soc.make("hmarl-soc-v1", fix_d1_hidden_truth=True, entry_segments=[0, 1], hosts_per_segment=[3, 4, 5, 6, 7])
    assert q.fix_d1_hidden_truth is True and q.entry_segments == (0, 1) and q.num_hosts == 25
    for name in soc.scenario_names():
        soc.make(name)
    _, c = soc.make("cage4-like", pad_spaces=True, restore_cost=-2, min_users=4)
    assert c.pad_spaces and c.restore_cost == -2
    _, b = soc.make("banking", throughput=[1, 2, 3], latency_target_ms=50)
    assert b.throughput == (1, 2, 3) and b.latency_target_ms == 50


@pytest.fixture(scope="module")
def small():
    env, p = soc.make("soc-v2", hosts_per_segment=4, max_steps=20)
    _, state = env.reset(jax.random.key(0), p)
    return env, p, state


@pytest.mark.parametrize("change, message", [
    (lambda a: {**a, "red": jnp.int32(0)}, "unknown agent 'red' in actions \\(agents: coordinator, threat_hunter"),
    (lambda a: {**a, "aler_triage": jnp.int32(0)}, "unknown agent 'aler_triage' in actions \\(did you mean 'alert_triage'\\?\\) \\(agents: "),
    (lambda a: {k: v for k, v in a.items() if k != "alert_triage"}, "actions is missing 'alert_triage'"),
    (lambda a: {**a, "response_orchestrator": jnp.zeros(3)},
     r"actions\['response_orchestrator'\] has shape \(3,\), expected \(15,\)"),
])
def test_step_checks_the_action_dict(small, change, message):
    env, p, state = small
    with pytest.raises(ValueError, match=message):
        env.step(jax.random.key(1), state, change(env.idle_actions(p)), p)
    with pytest.raises(ValueError, match=message):
        env.step_env(jax.random.key(1), state, change(env.idle_actions(p)), p)


def test_valid_actions_step_as_before_under_jit_and_vmap(small):
    env, p, state = small
    actions = env.idle_actions(p)
    one = env.step(jax.random.key(1), state, actions, p)
    many = jax.vmap(env.step, in_axes=(0, None, None, None))(jnp.stack([jax.random.key(1)] * 2), state, actions, p)
    for x, y in zip(jax.tree.leaves(one), jax.tree.leaves(many)):
        np.testing.assert_array_equal(x, y[0])


# ---- numbers as numpy and JAX give them; registrations; params and states of another env ----

@pytest.mark.parametrize("scenario, overrides, message", [
    # A numpy or JAX number is range-checked as a Python one (np.float32 is no Python float).
    ("soc-v2", dict(stealth=np.float32(1.5)), r"stealth is a probability and must lie in \[0, 1\], got 1.5$"),
    ("soc-v2", dict(fp_alert_rate=np.float32(7.0)), r"fp_alert_rate is a probability and must lie in \[0, 1\], got 7.0$"),
    ("soc-v2", dict(stealth=np.int64(5)), r"stealth is a probability and must lie in \[0, 1\], got 5.0$"),
    ("soc-v2", dict(vuln_std=np.float16(2.0)), r"vuln_std must lie in \[0, 1\], got 2.0$"),
    ("soc-v2", dict(stealth=jnp.asarray(5.0)), r"stealth is a probability and must lie in \[0, 1\], got 5.0$"),
    ("soc-v2", dict(stealth=jnp.asarray(jnp.inf)), "stealth must be a finite number, got inf$"),
    ("cage4-like", dict(name="x"), r"name is the scenario's \('cage4-like'\) and is not a parameter to override$"),
    ("soc-v2", dict(segment_names=["dmz", "corp", "dmz", "ot", "corp"]),
     "segment_names repeats 'corp', 'dmz': each segment needs its own name$"),
])
def test_numpy_and_jax_numbers_are_checked_as_python_ones(scenario, overrides, message):
    with pytest.raises(ValueError, match=message) as err:
        soc.make(scenario, **overrides)
    assert "\n" not in str(err.value)


def test_a_numpy_or_jax_scalar_is_its_python_number_and_the_env_builds():
    for value in (np.float32(0.25), np.asarray(0.25), jnp.float32(0.25), jnp.asarray(0.25)):
        env, p = soc.make("soc-v2", hosts_per_segment=4, max_steps=5, stealth=value)
        assert type(p.stealth) is float and p.stealth == 0.25  # hashable static params, one type per field
        env.reset(jax.random.key(0), p)


def test_a_jax_array_is_taken_as_the_numpy_array_it_holds():
    """`segment_values=jnp.ones(5)` failed in jit's hashing of the env ("Non-hashable static
    arguments"), and a 0-d `hosts_per_segment` as "must be a list": both build as numpy's do."""
    for hps, values in ((jnp.asarray(4), jnp.ones(5)), (jnp.asarray([4] * 5), jnp.asarray([1.0, 2, 3, 4, 5]))):
        env, p = soc.make("soc-v2", hosts_per_segment=hps, segment_values=values, max_steps=5)
        want, _ = soc.make("soc-v2", hosts_per_segment=np.asarray(hps), segment_values=np.asarray(values), max_steps=5)
        assert p == want.default_params and p.hosts_per_segment == (4,) * 5
        env.reset(jax.random.key(0), p)
    with pytest.raises(ValueError, match=r"^stealth must be a number, got \(0.5, "):  # one line, as numpy's
        soc.make("soc-v2", stealth=jnp.asarray([0.5, 0.6]))


@pytest.mark.parametrize("scenario", [["soc-v2"], None, 3, {"soc-v2": 1}])
def test_make_refuses_a_scenario_that_is_no_name(scenario):
    with pytest.raises(ValueError, match=r"^scenario must be a name or a \.yaml file's path, got "):
        soc.make(scenario)


@pytest.fixture
def registries(monkeypatch):
    """A copy of both registries for the test, so its registrations leave the process's as they were."""
    from jaxsoc.env import params as params_module

    monkeypatch.setattr(params_module, "_PRESETS", dict(params_module._PRESETS))
    monkeypatch.setattr(soc, "ENV_MODULES", dict(soc.ENV_MODULES))


@pytest.mark.parametrize("register, message", [
    (lambda: soc.register(123, lambda: soc.build_params("soc-v2")), "a preset's name must be a non-empty string, got 123"),
    (lambda: soc.register("", lambda: soc.build_params("soc-v2")), "a preset's name must be a non-empty string"),
    (lambda: soc.register("x.yaml", lambda: soc.build_params("soc-v2")), "is read as a scenario file's path"),
    (lambda: soc.register("nc", 5), "preset 'nc': the factory must be a function returning EnvParams, got int"),
    (lambda: soc.register("d", lambda: {}), "preset 'd': its factory returned dict, not EnvParams"),
    (lambda: soc.register("retail", lambda: soc.build_params("soc-v2")), "'retail' is a world of ENV_MODULES"),
    (lambda: soc.register_env("soc-v2", "jaxsoc.demos.retail"), "'soc-v2' is a SOC preset"),
    (lambda: soc.register_env("w", "no.such.module"), "scenario 'w': no module 'no.such.module' to import"),
    (lambda: soc.register_env("w", 5), "scenario 'w': no module 5 to import"),
    (lambda: soc.register_env(7, "jaxsoc.demos.retail"), "a scenario's name must be a non-empty string, got 7"),
    # what no make could build: listed by scenario_names, failing at every make
    (lambda: soc.register("neg", lambda: soc.build_params("soc-v2").replace(max_steps=-3)),
     "preset 'neg': max_steps must be a positive integer, got -3"),
])
def test_a_bad_registration_is_refused_and_changes_nothing(registries, register, message):
    before = soc.scenario_names()
    with pytest.raises(ValueError, match=message) as err:
        register()
    assert "\n" not in str(err.value)
    assert soc.scenario_names() == before
    assert soc.make("soc-v2")[1].name == "soc-v2"  # a bad name left in the registry broke every make


def test_a_registered_module_without_make_is_refused_at_make_in_one_line(registries):
    soc.register_env("w", "json")  # imported when make asks: a module may register itself first
    with pytest.raises(ValueError, match=r"^scenario 'w': module 'json' has no make\(\*\*overrides\)"):
        soc.make("w")


def test_a_registered_preset_is_named_by_its_registration(registries):
    soc.register("my-preset", lambda: soc.build_params("soc-v2", stealth=0.9))
    env, p = soc.make("my-preset")
    assert env.name == p.name == "my-preset" and p.stealth == 0.9
    soc.register_env("my-world", "jaxsoc.demos.retail")
    assert "my-world" in soc.scenario_names() and soc.make("my-world")[0].name == "retail"


@pytest.fixture(scope="module")
def v2():
    env, p = soc.make("soc-v2", hosts_per_segment=4, max_steps=20)
    _, state = env.reset(jax.random.key(0), p)
    return env, p, state


@pytest.mark.parametrize("call, message", [
    (lambda env, p, s, a: env.reset(jax.random.key(0), soc.make("hmarl-soc-v1")[1]),
     r"^params of 'hmarl-soc-v1' do not fit this env of 'soc-v2': their actions differ"),
    (lambda env, p, s, a: env.step(jax.random.key(0), s, a, p.replace(hosts_per_segment=(8,) * 5)),
     r"^params of 'soc-v2' do not fit this env of 'soc-v2': state\.hosts\.vuln would have shape \(5, 8\), not \(5, 4\)"),
    (lambda env, p, s, a: env.get_obs(s, soc.make("soc-strategic", hosts_per_segment=4)[1]),
     r"^params of 'soc-strategic' do not fit this env of 'soc-v2'"),
    (lambda env, p, s, a: env.step(jax.random.key(0), jax.tree.map(lambda x: jnp.stack([x, x, x]), s), a, p),
     r"^state\.t has shape \(3,\), one env's is \(\): a batch of states steps under jax\.vmap"),
    (lambda env, p, s, a: env.get_world_state(jax.tree.map(lambda x: jnp.stack([x, x]), s), p),
     r"^state\.t has shape \(2,\), one env's is \(\)"),
    (lambda env, p, s, a: env.step_env(jax.random.key(0), soc.make("soc-v2", hosts_per_segment=8)[0].reset(
        jax.random.key(0))[1], a, p), r"^state\.hosts\.vuln has shape \(5, 8\), this env's is \(5, 4\): the state is another"),
    (lambda env, p, s, a: env.step(jax.random.key(0), {"t": 0}, a, p), "^state must be this env's EnvState"),
    (lambda env, p, s, a: env.step(jax.random.key(0), s, {**a, "alert_triage": None}, p),
     r"^actions\['alert_triage'\] is None: give every agent an action"),
    (lambda env, p, s, a: env.step(jax.random.key(0), s, {**a, "coordinator": jnp.eye(15, dtype=jnp.int32)[7]}, p),
     r"^actions\['coordinator'\] has shape \(15,\): the coordinator picks one of 15 directives by index"),
])
def test_params_states_and_actions_of_another_shape_are_refused_in_one_line(v2, call, message):
    env, p, state = v2
    with pytest.raises(ValueError, match=message) as err:
        call(env, p, state, env.idle_actions(p))
    assert "\n" not in str(err.value)


def test_what_still_fits_steps_as_before(v2):
    """Numeric fields may differ (also traced, as a task mixture's), a static one that keeps the
    shapes too (with_world_state); a list of numbers is the array of them; a size-1 directive is
    the index it holds."""
    env, p, state = v2
    key, actions = jax.random.key(1), env.idle_actions(p)
    env.step(key, state, actions, p.replace(stealth=0.3, with_world_state=True))
    rewards = jax.vmap(lambda s: env.step(key, state, actions, p.replace(stealth=s))[2]["coordinator"])(
        jnp.asarray([0.1, 0.9]))
    assert rewards.shape == (2,)
    hunt = jnp.linspace(-1.0, 1.0, actions["threat_hunter"].size)
    as_list = env.step(key, state, {**actions, "threat_hunter": [float(x) for x in hunt]}, p)
    as_array = env.step(key, state, {**actions, "threat_hunter": hunt}, p)
    for x, y in zip(jax.tree.leaves(as_list), jax.tree.leaves(as_array)):
        np.testing.assert_array_equal(x, y)
    one = env.step(key, state, {**actions, "coordinator": jnp.asarray([7], jnp.int32)}, p)
    scalar = env.step(key, state, {**actions, "coordinator": jnp.int32(7)}, p)
    np.testing.assert_array_equal(one[1].focus, scalar[1].focus)
