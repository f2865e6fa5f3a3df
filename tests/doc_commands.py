"""The commands the documentation shows, found in its text, and the tools' own view of them.

`documented_commands()` finds every `python train/...py` and `python eval/...py` command in the
README, docs/*.md, the configs' comments and the Python files of train/, eval/ and jaxsoc/
(docstrings, --help texts, messages that suggest a command): in fenced blocks (a trailing
backslash continues a line; `NAME="..."` assignments earlier in the block are expanded, as the
shell would), in inline code spans (which Markdown lets wrap across lines) and on source lines
(where a quote ends the command). Run as a script it answers for the
tools in a fresh process (`tests/test_doc_commands.py` calls it; some tools set XLA flags or JAX
options before parsing, which must not leak into the test process):

    python tests/doc_commands.py options TOOL...   # {tool: [option strings]} as JSON
    python tests/doc_commands.py compose           # stdin: JSON [argv, ...] of train/run.py;
                                                   # stdout: JSON [[exit status, last stderr line], ...]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import pathlib
import re
import runpy
import shlex
import sys
from typing import List, NamedTuple

REPO = pathlib.Path(__file__).resolve().parent.parent
TOOL = re.compile(r"python ((?:train|eval)/[a-z_0-9]+\.py)\b(.*)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`([^`]+)`")
ASSIGN = re.compile(r"^([A-Z_][A-Z_0-9]*)=(.*)$")
# Where a tool's arguments end on a shell line: a pipe, `&&`, `;`, a redirection or a comment.
SHELL_END = re.compile(r"\s(?:&&|\|\|?|;|\d?>>?|#)(?=\s|$)")
# Arguments a reader fills in: `<run>`, `$k`, `[--seed 5]`, `RUN_DIR...`, `paper|ours`.
PLACEHOLDER = re.compile(r"<|\$|{|(?:^|\s)\[|\.\.\.|…|\||(?:^|[\s=])[A-Z][A-Z_]*(?=[\s,]|$)")


class DocCommand(NamedTuple):
    file: str  # relative to the repository
    line: int  # where the command starts (1-based)
    tool: str  # "train/run.py"
    args: str  # the arguments as written, continuations joined

    @property
    def complete(self) -> bool:
        """Whether it can be run as written (no placeholder left for the reader)."""
        return not PLACEHOLDER.search(self.args)

    def argv(self) -> List[str]:
        return shlex.split(self.args)

    def options(self) -> List[str]:
        """The `--option` names it uses (`--set` of `--set a=b`, also inside `[--seed 5]`)."""
        return [t.lstrip("[").split("=")[0].rstrip("]") for t in self.args.split() if t.lstrip("[").startswith("--")]


def commands_in(source: str):
    """`(tool, arguments)` of each tool command on one shell line."""
    return [(m.group(1), SHELL_END.split(" " + m.group(2))[0].strip()) for m in TOOL.finditer(source)]


def shell_lines(block: str):
    """`(line index, text)` of a block's shell lines: continuations joined (indexed by their first
    line), whitespace collapsed, `$NAME`s of earlier assignments expanded."""
    variables, lines, pending, first = {}, [], "", 0
    for i, raw in enumerate(block.splitlines()):
        if not pending:
            first = i
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line, pending = " ".join((pending + raw).split()).removeprefix("$ "), ""
        m = ASSIGN.match(line)
        if m:
            try:
                variables[m.group(1)] = " ".join(shlex.split(m.group(2)))
            except ValueError:  # not shell (a Python block's assignment)
                pass
            continue
        for name, value in variables.items():
            line = line.replace("$" + name, value)
        lines.append((first, line))
    return lines


def commands_of(path: pathlib.Path, root: pathlib.Path = REPO) -> List[DocCommand]:
    """The commands in one file (Markdown, a config or a Python file), named relative to `root`."""
    text, rel = path.read_text(), str(path.relative_to(root))
    found = []
    if path.suffix == ".md":
        def fence(m):
            start = text.count("\n", 0, m.start()) + 2  # the block's first line
            for i, line in shell_lines(m.group(1)):
                found.extend(DocCommand(rel, start + i, *c) for c in commands_in(line))
            return "\n" * m.group(0).count("\n")  # keeps the line numbers of what follows

        rest = FENCE.sub(fence, text)
        for m in INLINE.finditer(rest):
            line = rest.count("\n", 0, m.start()) + 1
            found.extend(DocCommand(rel, line, *c) for c in commands_in(" ".join(m.group(1).split())))
    elif path.suffix == ".py":  # docstrings, help and error messages: a command ends at a quote
        for i, line in shell_lines(text.replace("\\\\\n", "\\\n")):  # a docstring's escaped backslash
            found.extend(DocCommand(rel, i + 1, tool, re.split(r"[\"'`]", args)[0].strip())
                         for tool, args in commands_in(line))
    else:  # a config: commands in its comments
        comments = "\n".join(line.split("#", 1)[1] if "#" in line else "" for line in text.splitlines())
        found.extend(DocCommand(rel, i + 1, *c) for i, line in shell_lines(comments) for c in commands_in(line))
    return found


def markdown_files() -> List[pathlib.Path]:
    """What a reader reads first: the README and docs/*.md."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def documented_commands() -> List[DocCommand]:
    files = [*markdown_files(), *sorted((REPO / "configs").rglob("*.yaml")),
             *sorted((REPO / "train").glob("*.py")), *sorted((REPO / "eval").glob("*.py")),
             *sorted((REPO / "jaxsoc").rglob("*.py"))]
    return [c for f in files for c in commands_of(f)]


class _Parsed(Exception):
    pass


def option_strings(tool: str) -> List[str]:
    """Every option string of `tool`'s parser, read by running the tool as `__main__` with
    `--help` and stopping it at `parse_args` (the tools build their parser in `main`)."""
    original = argparse.ArgumentParser.parse_args

    def stop(self, args=None, namespace=None):
        raise _Parsed(self)

    argparse.ArgumentParser.parse_args = stop
    sys.argv = [tool, "--help"]
    sys.path.insert(0, str((REPO / tool).parent))  # as `python eval/x.py` has it: some import siblings
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(REPO / tool), run_name="__main__")
    except _Parsed as e:
        return sorted(e.args[0]._option_string_actions)
    finally:
        argparse.ArgumentParser.parse_args = original
    raise RuntimeError(f"{tool} never called parse_args")


def compose(argvs: List[List[str]]):
    """`[exit status, last stderr line]` of `train/run.py ARGV --print-config` for each argv: the
    run's config composed and checked as a run would before compiling; nothing is written."""
    run = runpy.run_path(str(REPO / "train" / "run.py"), run_name="doc_commands")
    results = []
    for argv in argvs:
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                code = run["main"]([*argv, "--print-config"])
            except SystemExit as e:
                code = e.code
        lines = err.getvalue().strip().splitlines()
        results.append([code, lines[-1] if lines else ""])
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    if sys.argv[1] == "options":
        print(json.dumps({tool: option_strings(tool) for tool in sys.argv[2:]}))
    elif sys.argv[1] == "compose":
        print(json.dumps(compose(json.load(sys.stdin))))
