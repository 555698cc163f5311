"""Evaluation: weighted kNN, a linear probe on frozen features, collapse statistics.

kNN follows InstDisc (Wu et al. 2018) as used by the SimSiam CIFAR monitor:
cosine similarity, k = 200 neighbours, votes weighted by exp(sim / τ), τ = 0.1.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
import torch.nn.functional as F
from torch import nn

from .augment import AugmentSpec, augment, prepare, view_seeds
from .data import ImageSet
from .models import SimSiam, is_channels_last
from .targets import target_mode


@dataclass
class Features:
    h: torch.Tensor  # backbone features, (N, C)
    z: torch.Tensor  # projector outputs, (N, d)


Amp = Callable[[], ContextManager]


@torch.no_grad()
def extract(model: SimSiam, data: ImageSet, spec: AugmentSpec, batch_size: int = 256,
            amp: Amp = contextlib.nullcontext) -> Features:
    """Backbone and projector outputs of ``data`` in eval mode (BN running stats), the forward
    passes under ``amp()`` (the training autocast); features are returned in fp32.

    Restores the model's train/eval mode afterwards.
    """
    was_training = model.training
    model.eval()
    hs, zs = [], []
    memory_format = torch.channels_last if is_channels_last(model) else torch.contiguous_format
    for start in range(0, len(data), batch_size):
        x = prepare(data.images[start : start + batch_size], spec).contiguous(memory_format=memory_format)
        with amp():
            h = model.encoder.backbone(x)
            z = model.encoder.projector(h)
        hs.append(h.float())
        zs.append(z.float())
    model.train(was_training)
    return Features(torch.cat(hs), torch.cat(zs))


def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, n_classes: int,
                k: int = 200, t: float = 0.1, chunk: int = 1024) -> torch.Tensor:
    """Weighted kNN labels for ``queries`` (InstDisc vote on cosine similarity).

    Each of the k nearest bank entries votes for its label with weight exp(sim/t).
    Returns int64 predictions of shape (Q,).
    """
    bank = F.normalize(bank.float(), dim=1)
    k = min(k, bank.shape[0])
    preds = []
    for start in range(0, queries.shape[0], chunk):
        q = F.normalize(queries[start : start + chunk].float(), dim=1)
        sim, nn_idx = (q @ bank.T).topk(k, dim=1)  # (q, k)
        votes = torch.zeros(q.shape[0], n_classes, device=q.device)
        votes.scatter_add_(1, bank_labels[nn_idx], (sim / t).exp())
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


def knn_top1(bank, bank_labels, queries, query_labels, n_classes, k=200, t=0.1) -> float:
    """Top-1 accuracy (%) of :func:`knn_predict`."""
    pred = knn_predict(bank, bank_labels, queries, n_classes, k, t)
    return 100.0 * (pred == query_labels).float().mean().item()


def linear_probe(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    n_classes: int,
    epochs: int = 30,
    lr: float = 0.1,
    batch_size: int = 256,
    seed: int = 0,
) -> float:
    """Top-1 accuracy (%) of a linear classifier trained on frozen features.

    The features are standardised with the training set's statistics; the
    classifier is trained by SGD (momentum 0.9, cosine lr) on the precomputed
    features, so the backbone is never touched.
    """
    g = torch.Generator().manual_seed(seed)
    mean, std = train_feats.mean(0), train_feats.std(0) + 1e-6
    xtr, xte = (train_feats - mean) / std, (test_feats - mean) / std
    clf = nn.Linear(xtr.shape[1], n_classes).to(xtr.device)
    opt = torch.optim.SGD(clf.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    n = xtr.shape[0]
    steps = epochs * math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    with torch.enable_grad():
        for _ in range(epochs):
            perm = torch.randperm(n, generator=g).to(xtr.device)
            for start in range(0, n, batch_size):
                i = perm[start : start + batch_size]
                loss = F.cross_entropy(clf(xtr[i]), train_labels[i])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    with torch.no_grad():
        return 100.0 * (clf(xte).argmax(1) == test_labels).float().mean().item()


def collapse_stats(z: torch.Tensor) -> dict[str, float]:
    """Collapse monitors of Sec. 4.1 / Fig. 2 on projector outputs z (N, d).

    - ``z_std``: per-dimension std over samples of l2-normalised z, averaged over
      dimensions. A healthy representation has z_std ≈ 1/√d; collapse drives it to 0.
    - ``z_std_sqrt_d``: z_std·√d (≈ 1 healthy, → 0 collapsed).
    - ``eff_rank``: exp of the entropy of the normalised singular values of z
      (RankMe, Garrido et al. 2023), between 1 and d.
    """
    z = z.float()
    d = z.shape[1]
    zn = F.normalize(z, dim=1)
    z_std = zn.std(dim=0).mean().item()
    s = torch.linalg.svdvals(z)
    p = s / s.sum().clamp_min(1e-12)
    entropy = -(p * (p + 1e-12).log()).sum()
    return {
        "z_std": z_std,
        "z_std_sqrt_d": z_std * math.sqrt(d),
        "inv_sqrt_d": 1.0 / math.sqrt(d),
        "eff_rank": entropy.exp().item(),
    }


def evaluate(
    model: SimSiam,
    train: ImageSet,
    test: ImageSet,
    spec: AugmentSpec,
    *,
    knn_k: int = 200,
    knn_t: float = 0.1,
    linear: bool = True,
    linear_epochs: int = 30,
    linear_lr: float = 0.1,
    batch_size: int = 256,
    seed: int = 0,
    amp: Amp = contextlib.nullcontext,
) -> dict[str, float]:
    """All evaluation metrics, namespaced: ``eval/knn_top1``, ``eval/linear_top1``, ``collapse/*``.

    The kNN bank is the backbone features of the training set; queries are the test set.
    Collapse statistics are computed on the test set's projector outputs.
    """
    n_classes = len(train.classes)
    ftr = extract(model, train, spec, batch_size, amp)
    fte = extract(model, test, spec, batch_size, amp)
    out = {"eval/knn_top1": knn_top1(ftr.h, train.labels, fte.h, test.labels, n_classes, knn_k, knn_t)}
    if linear:
        out["eval/linear_top1"] = linear_probe(
            ftr.h, train.labels, fte.h, test.labels, n_classes, linear_epochs, linear_lr, seed=seed
        )
    out.update({f"collapse/{k}": v for k, v in collapse_stats(fte.z).items()})
    return out


def loo_cosines(a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """mean over views i and images of cos(a_i, Ē^(−i)), Ē^(−i) = normalise(Σ_{j≠i} z_j).

    ``a`` and ``z`` are (M, P, d); z are unit vectors (F_θ of M views of P images), a the
    vectors scored (z itself, or the predictor's outputs). Leaving view i out of its own mean
    removes the in-sample lift of about √(1/M + (1−1/M)c) − √c (design/alternation.md)."""
    if z.shape[0] < 2:
        raise ValueError("the leave-one-out mean needs at least 2 views")
    loo = F.normalize(z.sum(0, keepdim=True) - z, dim=-1)  # (M, P, d)
    return (F.normalize(a, dim=-1) * loo).sum(-1).mean()


@torch.no_grad()
def expectation_gap(
    model: SimSiam,
    data: ImageSet,
    spec: AugmentSpec,
    n_images: int = 256,
    n_views: int = 8,
    seed: int = 0,
    bank=None,
    bank_bn: str = "train",
    amp: Amp = contextlib.nullcontext,
) -> dict[str, float]:
    """Does the predictor learn the expectation over augmentations? (Sec. 5 hypothesis)

    On a fixed probe set (the same P images and M view seeds at every call), for every view
    v_i, Ē^(−i) = normalise(Σ_{j≠i} F_θ(T(x; s_j))) is the leave-one-out mean of the other
    views. Reports ``gap/cos_h_E`` = mean cos(h(F_θ(v_i)), Ē^(−i)) and ``gap/cos_F_E`` =
    mean cos(F_θ(v_i), Ē^(−i)); if h predicts the expectation the first is larger. BN uses
    running statistics (eval mode); the model's mode is restored. With a persistent bank
    (ema), also ``gap/cos_eta_E`` = mean cos(η_x, Ē_x), Ē_x over all M views (η is none of
    them), computed in the BN mode of the bank's targets (``bank_bn``; running statistics
    untouched): comparing train-mode η with an eval-mode Ē would measure the BN mode.
    """

    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed + 12345)
    idx = torch.randperm(len(data), generator=g)[: min(n_images, len(data))].to(data.images.device)
    x = data.images.index_select(0, idx)
    fmt = torch.channels_last if is_channels_last(model) else torch.contiguous_format
    zs, ps = [], []
    views = [augment(x, view_seeds(seed, -(10**6), idx, v), spec).contiguous(memory_format=fmt)
             for v in range(n_views)]
    for xv in views:
        with amp():
            z = model.encoder(xv)
            p = model.predictor(z)
        zs.append(F.normalize(z.float(), dim=1))
        ps.append(F.normalize(p.float(), dim=1))
    model.train(was_training)
    z, p = torch.stack(zs), torch.stack(ps)  # (M, P, d)
    out = {"gap/cos_h_E": loo_cosines(p, z).item(), "gap/cos_F_E": loo_cosines(z, z).item()}
    if bank is not None:
        with target_mode(model, bank_bn), amp():
            e_bank = F.normalize(torch.stack([F.normalize(model.encoder(xv).float(), dim=1) for xv in views]).mean(0),
                                 dim=1)
        eta = F.normalize(bank.read(idx)[:, 0].to(e_bank.device).float(), dim=1)
        out["gap/cos_eta_E"] = (eta * e_bank).sum(-1).mean().item()
    return out
