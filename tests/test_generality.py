"""The studies run unchanged on any npz or ImageFolder dataset: grayscale, 28 px, 96 px.

Each fixture is made here; a small k-sweep plus an EMA run goes through the study runner (in
process, to stay fast) and the report, exactly as on CIFAR-10.
"""

import numpy as np
import pytest
from PIL import Image

from analysis.report import build_report
from emsiam.cli import main as cli_main
from experiments import ema_vs_predictor, kstep_sweep
from experiments.sweep import Study, run_studies

TINY_RUN = [
    "model.convnet_widths=[8,16]", "model.proj_hidden=32", "model.dim=32", "optim.batch_size=32",
    "eval.linear=false", "eval.knn_k=10", "method.probe_images=16", "method.probe_views=2",
]


def _images(n: int, size: int, channels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n images of 4 classes: a bright square whose corner depends on the class, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    imgs = rng.integers(0, 60, size=(n, size, size, channels), dtype=np.uint8)
    h = size // 2
    for i, c in enumerate(labels):
        y, x = divmod(int(c), 2)
        imgs[i, y * h : (y + 1) * h, x * h : (x + 1) * h] += 150
    return (imgs[..., 0] if channels == 1 else imgs), labels.astype(np.int64)


def _npz(root, size, channels):
    root.mkdir()
    for split, n in (("train", 192), ("test", 64)):
        images, labels = _images(n, size, channels, seed=len(split))
        np.savez(root / f"{split}.npz", images=images, labels=labels)
    return ["data.source=npz", f"data.root={root}"]


def _imagefolder(root, size):
    for split, n in (("train", 192), ("test", 64)):
        images, labels = _images(n, size, 1, seed=len(split))
        for i, (im, c) in enumerate(zip(images, labels)):
            d = root / split / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(im, mode="L").save(d / f"{i:04d}.png")
    return ["data.source=imagefolder", f"data.root={root}", f"data.cache_dir={root.parent / 'cache'}"]


def _in_process(spec, threads):
    """Executor for run_studies: ``emsiam train`` in this process (no interpreter start-up)."""
    cmd = spec.command()
    return cli_main(cmd[cmd.index("train"):]), ""


FIXTURES = {
    "npz_gray_28px": lambda p: _npz(p / "gray28", 28, 1),
    "npz_rgb_96px": lambda p: _npz(p / "rgb96", 96, 3),
    "imagefolder_gray_28px": lambda p: _imagefolder(p / "folder28", 28),
}


@pytest.mark.parametrize("fixture", list(FIXTURES))
def test_studies_run_unchanged_on_other_datasets(tmp_path, fixture):
    data = FIXTURES[fixture](tmp_path)
    ksweep = Study("kstep_sweep", "", {k: kstep_sweep.STUDY.runs[k] for k in ("simsiam", "k10", "kepoch")})
    ema = Study("ema_vs_predictor", "", {"ema_m0.8": ema_vs_predictor.STUDY.runs["ema_m0.8"]})
    results = run_studies([ksweep, ema], preset="demo", seeds=1, out=tmp_path / "runs", data=data,
                          extra=TINY_RUN, epochs=1, executor=_in_process, quiet=True)
    for res in results:
        assert all(r["status"] == "done" for r in res.records.values()), res.records
        final = res.table[res.table["epoch"] == 1]
        assert len(final) == len(res.specs) and final["eval/knn_top1"].notna().all()
    text = build_report(tmp_path / "runs", tmp_path / "report").read_text()
    assert "## kstep_sweep" in text and "## ema_vs_predictor" in text
    assert (tmp_path / "report" / "kstep_sweep").exists() or any((tmp_path / "report").glob("*.png"))
