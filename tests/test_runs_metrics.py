"""emsiam.runs.metrics: the one reader of a run directory (config, status, records)."""

import json

import pytest
import yaml

from emsiam.runs import DONE, INCOMPLETE, dedupe_records, read_run, read_status, run_dirs


def _run(d, epochs=2, records=(), status=None):
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "optim": {"epochs": epochs}}))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if status is not None:
        (d / "status.json").write_text(status if isinstance(status, str) else json.dumps(status))
    return d


def test_default_status_without_status_json(tmp_path):
    done = read_run(_run(tmp_path / "a", records=[{"epoch": 0}, {"epoch": 1}, {"epoch": 2}]))
    assert done.status == DONE == "done"
    assert done.config == {"seed": 0, "optim": {"epochs": 2}} and [r["epoch"] for r in done.records] == [0, 1, 2]
    assert read_run(_run(tmp_path / "b", records=[{"epoch": 0}, {"epoch": 1}])).status == INCOMPLETE == "incomplete"
    assert read_run(_run(tmp_path / "c")).status == "incomplete"  # no records at all


def test_status_json_wins(tmp_path):
    d = _run(tmp_path / "a", records=[{"epoch": 2}], status={"status": "failed", "error": "boom"})
    assert read_run(d).status == "failed" and read_status(d) == {"status": "failed", "error": "boom"}
    assert read_status(tmp_path / "none") == {}
    # a status.json without a status reads as the default
    assert read_run(_run(tmp_path / "b", records=[{"epoch": 2}], status={"note": "x"})).status == "done"


def test_unreadable_status_json_warns_and_reads_as_none(tmp_path):
    d = _run(tmp_path / "a", records=[{"epoch": 1}], status='{"status": "runn')
    with pytest.warns(UserWarning, match="status.json: unreadable"):
        assert read_run(d).status == "incomplete"


def test_torn_metrics_line_is_skipped(tmp_path):
    d = _run(tmp_path / "a", records=[{"epoch": 0}, {"epoch": 1}])
    with open(d / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "ste')
    with pytest.warns(UserWarning, match="skipped 1 unreadable line"):
        assert [r["epoch"] for r in read_run(d).records] == [0, 1]


def test_run_dirs_sorted_root_included(tmp_path):
    root = _run(tmp_path / "root")
    b, a = _run(root / "s" / "b"), _run(root / "s" / "a")
    assert run_dirs(root) == [root, a, b]


def test_dedupe_keeps_last_record_per_tag_and_epoch():
    recs = [{"epoch": 1, "v": 1}, {"epoch": 1, "tag": "post", "v": 2}, {"epoch": 1, "v": 3}]
    assert dedupe_records(recs) == [{"epoch": 1, "v": 3}, {"epoch": 1, "tag": "post", "v": 2}]
