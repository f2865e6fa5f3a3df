"""What the public API takes as a switch, an integer or a number: one definition for every check
of an argument or a params field (the loaders, the adapters, `evaluation`, `engine.load`, the
env's params). Python's own tests are too loose for that: `True` is an `int` (it would mean 1),
and any object is truthy (a string "no" would turn a switch on)."""
from __future__ import annotations

import numpy as np


def is_switch(value) -> bool:
    """True or False (numpy's too)."""
    return isinstance(value, (bool, np.bool_))


def is_integer(value) -> bool:
    """A whole number given as one (Python's or numpy's int), not a switch; a float such as 16.0
    or a string such as "15" is not (it would be rounded or read as another number)."""
    return isinstance(value, (int, np.integer)) and not is_switch(value)


def is_number(value) -> bool:
    """An integer or a float (Python's or numpy's), not a switch; NaN and inf included (callers
    that need finite numbers check `math.isfinite`)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not is_switch(value)
