import subprocess
import sys

from emsiam.cli import main
from emsiam.runs import read_metrics


def test_cli_train_end_to_end(tiny_overrides, tmp_path, capsys):
    assert main(["train", "--config", "demo", "name=cli", *tiny_overrides]) == 0
    out = capsys.readouterr().out
    assert "final:" in out and "knn_top1" in out
    recs = read_metrics(tmp_path / "runs" / "cli")
    assert recs[-1]["epoch"] == 2


def test_cli_config_error_exit_code(capsys):
    assert main(["train", "optim.epoch=3"]) == 2
    assert "Did you mean epochs" in capsys.readouterr().err


def test_cli_missing_data_fails_before_compute(tmp_path, capsys):
    rc = main(["train", "data.source=imagefolder", f"data.root={tmp_path / 'nowhere'}", f"out_dir={tmp_path}"])
    assert rc == 3  # data error
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere") in err and "data.root" in err
    assert not (tmp_path / "run").exists()  # nothing written


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "emsiam", "presets"], capture_output=True, text=True, check=True)
    assert "cpu" in r.stdout.split()
