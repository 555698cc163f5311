"""The base of every variant: views, the pair loss, and the hooks the loop calls.

A variant is one solver of L(θ, η) = E_{x,T} ‖F_θ(T(x)) − η_x‖² (docs/variants.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..augment import AugmentSpec, augment, view_seeds
from ..banks import TargetBank
from ..config import Config
from ..losses import negative_cosine, normalized_mse
from ..models import SimSiam
from ..predictors import step_hook
from ..targets import autocast

LOSSES = {"cosine": negative_cosine, "mse": normalized_mse}
#: method.* keys read whatever the variant: by the loop, the loss, evaluation, and the predictor
#: (whose own keys the config checks against method.predictor).
COMMON_KEYS = ("variant", "predictor", "symmetric", "loss", "diag_every", "probe_images", "probe_views",
               "directpred_rho", "directpred_eps", "directpred_freq")
#: method.* keys of a target bank, read by the variants that keep one (bank_views > 0).
BANK_KEYS = ("bank", "bank_dtype", "bank_path")


class Variant:
    """Base: one target per view from the same forward pass (SimSiam).

    Its traits (class attributes) tell the rest of the code what it needs; nothing outside a
    variant's own file tests its name."""

    uses_k = False  # takes method.k M-steps per E-step (False: one step per target)
    default_predictor = "learned"  # what method.predictor=auto builds: "learned" or "none"
    bank_views = 0  # targets per image in its bank (0: no bank)
    config_keys: tuple[str, ...] = ()  # the method.* keys it reads beyond COMMON_KEYS
    about = "takes one step per target"  # for messages: "method.k=10 is not read by ... (it <about>)"
    bank: TargetBank | None = None  # the variant's target bank, if it keeps one

    def __init__(self, cfg: Config, model: SimSiam, spec: AugmentSpec, memory_format: torch.memory_format):
        self.cfg, self.model, self.spec, self.fmt = cfg, model, spec, memory_format
        self.D = LOSSES[cfg.method.loss]
        self.device = next(model.parameters()).device

    def amp(self):
        """The autocast of the M-step, for target computations."""
        return autocast(self.cfg, self.device)

    def views(self, x: torch.Tensor, idx: torch.Tensor, step: int, first: int = 0, n: int = 2) -> list[torch.Tensor]:
        """Views first..first+n-1 of batch x at ``step``, replayable from (seed, step, idx, view).
        Always built in fp32, outside any autocast, so targets and M-step see the same pixels."""
        with torch.autocast(self.device.type, enabled=False):
            return [
                augment(x, view_seeds(self.cfg.seed, step, idx, v), self.spec).contiguous(memory_format=self.fmt)
                for v in range(first, first + n)
            ]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """F_θ(x), l2-normalised."""
        return F.normalize(self.model.encoder(x).float(), dim=1)

    def pair_loss(self, p1, p2, eta1, eta2) -> torch.Tensor:
        """½D(p1, η2) + ½D(p2, η1), or D(p1, η2) alone when asymmetric (Sec. 4.6)."""
        if not self.cfg.method.symmetric:
            return self.D(p1, eta2)
        return 0.5 * self.D(p1, eta2) + 0.5 * self.D(p2, eta1)

    # hooks of the loop
    def start(self, data: torch.Tensor, batch_size: int) -> None:
        """Called once before training on a new run (e.g. to fill a persistent bank)."""

    def e_step(self, group: list[torch.Tensor], images: torch.Tensor, step: int) -> None:
        """η-step for an outer iteration; nothing to do for single-pass variants."""

    def loss(self, idx: torch.Tensor, x: torch.Tensor, step: int) -> torch.Tensor:
        """Mean over ``method.pairs`` independent view pairs (views 2j, 2j+1) of the pair loss."""
        sg = (lambda t: t.detach()) if self.cfg.method.stopgrad else (lambda t: t)
        total = 0.0
        for j in range(self.cfg.method.pairs):
            x1, x2 = self.views(x, idx, step, first=2 * j)
            p1, p2, z1, z2 = self.model(x1, x2)
            total = total + self.pair_loss(p1.float(), p2.float(), sg(z1.float()), sg(z2.float()))
        return total / self.cfg.method.pairs

    def after_step(self) -> None:
        """Called after every optimizer step: F̂ and closed-form predictors (predictors.step_hook)."""
        step_hook(self.model)

    def update_targets(self, idx: torch.Tensor, step: int) -> None:
        """Called by the loop right after every M-step: the moving-average update of the targets
        (ema: the bank rows of batch ``idx``; momentum: the target encoder). Nothing by default."""

    def end_epoch(self) -> None:
        """Called after the last step of every epoch."""

    def diagnostics(self, idx: torch.Tensor, x: torch.Tensor, step: int) -> dict[str, float]:
        """Cheap per-step probes (staleness), called every ``diag_every`` steps, before the step."""
        return {}

    def eval_metrics(self) -> dict[str, float]:
        """Variant metrics logged with every evaluation (e.g. ``bank/init_weight``)."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def expectation_bank(self) -> TargetBank | None:
        """The persistent bank whose rows estimate E_T[F_θ(T(x))], if any (ema)."""
        return None
