"""Run folders for tests that only read a run's config: a scripted run needs no checkpoint, so its
`config.yaml` alone makes it a finished run folder (`jaxsoc.analysis.runs.read_run`)."""
import yaml


def fake_run(root, name, algo, scenario="soc-v2-redblue", env=None):
    """`root / name` holding only the config of a run of `algo` on `scenario` with `env`
    overrides (default: 8 hosts per segment, as the tests' small networks)."""
    path = root / name
    path.mkdir(parents=True)
    cfg = {"algo": algo, "scenario": scenario, "env": env if env is not None else {"hosts_per_segment": 8},
           "num_envs": 8, "num_seeds": 1, "total_steps": 64, "seed": 0, "devices": 1,
           "run": {"name": name, "dir": str(root)}}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return path
