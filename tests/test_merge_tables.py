"""analysis.merge_tables: swapping re-run configurations into a saved tidy table."""

import pandas as pd
import pytest

from analysis.merge_tables import label_of, main, replace_labels
from analysis.results import read_table


def rows(study, label, seeds, knn, status="done", extra=None):
    out = []
    for s in seeds:
        for epoch, k in ((0, 37.0), (2, knn + s)):
            out.append({"run": f"{study}/{label}_s{s}", "study": study, "status": status, "epoch": epoch,
                        "eval/knn_top1": k, **(extra or {})})
    return out


@pytest.fixture
def old():
    return pd.DataFrame(rows("ema_vs_predictor", "simsiam", [0, 1], 40.0)
                        + rows("ema_vs_predictor", "ema_m0.8", [0, 1], 41.0))


def test_label_strips_study_and_seed():
    assert label_of("ema_vs_predictor/ema_m0.8_s12") == "ema_m0.8"
    assert label_of("k10_s0") == "k10"


def test_only_named_labels_are_replaced(old):
    new = pd.DataFrame(rows("x", "ema_m0.8", [0, 1], 45.0, extra={"bank/init_weight": 0.6})
                       + rows("x", "simsiam", [0, 1], 99.0))
    merged = replace_labels(old, new, ["ema_m0.8"])
    final = merged[merged["epoch"] == 2].set_index("run")["eval/knn_top1"]
    assert final["ema_vs_predictor/ema_m0.8_s1"] == 46.0  # re-run row, renamed into the table's study
    assert final["ema_vs_predictor/simsiam_s0"] == 40.0  # untouched: not a named label
    assert len(merged) == len(old)
    assert set(merged["study"]) == {"ema_vs_predictor"}
    assert "bank/init_weight" in merged.columns  # new metrics join as columns


def test_seeds_option_keeps_only_those_seeds(old):
    one_seed = old[old["run"].str.endswith("_s0")]
    new = pd.DataFrame(rows("x", "ema_m0.8", [0, 1], 45.0))
    merged = replace_labels(one_seed, new, ["ema_m0.8"], seeds=[0])
    assert sorted(set(merged["run"])) == ["ema_vs_predictor/ema_m0.8_s0", "ema_vs_predictor/simsiam_s0"]
    assert merged["eval/knn_top1"].max() == 45.0


def test_refuses_missing_or_unfinished_reruns(old):
    with pytest.raises(ValueError, match="no rows for"):
        replace_labels(old, pd.DataFrame(rows("x", "ema_m0.8", [0], 45.0)), ["ema_m0.8", "ema_m0.9"])
    with pytest.raises(ValueError, match="not done"):
        replace_labels(old, pd.DataFrame(rows("x", "ema_m0.8", [0], 45.0, status="running")), ["ema_m0.8"])


def test_cli_leaves_the_table_intact_on_error(tmp_path, old):
    table = tmp_path / "t.csv"
    old.to_csv(table, index=False)
    before = table.read_bytes()
    newer = tmp_path / "new.csv"
    pd.DataFrame(rows("x", "ema_m0.8", [0], 45.0, status="failed")).to_csv(newer, index=False)
    with pytest.raises(SystemExit, match="not done"):
        main([str(table), str(newer), "--labels", "ema_m0.8"])
    assert table.read_bytes() == before
    pd.DataFrame(rows("x", "ema_m0.8", [0, 1], 45.0)).to_csv(newer, index=False)
    assert main([str(table), str(newer), "--labels", "ema_m0.8"]) == 0
    got = read_table(table)
    assert got.loc[got["run"] == "ema_vs_predictor/ema_m0.8_s0", "eval/knn_top1"].max() == 45.0
    assert not list(tmp_path.glob(".*.tmp"))
