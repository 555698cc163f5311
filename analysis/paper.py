"""The paper's numbers, as constants (ImageNet, ResNet-50, 100 epochs, linear top-1 %).

Source: Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021
(arXiv 2011.10566); transcribed in ``shared/design/science.md``.  Values are
linear-probe top-1 accuracy in percent unless a comment says otherwise.
:func:`lookup` maps a run (its study, label and flattened config) to the paper's
setting, number and source, or None.
"""

from __future__ import annotations

from typing import Any, NamedTuple

#: What every number below measures.
METRIC = "ImageNet linear top-1 % (ResNet-50, 100 ep)"


class PaperNumber(NamedTuple):
    setting: str
    value: float | None  # None: the paper gives no number (e.g. an unpublished experiment)
    source: str
    expect: str  # "learns" | "collapse" | "fails" (does not converge) | "unknown"


# Figure 2 (Sec. 4.1): with / without stop-grad, predictor lr decayed; 67.7 is mean ± 0.1 of 5 trials.
FIG2_STOPGRAD = PaperNumber("with stop-grad", 67.7, "Fig. 2", "learns")
FIG2_NO_STOPGRAD = PaperNumber("without stop-grad", 0.1, "Fig. 2", "collapse")

# Table 1 (Sec. 4.2): predictor ablation.
TABLE1 = {
    "none": PaperNumber("no predictor", 0.1, "Table 1", "collapse"),
    "fixed_random": PaperNumber("fixed random predictor", 1.5, "Table 1", "fails"),
    "learned_cosine_lr": PaperNumber("predictor lr with cosine decay", 67.7, "Table 1", "learns"),
    "learned_fixed_lr": PaperNumber("predictor lr fixed (default)", 68.1, "Table 1", "learns"),
}

# Table 2 (Sec. 4.3): batch size -> linear top-1.
TABLE2_BATCH = {64: 66.1, 128: 67.3, 256: 68.1, 512: 68.1, 1024: 68.0, 2048: 67.9, 4096: 64.0}

# Table 3 (Sec. 4.4): batch norm in the MLP heads ("unstable" has no number).
TABLE3_BN = {"no BN": 34.6, "BN hidden only": 67.4, "BN hidden + proj output (default)": 68.1,
             "plus BN on predictor output": None}

# Sec. 4.5 inline table: similarity function.
SIMILARITY = {"cosine": 68.1, "cross-entropy": 63.2}

# Sec. 4.6 inline table: symmetrization.
SYMMETRY = {
    "symmetric": PaperNumber("symmetric loss", 68.1, "Sec. 4.6", "learns"),
    "asymmetric": PaperNumber("asymmetric loss", 64.8, "Sec. 4.6", "learns"),
    "asymmetric_2x": PaperNumber("asymmetric, 2 view pairs per image", 67.3, "Sec. 4.6", "learns"),
}

# Appendix B: output dimension d -> linear top-1.
APPENDIX_B_DIM = {256: 65.3, 512: 67.2, 1024: 67.5, 2048: 68.1}

# Sec. 5 "Multi-step alternation" table.
SIMSIAM = PaperNumber("SimSiam", 68.1, "Sec. 5 / Table 1", "learns")
SEC5_KSTEP = {
    1: PaperNumber("1-step", 68.1, "Sec. 5 multi-step", "learns"),
    10: PaperNumber("10-step", 68.7, "Sec. 5 multi-step", "learns"),
    100: PaperNumber("100-step", 68.9, "Sec. 5 multi-step", "learns"),
    "epoch": PaperNumber("1-epoch", 67.0, "Sec. 5 multi-step", "learns"),
}

# Sec. 5 "Expectation over augmentations": moving-average eta, m = 0.8, no predictor.
SEC5_EMA = PaperNumber("moving-average η, m=0.8, no predictor", 55.0, "Sec. 5", "learns")

# Su (kexue.fm 7980) asks, unverified, whether the mean-input target works: no number exists.
MEAN_INPUT = PaperNumber("target F(mean augmented input)", None, "Su (kexue.fm 7980), untested", "unknown")

# Appendix (CIFAR-10, ResNet-18, 800 epochs): linear top-1 91.8 (SimCLR 91.1).
CIFAR10_LINEAR = 91.8


def _k(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def lookup(study: str, label: str, cfg: dict[str, Any]) -> PaperNumber | None:
    """The paper's number for a run of ``study`` named ``label`` with flattened config ``cfg``."""
    if study == "symmetry" and label in SYMMETRY:
        return SYMMETRY[label]
    if study == "predictor_ablation" and label in TABLE1:
        return TABLE1[label]
    variant = cfg.get("method.variant", "simsiam")
    predictor = cfg.get("method.predictor", "auto")
    if variant == "mean_input":
        return MEAN_INPUT
    if variant == "kstep":
        return SEC5_KSTEP.get(_k(cfg.get("method.k")))
    if variant == "ema":
        if float(cfg.get("method.ema_m", -1)) == 0.8 and predictor in ("none", "auto"):
            return SEC5_EMA
        return None  # the paper reports m = 0.8 only
    if variant == "simsiam":
        if cfg.get("method.stopgrad") is False:
            return FIG2_NO_STOPGRAD
        if predictor == "none":
            return TABLE1["none"]
        if predictor == "fixed_random":
            return TABLE1["fixed_random"]
        if cfg.get("method.symmetric") is False:
            return SYMMETRY["asymmetric"]
        if cfg.get("optim.predictor_lr") == "cosine":
            return TABLE1["learned_cosine_lr"]
        return SIMSIAM
    return None
