"""The commands the README, docs/, the configs and the tools' own texts (docstrings, --help,
messages) show work as written (pure text, then the tools' parsers in a fresh process; nothing is
trained or written).

A reader copies these commands. Each option they use must be one the tool has (exact names:
argparse would also take a prefix, which a new option can make ambiguous), each name they give
(`--algo`, `--scenario`, `--preset`, `--config`) must exist, and each complete `train/run.py`
command must compose to a config a run accepts (`--print-config`: unknown `--set` keys, values a
learner refuses, a budget under one update).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.doc_commands import REPO, DocCommand, commands_of, documented_commands

HELPER = REPO / "tests" / "doc_commands.py"
COMMANDS = documented_commands()
# Multi-process flags: --print-config refuses them (they would be ignored), so those commands
# are checked for their option names only.
MULTI_PROCESS = ("--coordinator", "--num-processes", "--process-id")
# What an earlier command in the docs writes (a detector saved by eval/train_detector.py):
# those commands are checked for their option names only.
READS_EARLIER_OUTPUT = "detector_scores="


# The docs' `--devices 2` commands are for a machine with that many devices, which --print-config
# checks: the helper's process gets 8 CPU devices.
HELPER_ENV = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip())


def helper(*args, stdin=None):
    out = subprocess.run([sys.executable, str(HELPER), *args], input=stdin, capture_output=True, text=True,
                         cwd=REPO, timeout=600, env=HELPER_ENV)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def where(c: DocCommand) -> str:
    return f"{c.file}:{c.line}: python {c.tool} {c.args}"


def test_the_docs_are_read():
    # The extractor finds what a reader sees, including wrapped inline spans, continued lines
    # and a block's $VARIABLES (docs/coma.md), and skips nothing silently.
    tools = {c.tool for c in COMMANDS}
    assert len(COMMANDS) > 300 and len(tools) > 20 and "train/run.py" in tools
    assert sum(c.complete for c in COMMANDS if c.tool == "train/run.py") > 120
    coma = [c for c in commands_of(REPO / "docs" / "coma.md") if "coma-small-ent05" in c.args]
    assert coma and "--total-steps 61440" in coma[0].args and "$COMMON" not in coma[0].args


def test_extraction_by_hand(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("Run `python train/run.py --algo\nmappo --name a` then:\n\n```bash\nN=\"--num-seeds 2\"\n"
                  "python eval/evaluate.py runs/a \\\n    --episodes 10 $N | tee log  # comment\n```\n"
                  "and `python eval/replay.py runs/<name>`, `python eval/paired.py A B`.\n")
    got = commands_of(md, tmp_path)
    assert [(c.line, c.tool, c.args, c.complete) for c in got] == [
        (6, "eval/evaluate.py", "runs/a --episodes 10 --num-seeds 2", True),
        (1, "train/run.py", "--algo mappo --name a", True),
        (9, "eval/replay.py", "runs/<name>", False),
        (9, "eval/paired.py", "A B", False),
    ]
    assert got[0].options() == ["--episodes", "--num-seeds"]
    assert DocCommand("x", 1, "eval/evaluate.py", "runs/a [--seed 5] --out=x").options() == ["--seed", "--out"]


def test_every_documented_option_is_one_the_tool_has():
    options = helper("options", *sorted({c.tool for c in COMMANDS}))
    wrong = [f"{where(c)}\n    {o} is not an option of {c.tool}" for c in COMMANDS
             for o in c.options() if o not in options[c.tool]]
    assert not wrong, "\n".join(wrong)


def test_every_documented_name_exists():
    import jaxsoc.env as soc
    from jaxsoc import algos

    wrong = []
    for c in (c for c in COMMANDS if c.complete):
        argv = c.argv()
        for flag, value in zip(argv, argv[1:]):
            if flag == "--algo" and value not in algos.ALGORITHMS:
                wrong.append(f"{where(c)}\n    no algorithm {value!r}")
            if flag in ("--scenario", "--preset") and value not in soc.scenario_names() and not (REPO / value).is_file():
                wrong.append(f"{where(c)}\n    no scenario {value!r}")
            if flag == "--config" and not (REPO / value).is_file():
                wrong.append(f"{where(c)}\n    no config file {value!r}")
    assert not wrong, "\n".join(wrong)


def test_every_complete_training_command_composes():
    runs = [c for c in COMMANDS if c.tool == "train/run.py" and c.complete
            and not {"--resume", "--help", *MULTI_PROCESS} & set(c.options()) and READS_EARLIER_OUTPUT not in c.args]
    runs = list({tuple(c.argv()): c for c in runs}.values())  # each command once (the docs repeat some)
    results = helper("compose", stdin=json.dumps([c.argv() for c in runs]))
    wrong = [f"{where(c)}\n    {line}" for c, (code, line) in zip(runs, results) if code != 0]
    assert not wrong, "\n".join(wrong)
