"""Losses as pure functions (Chen & He 2021, Eq. 1-2; Sec. 5 for the MSE form)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """D(p, z) = -<p/||p||, z/||z||>, averaged over the batch (Eq. 1).

    No stop-gradient here: the caller decides what is a constant.
    """
    return -(F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(dim=1).mean()


def symmetric_simsiam(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """½D(p1, sg(z2)) + ½D(p2, sg(z1)) (Eq. 2). Stop-gradient is applied here."""
    return 0.5 * negative_cosine(p1, z2.detach()) + 0.5 * negative_cosine(p2, z1.detach())


def normalized_mse(p: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """||p/||p|| - eta/||eta|| ||², summed over dims and averaged over the batch.

    The EM objective L(θ, η) of Sec. 5 with l2-normalised F; equals 2 + 2·D.
    """
    return (F.normalize(p, dim=1) - F.normalize(eta, dim=1)).pow(2).sum(dim=1).mean()
