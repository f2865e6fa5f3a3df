"""Off-policy learner throughput: update rounds per second and training env-steps per second.

    python eval/bench_offpolicy.py                              # everything below, 3x256 networks
    python eval/bench_offpolicy.py --hidden 256 256 --skip-train  # the reference code's 2x256 MLPs
    python eval/bench_offpolicy.py --algos sac maddpg --envs 4096 --train-updates 3
    python eval/bench_offpolicy.py --reference ~/HMARL-SOC-journal/code --skip-train  # + the original

Three measurements, each the best of `--repeats` calls of a jitted `lax.scan` (the machine is
shared: contention only ever adds time, so the minimum is the estimate):

1. HMARL round (`hmarl_round`): what the reference's train_fast does per update round, at its
   sizes (hmarl-soc-v1 observations and actions, PER capacity 200K, full, batch 256): sample 256
   from the PER buffer, SAC threat-hunter update, DQN alert-triage update, MADDPG
   response-orchestrator update (centralised critic over the 4 observations and 4 actions), one
   priority update from the mean of the three TD errors. The original PyTorch code needs about
   `REFERENCE_MS` = 34 ms per round on the dev CPU; the ratio is printed. With `--reference PATH`
   (the original repository's `code/` folder, and PyTorch installed) `reference_round` times the
   original round itself in the same run, on the same machine: its own agents built from its
   configs/default.yaml, its `PrioritizedReplayBuffer` holding `--capacity` transitions, and the
   statements of train_fast.py's update loop (sample, TH SAC, AT DQN, RO MADDPG on the
   concatenated observations and actions, priorities from the mean |TD|); the ratio is then taken
   to that measurement.
2. Per algorithm (`algorithm_round`): one update round of each registered off-policy trainer's
   own team (its roles, networks, mixer, buffer type from configs/<algo>.yaml) at batch
   `--batch` and `--hidden` widths, on a full buffer of `--capacity` transitions.
3. Training (`train_throughput`): env-steps/s of `Trainer.update` (collection + the configured
   update-to-data ratio of gradient rounds) at `--envs` envs, one seed, and of the collection
   alone (utd so small that one round runs per update).

GFLOP per round comes from XLA's cost analysis of the compiled round; achieved GFLOP/s shows how
close to the machine's matmul throughput a number is. The load average is printed next to every
number (2-core dev machine shared with other jobs).

As a library: `hmarl_round(...)`, `algorithm_round(algo, ...)`, `train_throughput(algo, ...)`
each return a dict; `main(argv)` prints the tables.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # uninstalled checkout
from jaxsoc import algos, buffers, cli, config as config_lib  # noqa: E402
from jaxsoc.names import repeated  # noqa: E402
from jaxsoc.algos import offpolicy as op  # noqa: E402
from jaxsoc.algos.dqn import DQN  # noqa: E402
from jaxsoc.algos.maddpg import MADDPG  # noqa: E402
from jaxsoc.algos.sac import SAC  # noqa: E402
from jaxsoc.env.params import AGENTS  # noqa: E402
from jaxsoc.host import cpu_description  # noqa: E402

REFERENCE_MS = 34.0  # the original PyTorch SAC + DQN + MADDPG + PER round on the dev CPU (the issue)
REFERENCE_SIZES = {"batch": 256, "capacity": 200_000}  # what REFERENCE_MS was measured at: no ratio at others
OFFPOLICY = ("dqn", "iql", "vdn", "qmix", "sac", "maddpg")
ROLES = AGENTS  # the SOC's four roles


def load() -> float:
    return os.getloadavg()[0]


def timed(fn, carry, reps: int, repeats: int = 5):
    """Seconds per rep of `(carry, key) -> carry` scanned `reps` times: the best of `repeats` calls.
    Returns `(seconds, carry, compile_seconds)`."""
    run = jax.jit(lambda c, k: jax.lax.scan(lambda c, k: (fn(c, k), None), c, jax.random.split(k, reps))[0],
                  donate_argnums=0)
    t0 = time.perf_counter()
    carry = jax.block_until_ready(run(carry, jax.random.key(0)))
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for i in range(repeats):
        t0 = time.perf_counter()
        carry = jax.block_until_ready(run(carry, jax.random.key(i + 1)))
        best = min(best, (time.perf_counter() - t0) / reps)
    return best, carry, compile_s


def gflop(fn, carry) -> float:
    """XLA's flop count of one `fn(carry, key)`, in GFLOP (0 if unavailable)."""
    try:
        cost = jax.jit(fn).lower(carry, jax.random.key(0)).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost.get("flops", 0.0)) / 1e9
    except Exception:  # noqa: BLE001 - a missing cost model must not stop the benchmark
        return 0.0


def random_fill(buffer, example, key, chunk: int = 10_000):
    """Fills `buffer` to capacity with random items (random priorities if prioritized)."""
    capacity = buffers.replay_of(buffer).capacity
    chunk = min(chunk, capacity)  # one add may not exceed the buffer (a --capacity under 10,000)

    @jax.jit
    def add(buffer, key):
        leaves, treedef = jax.tree.flatten(example)
        keys = jax.random.split(key, len(leaves) + 1)
        items = []
        for k, s in zip(keys, leaves):
            if jnp.issubdtype(s.dtype, jnp.integer):
                items.append(jax.random.randint(k, (chunk,) + s.shape, 0, 4, s.dtype))
            else:
                items.append(jax.random.uniform(k, (chunk,) + s.shape, s.dtype, -1.0, 1.0))
        items = treedef.unflatten(items)
        if isinstance(buffer, buffers.PrioritizedState):
            return buffers.add(buffer, items, jax.random.uniform(keys[-1], (chunk,)) + 0.1)
        return buffers.add(buffer, items)

    for i in range(-(-capacity // chunk)):
        buffer = add(buffer, jax.random.fold_in(key, i))
    return buffer


# ----------------------------------------------------------------------------- 1. HMARL round
def hmarl_round(hidden: Sequence[int] = (256, 256, 256), batch: int = 256, capacity: int = 200_000,
                reps: int = 20, repeats: int = 5, obs_dtype: str = "float32") -> dict:
    """Times the reference's update round (module docstring) with the jaxsoc agents."""
    import jaxsoc.env as soc

    env, _ = soc.make("hmarl-soc-v1")
    hidden = tuple(hidden)
    obs = {r: int(env.observation_space(r).shape[0]) for r in ROLES}  # 64, 128, 64, 96
    th = SAC(obs["threat_hunter"], 16, hidden)
    at = DQN(obs["alert_triage"], 4, hidden)
    # RO critic: 4 observations (352) and the other actions: directive 8, TH 16, AT one-hot 4.
    ro = MADDPG(obs["response_orchestrator"], 12, sum(obs.values()), 8 + 16 + 4, hidden)
    f32 = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32)  # noqa: E731
    example = {"obs": {r: f32(d) for r, d in obs.items()}, "next_obs": {r: f32(d) for r, d in obs.items()},
               "action": {"coordinator": f32(8), "threat_hunter": f32(16),
                          "alert_triage": jax.ShapeDtypeStruct((), jnp.int32), "response_orchestrator": f32(12)},
               "reward": f32(), "discount": f32()}
    buffer = buffers.init_prioritized(example, capacity, obs_dtype=op.OBS_DTYPES[obs_dtype])
    buffer = random_fill(buffer, example, jax.random.key(1))
    keys = jax.random.split(jax.random.key(2), 3)
    agents = (th.init(keys[0]), at.init(keys[1]), ro.init(keys[2]))

    def one_round(carry, key):
        (s_th, s_at, s_ro), buffer = carry
        k_sample, k_th, k_next = jax.random.split(key, 3)
        buffer, b, w, idx = op.sample_batch(buffer, k_sample, batch)
        view = lambda r: {"obs": b["obs"][r], "next_obs": b["next_obs"][r], "action": b["action"][r],  # noqa: E731
                          "reward": b["reward"], "discount": b["discount"]}
        new_th, td_th, _ = th.update(s_th, view("threat_hunter"), w, k_th)
        new_at, td_at, _ = at.update(s_at, view("alert_triage"), w)
        a = b["action"]
        others = jnp.concatenate([a["coordinator"], a["threat_hunter"], jax.nn.one_hot(a["alert_triage"], 4)], -1)
        # Target-policy actions of the others at s' (the directive is held between SC decisions).
        next_th = th.act(s_th, b["next_obs"]["threat_hunter"], k_next, greedy=True)
        next_at = jnp.argmax(at.q_values(s_at.target_params, b["next_obs"]["alert_triage"]), -1)
        next_others = jnp.concatenate([a["coordinator"], next_th, jax.nn.one_hot(next_at, 4)], -1)
        ro_batch = dict(view("response_orchestrator"),
                        critic_obs=jnp.concatenate([b["obs"][r] for r in ROLES], -1),
                        next_critic_obs=jnp.concatenate([b["next_obs"][r] for r in ROLES], -1),
                        others_action=others, next_others_action=next_others)
        new_ro, td_ro, _ = ro.update(s_ro, ro_batch, w)
        buffer = buffers.update_priorities(buffer, idx, buffers.combine_td_errors([td_th, td_at, td_ro]))
        return (new_th, new_at, new_ro), buffer

    flops = gflop(one_round, (agents, buffer))
    before = load()
    seconds, _, compile_s = timed(one_round, (agents, buffer), reps, repeats)
    return {"name": "SAC+DQN+MADDPG+PER", "hidden": list(hidden), "batch": batch, "capacity": capacity,
            "ms": seconds * 1e3, "rounds_per_s": 1.0 / seconds, "gflop": flops,
            "gflops": flops / seconds,
            "ratio_to_reference": (REFERENCE_MS / (seconds * 1e3)
                                   if {"batch": batch, "capacity": capacity} == REFERENCE_SIZES else None),
            "compile_s": compile_s, "load": (before, load())}


def reference_round(path: str, batch: int = 256, capacity: int = 200_000, reps: int = 20,
                    repeats: int = 5, pool: int = 4096) -> dict:
    """Times the original PyTorch update round (module docstring) by importing its code from `path`.

    The buffer holds `capacity` references to `pool` distinct random transitions (the round's cost
    does not depend on the values: sampling is O(capacity) over the priority array, collation copies
    the sampled items) with random priorities, so filling 200K takes seconds, not minutes.
    """
    import importlib

    import yaml

    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(os.path.join(path, "hmarl_soc", "core", "replay_buffer.py")):
        raise SystemExit(f"--reference {path}: not the original HMARL-SOC code/ folder "
                         "(no hmarl_soc/core/replay_buffer.py)")
    try:
        import torch
    except ImportError as e:  # the comparison needs the original's own framework
        raise SystemExit(f"--reference needs PyTorch in this environment ({e})") from None
    sys.path.insert(0, path)
    agents = importlib.import_module("hmarl_soc.agents")
    per = importlib.import_module("hmarl_soc.core.replay_buffer")
    with open(os.path.join(path, "configs", "default.yaml")) as f:
        cfg = yaml.safe_load(f)
    a, gamma, cpu = cfg["agents"], cfg["training"]["gamma"], torch.device("cpu")
    th_c, at_c, ro_c = a["threat_hunter"], a["alert_triage"], a["response_orchestrator"]
    th = agents.ThreatHunter(obs_dim=th_c["obs_dim"], action_dim=th_c["action_dim"], hidden_dim=th_c["hidden_dim"],
                             lr=th_c["lr"], gamma=gamma, alpha=th_c["alpha"], tau=th_c["tau"], device=cpu)
    at = agents.AlertTriage(obs_dim=at_c["obs_dim"], num_actions=at_c["num_actions"], hidden_dim=at_c["hidden_dim"],
                            lr=at_c["lr"], gamma=gamma, eps_decay=at_c["eps_decay"],
                            target_update=at_c["target_update"], device=cpu)
    ro = agents.ResponseOrchestrator(obs_dim=ro_c["obs_dim"], action_dim=ro_c["action_dim"],
                                     hidden_dim=ro_c["hidden_dim"], lr_actor=ro_c["lr_actor"],
                                     lr_critic=ro_c["lr_critic"], gamma=gamma, tau=ro_c["tau"], device=cpu)
    rng = np.random.default_rng(0)
    dims = {"sc": a["strategic_coordinator"]["obs_dim"], "th": th_c["obs_dim"], "at": at_c["obs_dim"],
            "ro": ro_c["obs_dim"]}
    acts = {"sc": 8, "th": th_c["action_dim"], "ro": ro_c["action_dim"]}

    def transition():
        t = {f"{p}obs_{r}": rng.normal(size=d).astype(np.float32) for r, d in dims.items() for p in ("", "next_")}
        t.update({f"act_{r}": rng.uniform(-1, 1, n).astype(np.float32) for r, n in acts.items()})
        t["act_at"] = np.array([rng.integers(at_c["num_actions"])])
        t["reward"], t["done"] = float(rng.normal()), float(rng.random() < 0.005)
        return t

    items = [transition() for _ in range(pool)]
    buffer = per.PrioritizedReplayBuffer(capacity=capacity)
    for i, p in enumerate(rng.uniform(0.1, 1.1, capacity)):
        buffer.push(items[i % pool], float(p))

    def one_round():  # train_fast.py's shared-buffer update round, statement for statement
        b, indices, weights = buffer.sample(batch, cpu)
        th_info = th.update(b, weights)
        at_info = at.update(b, weights)
        all_obs = torch.cat([b["obs_sc"], b["obs_th"], b["obs_at"], b["obs_ro"]], dim=-1)
        all_actions = torch.cat([b["act_sc"], b["act_th"], b["act_at"], b["act_ro"]], dim=-1)
        all_next_obs = torch.cat([b["next_obs_sc"], b["next_obs_th"], b["next_obs_at"], b["next_obs_ro"]], dim=-1)
        ro_info = ro.update(b, all_obs, all_actions, all_next_obs, weights)
        td = (np.abs(th_info["td_errors"]) + np.abs(at_info["td_errors"]) + np.abs(ro_info["td_errors"])) / 3
        buffer.update_priorities(indices, td)

    for _ in range(3):
        one_round()  # warm-up (allocator, lazy init)
    before = load()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(reps):
            one_round()
        best = min(best, (time.perf_counter() - t0) / reps)
    # Its MLPs ignore the YAML's num_layers (2 hidden layers of hidden_dim): read them off the critic.
    hidden = [m.out_features for m in th.critic.q1.modules() if isinstance(m, torch.nn.Linear)][:-1]
    return {"name": "original PyTorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
            "hidden": hidden, "batch": batch, "capacity": capacity, "ms": best * 1e3,
            "rounds_per_s": 1.0 / best, "load": (before, load())}


# ----------------------------------------------------------------------------- 2. per algorithm
def bench_config(algo: str, num_envs: int, hidden=None, batch=None, capacity=None, sets: Sequence[str] = (),
                 **section) -> dict:
    """The resolved config of `algo` (configs/<algo>.yaml) with benchmark overrides; `sets` are
    `--set` strings (`dqn.per=false`, `env.max_steps=50`), applied last."""
    family = algos.family_of(algo)
    sec = dict(section)
    if hidden is not None:
        sec["hidden_sizes"] = list(hidden)
    if batch is not None:
        sec["batch_size"] = batch
    if capacity is not None:
        sec["buffer_size"] = capacity
    flags = {"algo": algo, "num_envs": num_envs, "run": {"progress": False}, family: sec}
    return config_lib.resolve(flags=flags, sets=sets)


def round_setup(algo: str, hidden=None, batch=None, capacity=None, scenario: str = "hmarl-soc-v1",
                sets: Sequence[str] = ()) -> tuple:
    """`(cfg, env)` of `algo`'s update round: its config at the round's 1,024 envs with `sets`,
    on `scenario` (ConfigError where either cannot be built). `eval/bench_train.py` checks the
    same before any timing."""
    from jaxsoc import engine

    cfg = bench_config(algo, 1024, hidden, batch, capacity, sets=sets)
    cfg["scenario"] = scenario
    env, _ = engine.make_env_checked(cfg)
    return cfg, env


def algorithm_round(algo: str, hidden: Sequence[int] = (256, 256, 256), batch: int = 256,
                    capacity: int = 200_000, scenario: str = "hmarl-soc-v1", reps: int = 20,
                    repeats: int = 5, sets: Sequence[str] = ()) -> dict:
    """Times one update round (sample, the team's update, priorities) of `algo`'s own team;
    `sets` are config overrides of its family's section and of the env (`env.*`)."""
    cfg, env = round_setup(algo, hidden, batch, capacity, scenario, sets)
    family = algos.family_of(algo)
    module = algos.family_module(algo)
    if getattr(module, "SOC_TEAM", False):  # the check algos.make_train runs, as make_team is called directly
        op.common.check_soc_team(algo, scenario, env)
    team = module.make_team(cfg, env)
    if team.world_state:
        env = op.common.with_world_state(env)
    example = team.example_transition(env)
    buffer = random_fill(op.init_buffer(cfg[family], example), example, jax.random.key(1))
    agents = team.init(jax.random.key(2))

    def one_round(carry, key):
        agents, buffer = carry
        agents, buffer, _ = op.learn_round(team, agents, buffer, key, batch)
        return agents, buffer

    flops = gflop(one_round, (agents, buffer))
    before = load()
    seconds, _, compile_s = timed(one_round, (agents, buffer), reps, repeats)
    return {"name": algo, "roles": "+".join(op.ROLE_ABBREV.get(r, r) for r in team.controlled),
            "per": bool(cfg[family]["per"]), "hidden": list(hidden), "batch": batch, "ms": seconds * 1e3,
            "rounds_per_s": 1.0 / seconds, "gflop": flops, "gflops": flops / seconds,
            "compile_s": compile_s, "load": (before, load())}


# ----------------------------------------------------------------------------- 3. training
def train_throughput(algo: str, num_envs: int = 4096, hidden: Sequence[int] = (256, 256, 256),
                     scenario: str = "hmarl-soc-v1", updates: int = 3, utd: float | None = None,
                     collect_only: bool = False) -> dict:
    """env-steps/s of `Trainer.update` (jitted, one seed) after one warm-up update.

    `collect_only`: utd so small that a single gradient round runs per update, i.e. the cost of
    acting, stepping the env and writing the buffer.
    """
    import jaxsoc.env as soc

    family = algos.family_of(algo)
    section = {}
    if collect_only:
        section["utd"] = 1.0 / num_envs
    elif utd is not None:
        section["utd"] = utd
    cfg = bench_config(algo, num_envs, hidden, **section)
    cfg["scenario"] = scenario
    env, params = soc.make(scenario)
    trainer = algos.make_train(cfg, env, params)
    rounds = op.rounds_per_update(cfg, cfg[family])
    state = jax.jit(trainer.init)(jax.random.key(0))
    update = jax.jit(trainer.update, donate_argnums=0)
    t0 = time.perf_counter()
    state, metrics = jax.block_until_ready(update(state))  # compile + warm-up
    compile_s = time.perf_counter() - t0
    while int(metrics["grad_steps"]) == 0:  # until the buffer holds learning_starts transitions
        state, metrics = update(state)
    before = load()
    best = float("inf")
    for _ in range(updates):
        t0 = time.perf_counter()
        state, metrics = jax.block_until_ready(update(state))
        best = min(best, time.perf_counter() - t0)
    return {"name": algo, "envs": num_envs, "utd": cfg[family]["utd"], "rounds_per_update": rounds,
            "batch": cfg[family]["batch_size"], "steps_per_s": trainer.env_steps_per_update / best,
            "s_per_update": best, "compile_s": compile_s, "collect_only": collect_only, "load": (before, load())}


# ----------------------------------------------------------------------------- CLI
def _parse(argv):
    ap = cli.Parser(prog="eval/bench_offpolicy.py", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", nargs="+", type=cli.parse_positive_int, default=[256, 256, 256])
    ap.add_argument("--batch", type=cli.parse_positive_int, default=256)
    ap.add_argument("--capacity", type=cli.parse_positive_int, default=200_000)
    ap.add_argument("--reps", type=cli.parse_positive_int, default=20, help="update rounds per timed call")
    ap.add_argument("--repeats", type=cli.parse_positive_int, default=5)
    ap.add_argument("--algos", nargs="+", default=list(OFFPOLICY), choices=list(OFFPOLICY), metavar="ALGO",
                    help=f"off-policy learners to time (default: all): {', '.join(OFFPOLICY)}")
    ap.add_argument("--envs", type=cli.parse_positive_int, default=4096, help="envs for the training throughput")
    ap.add_argument("--train-updates", type=cli.parse_positive_int, default=2)
    ap.add_argument("--skip-rounds", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--reference", default=None,
                    help="the original HMARL-SOC code/ folder: time its PyTorch round in this run (needs torch)")
    args = ap.parse_args(argv)
    twice = repeated(args.algos)
    if twice:
        ap.error(f"--algos names {', '.join(twice)} twice")
    if args.reference is not None and not os.path.isdir(args.reference):  # found out before the other timings
        ap.error(f"--reference {args.reference} is not a folder (the original HMARL-SOC code/ folder)")
    if args.skip_rounds and args.skip_train:
        ap.error("--skip-rounds and --skip-train together leave nothing to time")
    if args.batch > args.capacity:
        ap.error(f"--batch {args.batch} is more than the buffer's --capacity {args.capacity}")
    # Flags of the part a --skip-* leaves out would be ignored: refused, as eval/bench_train.py does.
    for skip, part in (("skip_rounds", ("batch", "capacity", "reps", "repeats", "reference")),
                       ("skip_train", ("envs", "train_updates"))):
        unread = [f"--{d.replace('_', '-')}" for d in part if getattr(args, d) != ap.get_default(d)]
        if getattr(args, skip) and unread:
            ap.error(f"{', '.join(unread)} set{'s' if len(unread) == 1 else ''} what --{skip.replace('_', '-')} "
                     "leaves out")
    if not args.skip_rounds:  # each round's config at these sizes, before the first timing
        from jaxsoc.config import ConfigError

        for algo in args.algos:
            try:
                round_setup(algo, args.hidden, args.batch, args.capacity, "hmarl-soc-v1", ())
            except ConfigError as e:
                ap.error(f"the {algo} update round (--capacity {args.capacity}, --batch {args.batch}) cannot run: {e}")
    return args


def _fmt_load(r):
    return f"{r['load'][0]:.1f}/{r['load'][1]:.1f}"


def main(argv=None) -> int:
    args = _parse(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs ({cpu_description()}); "
          f"networks {args.hidden}, update rounds' batch {args.batch} (training: each config's); "
          "load = 1-min load average before/after")
    if not args.skip_rounds:
        ref_ms, ref_what = REFERENCE_MS, "the issue's figure"
        if {"batch": args.batch, "capacity": args.capacity} != REFERENCE_SIZES:
            ref_ms = None  # 34 ms is a round at batch 256 of a 200,000 buffer: no ratio at other sizes
        if args.reference:
            ref = reference_round(args.reference, args.batch, args.capacity, args.reps, args.repeats)
            ref_ms, ref_what = ref["ms"], "measured above"
            print(f"\nOriginal round (torch {ref['torch']}, {ref['threads']} threads, hidden {ref['hidden']}, "
                  f"its PER {args.capacity} full, sample {args.batch}):")
            print(f"  {ref['ms']:.2f} ms/round  {ref['rounds_per_s']:.1f} rounds/s  [load {_fmt_load(ref)}]")
        r = hmarl_round(args.hidden, args.batch, args.capacity, args.reps, args.repeats)
        print(f"\nHMARL round (PER {args.capacity} full, sample {args.batch}, SAC TH + DQN AT + MADDPG RO, priorities):")
        print(f"  {r['ms']:.2f} ms/round  {r['rounds_per_s']:.1f} rounds/s  {r['gflop']:.2f} GFLOP/round "
              f"({r['gflops']:.0f} GFLOP/s)  "
              + (f"reference {ref_ms:.1f} ms ({ref_what}) -> {ref_ms / r['ms']:.2f}x the reference's speed"
                 if ref_ms else "no reference figure at these sizes (--reference times it)")
              + f"  [compile {r['compile_s']:.0f} s, load {_fmt_load(r)}]")
        print("\nOne update round of each trainer's own team (hmarl-soc-v1, full buffer):")
        print(f"  {'algo':8s} {'roles':12s} {'PER':5s} {'ms/round':>9s} {'rounds/s':>9s} {'GFLOP':>6s} {'GFLOP/s':>8s}  load")
        for algo in args.algos:
            r = algorithm_round(algo, args.hidden, args.batch, args.capacity, reps=args.reps, repeats=args.repeats)
            print(f"  {algo:8s} {r['roles']:12s} {str(r['per']):5s} {r['ms']:9.2f} {r['rounds_per_s']:9.1f} "
                  f"{r['gflop']:6.2f} {r['gflops']:8.0f}  {_fmt_load(r)}")
    if not args.skip_train:
        print(f"\nTraining throughput at {args.envs} envs (hmarl-soc-v1, one seed, configs/<algo>.yaml):")
        print(f"  {'algo':8s} {'utd':>6s} {'rounds':>7s} {'batch':>6s} {'env-steps/s':>12s} {'s/update':>9s}"
              f" {'collect-only steps/s':>21s}  load")
        for algo in args.algos:
            r = train_throughput(algo, args.envs, args.hidden, updates=args.train_updates)
            c = train_throughput(algo, args.envs, args.hidden, updates=args.train_updates, collect_only=True)
            print(f"  {algo:8s} {r['utd']:6.3g} {r['rounds_per_update']:7d} {r['batch']:6d} {r['steps_per_s']:12.0f} "
                  f"{r['s_per_update']:9.2f} {c['steps_per_s']:21.0f}  {_fmt_load(r)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
