"""Checks shared by the tests of command-line tools: a bad command line is refused in one line
(exit status 2, no traceback) before the tool's first piece of work."""
from __future__ import annotations

import re

import pytest

# Every refusal names its tool, as argparse does for a bad flag: "eval/evaluate.py: error: ...".
TOOL_ERROR = re.compile(r"^(train|eval)/[a-z0-9_]+\.py: error: ")


def refused(main, argv, capsys, match):
    """`main(argv)` exits with status 2 and one line on stderr holding `match`; returns that line."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and TOOL_ERROR.match(lines[0]) and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    return lines[0]


def no_work(module, name):
    """A stand-in for the first piece of work a tool does: reaching it means a refusal was missed."""
    def work(*_a, **_k):
        raise AssertionError(f"the command was not refused: it reached {name}")
    return work
