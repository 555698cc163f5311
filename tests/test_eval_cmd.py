"""emsiam eval: a tagged record for any checkpoint and data source; features as npz/HDF5."""

import contextlib
import io
import json

import h5py
import numpy as np
import pytest

from emsiam.cli import main
from emsiam.runs import read_metrics

from .conftest import TINY


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-epoch tiny run (no name: the default timestamp) and its console output."""
    root = tmp_path_factory.mktemp("evalcmd")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["train", *TINY, "optim.epochs=1", "eval.linear=false", f"out_dir={root / 'runs'}"]) == 0
    (run,) = (root / "runs").iterdir()
    return run, out.getvalue()


def test_train_prints_timestamped_run_directory_first(trained):
    run, out = trained
    assert out.splitlines()[0] == f"run directory: {run}"
    assert len(run.name) == 15 and run.name[8] == "-" and run.name.replace("-", "").isdigit()


def test_eval_appends_tagged_record_matching_training_eval(trained, capsys):
    run, _ = trained
    before = read_metrics(run)
    assert main(["eval", str(run), "eval.linear=true", "eval.linear_epochs=2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    after = read_metrics(run)
    assert after[:-1] == before
    rec = after[-1]
    assert rec["tag"] == "posthoc" and rec["epoch"] == 1 and "eval/knn_top1" not in rec
    # same checkpoint, same data: the same kNN as the training run's final evaluation
    assert rec["posthoc/knn_top1"] == pytest.approx(before[-1]["eval/knn_top1"])
    assert {"posthoc/linear_top1", "posthoc/collapse/z_std_sqrt_d"} <= set(rec)
    assert f"appended to {run / 'metrics.jsonl'}" in out and "knn_top1" in out


def test_eval_other_data_to_file_with_npz_features(trained, tmp_path):
    run, _ = trained
    n_before = len(read_metrics(run))
    out, feats = tmp_path / "evals.jsonl", tmp_path / "feats.npz"
    assert main(["eval", str(run), "--data", "data.n_train=256", "data.n_test=64", "data.subset_seed=3",
                 "eval.linear=false", "--tag", "other", "--out", str(out), "--features", str(feats),
                 "--no-progress"]) == 0
    assert len(read_metrics(run)) == n_before  # the run's metrics are untouched
    rec = json.loads(out.read_text().splitlines()[-1])
    assert rec["other/n_train"] == 256 and rec["other/n_test"] == 64 and "other/linear_top1" not in rec
    z = np.load(feats)
    assert z["train_features"].shape == (256, 16) and z["test_labels"].shape == (64,)
    assert len(z["classes"]) == 10 and json.loads(str(z["meta"]))["epoch"] == 1


def test_eval_hdf5_features_of_a_checkpoint_file(trained, tmp_path):
    run, _ = trained
    feats = tmp_path / "f.h5"
    ckpt = run / "checkpoints" / "last.pt"
    assert main(["eval", str(ckpt), "eval.linear=false", "--out", str(tmp_path / "e.jsonl"),
                 "--features", str(feats), "--no-progress"]) == 0
    with h5py.File(feats) as f:
        assert f["train_features"].shape == (512, 16) and f["test_features"].shape == (128, 16)
        assert json.loads(f.attrs["meta"])["backbone"] == "convnet"


@pytest.mark.parametrize("args, message", [
    (["model.dim=8"], "only data.*, eval.* and device"),
    (["--tag", "eval"], "--tag 'eval'"),
    (["--features", "x.csv"], "--features x.csv"),
])
def test_eval_refuses_bad_requests_before_compute(trained, capsys, args, message):
    run, _ = trained
    assert main(["eval", str(run), *args]) == 2
    assert message in capsys.readouterr().err
