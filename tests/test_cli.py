"""The shared command-line parsing and output checks (jaxsoc/cli.py), on hand-worked inputs."""
from __future__ import annotations

import argparse
import os

import pytest

from jaxsoc import cli


def test_seeds_in_order_and_refused_when_doubled_negative_or_too_many():
    assert cli.parse_seeds("0-2,10, 4") == (0, 1, 2, 10, 4)
    for text, message in [("1,1,2", "seed 1 is given twice"), ("0-3,2", "seed 2 is given twice"),
                          ("-1", "seeds must be >= 0"), ("3-1", "empty seed range '3-1'"), (" , ", "no seeds"),
                          ("0-100000", "more than 100,000 seeds"), ("a-b", "seeds are integers")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            cli.parse_seeds(text)
    assert len(cli.parse_seeds("0-99999")) == cli.MAX_SEEDS
    # a huge range is refused by its size, without listing it (it once hung the parser)
    with pytest.raises(argparse.ArgumentTypeError, match="more than"):
        cli.parse_seeds("0-3000000000")


def test_numbers_by_kind():
    assert cli.parse_positive_int("5e3") == 5000 and cli.parse_non_negative_int("0") == 0
    assert cli.parse_positive_float("2.5") == 2.5
    assert cli.parse_env_steps("2147483647") == cli.MAX_ENV_STEPS == 2**31 - 1  # int32 step counters
    above_zero = "expected a finite number above 0, got"
    for parse, text, message in [
            (cli.parse_positive_int, "0", "expected a positive integer, got '0'"),
            (cli.parse_positive_int, "1.5", "expected an integer, got '1.5'"),
            (cli.parse_non_negative_int, "-1", "expected 0 or more, got '-1'"),
            (cli.parse_positive_float, "nan", f"{above_zero} 'nan'"),
            (cli.parse_positive_float, "inf", f"{above_zero} 'inf'"),
            (cli.parse_positive_float, "0", f"{above_zero} '0'"),
            (cli.parse_positive_float, "x", "expected a number, got 'x'"),
            (cli.parse_env_steps, "2147483648",
             "more than the 2,147,483,647 env steps per seed the int32 step counters hold, got '2147483648'"),
            (cli.parse_env_steps, "inf", "expected an integer, got 'inf'")]:
        with pytest.raises(argparse.ArgumentTypeError) as exc:
            parse(text)
        assert str(exc.value) == message, (parse.__name__, text)


def test_output_problems_are_found_before_writing_and_the_probe_leaves_nothing(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert cli.folder_problem(tmp_path / "new" / "deeper") is None
    assert cli.file_problem(tmp_path / "new" / "out.json") is None
    assert cli.folder_problem(a_file) == f"{a_file} exists and is not a folder"
    assert cli.folder_problem(a_file / "sub") == f"cannot write {a_file / 'sub'}: {a_file} is not a folder"
    assert cli.file_problem(tmp_path) == f"{tmp_path} is a folder, not a file"
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores the mode bits: a read-only place it cannot beat
            problem = cli.folder_problem("/proc/jaxsoc-out")
            assert problem is not None and problem.startswith("cannot write /proc/jaxsoc-out: /proc refuses new files")
        else:
            assert cli.folder_problem(locked / "out").startswith(f"cannot write {locked / 'out'}: {locked} refuses")
    finally:
        os.chmod(locked, 0o700)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "locked"]  # nothing made
