"""Closed-form predictors (DirectPred, DirectCopy), F̂, the M-view expectation target, and the
config keys they own (issue 12; shared/design/predictor.md)."""

import copy
import math

import pytest
import torch
from torch import nn

from emsiam import spectral
from emsiam.alternation import m_step, outer_iterations
from emsiam.augment import view_seeds
from emsiam.config import ConfigError, diff, load_config, to_dict
from emsiam.predictors import ClosedFormPredictor, directcopy_weight, directpred_weight
from emsiam.runs import load_checkpoint
from emsiam.spectral import predictor_matrix
from emsiam.setup import setup
from emsiam.train import train
from emsiam.targets import target_mode
from emsiam.variants import TARGET_VIEW0, Variant, check_config, config_fingerprint, steps_per_outer

SMALL = [
    "data.n_train=256", "data.n_test=64", "model.convnet_widths=[8,16]", "model.proj_hidden=32",
    "model.dim=16", "optim.batch_size=32", "optim.epochs=1", "progress=false", "eval.linear=false",
    "eval.knn_k=10", "method.probe_images=16", "method.probe_views=4",
]


def _setup(tmp_path, *extra, name="r"):
    return setup(load_config(None, SMALL + [f"out_dir={tmp_path}", f"name={name}", *extra]))


def _drive(s, n, each=None):
    """n steps as fit() takes them (E-step, then m_step with its after_step); ``each(step)`` after each."""
    k = steps_per_outer(s.cfg, len(s.batches))
    losses, step = [], 0
    for group in outer_iterations(s.batches.indices(0), s.cfg.optim.batch_size, k):
        s.variant.e_step(group, s.train.images, step)
        for idx in group:
            losses.append(m_step(s, idx, s.train.images.index_select(0, idx), step))
            s.variant.update_targets(idx, step)
            if each is not None:
                each(step)
            step += 1
            if step == n:
                return torch.stack(losses)
    return torch.stack(losses)


def _known_corr(eigenvalues, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=torch.float64))
    s = torch.tensor(eigenvalues, dtype=torch.float64)
    return ((q * s) @ q.T).float(), q.float(), s


# ---- the closed forms ---------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_directpred_closed_form_on_a_known_correlation(eps):
    """W_p is symmetric with F̂'s eigenvectors; p_j = √(max(s_j, 0)/s_max) + ε, at least 1e-4:
    a negative eigenvalue (and a zero one) is clamped to ε, and with ε = 0 to the 1e-4 floor."""
    corr, q, s = _known_corr([4.0, 2.25, 1.0, 0.25, 0.01, 0.0, -0.5, 0.09])
    w = directpred_weight(corr, eps)
    assert torch.allclose(w, w.T, atol=1e-6)
    p = (s.clamp_min(0) / 4.0).sqrt() + eps
    p = p.clamp_min(1e-4).float()
    # W q_j = p_j q_j for every eigenvector of F̂ (fp32: a zero eigenvalue comes out as ±5e-7, √ of which is 4e-4)
    torch.testing.assert_close(w @ q, q * p, atol=1e-3, rtol=0)
    got = (q.T @ w @ q).diagonal()
    assert got[6] == pytest.approx(max(eps, 1e-4), abs=2e-5)  # the negative eigenvalue: clamped
    assert got[5] == pytest.approx(max(eps, 1e-4), abs=1e-3)  # zero
    assert got[0] == pytest.approx(1.0 + eps, abs=2e-5) and got[1] == pytest.approx(0.75 + eps, abs=2e-5)


def test_directpred_runs_in_fp32_under_bf16_autocast():
    corr, q, s = _known_corr([3.0, 1.0, 0.5, 0.1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w = directpred_weight(corr, 0.1)
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, directpred_weight(corr, 0.1))


def test_directcopy_formula():
    """DirectCopy: W_p = F̂/s_max + ε·I, s_max by power iteration (no eigendecomposition)."""
    corr, _, s = _known_corr([5.0, 3.0, 1.0, 0.5, 0.0, 0.0])
    v = torch.full((6,), 6 ** -0.5)
    w = directcopy_weight(corr, 0.25, v)
    torch.testing.assert_close(w, corr / 5.0 + 0.25 * torch.eye(6), atol=1e-5, rtol=1e-5)
    assert abs(float(v @ corr @ v) - 5.0) < 1e-4  # the warm start now is the top eigenvector
    assert torch.equal(directcopy_weight(torch.zeros(3, 3), 0.1, torch.ones(3)), 0.1 * torch.eye(3))


def test_set_from_uses_step_modulo_freq():
    """W_p is set at steps 0, freq, 2·freq, ... (the inverted ``freq % step`` pitfall sets it at 0, 1 only)."""
    h = ClosedFormPredictor(4, "directpred", freq=3)
    corr = torch.eye(4)
    assert [h.set_from(corr, t) for t in range(8)] == [t % 3 == 0 for t in range(8)]


# ---- F̂ and the step hook, in training ------------------------------------------------------------


def test_correlation_is_the_ema_of_both_views(tmp_path):
    """F̂ = mean(f fᵀ) of the first step's 2B projector outputs, then ρ·F̂ + (1−ρ)·the step's matrix."""
    s = _setup(tmp_path, "method.predictor=directpred", "method.directpred_rho=0.5")
    seen = []
    hook = s.model.encoder.register_forward_hook(lambda m, i, o: seen.append(o.detach().float()))
    mats = []

    def each(step):
        f = torch.cat(seen[-2:])
        mats.append(f.T @ f / f.shape[0])

    _drive(s, 2, each)
    hook.remove()
    expected = 0.5 * mats[0] + 0.5 * mats[1]
    torch.testing.assert_close(s.model.correlation.matrix, expected, atol=1e-5, rtol=1e-5)
    assert s.model.correlation.steps == 2


def test_freq_1_sgd_has_no_effect_on_the_predictor(tmp_path):
    s = _setup(tmp_path, "method.predictor=directpred")
    h = s.model.predictor
    grads = []

    def each(step):
        grads.append(h.weight.grad.abs().sum().item())
        assert torch.equal(h.weight, directpred_weight(s.model.correlation.matrix, 0.1))

    _drive(s, 4, each)
    assert all(g > 0 for g in grads)  # SGD did try to move W_p, and was overwritten every step


def test_freq_3_sgd_moves_the_predictor_between_resets(tmp_path):
    s = _setup(tmp_path, "method.predictor=directpred", "method.directpred_freq=3")
    h = s.model.predictor
    ws, closed = [], []

    def each(step):
        ws.append(h.weight.detach().clone())
        closed.append(directpred_weight(s.model.correlation.matrix, 0.1))

    _drive(s, 7, each)
    for t in range(7):
        if t % 3 == 0:
            assert torch.equal(ws[t], closed[t]), t  # reset from F̂
        else:
            assert not torch.allclose(ws[t], closed[t], atol=1e-6), t  # SGD's W_p, not the closed form
            assert not torch.equal(ws[t], ws[t - 1]), t  # ... moved by this step's SGD update


def test_directcopy_trains(tmp_path):
    s = _setup(tmp_path, "method.predictor=directcopy", "method.directpred_eps=0.3")
    _drive(s, 2)
    c = s.model.correlation.matrix
    top = torch.linalg.eigvalsh(c.double()).max().float()
    torch.testing.assert_close(s.model.predictor.weight, c / top + 0.3 * torch.eye(c.shape[0]), atol=1e-4,
                               rtol=1e-3)


def test_correlation_survives_checkpoint_and_resume_exactly(tmp_path):
    """F̂, its step count and W_p are in the checkpoint: a run stopped after epoch 1 and resumed
    ends bit for bit where the uninterrupted run does (freq = 3: the reset schedule continues)."""
    from tests.test_runs import _train_until

    common = SMALL + [f"out_dir={tmp_path}", "optim.epochs=2", "method.predictor=directpred",
                      "method.directpred_freq=3"]
    full = train(load_config(None, common + ["name=full"]))
    part = load_config(None, common + ["name=part"])
    _train_until(part, stop_after_epoch=1)
    ck1 = load_checkpoint(part.run_dir / "checkpoints" / "last.pt")["model"]
    assert ck1["correlation.count"] == 8 and ck1["correlation.matrix"].abs().sum() > 0
    resumed = train(load_config(None, common + ["name=part", "resume=true"]))
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rs]  # noqa: E731
    assert strip(resumed) == strip(full)
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt")["model"]
    for key in ("correlation.matrix", "correlation.count", "predictor.weight", "predictor.top_vector"):
        assert torch.equal(a[key], b[key]), key
    assert a["correlation.count"] == b["correlation.count"] == 16
    assert "spectral/align_top8" in full[-1] and (tmp_path / "full" / "spectra" / "epoch0002.npz").exists()


def test_checkpoint_without_correlation_loads(tmp_path):
    """A model state saved before F̂ existed loads (strict), and F̂ restarts."""
    s = _setup(tmp_path)
    _drive(s, 1)
    old = {k: v for k, v in s.model.state_dict().items() if not k.startswith("correlation.")}
    s.model.load_state_dict(old)
    assert s.model.correlation.steps == 0 and not s.model.correlation.matrix.any()


# ---- the learned predictor and today's numerics ------------------------------------------------


def test_tracking_and_target_views_1_leave_kstep_bit_for_bit(tmp_path, monkeypatch):
    """M = 1 with the learned predictor is today's kstep: ``method.target_views=1`` gives the same
    losses and parameters as a run with it unset, and so does a run without the F̂ step hook."""
    ref = _setup(tmp_path, "method.variant=kstep", name="ref")
    init = copy.deepcopy(ref.model.state_dict())
    m1 = _setup(tmp_path, "method.variant=kstep", "method.target_views=1", name="m1")
    m1.model.load_state_dict(init)
    la, lb = _drive(ref, 5), _drive(m1, 5)
    assert torch.equal(la, lb)
    assert ref.model.correlation.steps == 5  # the learned predictor's F̂ is tracked
    monkeypatch.setattr(Variant, "after_step", lambda self: None)  # the loop before F̂ existed
    bare = _setup(tmp_path, "method.variant=kstep", name="bare")
    bare.model.load_state_dict(init)
    assert torch.equal(la, _drive(bare, 5))
    after = bare.model.state_dict()
    for key, v in ref.model.state_dict().items():
        if not key.startswith("correlation."):
            assert torch.equal(v, after[key]), key


def test_spectral_metrics_by_predictor_kind(tmp_path):
    """DirectPred is aligned with F̂ by construction; the learned MLP gets its least-squares
    linear proxy (with fit_r2); no predictor reports F̂'s spectrum only."""
    for kind, expect_w in [("directpred", True), ("learned", True), ("none", False)]:
        s = _setup(tmp_path, f"method.predictor={kind}", name=kind)
        _drive(s, 2)
        metrics, arrays = spectral.spectral_alignment(s.model, s.train, s.spec, 16, 4, 0)
        assert metrics["spectral/F_top_eig"] > 0 and "F_eig" in arrays
        assert ("spectral/W_asym" in metrics) == expect_w
        if kind == "directpred":
            assert metrics["spectral/W_asym"] < 1e-5 and metrics["spectral/align_top8"] > 0.999
            assert metrics["spectral/W_offdiag"] < 1e-4
        if kind == "learned":
            assert 0 < metrics["spectral/fit_r2"] <= 1 and arrays["cos_top"].shape == (8,)


def test_least_squares_proxy_recovers_a_linear_predictor():
    d = 6
    lin = nn.Linear(d, d)
    model = type("M", (), {"predictor": lin})()
    z = torch.randn(200, d, generator=torch.Generator().manual_seed(1))
    a, extra = predictor_matrix(model, z)
    torch.testing.assert_close(a.float(), lin.weight.detach(), atol=1e-3, rtol=1e-3)
    assert extra["spectral/fit_r2"] == pytest.approx(1.0, abs=1e-6)


# ---- the M-view expectation target ---------------------------------------------------------------


@pytest.mark.parametrize("views", ["replay", "fresh"])
def test_target_views_are_disjoint_from_m_step_views(tmp_path, views):
    """η_x = mean_i normalise(F(T(x; s_{200+i}))), i < M, computed in the E-step; the M-step's two
    views (0, 1 or 2, 3) are none of the M target views, and both loss terms use that one η."""
    s = _setup(tmp_path, "method.variant=kstep", "method.target_views=3", f"method.views={views}")
    idx = s.batches.indices(0)[:32]
    x = s.train.images.index_select(0, idx)
    s.variant.e_step([idx], s.train.images, 0)
    eta = s.variant.bank.read(idx)
    first = 0 if views == "replay" else 2
    m_views = s.variant.views(x, idx, 0, first)
    t_views = s.variant.views(x, idx, 0, first=TARGET_VIEW0, n=3)
    for a in m_views:
        assert all(not torch.equal(a, b) for b in t_views)
    seeds_m = {int(view_seeds(0, 0, idx[:1], v)) for v in range(4)}
    assert not seeds_m & {int(view_seeds(0, 0, idx[:1], TARGET_VIEW0 + i)) for i in range(3)}
    with target_mode(s.model, "train"):
        expected = sum(s.variant.encode(v) for v in t_views) / 3
    torch.testing.assert_close(eta[:, 0], expected, atol=1e-6, rtol=1e-5)
    assert torch.equal(eta[:, 0], eta[:, 1])
    loss = s.variant.loss(idx, x, 0)
    assert loss.requires_grad and math.isfinite(loss.item())


# ---- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize("over, words", [
    (["method.directpred_rho=0.5"], ["method.directpred_rho", "method.predictor=auto"]),
    (["method.predictor=learned", "method.directpred_eps=0"], ["method.directpred_eps", "method.predictor=learned"]),
    (["method.predictor=none", "method.directpred_freq=5"], ["method.directpred_freq", "method.predictor=none"]),
    (["method.target_views=4"], ["method.target_views", "method.variant=simsiam"]),
    (["method.variant=mean_input", "method.target_views=2"], ["method.target_views", "method.variant=mean_input"]),
    (["method.variant=ema", "method.target_views=2"], ["method.target_views", "method.variant=ema"]),
    (["method.predictor=directpred", "method.directpred_rho=1.0"], ["method.directpred_rho", "[0, 1)"]),
    (["method.predictor=directpred", "method.directpred_freq=0"], ["method.directpred_freq", ">= 1"]),
    (["method.predictor=directcopy", "method.directpred_eps=-0.1"], ["method.directpred_eps", ">= 0"]),
    (["method.variant=kstep", "method.target_views=0"], ["method.target_views", ">= 1"]),
])
def test_config_refuses_keys_the_choice_ignores(over, words):
    with pytest.raises(ConfigError) as err:
        check_config(load_config(None, over))  # the predictor's keys by load_config, the variant's by check_config
    assert all(w in str(err.value) for w in words), str(err.value)


def test_config_accepts_the_keys_where_they_apply():
    load_config(None, ["method.predictor=directcopy", "method.directpred_rho=0.9", "method.directpred_freq=5",
                       "method.directpred_eps=0"])
    check_config(load_config(None, ["method.variant=kstep", "method.target_views=8", "method.predictor=none"]))


def test_configs_saved_before_the_new_keys_still_match():
    """A config.yaml written before these keys existed resumes (no diff) and keeps its bank fingerprint."""
    from emsiam.config import ADDED_KEYS

    cfg = load_config(None, ["name=x", "method.variant=kstep"])
    old = to_dict(cfg)
    assert {"method.directpred_rho", "method.directpred_eps", "method.directpred_freq",
            "method.target_views"} <= set(ADDED_KEYS)
    for key in ADDED_KEYS:  # the config as saved before these keys existed
        *parents, leaf = key.split(".")
        section = old
        for part in parents:
            section = section[part]
        del section[leaf]
    assert diff(old, to_dict(cfg)) == []
    changed = load_config(None, ["name=x", "method.variant=kstep", "method.target_views=2"])
    assert diff(old, to_dict(changed)) == ["method.target_views: None -> 2"]
    assert config_fingerprint(cfg) != config_fingerprint(changed)
    import hashlib
    import json

    from emsiam.config import RESUME_FREE_KEYS, flatten

    legacy = {k: v for k, v in flatten(old).items() if k not in RESUME_FREE_KEYS}
    assert config_fingerprint(cfg) == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:16]


# ---- the study's figures -------------------------------------------------------------------------


def test_predictor_figures_render(tmp_path):
    import numpy as np

    from analysis import figures
    from tests.test_figures import fake_records, write_run

    root = tmp_path / "runs"
    runs = {"learned": ["method.predictor=learned"], "none": ["method.predictor=none"],
            "directpred_eps0.1": ["method.predictor=directpred"],
            **{f"M{m}_{p}": ["method.variant=kstep", "method.k=1", f"method.target_views={m}", f"method.predictor={p}"]
               for m in (2, 4) for p in ("learned", "none")}}
    for i, (label, over) in enumerate(runs.items()):
        recs = fake_records(30 + i, 0.5 + 0.05 * i)
        recs[-1]["spectral/W_offdiag"] = 0.1 * i
        d = write_run(root, f"{label}_s0", over, recs)
        s = np.sort(np.abs(np.random.default_rng(i).normal(size=32)))[::-1]
        arrays = {"F_eig": s} if label.endswith("none") else {"F_eig": s, "W_in_F": np.sqrt(s), "W_eig": s}
        spectral.save_spectra(d, 3, 30, arrays, "x")
    for name, fn in figures.PREDICTOR_FIGURES.items():
        paths = fn(root, tmp_path / "out" / name)
        assert all(p.exists() and p.stat().st_size > 0 for p in paths), name
    empty = tmp_path / "empty"
    write_run(empty, "simsiam_s0", [], fake_records(30, 0.5))
    for name in ("accuracy_vs_target_views", "predictor_spectra"):
        with pytest.raises(ValueError):
            figures.PREDICTOR_FIGURES[name](empty, tmp_path / "out2" / name)
