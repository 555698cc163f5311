import json
from pathlib import Path

import pytest
import yaml

from analysis import figures
from emsiam.config import load_config, to_dict


def write_run(root: Path, name: str, overrides: list[str], records: list[dict], status: str = "done") -> Path:
    d = root / name
    d.mkdir(parents=True)
    cfg = to_dict(load_config("demo", overrides + [f"name={name}", "optim.epochs=3"]))
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (d / "status.json").write_text(json.dumps({"status": status}))
    return d


def fake_records(knn_end: float, zs: float, kstep: bool = False, ema: bool = False, linear: bool = False,
                 epochs: int = 3, init_weight: float | None = None) -> list[dict]:
    """Records of a fake run; ``init_weight``: an ema run logging bank/init_weight, that value at the end."""
    def ev(epoch, knn, z):
        r = {"eval/knn_top1": knn, "collapse/z_std": z / 5.66, "collapse/z_std_sqrt_d": z,
             "collapse/inv_sqrt_d": 1 / 5.66, "collapse/eff_rank": 10.0, "gap/cos_h_E": 0.5 + 0.1 * epoch,
             "gap/cos_F_E": 0.9 - 0.05 * epoch}
        if ema:
            r["gap/cos_eta_E"] = 0.2 * epoch
            if init_weight is not None:
                r["bank/init_weight"] = init_weight ** (epoch / epochs)
        if linear:
            r["eval/linear_top1"] = knn + 3
        return r

    recs = [{"epoch": 0, "step": 0, **ev(0, 30.0, 0.2)}]
    for e in range(1, epochs + 1):
        r = {"epoch": e, "step": 10 * e, "train/loss": -0.5 - 0.1 * e, "train/lr": 0.1}
        if kstep:
            r.update({"bank/staleness_cos": 0.99 - 0.01 * e, "bank/age_steps": float(e)})
        if e % 2 == 0 or e == epochs:
            r.update(ev(e, 30 + (knn_end - 30) * e / epochs, zs))
        recs.append(r)
    return recs


@pytest.fixture
def fake_runs(tmp_path):
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, f"simsiam_s{seed}", [f"seed={seed}", "method.variant=simsiam"], fake_records(40 + seed, 0.9))
        for k in (1, 10, "epoch"):
            write_run(root, f"k{k}_s{seed}", [f"seed={seed}", "method.variant=kstep", f"method.k={k}"],
                      fake_records(38 + seed, 0.95, kstep=True, linear=True))
        for m in (0.5, 0.8):
            write_run(root, f"ema_m{m}_s{seed}", [f"seed={seed}", "method.variant=ema", f"method.ema_m={m}",
                                                   "method.predictor=none"], fake_records(39, 0.9, ema=True))
    write_run(root, "nopred_s0", ["method.variant=simsiam", "method.predictor=none"], fake_records(25, 0.2))
    write_run(root, "nosg_s0", ["method.variant=simsiam", "method.stopgrad=false"], fake_records(20, 0.1))
    # a partially finished sweep: a run with no metrics yet and a half-written line
    (root / "pending_s0").mkdir()
    (root / "pending_s0" / "config.yaml").write_text((root / "nosg_s0" / "config.yaml").read_text())
    with open(root / "k10_s1" / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 4, "ste')
    return root


@pytest.mark.parametrize("name", sorted(figures.FIGURES))
def test_figure_renders(fake_runs, tmp_path, name):
    paths = figures.FIGURES[name](fake_runs, tmp_path / "out" / name)
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    for p in paths:
        assert p.exists() and p.stat().st_size > 0


@pytest.mark.parametrize("name", sorted(figures.FIGURES))
def test_figure_empty_dir_raises(tmp_path, name):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError):
        figures.FIGURES[name](tmp_path / "empty", tmp_path / "out" / name)


def test_figure_without_matching_runs_raises(fake_runs, tmp_path):
    only_simsiam = tmp_path / "only"
    only_simsiam.mkdir()
    (fake_runs / "simsiam_s0").rename(only_simsiam / "simsiam_s0")
    for fn in (figures.accuracy_vs_k, figures.ema_vs_m, figures.staleness_vs_k, figures.stopgrad_panels):
        with pytest.raises(ValueError):
            fn(only_simsiam, tmp_path / "out" / fn.__name__)


def test_grouping_pools_seeds(fake_runs):
    groups = figures.group_runs(figures.load_runs(fake_runs))
    by_label = {g.label: g for g in groups}
    assert by_label["simsiam"].n == 2 and by_label["k10"].n == 2 and by_label["nosg"].n == 1
    assert "pending" not in by_label  # no metrics yet: skipped
    mean, std, n = by_label["simsiam"].stat(lambda r: r.final(figures.KNN))
    assert n == 2 and mean == pytest.approx(40.5) and std == pytest.approx(0.5**0.5)  # sample std, ddof = 1
    assert by_label["simsiam"].values(lambda r: r.final(figures.KNN)) == {0: 40.0, 1: 41.0}  # keyed by seed
    mean, std, n = by_label["nosg"].stat(lambda r: r.final(figures.KNN))
    assert n == 1 and mean == 20.0 and std != std  # one run: no spread (nan)
    e, m, s = by_label["simsiam"].curve(figures.KNN)
    assert s[-1] == pytest.approx(0.5**0.5)


def test_k_in_steps_for_the_log_axis(tmp_path):
    """k on the accuracy-vs-k axis is in SGD steps: SimSiam 1, an integer k capped at the epoch,
    'epoch' and 'Eepochs' from the logged steps per epoch (10 in the fake records)."""
    root = tmp_path / "runs"
    for label, over in [("simsiam", ["method.variant=simsiam"]), ("k5", ["method.variant=kstep", "method.k=5"]),
                        ("k100", ["method.variant=kstep", "method.k=100"]),
                        ("kepoch", ["method.variant=kstep", "method.k=epoch"]),
                        ("k2epochs", ["method.variant=kstep", "method.k=2epochs"])]:
        write_run(root, f"{label}_s0", over, fake_records(40, 0.9, kstep=label != "simsiam"))
    steps = {g.label: figures.k_steps(g) for g in figures.group_runs(figures.load_runs(root))}
    assert steps == {"simsiam": 1, "k5": 5, "k100": 10, "kepoch": 10, "k2epochs": 20}
    assert figures.accuracy_vs_k(root, tmp_path / "fig" / "acc")[0].exists()


def test_k_in_steps_from_evaluation_records_only(tmp_path):
    """A report rebuilt from tidy tables has only the evaluated epochs (here 0, 2 and 3, no epoch 1):
    k = epoch is still placed at its steps per epoch, on both k-sweep figures."""
    root = tmp_path / "runs"
    for label, over in [("k5", ["method.variant=kstep", "method.k=5"]),
                        ("kepoch", ["method.variant=kstep", "method.k=epoch"])]:
        recs = [r for r in fake_records(40, 0.9, kstep=True) if r["epoch"] != 1]
        write_run(root, f"{label}_s0", over, recs)
    groups = figures.group_runs(figures.load_runs(root))
    assert {g.label: figures.k_steps(g) for g in groups} == {"k5": 5, "kepoch": 10}
    _, ks = figures.ksweep._k_points(groups, figures.STALENESS)
    assert list(ks) == [5, 10]  # k = epoch is on the staleness axis too


def test_saved_figures_are_byte_identical_when_rebuilt(tmp_path):
    """The PDF has no creation date: rebuilding a report rewrites unchanged figures byte for byte."""
    import time

    import matplotlib.pyplot as plt

    from analysis.figures.common import save_figure

    def draw(stem):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        return save_figure(fig, stem)

    first = [p.read_bytes() for p in draw(tmp_path / "a" / "fig")]
    time.sleep(1.1)  # a creation date, if written, would differ by a second
    assert [p.read_bytes() for p in draw(tmp_path / "b" / "fig")] == first


def test_staleness_vs_k_averages_each_run_over_its_epochs(tmp_path):
    """The staleness figure's points are each run's average over epochs 1..E (fake records:
    staleness 0.98, 0.97, 0.96 -> 0.97; age 1, 2, 3 -> 2), not the last epoch (0.96, 3)."""
    from analysis.figures.ksweep import run_averages

    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, f"k5_s{seed}", [f"seed={seed}", "method.variant=kstep", "method.k=5"],
                  fake_records(40, 0.9, kstep=True))
    groups = figures.group_runs(figures.load_runs(root))
    (stale,), (age,) = run_averages(groups, figures.STALENESS), run_averages(groups, figures.AGE)
    assert stale[0] == pytest.approx(0.97) and stale[2] == 2
    assert age[0] == pytest.approx(2.0) and age[1] == 0.0
