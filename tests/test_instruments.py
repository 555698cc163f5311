"""The lab's instruments measure what they claim (issue "Trustworthy instruments").

Each test fails on the code before the fix it guards: EMA fill order and batch size, the EMA
loss target, staleness timing, bf16 exactness, the leave-one-out expectation gap, NaN
detection, host syncs per step; plus the E-/M-step semantics that no test pinned before
(replay for k > 1, momentum, mean_input, lr schedule, frozen predictor, eval-mode E-step,
stop-gradient).
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emsiam import alternation
from emsiam.alternation import NonFiniteLoss, m_step, outer_iterations
from emsiam.augment import augment, view_seeds
from emsiam.config import load_config
from emsiam.evaluate import loo_cosines
from emsiam.runs import load_checkpoint, read_metrics
from emsiam.setup import lr_schedule, set_lr, setup
from emsiam.train import train
from emsiam.targets import target_mode

SMALL = [
    "data.n_train=640", "data.n_test=64", "model.convnet_widths=[8,16]", "model.proj_hidden=32",
    "model.dim=32", "optim.batch_size=32", "optim.epochs=1", "progress=false", "eval.linear=false",
    "method.probe_images=32", "method.probe_views=4",  # the evaluation's probes (default 256 x 8: slower than an epoch)
]


#: Half the training set: 10 steps per epoch, for tests that train several runs over several epochs.
HALF = ["data.n_train=320"]


def _setup(tmp_path, *extra, name="r"):
    return setup(load_config(None, SMALL + [f"out_dir={tmp_path}", f"name={name}", *extra]))


def _drive(s, n):
    """n steps as fit() takes them (E-step, then m_step under the run's autocast, then the
    moving-average update); returns losses."""
    k = alternation.steps_per_outer(s.cfg, len(s.batches))
    losses, step = [], 0
    for group in outer_iterations(s.batches.indices(0), s.cfg.optim.batch_size, k):
        s.variant.e_step(group, s.train.images, step)
        for idx in group:
            losses.append(m_step(s, idx, s.train.images.index_select(0, idx), step).item())
            s.variant.update_targets(idx, step)
            step += 1
            if step == n:
                return losses
    return losses


# ---- EMA ------------------------------------------------------------------------------------


def test_ema_fill_is_shuffled_at_training_batch_size(tmp_path):
    """η₀ is filled in a seeded random order at the training batch size, every row once:
    batches in dataset order would be single-class on ImageFolder data (sorted by label)."""
    s = _setup(tmp_path, "method.variant=ema", "optim.batch_size=96")
    seen_batches, writes = [], []
    enc = s.model.encoder
    hook = enc.register_forward_hook(lambda m, i, o: seen_batches.append(i[0].shape[0]))
    write = s.variant.bank.write
    s.variant.bank.write = lambda idx, eta, version: (writes.append(idx.clone()), write(idx, eta, version))
    s.variant.start(s.train.images, s.cfg.optim.batch_size)
    hook.remove()
    assert set(seen_batches) == {96}  # 640 = 6 x 96 + 64: the last batch overlaps, still 96 images
    rows = torch.cat(writes)
    assert torch.equal(rows.sort().values, torch.arange(640))  # every row written exactly once
    # not dataset order: no written batch is a contiguous index range (a label block)
    assert all((w.diff() != 1).any() for w in writes)
    # seeded: the same seed fills in the same order, another seed in another
    s2 = _setup(tmp_path, "method.variant=ema", "optim.batch_size=96", name="r2")
    s2.model.load_state_dict(s.model.state_dict())
    s2.variant.start(s2.train.images, 96)
    idx = torch.arange(640)
    assert torch.equal(s2.variant.bank.read(idx), s.variant.bank.read(idx))


@pytest.mark.parametrize("view", ["mean", "other", "extra"])
def test_ema_loss_uses_the_targets_from_before_the_step(tmp_path, view):
    """θ_t = argmin L(θ, η_{t−1}): the loss uses the bank as it was before this step, so no loss
    term's target contains its own view; then η ← m·η + (1−m)·u with u from this step's views."""
    s = _setup(tmp_path, "method.variant=ema", "method.ema_m=0.8", f"method.ema_view={view}")
    s.variant.start(s.train.images, 32)
    idx = s.batches.indices(0)[:32]
    x = s.train.images.index_select(0, idx)
    old = s.variant.bank.read(idx)[:, 0].clone()
    x1, x2, x3 = s.variant.views(x, idx, 0, n=3)
    state = {k: v.clone() for k, v in s.model.state_dict().items()}
    loss = s.variant.loss(idx, x, 0)
    torch.testing.assert_close(s.variant.bank.read(idx)[:, 0], old, rtol=0, atol=0)  # loss() leaves η as it was
    s.variant.update_targets(idx, 0)  # the loop's call after the M-step
    s.model.load_state_dict(state)
    with target_mode(s.model):  # train-mode BN, as in the step's forward
        p1, p2, z1, z2 = s.model(x1, x2)
        u = {"mean": 0.5 * (F.normalize(z1, dim=1) + F.normalize(z2, dim=1)),
             "other": F.normalize(z2, dim=1), "extra": F.normalize(s.model.encoder(x3), dim=1)}[view]
        expected = s.variant.pair_loss(p1, p2, old, old)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s.variant.bank.read(idx)[:, 0], 0.8 * old + 0.2 * u, rtol=1e-4, atol=1e-5)


def test_ema_m0_has_no_constant_self_term(tmp_path):
    """At m = 0 the old order made one loss term D(z2, sg(z2)) = −1: a constant −½ with zero
    gradient. With the bank read first, both terms carry a gradient."""
    s = _setup(tmp_path, "method.variant=ema", "method.ema_m=0", "method.ema_view=other")
    s.variant.start(s.train.images, 32)
    idx = s.batches.indices(0)[:32]
    x = s.train.images.index_select(0, idx)
    x1, x2 = s.variant.views(x, idx, 0)
    eta = s.variant.bank.read(idx)[:, 0].clone()
    loss = s.variant.loss(idx, x, 0)
    _, _, z1, z2 = s.model(x1, x2)  # predictor=none for ema: p = z
    assert loss.item() > -0.9  # the old order gave ≈ −0.5 + ½D(z1, z2) ≤ −0.5 − ½cos
    torch.testing.assert_close(loss.detach(), 0.5 * (s.variant.D(z1, eta) + s.variant.D(z2, eta)).detach(),
                               rtol=1e-4, atol=1e-5)


def test_ema_logs_init_weight_and_keeps_it_across_resume(tmp_path):
    """``bank/init_weight`` = mean m^n over rows: 1 at init, m^E after E epochs (every image is
    visited once per epoch when the batch divides the set), restored from the checkpoint."""
    common = SMALL + HALF + [f"out_dir={tmp_path}", "method.variant=ema", "method.ema_m=0.5", "optim.epochs=2"]
    recs = train(load_config(None, common + ["name=full"]))
    assert [r["bank/init_weight"] for r in recs] == [1.0, 0.5, 0.25]
    from tests.test_runs import _train_until

    _train_until(load_config(None, common + ["name=part"]), stop_after_epoch=1)
    resumed = train(load_config(None, common + ["name=part", "resume=true"]))
    assert resumed[-1]["bank/init_weight"] == 0.25
    assert load_checkpoint(tmp_path / "part/checkpoints/last.pt")["variant"]["updates"].tolist() == [2] * 320


# ---- staleness, precision, expectation gap ----------------------------------------------------


def test_staleness_is_probed_before_the_step(tmp_path):
    """With k = 1 the target is used by the step right after it was computed: cos = 1, age 0.
    (Probing after the optimizer step gave 0.996.)"""
    recs = train(load_config(None, SMALL + HALF + [f"out_dir={tmp_path}", "name=k1", "method.variant=kstep",
                                                   "method.k=1", "method.diag_every=1"]))
    assert recs[-1]["bank/staleness_cos"] == pytest.approx(1.0, abs=1e-6)
    assert recs[-1]["bank/age_steps"] == 0
    recs = train(load_config(None, SMALL + HALF + [f"out_dir={tmp_path}", "name=k5", "method.variant=kstep",
                                                   "method.k=5", "method.diag_every=1"]))
    assert recs[-1]["bank/age_steps"] == pytest.approx(2.0)  # ages 0..4 within each of the 2 groups of 5
    assert recs[-1]["bank/staleness_cos"] < 1.0 - 1e-4


def test_one_step_alternation_is_simsiam_under_bf16(tmp_path):
    """amp=bf16 (CPU autocast): targets under the M-step's autocast, views outside it; k = 1
    then matches SimSiam as exactly as in fp32 (20 steps, losses and every state tensor)."""
    ref = _setup(tmp_path, "amp=bf16", name="ref")
    alt = _setup(tmp_path, "amp=bf16", "method.variant=kstep", "method.k=1", name="alt")
    alt.model.load_state_dict(ref.model.state_dict())
    la, lb = _drive(ref, 20), _drive(alt, 20)
    torch.testing.assert_close(torch.tensor(la), torch.tensor(lb), rtol=1e-5, atol=0)
    sa, sb = ref.model.state_dict(), alt.model.state_dict()
    for key in sa:
        torch.testing.assert_close(sa[key].float(), sb[key].float(), rtol=1e-5, atol=1e-7, msg=key)


def _toy_views(M, c, d=64):
    """M unit views per image, z_i = √c·u + √(1−c)·e_i with u, e_i orthonormal: E_T[z] ∝ u."""
    basis = torch.eye(d)
    z = math.sqrt(c) * basis[0] + math.sqrt(1 - c) * basis[1 : M + 1]  # (M, d)
    return z.unsqueeze(1)  # (M, P=1, d)


@pytest.mark.parametrize("M,c", [(8, 0.6), (2, 0.3), (16, 0.9)])
def test_leave_one_out_gap_on_a_known_toy(M, c):
    """cos(z_i, normalise(Σ_{j≠i} z_j)) = √(M−1)·c / √(1+(M−2)c) exactly on the toy; the
    in-sample mean would give √((1+(M−1)c)/M), higher by the bias the fix removes."""
    z = _toy_views(M, c)
    loo = math.sqrt(M - 1) * c / math.sqrt(1 + (M - 2) * c)
    in_sample = math.sqrt((1 + (M - 1) * c) / M)
    assert loo_cosines(z, z).item() == pytest.approx(loo, abs=1e-5)
    assert in_sample - loo > 0.005
    # a predictor that outputs the expectation direction u beats F itself
    h = torch.eye(z.shape[-1])[0].expand_as(z)
    assert loo_cosines(h, z).item() > loo_cosines(z, z).item()


def test_expectation_gap_is_leave_one_out(tmp_path):
    """On a real model, gap/cos_F_E equals the leave-one-out formula, not the in-sample one."""
    from emsiam.evaluate import expectation_gap

    s = _setup(tmp_path, "method.predictor=none")
    out = expectation_gap(s.model, s.train, s.spec, n_images=16, n_views=4, seed=0)
    assert out["gap/cos_F_E"] == pytest.approx(out["gap/cos_h_E"], abs=1e-6)  # identity predictor
    assert out["gap/cos_F_E"] < 1.0 - 1e-3  # in-sample with M = 4 is always ≥ √(1/4) + ... ; LOO may be any value


# ---- reliability of the loop ------------------------------------------------------------------


def test_non_finite_loss_stops_and_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch):
    from emsiam.variants import SimSiamVariant

    real = SimSiamVariant.loss
    monkeypatch.setattr(SimSiamVariant, "loss",
                        lambda self, idx, x, step: real(self, idx, x, step) * (float("nan") if step >= 23 else 1.0))
    cfg = load_config(None, SMALL + [f"out_dir={tmp_path}", "name=nan", "optim.epochs=3"])
    with pytest.raises(NonFiniteLoss, match=r"step 23, in epoch 2/3"):
        train(cfg)
    ckpt = load_checkpoint(cfg.run_dir / "checkpoints/last.pt")
    assert ckpt["epoch"] == 1  # 20 steps per epoch: epoch 2 went bad and was never saved
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert [r["epoch"] for r in read_metrics(cfg.run_dir)] == [0, 1]


@pytest.mark.parametrize("progress", [True, False])
def test_host_syncs_per_step_do_not_depend_on_progress(tmp_path, monkeypatch, progress):
    """One host sync every SYNC_EVERY steps (plus one at the epoch's end), bar or no bar."""
    monkeypatch.setattr(alternation, "run_eval", lambda s, epoch, step, extra=None: s.run.log(
        {"epoch": epoch, "step": step, **(extra or {})}) or {"epoch": epoch, "step": step})
    counts = {"n": 0}
    for name in ("item", "tolist"):
        real = getattr(torch.Tensor, name)

        def counted(self, *a, _real=real, **k):
            counts["n"] += 1
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    train(load_config(None, SMALL + [f"out_dir={tmp_path}", f"name=p{progress}", f"progress={progress}",
                                     "method.diag_every=1000"]))
    steps = 640 // 32
    assert counts["n"] <= steps // alternation.SYNC_EVERY + 3, counts  # not one per step


# ---- E- and M-step semantics ------------------------------------------------------------------


def test_replay_targets_are_the_m_step_views_for_k_above_one(tmp_path):
    """Every cached η equals F_θt of exactly the view the M-step uses at its step (seeds of
    step t + j for batch j, not of the group's first step)."""
    s = _setup(tmp_path, "method.variant=kstep", "method.k=4")
    group = outer_iterations(s.batches.indices(0), 32, 4)[1]
    t = 4
    s.variant.e_step(group, s.train.images, t)
    for j, idx in enumerate(group):
        x = s.train.images.index_select(0, idx)
        v1, v2 = s.variant.views(x, idx, t + j)  # what loss() builds at step t + j
        with target_mode(s.model):
            want = torch.stack([s.model.encoder(v1), s.model.encoder(v2)], dim=1)
        torch.testing.assert_close(s.variant.bank.read(idx), want, rtol=1e-5, atol=1e-6)


def test_momentum_encoder_update_and_resume(tmp_path):
    s = _setup(tmp_path, "method.variant=momentum", "method.momentum_tau=0.9")
    xi0 = [p.clone() for p in s.variant.target_encoder.parameters()]
    _drive(s, 1)
    for xi, x0, th in zip(s.variant.target_encoder.parameters(), xi0, s.model.encoder.parameters()):
        torch.testing.assert_close(xi, 0.9 * x0 + 0.1 * th, rtol=1e-5, atol=1e-7)
    assert not all(torch.equal(a, b) for a, b in zip(s.variant.target_encoder.parameters(), xi0))
    # resume restores ξ exactly
    common = SMALL + HALF + [f"out_dir={tmp_path}", "method.variant=momentum", "optim.epochs=2"]
    full = train(load_config(None, common + ["name=full"]))
    from tests.test_runs import _train_until

    _train_until(load_config(None, common + ["name=part"]), stop_after_epoch=1)
    resumed = train(load_config(None, common + ["name=part", "resume=true"]))
    assert resumed[-1]["train/loss"] == full[-1]["train/loss"]
    assert resumed[-1]["eval/knn_top1"] == full[-1]["eval/knn_top1"]


def test_mean_input_target_is_f_of_the_pixel_mean(tmp_path):
    s = _setup(tmp_path, "method.variant=mean_input", "method.k=2", "method.mean_input_views=3")
    group = outer_iterations(s.batches.indices(0), 32, 2)[0]
    s.variant.e_step(group, s.train.images, 0)
    idx = group[1]
    x = s.train.images.index_select(0, idx)
    xbar = sum(augment(x, view_seeds(0, 1, idx, 100 + i), s.spec) for i in range(3)) / 3
    with target_mode(s.model):
        want = s.model.encoder(xbar.contiguous(memory_format=s.memory_format))
    eta = s.variant.bank.read(idx)
    torch.testing.assert_close(eta[:, 0], want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(eta[:, 1], want, rtol=1e-5, atol=1e-6)


def test_lr_schedule_and_fixed_predictor_lr(tmp_path):
    cfg = load_config(None, ["optim.lr_per_256=0.1", "optim.batch_size=512", "optim.epochs=4",
                             "optim.warmup_epochs=1"])
    lrs = lr_schedule(cfg.optim, 10)
    base = 0.1 * 512 / 256
    assert len(lrs) == 40
    np.testing.assert_allclose(lrs[:10], base * np.arange(1, 11) / 10)  # linear warm-up
    np.testing.assert_allclose(lrs[10], base)  # cosine starts at the base lr
    np.testing.assert_allclose(lrs[25], 0.5 * base * (1 + math.cos(math.pi * 15 / 30)))
    assert lrs[-1] < 0.01 * base and np.all(np.diff(lrs[10:]) <= 0)
    for mode, want in (("fixed", base), ("cosine", 0.123)):
        s = _setup(tmp_path, f"optim.predictor_lr={mode}", name=mode)
        set_lr(s.opt, 0.123, base)
        assert s.opt.param_groups[0]["lr"] == 0.123 and s.opt.param_groups[1]["lr"] == want


def test_fixed_random_predictor_stays_frozen(tmp_path):
    s = _setup(tmp_path, "method.predictor=fixed_random")
    before = {k: v.clone() for k, v in s.model.predictor.named_parameters()}
    _drive(s, 3)
    after = dict(s.model.predictor.named_parameters())
    assert before and all(torch.equal(before[k], after[k]) for k in before)  # weights (BN running stats move)
    assert len(s.opt.param_groups) == 1  # nothing of the predictor is in the optimizer


def test_eval_mode_e_step_uses_running_statistics(tmp_path):
    s = _setup(tmp_path, "method.variant=kstep", "method.k=1", "method.e_step_bn=eval")
    _drive(s, 2)  # running statistics move away from their init
    idx = s.batches.indices(0)[64:96]
    s.variant.e_step([idx], s.train.images, 2)
    x = s.train.images.index_select(0, idx)
    v1, v2 = s.variant.views(x, idx, 2)
    s.model.eval()
    with torch.no_grad():
        want = torch.stack([s.model.encoder(v1), s.model.encoder(v2)], dim=1)
    s.model.train()
    torch.testing.assert_close(s.variant.bank.read(idx), want, rtol=1e-5, atol=1e-6)
    with target_mode(s.model, "train"):
        train_mode = s.model.encoder(v1)
    assert not torch.allclose(train_mode, want[:, 0], atol=1e-3)


@pytest.mark.parametrize("stopgrad", [True, False])
def test_variant_loss_stop_gradient(tmp_path, stopgrad):
    """The gradient of Variant.loss equals that of ½D(p1, sg(z2)) + ½D(p2, sg(z1)) with
    stop-gradient, and that of the loss through both branches without it."""
    s = _setup(tmp_path, f"method.stopgrad={str(stopgrad).lower()}", name=f"sg{stopgrad}")
    idx = s.batches.indices(0)[:32]
    x = s.train.images.index_select(0, idx)
    state = {k: v.clone() for k, v in s.model.state_dict().items()}
    params = list(s.model.encoder.parameters())
    g_variant = torch.autograd.grad(s.variant.loss(idx, x, 0), params)
    for detach in (True, False):
        s.model.load_state_dict(state)
        x1, x2 = s.variant.views(x, idx, 0)
        p1, p2, z1, z2 = s.model(x1, x2)
        sg = (lambda t: t.detach()) if detach else (lambda t: t)
        g = torch.autograd.grad(s.variant.pair_loss(p1, p2, sg(z1), sg(z2)), params)
        same = all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(g, g_variant))
        assert same == (detach == stopgrad)


# ---- outer iterations longer than an epoch ------------------------------------------------------


def test_k_spanning_epochs_caches_targets_of_theta_t_for_every_epoch(tmp_path):
    """k = "2epochs": one E-step under θ_t at the start of epochs 0, 2, ... computes the targets of
    every batch of both epochs (each with the views its M-step uses); epoch 1 reads targets two
    epochs' worth of steps old, and a checkpoint inside the outer iteration resumes exactly."""
    from emsiam.variants import steps_per_outer

    common = SMALL + HALF + [f"out_dir={tmp_path}", "method.variant=kstep", "method.k=2epochs", "optim.epochs=3",
                             "method.diag_every=1"]
    s = _setup(tmp_path, *HALF, "method.variant=kstep", "method.k=2epochs", "optim.epochs=3", name="probe")
    spe = len(s.batches)
    assert steps_per_outer(s.cfg, spe) == 2 * spe and s.variant.bank.n_rows == 2 * 320
    recs = train(load_config(None, common + ["name=full"]))
    # epoch 1: ages 0..spe-1; epoch 2: spe..2spe-1; epoch 3 starts a new outer iteration
    ages = [r["bank/age_steps"] for r in recs[1:]]
    assert ages == pytest.approx([(spe - 1) / 2, spe + (spe - 1) / 2, (spe - 1) / 2])
    assert recs[1]["bank/staleness_cos"] < 1.0
    from tests.test_runs import _train_until

    _train_until(load_config(None, common + ["name=part"]), stop_after_epoch=1)  # inside the outer iteration
    resumed = train(load_config(None, common + ["name=part", "resume=true"]))
    assert [r["train/loss"] for r in resumed[1:]] == [r["train/loss"] for r in recs[1:]]
    assert resumed[-1]["eval/knn_top1"] == recs[-1]["eval/knn_top1"]


def test_k_spanning_epochs_is_refused_when_malformed():
    from emsiam.config import ConfigError

    for bad in ("2 epochs", "0epochs", "epochs", "x"):
        with pytest.raises(ConfigError, match="method.k"):
            load_config(None, ["method.variant=kstep", f"method.k={bad}"])
    assert load_config(None, ["method.variant=kstep", "method.k=5epochs"]).method.k == "5epochs"


def test_k_spanning_epochs_resumes_with_a_disk_bank(tmp_path):
    """Targets that outlive an epoch are committed with the checkpoint (prepare, save, commit), so a
    file bank resumes inside the outer iteration exactly like the device bank."""
    from tests.test_runs import _train_until

    common = SMALL + HALF + [f"out_dir={tmp_path}", "method.variant=kstep", "method.k=2epochs", "optim.epochs=2",
                             "method.bank=disk"]
    full = train(load_config(None, common + ["name=full"]))
    _train_until(load_config(None, common + ["name=part"]), stop_after_epoch=1)
    resumed = train(load_config(None, common + ["name=part", "resume=true"]))
    assert [r["train/loss"] for r in resumed[1:]] == [r["train/loss"] for r in full[1:]]


def test_console_prints_one_summary_line_per_epoch(tmp_path, capsys):
    """progress=true: one line per epoch (and one at init) with loss, kNN when evaluated, pairs/s, ETA."""
    train(load_config(None, SMALL + [f"out_dir={tmp_path}", "name=talk", "progress=true", "optim.epochs=2",
                                     "eval.eval_every=2"]))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[talk]")]
    assert [line.split()[2] for line in lines] == ["0/2", "1/2", "2/2"], lines
    assert "knn" in lines[0] and "knn" not in lines[1] and "knn" in lines[2]
    assert "loss" in lines[1] and "pairs/s" in lines[1] and "ETA" in lines[1]
