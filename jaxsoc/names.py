"""How a refusal suggests the name the user meant: one function for every unknown name the
package refuses (a config key, an algorithm, a scenario, an env parameter, an agent, a method),
so every message reads the same way: `unknown scenario 'SOC-V2' (did you mean 'soc-v2'?)`; and
which names a list gives twice (`repeated`), for the refusals of a name given more than once."""
from __future__ import annotations

import difflib
from typing import Dict, Iterable, Sequence


def repeated(items: Sequence) -> list:
    """The items `items` gives more than once, sorted (each once): `["b", "a", "b"]` -> `["b"]`."""
    return sorted({x for x in items if items.count(x) > 1})


def suggest(word, options: Iterable) -> str:
    """" (did you mean 'a' or 'b'?)" for the options close to `word`, or "" when none is.

    Case is ignored (`MAPPO` suggests `mappo`: names are lower-case but people type them as the
    papers print them), and a word of three letters or more that begins option names suggests
    those (`hosts` suggests `hosts_per_segment`, which spelling similarity alone ranks below
    `w_cost`); otherwise difflib's closest three. Options that differ only in case are all named.
    """
    by_lower: Dict[str, list] = {}
    for o in map(str, options):
        if o not in by_lower.setdefault(o.lower(), []):
            by_lower[o.lower()].append(o)
    w = str(word).lower()
    close = [w] if w in by_lower else []
    close = close or [low for low in by_lower if len(w) >= 3 and low.startswith(w)][:3]
    close = close or difflib.get_close_matches(w, list(by_lower), n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(o) for low in close for o in by_lower[low]) + "?)"
