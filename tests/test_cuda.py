"""CUDA checks: skipped without a GPU; ``pytest -m cuda`` runs them (benchmarks/gpu_check.sh does).

fp32 comparisons run in cuDNN's deterministic mode (``cudnn.deterministic=True``,
``cudnn.benchmark=False``, TF32 off: the config's default ``tf32=false``), so the
tolerances below cover float summation order, not algorithm choice. The measured
differences are recorded as test properties (the check's JSON carries them).
Not yet run on a GPU in this project.
"""

import pytest
import torch

from emsiam import alternation
from emsiam.augment import augment, cifar_recipe, view_seeds
from emsiam.config import load_config
from emsiam.setup import setup
from emsiam.train import train

from .conftest import TINY
from .distributed_worker import SimulatedCrash, crash_after
from .test_alternation import EXACT, _steps

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

#: k = 1 vs SimSiam, fp32, deterministic mode: relative difference of the losses; parameters.
K1_LOSS_RTOL, K1_PARAM_RTOL, K1_PARAM_ATOL = 1e-5, 1e-4, 1e-6
#: augmentation on CUDA vs CPU (normalised pixels, |x| up to ~2.5): max and mean absolute difference.
AUG_MAX_ATOL, AUG_MEAN_ATOL = 1e-3, 1e-5


@pytest.fixture
def deterministic():
    """cuDNN deterministic mode for the duration of a test."""
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    cudnn.deterministic, cudnn.benchmark = True, False
    yield
    cudnn.deterministic, cudnn.benchmark = saved


def test_augment_cpu_and_cuda_agree(record_property):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (256, 3, 40, 40), dtype=torch.uint8, generator=g)
    seeds = view_seeds(0, 3, torch.arange(256), 0)
    spec = cifar_recipe(resolution=32)
    cpu = augment(images, seeds, spec)
    gpu = augment(images.cuda(), seeds.cuda(), spec).cpu()
    diff = (gpu - cpu).abs()
    record_property("augment_max_abs_diff", float(diff.max()))
    record_property("augment_mean_abs_diff", float(diff.mean()))
    assert float(diff.max()) <= AUG_MAX_ATOL and float(diff.mean()) <= AUG_MEAN_ATOL
    assert torch.equal(augment(images.cuda(), seeds.cuda(), spec), augment(images.cuda(), seeds.cuda(), spec))


def test_one_step_alternation_is_simsiam_on_cuda_fp32(tmp_path, deterministic, record_property):
    """k = 1 with replayed views reproduces SimSiam on CUDA in fp32 (20 steps)."""
    common = EXACT + [f"out_dir={tmp_path}", "device=cuda", "amp=none", "tf32=false"]
    ref = setup(load_config(None, common + ["name=ref"]))
    alt = setup(load_config(None, common + ["name=alt", "method.variant=kstep", "method.k=1"]))
    alt.model.load_state_dict(ref.model.state_dict())
    la, lb = torch.tensor(_steps(ref, 20)), torch.tensor(_steps(alt, 20))
    record_property("k1_loss_max_rel_diff", float(((la - lb).abs() / la.abs()).max()))
    assert torch.allclose(la, lb, rtol=K1_LOSS_RTOL, atol=0)
    sa, sb = ref.model.state_dict(), alt.model.state_dict()
    worst = max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)
    record_property("k1_param_max_abs_diff", worst)
    for key in sa:
        assert sa[key].device.type == "cuda"
        torch.testing.assert_close(sb[key].float(), sa[key].float(), rtol=K1_PARAM_RTOL, atol=K1_PARAM_ATOL, msg=key)


@pytest.mark.parametrize("variant", ["ema", "kstep"])
def test_resume_on_cuda_matches_the_uninterrupted_run(tmp_path, monkeypatch, deterministic, variant, record_property):
    """A CUDA run stopped after epoch 1 and resumed (checkpoint loaded with map_location=cuda:
    RNG states back on the CPU) ends where the uninterrupted run ends."""
    extra = ["method.variant=ema"] if variant == "ema" else ["method.variant=kstep", "method.k=3"]
    base = TINY + [f"out_dir={tmp_path}", "device=cuda", "eval.linear=false", "optim.epochs=2", *extra]
    full = train(load_config(None, base + ["name=full"]))
    real = alternation._end_of_epoch
    monkeypatch.setattr(alternation, "_end_of_epoch", crash_after(1))
    with pytest.raises(SimulatedCrash):
        train(load_config(None, base + ["name=cut"]))
    monkeypatch.setattr(alternation, "_end_of_epoch", real)
    cut = train(load_config(None, base + ["name=cut", "resume=true"]))
    assert [r["epoch"] for r in cut] == [r["epoch"] for r in full] == [0, 1, 2]
    a, b = full[-1]["train/loss"], cut[-1]["train/loss"]
    record_property(f"resume_{variant}_loss_rel_diff", abs(a - b) / abs(a))
    assert abs(a - b) <= 1e-5 * abs(a), (a, b)
    assert abs(full[-1]["eval/knn_top1"] - cut[-1]["eval/knn_top1"]) <= 1.0
