"""Run configs: YAML files composed over `configs/base.yaml`, overrides, validation, hashing.

A resolved config is a plain nested dict (saved as `runs/<name>/config.yaml`):

    algo, scenario, [scenario_spec{...}], env{...}, num_envs, num_seeds, total_steps, seed, devices,
    run{name, dir, chunk_updates, checkpoint_every, keep_checkpoints, final_checkpoint, progress,
        tensorboard, wandb},
    eval{every_chunks, episodes, greedy},
    <family>{...}            # the algorithm family's section, e.g. ppo{lr, epochs, ...}

`configs/base.yaml` documents every base key. Layers are merged in this order, later wins:

    configs/base.yaml < the family's DEFAULTS < saved run config (resume) < config file
        < CLI flags (--num-envs ...) < --set a.b=value

The config file is `--config FILE`, or `configs/<algo>.yaml` when that exists and no file is
given. Each layer is checked against the known keys on its own, so an error names its source.
Numbers in scientific notation (`5e6`, `1e-4`) are numbers everywhere: PyYAML alone reads them
as strings.

A scenario file (`scenario: path/to/my.yaml`) is read once, when the config is resolved: its
contents (`jaxsoc.env.params.read_scenario_file`) are kept as `scenario_spec`, hashed with the
training keys, and every rebuild of the run (resume, load, evaluation) builds the env from them,
never from the file again: a run is self-contained, whatever happens to the file or the folder
it is loaded from. A resume keeps the stored contents (`scenario_file_note` says when the file
now reads otherwise). Runs saved before `scenario_spec` existed have none and read the file.
"""
from __future__ import annotations

import contextvars
import copy
import decimal
import hashlib
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Tuple

import yaml

from jaxsoc import algos, cli
from jaxsoc.argtypes import is_integer, is_number
from jaxsoc.names import suggest

CONFIG_DIR = Path(os.environ.get("JAXSOC_CONFIG_DIR", Path(__file__).resolve().parent.parent / "configs"))

# The parts of a config that change what is trained; resuming requires they match exactly.
# `devices` is left out on purpose: sharding changes float summation order only (tolerance, not
# bits), and moving a run to another machine is a legitimate resume.
TRAINING_KEYS = ("algo", "scenario", "env", "num_envs", "num_seeds", "total_steps", "seed")
# The resolved contents of a scenario file (module docstring): set by `resolve`, never by a layer;
# part of the training config when present (runs on a preset, and older runs, have none).
SCENARIO_SPEC = "scenario_spec"

_POSITIVE_INTS = {
    "num_envs", "num_seeds", "total_steps", "devices",
    "run.chunk_updates", "run.keep_checkpoints", "eval.episodes",
}
_NON_NEGATIVE_INTS = {"seed", "run.checkpoint_every", "eval.every_chunks"}
# Keys whose base default is null, and what they may hold instead.
_NULLABLE = {"run.name": str, "run.wandb": str}
# Keys whose values are not all of their default's type (a switch or "auto").
_CHOICES = {"run.tensorboard": (True, False, "auto"), "run.final_checkpoint": ("full", "policy"),
            "hmarl.condition_on_directive": ("auto", True, False)}
_FREE_FORM = {"env"}  # checked by jaxsoc.env.make itself
# Seed i of a run is PRNGKey(seed + i) from a uint32 (jaxsoc.engine.seed_keys).
MAX_SEED = cli.MAX_SEED  # the largest seed (uint32)


class ConfigError(ValueError):
    """A config, run folder or checkpoint that a run cannot start from; the message says why."""


def check_choice(key: str, value: Any, choices: Iterable[Any]) -> None:
    """ConfigError unless `value` is one of `choices` (the message names the key and the options)."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}")


def check_unit_interval(key: str, value: Any) -> None:
    """ConfigError unless `value` lies in [0, 1] (a discount, a GAE or TD lambda; NaN refused)."""
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{key} must be in [0, 1], got {value!r}")


def check_layer_sizes(key: str, sizes: Any) -> None:
    """ConfigError unless `sizes` is a non-empty list of positive integer layer widths (a switch
    is not a width: YAML's `true` would build a layer of 1)."""
    if not isinstance(sizes, (list, tuple)) or not sizes or not all(is_integer(h) and h > 0 for h in sizes):
        raise ConfigError(f"{key} must be a non-empty list of positive integers, got {sizes!r}")


# ----------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads scientific notation as numbers (plain PyYAML reads `5e6` as a
    string): a whole number written without a dot and with a non-negative exponent (`5e6`, `1e2`,
    `-2E+3`) as an integer, so it is one for integer keys everywhere (an env's sizes, a list of
    layer widths), and the rest (`1e-4`, `2.5e3`) as floats, as YAML 1.2 does. A key given twice
    in one mapping is refused (PyYAML keeps the last silently: `lr` twice trained on the second)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_WHOLE = "tag:jaxsoc,2026:whole-number"
_Loader.add_implicit_resolver(_WHOLE, re.compile(r"^[-+]?[0-9][0-9_]*[eE]\+?[0-9]+$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
_Loader.add_constructor(_WHOLE, lambda loader, node: int(decimal.Decimal(loader.construct_scalar(node).replace("_", ""))))


def parse_value(text: str) -> Any:
    """A command-line value as a YAML scalar: '1e-4' -> 0.0001, 'true' -> True, 'x' -> 'x'."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text


def load_yaml(path: str | os.PathLike, what: str = "config") -> dict:
    """Reads a YAML mapping (empty file -> {}), numbers in scientific notation as numbers;
    ConfigError naming the file otherwise. `what` names the kind of file in the messages
    ("config"; `jaxsoc.env.params.read_scenario_file` reads scenario files with it)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} file {str(path)!r} is a folder; give the YAML file's path")
    if not path.is_file():
        raise ConfigError(f"{what} file {str(path)!r} not found")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of {what} keys, got {type(data).__name__}")
    return data


def yaml_problem(e: yaml.YAMLError) -> str:
    """PyYAML's error in one line: what and where (line and column from 1), without its caret
    art and the `"<unicode string>"` it names instead of the file."""
    mark = getattr(e, "problem_mark", None)
    what = " ".join(filter(None, (getattr(e, "context", None), getattr(e, "problem", None)))) or str(e)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return " ".join(what.split()) + where


def dump(config: Mapping) -> str:
    """A resolved config as YAML text (block style, keys in config order), as `save` writes it."""
    return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)


def save(config: Mapping, path: str | os.PathLike) -> None:
    """Writes a resolved config as YAML (`dump`)."""
    Path(path).write_text(dump(config))


# ----------------------------------------------------------------------------- numbers
def format_count(n: int) -> str:
    """An integer for a message: 1,234,567, or 1e+300 past 15 digits (a typo's 300 digits say
    nothing)."""
    return f"{n:,}" if abs(n) < 10**15 else f"{float(n):.4g}"


def to_int(value: Any, key: str) -> int:
    """An integer from an int, an integral float (`5e6`) or a numeric string; ConfigError else."""
    if isinstance(value, str):
        value = parse_value(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        value = int(value)
    return value


def _to_float(value: Any, key: str) -> float:
    if isinstance(value, str):
        value = parse_value(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if math.isfinite(value) and abs(value) > FLOAT32_MAX:  # NaN and inf: `_refuse_non_finite`
        raise ConfigError(f"{key} must be a finite float32 number (at most {FLOAT32_MAX:.4g}), got {float(value):g}")
    return float(value)


FLOAT32_MAX = 3.4028234663852886e38  # the programs compute in float32: a larger number is inf there


# ----------------------------------------------------------------------------- layers
def base_config() -> dict:
    """`configs/base.yaml` as a dict."""
    return load_yaml(CONFIG_DIR / "base.yaml")


def parse_sets(sets: Iterable[str]) -> dict:
    """['ppo.lr=1e-4', 'env.max_steps=100'] -> {'ppo': {'lr': 0.0001}, 'env': {'max_steps': 100}}."""
    out: dict = {}
    for item in sets:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set expects KEY=VALUE with a dotted KEY (e.g. ppo.lr=1e-4), got {item!r}")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r} conflicts with an earlier --set of {part!r}")
            node = child
        # A text key (a run's name) keeps the text as typed: YAML would make `123` a number and
        # `2024-01-01` a date, both refused as names, where --name takes them.
        raw = text.strip()
        node[parts[-1]] = raw if key in _NULLABLE and raw not in ("", "null", "~") else parse_value(text)
    return out


def merge(base: Mapping, layer: Mapping) -> dict:
    """Deep merge: mappings merge key by key, anything else in `layer` replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check_keys(layer: Mapping, schema: Mapping, source: str, family: str, prefix: str = "") -> None:
    """Refuses keys of `layer` that `schema` lacks, suggesting close ones."""
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            if not prefix and key in set(algos.ALGORITHMS.values()):
                users = sorted(n for n, f in algos.ALGORITHMS.items() if f == key)
                raise ConfigError(
                    f"{source}: section {key!r} configures {', '.join(users)}, but this run's "
                    f"algorithm uses section {family!r}"
                )
            known = [f"{prefix}{k}" for k in schema]
            raise ConfigError(f"{source}: unknown config key {dotted!r}{suggest(dotted, known)}")
        if dotted in _FREE_FORM:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: {dotted} must be a mapping, got {value!r}")
            continue
        if isinstance(schema[key], Mapping):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: {dotted} must be a mapping of keys, got {value!r}")
            _check_keys(value, schema[key], source, family, dotted + ".")


def _typed(value: Any, default: Any, key: str) -> Any:
    """`value` coerced to the type of `default` (its base/family default); ConfigError if it can't."""
    if key in _CHOICES:
        if value not in _CHOICES[key] or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            shown = ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in _CHOICES[key])  # YAML's words
            raise ConfigError(f"{key} must be one of {shown}, got {value!r}")
        return value
    if default is None:
        wanted = _NULLABLE.get(key)
        if value is None or wanted is None:
            return value
        if not isinstance(value, wanted):
            raise ConfigError(f"{key} must be a {wanted.__name__} or null, got {value!r}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        return to_int(value, key)
    if isinstance(default, float):
        return _to_float(value, key)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        if default and all(is_number(d) for d in default):  # numbers, each (YAML reads `nan` as a string)
            element = to_int if all(is_integer(d) for d in default) else _to_float
            return [element(v, f"{key}[{i}]") for i, v in enumerate(value)]
        return value
    return value


def _coerce(config: dict, schema: Mapping, prefix: str = "") -> None:
    for key, default in schema.items():
        dotted = f"{prefix}{key}"
        if dotted in _FREE_FORM or key not in config:
            continue
        if isinstance(default, Mapping):
            _coerce(config[key], default, dotted + ".")
        else:
            config[key] = _typed(config[key], default, dotted)


def _refuse_non_finite(value: Any, key: str = "") -> None:
    """ConfigError naming the first NaN or infinity anywhere in `value` (YAML `.nan`, `.inf`, or
    `--set x=.inf`): no key means "no limit" by infinity, and a NaN only trains null losses."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            _refuse_non_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _refuse_non_finite(v, f"{key}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")


def _get(config: Mapping, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node


def _missing_key(config: Mapping, schema: Mapping, prefix: str = "") -> str | None:
    """The first key of `schema` that `config` lacks (dotted), or None."""
    for key, default in schema.items():
        dotted = f"{prefix}{key}"
        if key not in config:
            return dotted
        if isinstance(default, Mapping) and dotted not in _FREE_FORM and isinstance(config[key], Mapping):
            missing = _missing_key(config[key], default, dotted + ".")
            if missing is not None:
                return missing
    return None


def validate(config: dict, scenarios: Iterable[str] | None = None) -> dict:
    """Checks (and coerces in place) a merged config; returns it. ConfigError on the first problem.

    Args:
      config: a full config (all layers merged).
      scenarios: known scenario names; None asks `jaxsoc.env` (skipped if it lists none).
    """
    if "algo" not in config:
        raise ConfigError("config is missing algo (build it with jaxsoc.config.resolve)")
    try:
        family = algos.family_of(config.get("algo"))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    schema = merge(base_config(), {family: algos.default_section(config["algo"])})
    # `resolve` fills in every key; a hand-built or edited dict would fail later with a bare KeyError.
    missing = _missing_key(config, schema)
    if missing is not None:
        raise ConfigError(f"config is missing {missing} (build it with jaxsoc.config.resolve)")
    _check_keys({k: v for k, v in config.items() if k != SCENARIO_SPEC}, schema, "config", family)
    if SCENARIO_SPEC in config:
        _check_scenario_spec(config)
    _coerce(config, schema)
    _refuse_non_finite(config)

    for key in sorted(_POSITIVE_INTS):
        if _get(config, key) <= 0:
            raise ConfigError(f"{key} must be a positive integer, got {_get(config, key)!r}")
    for key in sorted(_NON_NEGATIVE_INTS):
        if _get(config, key) < 0:
            raise ConfigError(f"{key} must be >= 0, got {_get(config, key)!r}")
    last_seed = config["seed"] + config["num_seeds"] - 1
    if last_seed > MAX_SEED:
        raise ConfigError(
            f"seeds {format_count(config['seed'])}..{format_count(last_seed)} (seed + num_seeds - 1) go past "
            f"{MAX_SEED:,}, the largest seed (uint32): lower seed or num_seeds"
        )
    module = algos.family_module(config["algo"])
    for key in getattr(module, "POSITIVE", ()):  # dotted for a nested section (hmarl's sac, coordinator)
        value = _get(config[family], key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{family}.{key} must be positive, got {value!r}")
    if config["num_envs"] % config["devices"]:
        raise ConfigError(
            f"num_envs ({config['num_envs']}) must be divisible by devices ({config['devices']})"
        )

    if scenarios is None:
        scenarios = known_scenarios()
    # A scenario may also be a YAML file (`jaxsoc.env.make` checks it).
    if scenarios is not None and not is_scenario_file(config["scenario"]) and config["scenario"] not in scenarios:
        raise ConfigError(
            f"unknown scenario {config['scenario']!r}{suggest(config['scenario'], scenarios)}; "
            f"known: {', '.join(sorted(scenarios))}"
        )
    name = config["run"]["name"]
    if name is not None and (not name.strip() or name in (".", "..") or "/" in name or os.sep in name):
        raise ConfigError(f"run.name must be a plain folder name (no '/'), got {name!r}")
    if hasattr(module, "validate"):
        module.validate(config)
    return config


def _check_scenario_spec(config: Mapping) -> None:
    """ConfigError unless `scenario_spec` is what `resolve` stores: a scenario file's contents
    (a mapping with its base), beside a scenario that names a file."""
    spec = config[SCENARIO_SPEC]
    if not is_scenario_file(config["scenario"]):
        raise ConfigError(f"{SCENARIO_SPEC} holds the contents of a scenario file, but scenario is "
                          f"{config['scenario']!r}, not a .yaml file (config.yaml edited?)")
    if not isinstance(spec, Mapping) or "base" not in spec:
        raise ConfigError(f"{SCENARIO_SPEC} must be the mapping of a scenario file's fields with its base "
                          f"(as jaxsoc.config.resolve stores it), got {spec!r}")


def known_scenarios() -> list[str] | None:
    """The env's scenario names (presets and demos), or None when the env cannot say (not importable)."""
    try:
        import jaxsoc.env as soc
    except ImportError:
        return None
    names = getattr(soc, "scenario_names", None) or getattr(soc, "preset_names", None)
    return list(names()) if callable(names) else None


# Set while `resolve` rebuilds a saved run's config (`saved`): the refusals of keys a run would
# never read (`refuse_unread`) are for new runs. A run saved before such a refusal existed, or
# before a default it recorded changed (hmarl's coordinator defaults did on 2026-12-02, and its
# "w/o SC" runs record them), must still load, evaluate and resume.
_REBUILDING_SAVED = contextvars.ContextVar("jaxsoc_rebuilding_saved", default=False)


def refuse_unread(message: str) -> None:
    """ConfigError(`message`) for a key the run would never read, unless a saved run's config is
    being rebuilt (`resolve(saved=...)`), which takes it as it was trained."""
    if not _REBUILDING_SAVED.get():
        raise ConfigError(message)


def resolve(
    config_file: str | os.PathLike | None = None,
    flags: Mapping | None = None,
    sets: Iterable[str] = (),
    *,
    saved: Mapping | None = None,
    scenarios: Iterable[str] | None = None,
) -> dict:
    """Composes and validates a config; see the module docstring for the order of layers.

    Args:
      config_file: YAML file; None uses `configs/<algo>.yaml` if it exists (not when `saved`).
      flags: values from dedicated CLI flags, nested like the config ({"run": {"name": "x"}}).
      sets: "dotted.key=value" strings.
      saved: a saved run's config (resume): it replaces the defaults it covers.
      scenarios: known scenario names (see `validate`).
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    saved_spec = None
    if saved is not None:
        saved = with_added_keys(saved)
        saved_spec = saved.pop(SCENARIO_SPEC, None)  # not a layer: it goes with the saved scenario
    sets_layer = parse_sets(sets)
    file_layer = load_yaml(config_file) if config_file is not None else {}
    base = base_config()

    # The algorithm decides the family section, so find it first (latest layer wins).
    algo = base.get("algo")
    for layer in (saved or {}, file_layer, flags, sets_layer):
        algo = layer.get("algo", algo)
    try:
        family = algos.family_of(algo)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if config_file is None and saved is None and (CONFIG_DIR / f"{algo}.yaml").is_file():
        config_file = CONFIG_DIR / f"{algo}.yaml"
        file_layer = load_yaml(config_file)
    # A run's config.yaml (or --print-config's output) given as --config holds the scenario file's
    # contents it was resolved with: they go with that scenario, as a saved run's do.
    file_spec = file_layer.pop(SCENARIO_SPEC, None) if isinstance(file_layer, dict) else None

    _check_file_variant(file_layer, config_file, algo, family, sets_layer)
    schema = merge(base, {family: algos.default_section(algo)})
    config = copy.deepcopy(schema)
    for source, layer in (
        ("saved config", saved or {}),
        (str(config_file), file_layer),
        ("command line", flags),
        ("--set", sets_layer),
    ):
        if layer is file_layer and "base" in layer and "base" not in schema:  # a scenario's file
            raise ConfigError(f"{config_file} is a scenario file (it has 'base: {layer['base']}'), not a run config: "
                              f"give it as --scenario {config_file}")
        _check_keys(layer, schema, source, family)
        config = merge(config, layer)
    config["algo"] = algo
    token = _REBUILDING_SAVED.set(saved is not None)
    try:
        validate(config, scenarios)
    finally:
        _REBUILDING_SAVED.reset(token)
    if is_scenario_file(config["scenario"]):
        if saved is not None and config["scenario"] == saved.get("scenario"):
            # A resumed or loaded run keeps what it was trained on, whatever the file says now; a
            # run saved before scenario_spec has none and reads the file, as it always did.
            spec = saved_spec
        elif file_spec is not None and config["scenario"] == file_layer.get("scenario"):
            spec = file_spec  # a config file that records its scenario's contents is taken as written
        else:
            spec = read_scenario(config["scenario"])
        if spec is not None:
            config = _with_spec(config, spec)
            _check_scenario_spec(config)  # a saved one may have been edited
    if config["run"]["name"] is None:
        config["run"]["name"] = default_run_name(algo, config["scenario"])
    return config


def _check_file_variant(file_layer: Mapping, config_file, algo: str, family: str, sets_layer: Mapping) -> None:
    """ConfigError where a config file written for another algorithm names the actor or critic
    that tells its algorithm apart (configs/mappo.yaml's `critic: world`) and the algorithm asked
    for has another of its own: the file's value would win, so `--algo ippo` with mappo.yaml
    trained a MAPPO called IPPO. A `--set` of the key decides; a file naming no algorithm, or
    this one, is taken as written."""
    from jaxsoc.algos import ppo  # the switches of the on-policy families (ppo, a2c, trpo)

    file_algo = file_layer.get("algo")
    if file_algo in (None, algo) or algo not in ppo.VARIANTS:
        return
    section = file_layer.get(family) if isinstance(file_layer.get(family), Mapping) else {}
    given = sets_layer.get(family) if isinstance(sets_layer.get(family), Mapping) else {}
    for key in ("policy", "critic"):
        named, own = section.get(key, "auto"), ppo.VARIANTS[algo][key]
        if named not in ("auto", own) and key not in given:
            raise ConfigError(f"{config_file} names {family}.{key} {named} for {file_algo}, which would replace "
                              f"{algo}'s own ({own}): add --set {family}.{key}=auto for {algo}'s, or "
                              f"--set {family}.{key}={named} to train {algo} with it")


def preset_section(algo: str) -> dict:
    """The family section a run of `algo` gets unless told otherwise: the family's defaults under
    configs/<algo>.yaml's (the file `resolve` reads when no --config is given). A check that
    refuses a changed key the world leaves unread compares with it, so the algorithm's own preset
    (configs/single-drl.yaml's log-std range) still runs on every world."""
    family = algos.family_of(algo)
    path = CONFIG_DIR / f"{algo}.yaml"
    layer = load_yaml(path).get(family, {}) if path.is_file() else {}
    return merge(algos.default_section(algo), layer)


def read_scenario(path: str) -> dict:
    """A scenario file's contents as `resolve` stores them (`scenario_spec`; see
    `jaxsoc.env.params.read_scenario_file`); ConfigError naming the file."""
    from jaxsoc.env.params import read_scenario_file

    try:
        return read_scenario_file(path)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _with_spec(config: dict, spec: Mapping) -> dict:
    """`config` with `scenario_spec` right after `scenario` (config.yaml shows them together)."""
    out: dict = {}
    for key, value in config.items():
        if key != SCENARIO_SPEC:
            out[key] = value
        if key == "scenario":
            out[SCENARIO_SPEC] = copy.deepcopy(spec)
    return out


def scenario_file_note(config: Mapping) -> str | None:
    """A note for a run with a stored scenario (`scenario_spec`) whose file now reads otherwise
    (edited, moved or deleted, or a relative path from another folder): the run goes on with what
    it stored. None when the file reads the same, or the run stores nothing."""
    spec = config.get(SCENARIO_SPEC)
    if spec is None:
        return None
    path = config["scenario"]
    try:
        if read_scenario(path) == spec:
            return None
        now = "has changed since this run was trained"
    except ConfigError as e:
        now = f"cannot be read now ({e})"
    return (f"scenario file {path} {now}: it goes on with the scenario stored in its config.yaml "
            f"({SCENARIO_SPEC}), as trained")


def default_run_name(algo: str, scenario: str) -> str:
    """`<algo>-<scenario>-<date>-<time>`; a scenario file contributes its name without folders
    or suffix (`configs/scenarios/soc-v2-small.yaml` -> `soc-v2-small`), since a run name is one
    folder."""
    if is_scenario_file(scenario):
        scenario = Path(scenario).stem
    return f"{algo}-{scenario}-{time.strftime('%Y%m%d-%H%M%S')}"


def is_scenario_file(scenario: str) -> bool:
    """Whether `scenario` names a YAML file rather than a preset (`jaxsoc.env.make` reads both)."""
    return str(scenario).endswith((".yaml", ".yml"))


# Keys added to a section after runs were saved, with the value that trains exactly what those
# runs trained: at that value a key is left out of `training_part`, so the older runs still load
# and resume (their hash is unchanged); any other value is a change like any other. Every new key
# of a family section belongs here (tests/test_config.py checks against tests/data/config_keys.txt).
ADDED_KEYS: Dict[Tuple[str, ...], Any] = {
    ("hmarl", "coordinator", "focus_head"): "mlp",
    ("hmarl", "coordinator", "focus_temperature"): 1.0,
    ("trpo", "fisher_stride"): 1,
    ("coma", "critic_epochs"): 0,
    ("coma", "critic_fraction"): 1.0,
    ("trpo", "vf_fraction"): 1.0,
    ("hybrid", "mixer_state_norm"): False,
    ("dqn", "mixer_state_norm"): False,
    ("impala", "clip_eps"): None,
    **{(*section, key): value
       for section in (("maddpg",), ("hmarl", "maddpg"), ("hybrid", "maddpg"))
       for key, value in (("twin_critics", False), ("target_noise", 0.0), ("target_noise_clip", 0.5),
                          ("policy_delay", 1))},
}


def with_added_keys(saved: Mapping) -> dict:
    """A saved config with every `ADDED_KEYS` entry it predates set to its old-behaviour value, so
    that a key's newer default (e.g. `focus_head: auto`) never changes what an older run trained."""
    saved = copy.deepcopy(dict(saved))
    for path, old in ADDED_KEYS.items():
        section = saved
        for key in path[:-1]:
            section = section.get(key) if isinstance(section, dict) else None
        if isinstance(section, dict) and path[-1] not in section:
            section[path[-1]] = old
    return saved


def training_part(config: Mapping) -> dict:
    """The keys that decide what is trained: TRAINING_KEYS, the stored scenario file contents
    (`scenario_spec`) where there are any, and the algorithm family's section, less any
    `ADDED_KEYS` at its old-behaviour value."""
    family = algos.family_of(config["algo"])
    part = {key: config[key] for key in TRAINING_KEYS}
    if SCENARIO_SPEC in config:  # absent (runs on a preset, older runs): their hash is unchanged
        part[SCENARIO_SPEC] = copy.deepcopy(config[SCENARIO_SPEC])
    part[family] = copy.deepcopy(config.get(family, {}))
    for path, old in ADDED_KEYS.items():
        if path[0] != family:
            continue
        section = part
        for key in path[:-1]:
            section = section.get(key) if isinstance(section, Mapping) else None
        if isinstance(section, dict) and path[-1] in section and section[path[-1]] == old:
            del section[path[-1]]
    return part


def training_hash(config: Mapping) -> str:
    """sha256 of `training_part(config)` (canonical JSON); equal hashes train the same thing."""
    text = json.dumps(training_part(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def training_diff(a: Mapping, b: Mapping) -> list[str]:
    """Dotted keys whose training-relevant values differ between two configs."""
    diffs: list[str] = []

    def walk(x: Any, y: Any, prefix: str) -> None:
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            for key in sorted(set(x) | set(y), key=str):
                walk(x.get(key), y.get(key), f"{prefix}{key}.")
        elif x != y:
            diffs.append(f"{prefix[:-1]}: {x!r} -> {y!r}")

    walk(training_part(a), training_part(b), "")
    return diffs
