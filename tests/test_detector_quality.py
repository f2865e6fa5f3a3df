"""eval/detector_quality.py (docs/detectors.md): bad command lines refused in one line before
anything is written; a tiny run on soc-hybrid, whose detectors read its SOC world's telemetry."""
import json

import pytest

import eval.detector_quality as dq
from tests.cli_checks import TOOL_ERROR

TINY = ["--envs", "8", "--steps", "8", "--train-windows", "256", "--epochs", "1", "--pyod-windows", "0",
        "--contamination", "0", "--no-figures"]


@pytest.mark.parametrize("argv, match", [
    (["--scenario", "no-such-world"], "no-such-world"),
    (["--target-fpr", "1.5"], "--target-fpr"),
    (["--window", "9", "--steps", "8"], "--window"),
    (["--contamination", "1"], "--contamination"),
    (["--policy", "nobody"], "--policy"),
    # streams too short for the study, found after gathering them but before --out is made (it
    # was made first, and the contamination sweep raised a traceback)
    (["--envs", "1", "--steps", "1", "--window", "1", "--train-windows", "256"],
     "the held-out stream has no attacked (or no clean) window"),
    (["--envs", "1", "--steps", "5", "--window", "1", "--seed", "21", "--train-windows", "256"],
     "the training stream has no attacked window to give --contamination 0.2"),
])
def test_refusals_write_nothing(tmp_path, capsys, argv, match):
    out = tmp_path / "dq"
    with pytest.raises(SystemExit) as exc:
        dq.main(argv + ["--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert TOOL_ERROR.match(err) and match in err, err
    assert not out.exists()


def test_soc_hybrid_measures_its_soc_worlds_telemetry(tmp_path):
    """(8 envs x 8 steps, a one-epoch autoencoder: ~5 CPU-s) soc-hybrid failed with an
    AttributeError before its SOC world was used; the table has every detector with an AUC."""
    out = tmp_path / "dq"
    out.mkdir()
    (out / "roc.png").write_text("an earlier run's")  # --force with --no-figures removes it
    assert dq.main(TINY + ["--scenario", "soc-hybrid", "--out", str(out), "--force"]) in (0, None)
    assert sorted(p.name for p in out.iterdir()) == ["table.json", "table.md"]
    table = json.loads((out / "table.json").read_text())
    assert table["settings"]["scenario"] == "soc-hybrid"
    names = {d["detector"] for d in table["detectors"]}
    assert {"autoencoder", "z-score (mean/std)", "z-score (median/MAD)"} <= names, names
    for d in table["detectors"]:
        assert 0.0 <= d["roc_auc"] <= 1.0
