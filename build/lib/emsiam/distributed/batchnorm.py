"""BatchNorm with statistics over all ranks: SyncBatchNorm on CUDA, :class:`AllReduceBatchNorm` on CPU."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from . import group


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks with autograd: the gradient of a sum is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad.contiguous())


class AllReduceBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the union of all ranks' batches, for CPU/gloo (torch's SyncBatchNorm is CUDA/XPU only).

    Train mode: global mean, then global biased variance (two all-reduces of sums and
    counts, through :class:`_AllReduceSum` so that gradients flow to every rank's
    inputs); running statistics as nn.BatchNorm.
    Eval mode: plain batch_norm with the running statistics.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        use_batch = self.training or self.running_mean is None
        if not use_batch or not group.active():
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        count = torch.full((1,), x.numel() / max(x.shape[1], 1), dtype=torch.float32, device=x.device)
        s = _AllReduceSum.apply(torch.cat([xf.sum(dims), count]))
        n = s[-1]
        mean = s[:-1] / n
        var = _AllReduceSum.apply((xf - mean.view(shape)).square().sum(dims)) / n
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1).clamp(min=1)), alpha=m)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Make every BatchNorm global across ranks (no-op in one process): SyncBatchNorm on CUDA, else
    :class:`AllReduceBatchNorm`. Parameters and buffers are carried over."""
    if not group.active():
        return module
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, AllReduceBatchNorm):
        out = AllReduceBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                 module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out
