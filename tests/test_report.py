import numpy as np

from analysis import report
from tests.test_figures import fake_records, write_run


def make_root(tmp_path):
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root / "kstep_sweep", f"simsiam_s{seed}", [f"seed={seed}"], fake_records(40 + seed, 0.9))
        write_run(root / "kstep_sweep", f"k10_s{seed}", [f"seed={seed}", "method.variant=kstep", "method.k=10"],
                  fake_records(39, 0.95, kstep=True))
    write_run(root / "stopgrad", "stopgrad_s0", ["method.stopgrad=true"], fake_records(40, 0.9))
    write_run(root / "stopgrad", "no_stopgrad_s0", ["method.stopgrad=false"], fake_records(20, 0.1))
    write_run(root / "mystery", "thing_s0", ["method.variant=mean_input"], fake_records(35, 0.8))
    su = root / "su_dynamics"
    su.mkdir()
    t = np.linspace(0, 10, 50)
    for name in ("stopgrad", "no_stopgrad"):
        np.savez(su / f"{name}.npz", t=t, phi=np.linspace(0.6, 1, 50), theta=np.linspace(0.1, 0.5, 50), loss=t * 0)
    return root


def test_report_builds(tmp_path, capsys):
    root = make_root(tmp_path)
    assert report.main([str(root), "--out", str(tmp_path / "rep")]) == 0
    assert "report.md" in capsys.readouterr().out
    md = (tmp_path / "rep" / "report.md").read_text()
    for heading in ("## kstep_sweep", "## stopgrad", "## mystery", "## su_dynamics"):
        assert heading in md
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert "| 2 |" in rows["k10"] and "10-step" in rows["k10"] and "68.7" in rows["k10"]
    assert "39.0 ± 0.0" in rows["k10"] and "| yes |" in rows["k10"]
    assert "40.5 ± 0.5" in rows["simsiam"]
    assert "without stop-grad" in rows["no_stopgrad"] and "| yes |" in rows["no_stopgrad"]
    assert "collapse" in rows["no_stopgrad"]
    assert "thing" in rows  # unknown study: generic table
    for img in ("kstep_sweep/accuracy_vs_k.png", "kstep_sweep/staleness_vs_k.png",
                "stopgrad/stopgrad_panels.png", "su_dynamics/su_phase.png", "mystery/learning_curves.png"):
        assert f"]({img})" in md
        assert (tmp_path / "rep" / img).stat().st_size > 0


def test_report_flat_dir_default_out(tmp_path):
    root = make_root(tmp_path) / "kstep_sweep"
    path = report.build_report(root)
    assert path == root / "report" / "report.md"
    assert "## kstep_sweep" in path.read_text()


def test_judge():
    assert report.judge("collapse", 40, 30, 0.2)[0] == "yes"
    assert report.judge("collapse", 40, 45, 0.2)[0] == "partly"
    assert report.judge("learns", 40, 45, 0.9)[0] == "yes"
    assert report.judge("learns", 40, 35, 0.9)[0] == "no"
    assert report.judge("fails", 40, 39, 0.9)[0] == "yes"


def test_unfinished_run_is_not_judged_complete(tmp_path):
    root = tmp_path / "runs"
    records = fake_records(20, 0.1)
    write_run(root / "stopgrad", "no_stopgrad_s0", ["method.stopgrad=false"], records[:-1])
    md = report.build_report(root, tmp_path / "rep").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| no_stopgrad"))
    assert "incomplete" in row and "| yes |" not in row
