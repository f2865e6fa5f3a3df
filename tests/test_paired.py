"""eval/paired.py: paired per-seed differences of two evaluated runs and their t interval."""
from __future__ import annotations

import importlib.util
import json
import pathlib

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "eval" / "paired.py"


@pytest.fixture(scope="module")
def paired():
    spec = importlib.util.spec_from_file_location("paired", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(run, returns, csr, episodes=500):
    """An evaluation.json as eval/evaluate.py writes it, for seeds 0.. with these per-seed means."""
    seeds = {str(i): {"episodes": episodes, "metrics": {"return": {"mean": r, "std": 1.0, "n": episodes},
                                                        "csr": {"mean": c, "std": 0.1, "n": episodes}}}
             for i, (r, c) in enumerate(zip(returns, csr))}
    req = {"episodes": episodes, "batch": episodes, "greedy": True, "heldout_stream": 7}
    return {"run": run, "request": req, "seeds": seeds}


def test_table_pairs_seed_by_seed(paired, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for path, rec in ((a, record("a", [-10.0, -8.0, -6.0], [0.5, 0.5, 0.5])),
                      (b, record("b", [-7.0, -8.0, -4.0], [0.6, 0.5, 0.7]))):
        path.mkdir()
        (path / "evaluation.json").write_text(json.dumps(rec))
    assert paired.main([str(a), str(b), "--metrics", "return,csr"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].startswith("| return | -8.00 ± 1.63 | -6.33 ± 1.70 | +3.00, +0.00, +2.00 | +1.67 [")
    assert out[3].startswith("| csr % | 50.00 ± 0.00 | 60.00 ± 8.16 | +10.00, +0.00, +20.00 | +10.00 [")
    other = tmp_path / "c"
    other.mkdir()
    (other / "evaluation.json").write_text(json.dumps(record("c", [-1.0, -2.0], [0.1, 0.2])))
    with pytest.raises(SystemExit):
        paired.main([str(a), str(other)])
    assert "same seeds" in capsys.readouterr().err
