"""The Python blocks of the README and docs/ run as written.

Each ```python block is executed on its own, in a new Python process, in a scratch folder (where
`configs/` is the project's): a reader pastes it into a new session. The few blocks that are
sketches in the text's context (a signature, an interface over several classes) are listed in
FRAGMENTS with the reason; every other block must run. `runs/<name>` is a tiny MAPPO run trained
for the purpose (and replayed, for the block that reads a replay trace). Blocks that compile a
full-size program or train are `slow`; the rest run in the default suite.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.doc_commands import REPO, markdown_files

BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)

# (file, text the block holds): why it cannot run alone.
FRAGMENTS = {
    ("docs/env.md", "obs, state = env.reset(key, params)  "): "the two calls' signatures, in the text's context",
    ("docs/offpolicy.md", "state = agent.init(key)"): "one interface over the three agents above it (`agent`)",
    ("docs/evaluation.md", "summary = execute.execute(p)"): "the analysis API over a reproduced table's folder; "
                                                            "`execute` runs the quick table (minutes)",
}
# Blocks that run in the default suite (each under ~1 s here); the others compile full-size
# programs (4,096 envs, an autoencoder, the adapters' steps) or need a trained run.
QUICK = (("docs/env.md", "soc.register("), ("docs/strategic.md", 'lanes=False'),
         ("docs/switches.md", "fix_d5_containment=True"), ("docs/tools.md", 'gymnasium.make("jaxsoc/SOC-v0"'))


def blocks():
    """`(file, first line, code)` of every ```python block."""
    found = []
    for path in markdown_files():
        text = path.read_text()
        for m in BLOCK.finditer(text):
            found.append((str(path.relative_to(REPO)), text.count("\n", 0, m.start()) + 2, m.group(1)))
    return found


def is_in(block, entries) -> bool:
    return any(block[0] == file and needle in block[2] for file, needle in entries)


BLOCKS = blocks()
RUNNABLE = [pytest.param(b, id=f"{b[0]}:{b[1]}", marks=() if is_in(b, QUICK) else pytest.mark.slow)
            for b in BLOCKS if not is_in(b, FRAGMENTS)]


def test_each_listed_block_exists_once():
    # A stale entry (the block was edited or removed) must not keep exempting or hurrying nothing.
    for entries in (FRAGMENTS, QUICK):
        for file, needle in entries:
            hits = [b for b in BLOCKS if b[0] == file and needle in b[2]]
            assert len(hits) == 1, (file, needle, len(hits))
    assert len(BLOCKS) > 15 and len(RUNNABLE) == len(BLOCKS) - len(FRAGMENTS)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A MAPPO run on a small soc-v2 (one update of 8 envs), replayed once, as `runs/<name>`."""
    root = tmp_path_factory.mktemp("doc_run")
    common = dict(cwd=REPO, capture_output=True, text=True, timeout=900)
    out = subprocess.run([sys.executable, "train/run.py", "--algo", "mappo", "--num-envs", "8", "--total-steps", "256",
                          "--set", "env.hosts_per_segment=8", "--set", "env.max_steps=16", "--set", f"run.dir={root}",
                          "--set", "run.progress=false", "--name", "doc"], **common)
    assert out.returncode == 0, out.stderr[-2000:]
    out = subprocess.run([sys.executable, "eval/replay.py", str(root / "doc"), "--animate", "0"], **common)
    assert out.returncode == 0, out.stderr[-2000:]
    return root / "doc"


@pytest.mark.parametrize("block", RUNNABLE)
def test_block_runs_as_written(block, tmp_path, request):
    file, line, code = block
    if "runs/<name>" in code:
        code = code.replace("runs/<name>", str(request.getfixturevalue("tiny_run")))
    (tmp_path / "configs").symlink_to(REPO / "configs")
    # A process of its own, as a reader's session: a block may register a preset or set JAX
    # options, which must not reach the tests that share this worker.
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{file}:{line}\n{out.stderr[-3000:]}"
