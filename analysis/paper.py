"""The paper's numbers, as constants (ImageNet, ResNet-50, 100 epochs, linear top-1 %).

Source: Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021
(arXiv 2011.10566); transcribed in ``shared/design/science.md``.  Values are
linear-probe top-1 accuracy in percent unless a comment says otherwise.
This is the one place for them: :data:`STUDY_NUMBERS` gives each study's run
labels their number (the study scripts' ``PAPER`` dicts read it), :func:`lookup`
maps a run (study, label, flattened config) to its setting, number and source,
and :data:`CLAIMS` states the paper's findings as comparisons the report tests.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from analysis.stats import COLLAPSE_ZSTD

#: What every number below measures.
METRIC = "ImageNet linear top-1 % (ResNet-50, 100 ep)"


class PaperNumber(NamedTuple):
    setting: str
    value: float | None  # None: the paper gives no number (e.g. an unpublished experiment)
    source: str
    expect: str  # "learns" | "collapse" | "fails" (does not converge) | "unknown"


# Figure 2 (Sec. 4.1): with / without stop-grad, predictor lr decayed; 67.7 is mean ± 0.1 of 5 trials.
FIG2_STOPGRAD = PaperNumber("with stop-grad (predictor lr decayed)", 67.7, "Fig. 2", "learns")
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

# DirectPred (Tian, Chen & Ganguli 2021, arXiv 2102.06810, Tables 6-9; shared/design/predictor.md).
# NOT the metric of METRIC: BYOL with the predictor swapped, linear top-1 % after 100 epochs on
# CIFAR-10 (ResNet-18); the setting text says so, so that the report's table cannot mislead.
DIRECTPRED = {
    "directpred_eps0.1": PaperNumber("DirectPred ε=0.1 [BYOL, CIFAR-10 100 ep linear top-1; DirectPred paper]",
                                     85.21, "DirectPred Tables 6-9", "learns"),
    "sgd_predictor": PaperNumber("SGD-trained predictor [BYOL, CIFAR-10 100 ep linear top-1; DirectPred paper]",
                                 84.49, "DirectPred Tables 6-9", "learns"),
    # ε = 0 has a number on STL-10 only (76.77 vs 77.86 with ε = 0.1, 100 ep); none on CIFAR-10
    "directpred_eps0": PaperNumber("DirectPred ε=0 [no CIFAR-10 number; STL-10 100 ep: 76.77 vs ε=0.1 77.86]",
                                   None, "DirectPred Table 6", "learns"),
}
#: The same comparison on STL-10 (DirectPred Table 6, 100 epochs, linear top-1): ε = 0.1 against the
#: SGD-trained predictor. Quoted beside the CIFAR-10 pair; this lab has no STL-10 run.
DIRECTPRED_STL10 = (77.86, 74.51)
# DirectCopy (Wang et al. 2021, arXiv 2110.04947): no number transcribed in shared/design.
DIRECTCOPY = PaperNumber("DirectCopy W_p = F̂/s_max + εI (no number transcribed)", None, "Wang et al. 2021", "learns")
# The M-view expectation target is this lab's test of Sec. 5's hypothesis: no paper has a number.
EXPECTATION_TARGET = PaperNumber("η = mean of F over M target views (open question)", None,
                                 "Sec. 5 hypothesis, untested", "unknown")


#: Per study: run label -> the paper's number for that run (labels as in experiments/<study>.py).
STUDY_NUMBERS: dict[str, dict[str, PaperNumber]] = {
    "kstep_sweep": {"simsiam": SIMSIAM, "k1": SEC5_KSTEP[1], "k10": SEC5_KSTEP[10], "k100": SEC5_KSTEP[100],
                    "kepoch": SEC5_KSTEP["epoch"]},
    "ema_vs_predictor": {"ema_m0.8": SEC5_EMA, "simsiam": SIMSIAM, "simsiam_no_predictor": TABLE1["none"]},
    "stopgrad": {"stopgrad": FIG2_STOPGRAD, "no_stopgrad": FIG2_NO_STOPGRAD},
    "predictor_ablation": dict(TABLE1),
    "symmetry": dict(SYMMETRY),
    "mean_input": {"mean_input": MEAN_INPUT, "simsiam": SIMSIAM, "ema_m0.8": SEC5_EMA},
    "cifar10_long": {"simsiam": SIMSIAM, "k10": SEC5_KSTEP[10], "k100": SEC5_KSTEP[100],
                     "kepoch": SEC5_KSTEP["epoch"], "ema_m0.8": SEC5_EMA, "simsiam_no_predictor": TABLE1["none"],
                     "directpred": DIRECTPRED["directpred_eps0.1"], "directpred_eps0": DIRECTPRED["directpred_eps0"],
                     "directcopy": DIRECTCOPY,
                     **{f"M{m}_{p}": EXPECTATION_TARGET for m in (2, 4, 8) for p in ("learned", "none")}},
    "predictor_as_expectation": {
        "learned": DIRECTPRED["sgd_predictor"], "directpred_eps0.1": DIRECTPRED["directpred_eps0.1"],
        "directpred_eps0": DIRECTPRED["directpred_eps0"], "directcopy": DIRECTCOPY, "none": TABLE1["none"],
        **{f"M{m}_{p}": EXPECTATION_TARGET for m in (2, 4, 8) for p in ("learned", "none")},
    },
}


def study_numbers(study: str) -> dict[str, float | None]:
    """{run label: paper value} of one study (None: the paper has no number)."""
    return {label: pn.value for label, pn in STUDY_NUMBERS[study].items()}


# ---------------------------------------------------------------------------------------
# The paper's findings, as comparisons between configurations of one study
# ---------------------------------------------------------------------------------------

KNN, ZSTD_SQRT_D = "eval/knn_top1", "collapse/z_std_sqrt_d"
#: ``Comparison.b`` meaning "the same runs as ``a``, at initialisation (epoch 0)".
INIT = "@init"


class Comparison(NamedTuple):
    """The claim "a <direction> b" on the final value of ``metric``, tested over seeds.

    ``a`` is a run label; ``b`` a run label (or a tuple of labels: the first present is
    used), :data:`INIT`, or a number (a threshold). ``direction`` is ">" or "<";
    ``paper_a``/``paper_b`` are the paper's values (None: none given)."""

    a: str
    b: str | tuple[str, ...] | float
    direction: str
    paper_a: float | None = None
    paper_b: float | None = None
    metric: str = KNN


class Claim(NamedTuple):
    """A finding of the paper; it holds when every comparison does."""

    text: str
    source: str
    comparisons: tuple[Comparison, ...]


_ONE_STEP = ("k1", "simsiam")  # 1-step ≡ SimSiam (paper Sec. 5; tests/test_alternation.py)


def _collapses(label: str, paper_value: float | None) -> tuple[Comparison, ...]:
    """The report's collapse criterion as two comparisons: kNN below init, z_std·√d below the threshold."""
    return (Comparison(label, INIT, "<", paper_value, None),
            Comparison(label, COLLAPSE_ZSTD, "<", None, None, ZSTD_SQRT_D))


#: Sec. 5's multi-step table as claims (labels as in experiments/kstep_sweep.py and cifar10_long.py).
_KSTEP_CLAIMS = (
        Claim("10-step ≥ 1-step", "Sec. 5 multi-step",
              (Comparison("k10", _ONE_STEP, ">", SEC5_KSTEP[10].value, SEC5_KSTEP[1].value),)),
        Claim("100-step ≥ 1-step", "Sec. 5 multi-step",
              (Comparison("k100", _ONE_STEP, ">", SEC5_KSTEP[100].value, SEC5_KSTEP[1].value),)),
        Claim("1-epoch < 1-step", "Sec. 5 multi-step",
              (Comparison("kepoch", _ONE_STEP, "<", SEC5_KSTEP["epoch"].value, SEC5_KSTEP[1].value),)),
)
#: Sec. 5's moving-average η and Table 1's no-predictor collapse (ema_vs_predictor, cifar10_long).
_EMA_CLAIMS = (
        Claim("EMA η without predictor (m = 0.8) learns (above init) and stays below SimSiam", "Sec. 5",
              (Comparison("ema_m0.8", INIT, ">", SEC5_EMA.value, None),
               Comparison("ema_m0.8", "simsiam", "<", SEC5_EMA.value, SIMSIAM.value))),
        Claim("no predictor collapses", "Table 1", _collapses("simsiam_no_predictor", TABLE1["none"].value)),
)


#: Per study, the claims the report tests (paired over seeds; see analysis/report.py).
CLAIMS: dict[str, tuple[Claim, ...]] = {
    "kstep_sweep": (
        *_KSTEP_CLAIMS,
    ),
    "ema_vs_predictor": (
        *_EMA_CLAIMS,
    ),
    "predictor_ablation": (
        Claim("no predictor collapses", "Table 1", _collapses("none", TABLE1["none"].value)),
        Claim("a fixed random predictor does not learn (not above init)", "Table 1",
              (Comparison("fixed_random", INIT, "<", TABLE1["fixed_random"].value, None),)),
        Claim("fixed predictor lr ≥ cosine-decayed predictor lr", "Table 1",
              (Comparison("learned_fixed_lr", "learned_cosine_lr", ">", TABLE1["learned_fixed_lr"].value,
                          TABLE1["learned_cosine_lr"].value),)),
    ),
    "stopgrad": (
        Claim("without stop-grad it collapses", "Fig. 2", _collapses("no_stopgrad", FIG2_NO_STOPGRAD.value)),
        Claim("with stop-grad it learns (above init)", "Fig. 2",
              (Comparison("stopgrad", INIT, ">", FIG2_STOPGRAD.value, None),)),
    ),
    "symmetry": (
        Claim("symmetric > asymmetric", "Sec. 4.6",
              (Comparison("symmetric", "asymmetric", ">", SYMMETRY["symmetric"].value,
                          SYMMETRY["asymmetric"].value),)),
        Claim("2 view pairs (asymmetric) > 1 pair (asymmetric)", "Sec. 4.6",
              (Comparison("asymmetric_2x", "asymmetric", ">", SYMMETRY["asymmetric_2x"].value,
                          SYMMETRY["asymmetric"].value),)),
        Claim("symmetric ≥ asymmetric with 2 view pairs", "Sec. 4.6",
              (Comparison("symmetric", "asymmetric_2x", ">", SYMMETRY["symmetric"].value,
                          SYMMETRY["asymmetric_2x"].value),)),
    ),
    "mean_input": (
        Claim("(open question, no paper number) the F(x̄) target learns (above init)", "Su (kexue.fm 7980)",
              (Comparison("mean_input", INIT, ">"),)),
    ),
    "cifar10_long": (
        *_KSTEP_CLAIMS,
        Claim("(beyond the paper) targets 2 epochs old < 1 epoch old", "this lab",
              (Comparison("k2epochs", "kepoch", "<"),)),
        Claim("(beyond the paper) targets 5 epochs old < 2 epochs old", "this lab",
              (Comparison("k5epochs", "k2epochs", "<"),)),
        *_EMA_CLAIMS,
        Claim("DirectPred (ε = 0.1) ≥ the learned predictor (DirectPred paper, BYOL, 100 epochs, linear: "
              f"CIFAR-10 {DIRECTPRED['directpred_eps0.1'].value} vs {DIRECTPRED['sgd_predictor'].value}; "
              f"STL-10 {DIRECTPRED_STL10[0]} vs {DIRECTPRED_STL10[1]})",
              "DirectPred Tables 6-9",
              (Comparison("directpred", "simsiam", ">", DIRECTPRED["directpred_eps0.1"].value, None),)),
        Claim("(open question) without a predictor, a 4-view expectation target does not collapse",
              "Sec. 5 hypothesis", (Comparison("M4_none", INIT, ">"),
                                    Comparison("M4_none", COLLAPSE_ZSTD, ">", None, None, ZSTD_SQRT_D))),
        Claim("(open question) a 4-view expectation target changes the learned predictor's accuracy",
              "Sec. 5 hypothesis", (Comparison("M4_learned", "simsiam", ">"),)),
        Claim("(open question) without a predictor, an 8-view expectation target does not collapse",
              "Sec. 5 hypothesis", (Comparison("M8_none", INIT, ">"),
                                    Comparison("M8_none", COLLAPSE_ZSTD, ">", None, None, ZSTD_SQRT_D))),
    ),
    "predictor_as_expectation": (
        Claim("DirectPred (ε = 0.1) ≥ SGD-trained predictor (DirectPred paper: BYOL, linear predictor)",
              "DirectPred Tables 6-9",
              (Comparison("directpred_eps0.1", "learned", ">", DIRECTPRED["directpred_eps0.1"].value,
                          DIRECTPRED["sgd_predictor"].value),)),
        Claim("no predictor collapses", "Table 1", _collapses("none", TABLE1["none"].value)),
        Claim("(open question) without a predictor, an 8-view expectation target does not collapse",
              "Sec. 5 hypothesis", (Comparison("M8_none", INIT, ">"),
                                    Comparison("M8_none", COLLAPSE_ZSTD, ">", None, None, ZSTD_SQRT_D))),
    ),
}


def _k(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def lookup(study: str, label: str, cfg: dict[str, Any]) -> PaperNumber | None:
    """The paper's number for a run of ``study`` named ``label`` with flattened config ``cfg``:
    the study's own label first (:data:`STUDY_NUMBERS`), else by the config."""
    if label in STUDY_NUMBERS.get(study, {}):
        return STUDY_NUMBERS[study][label]
    variant = cfg.get("method.variant", "simsiam")
    predictor = cfg.get("method.predictor", "auto")
    if predictor == "directpred":
        eps = float(cfg.get("method.directpred_eps", 0.1))
        return DIRECTPRED["directpred_eps0.1"] if eps == 0.1 else DIRECTPRED["directpred_eps0"] if eps == 0 else None
    if predictor == "directcopy":
        return DIRECTCOPY
    if variant == "kstep" and int(cfg.get("method.target_views", 1) or 1) > 1:
        return EXPECTATION_TARGET
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
