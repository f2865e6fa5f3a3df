"""What the public API takes as a switch, an integer or a number (jaxsoc/argtypes.py)."""
import numpy as np

from jaxsoc.argtypes import is_integer, is_number, is_switch


def test_switches_integers_and_numbers_by_hand():
    for v in (True, False, np.bool_(True)):
        assert is_switch(v) and not is_integer(v) and not is_number(v)  # True is an int to Python
    for v in (0, 7, np.int32(3), np.uint64(2)):
        assert is_integer(v) and is_number(v) and not is_switch(v)
    for v in (16.0, np.float32(2.5), float("nan")):
        assert is_number(v) and not is_integer(v)
    for v in ("15", "no", None, [1], 1j):
        assert not is_switch(v) and not is_integer(v) and not is_number(v)
