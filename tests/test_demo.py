"""`make demo` (experiments.demo): the runs it makes, and the whole path on tiny data.

The demo's numbers themselves are measured, not tested (README "Synthetic demo")."""

from emsiam.cli import main as cli_main
from experiments import demo


def _in_process(spec, threads):
    """Executor for run_studies: ``emsiam train`` in this process (no interpreter start-up)."""
    cmd = spec.command()
    return cli_main(cmd[cmd.index("train"):]), ""


TINY = [
    "data.n_train=256", "data.n_test=64", "model.convnet_widths=[8,16]", "model.proj_hidden=32",
    "model.dim=32", "optim.batch_size=32", "eval.knn_k=10", "method.probe_images=16", "method.probe_views=2",
]


def test_dry_run_lists_the_demo_runs(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for label in ("k10", "kepoch", "simsiam", "ema_m0.5", "simsiam_no_predictor"):
        assert f"{label}_s0" in out
    assert "data.resolution=24" in out and f"optim.epochs={demo.EPOCHS}" in out
    assert not any(tmp_path.iterdir())  # nothing run


def test_ema_row_is_long_enough_to_judge():
    """The report calls an EMA row "too short to judge" while m^E > 0.05."""
    ema = [r for st in demo.STUDIES for label, r in st.runs.items() if label.startswith("ema_")]
    for overrides in ema:
        m = float(next(o for o in overrides if o.startswith("method.ema_m=")).split("=")[1])
        assert m ** demo.EPOCHS < 0.05


def test_demo_end_to_end_on_tiny_data(tmp_path):
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out), "--epochs", "2", "--workers", "1", "--set", *TINY],
                     executor=_in_process) == 0
    assert (out / "ema_vs_predictor" / "simsiam_s0" / "metrics.jsonl").exists()  # the shared reference
    report = out / "report"
    text = (report / "report.md").read_text()
    assert "## kstep_sweep" in text and "## ema_vs_predictor" in text
    for fig in ("kstep_sweep/accuracy_vs_k.png", "kstep_sweep/learning_curves.png",
                "ema_vs_predictor/learning_curves.png"):
        assert (report / fig).exists(), fig
