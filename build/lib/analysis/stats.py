"""Small-sample statistics the report rests on, and the decisions it states.

Pure functions over plain numbers (no scipy): sample mean and std (ddof = 1),
Student's t quantile, the 95% t interval of a mean, the paired difference of two
configurations matched by seed with its verdict, and the collapse criterion.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np

#: Collapse threshold on std(l2-normalised z)·√d (1 for an isotropic spread, 0 for one point).
COLLAPSE_ZSTD = 0.5
COLLAPSE_CRITERION = f"collapsed when final z_std·√d < {COLLAPSE_ZSTD} and final kNN < kNN at init (both)"


def mean(xs: Iterable[float]) -> float:
    """x̄ = Σx / n (nan for no values)."""
    xs = list(xs)
    return math.fsum(xs) / len(xs) if xs else math.nan


def sample_std(xs: Iterable[float]) -> float:
    """s = √(Σ(x − x̄)² / (n − 1)), the ddof = 1 estimate (nan for fewer than 2 values)."""
    xs = list(xs)
    if len(xs) < 2:
        return math.nan
    m = mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def t_cdf(t: float, df: int) -> float:
    """P(T ≤ t) for Student's t with integer df ≥ 1, by the finite series in θ = atan(|t|/√df)
    (Abramowitz & Stegun 26.7.3-4): A = P(|T| ≤ |t|), even df: A = sin θ Σ_j c_j cos^{2j} θ,
    odd df: A = (2/π)(θ + sin θ cos θ Σ_j d_j cos^{2j} θ)."""
    if df < 1 or int(df) != df:
        raise ValueError(f"t_cdf: df must be a positive integer, got {df}")
    df = int(df)
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    term = total = 1.0
    if df % 2 == 0:
        for j in range(1, df // 2):
            term *= (2 * j - 1) / (2 * j) * c2
            total += term
        a = s * total
    else:
        for j in range(1, (df - 1) // 2):
            term *= (2 * j) / (2 * j + 1) * c2
            total += term
        a = 2 / math.pi * (theta + (s * math.cos(theta) * total if df > 1 else 0.0))
    return 0.5 + 0.5 * a if t >= 0 else 0.5 - 0.5 * a


def normal_quantile(q: float) -> float:
    """z with Φ(z) = q, Φ(z) = ½(1 + erf(z/√2)), by bisection."""
    if not 0 < q < 1:
        raise ValueError(f"normal_quantile: q must lie in (0, 1), got {q}")
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < q else (lo, mid)
    return 0.5 * (lo + hi)


def t_quantile(q: float, df: int) -> float:
    """t with P(T ≤ t) = q for Student's t with df degrees of freedom: bisection on :func:`t_cdf`
    (df ≤ 1000); beyond, the Cornish-Fisher expansion around the normal quantile z
    (A&S 26.7.5: t ≈ z + (z³+z)/4ν + (5z⁵+16z³+3z)/96ν² + (3z⁷+19z⁵+17z³−15z)/384ν³)."""
    if not 0 < q < 1:
        raise ValueError(f"t_quantile: q must lie in (0, 1), got {q}")
    if q < 0.5:
        return -t_quantile(1 - q, df)
    if df > 1000:
        z, v = normal_quantile(q), float(df)
        return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
                + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3))
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:
        lo, hi = hi, 2 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < q else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


class Summary(NamedTuple):
    """n values: mean, sample std, and the 95% t interval [lo, hi] of the mean (nan when n < 2)."""

    n: int
    mean: float
    sd: float
    lo: float
    hi: float


def summarize(xs: Iterable[float], level: float = 0.95) -> Summary:
    """x̄, s and x̄ ± t_{(1+level)/2, n−1}·s/√n."""
    xs = [float(x) for x in xs]
    n, m, s = len(xs), mean(xs), sample_std(xs)
    if n < 2:
        return Summary(n, m, math.nan, math.nan, math.nan)
    half = t_quantile((1 + level) / 2, n - 1) * s / math.sqrt(n)
    return Summary(n, m, s, m - half, m + half)


class Paired(NamedTuple):
    """Summary of the per-seed differences A − B, and the seeds they come from."""

    n: int
    mean: float
    sd: float
    lo: float
    hi: float
    seeds: tuple


def paired_difference(a: Mapping[object, float], b: Mapping[object, float], level: float = 0.95) -> Paired:
    """d_s = a_s − b_s over the seeds s present in both; mean, sample std and t interval of d."""
    seeds = tuple(sorted(set(a) & set(b), key=repr))
    return Paired(*summarize([a[s] - b[s] for s in seeds], level), seeds)


def difference_verdict(p: Paired | Summary, a: str = "A", b: str = "B") -> str:
    """"A > B" when the interval lies above 0, "A < B" below, "unresolved" when it covers 0;
    one pair: "one seed: unresolved"; none: "no matched seeds"."""
    if p.n == 0:
        return "no matched seeds"
    if p.n == 1:
        return "one seed: unresolved"
    if p.lo > 0:
        return f"{a} > {b}"
    if p.hi < 0:
        return f"{a} < {b}"
    return "unresolved"


def collapse_state(knn_init: float, knn_final: float, zstd_sqrt_d: float) -> str:
    """The report's collapse criterion (:data:`COLLAPSE_CRITERION`): "collapsed" when both hold,
    "not collapsed" when neither, "one sign: ..." when one does, "n/a" without the numbers."""
    low_z = None if math.isnan(zstd_sqrt_d) else zstd_sqrt_d < COLLAPSE_ZSTD
    below = None if math.isnan(knn_init) or math.isnan(knn_final) else knn_final < knn_init
    if low_z is None or below is None:
        return "n/a"
    if low_z and below:
        return "collapsed"
    if low_z:
        return f"one sign: z_std·√d < {COLLAPSE_ZSTD}, kNN above init"
    if below:
        return f"one sign: kNN below init, z_std·√d ≥ {COLLAPSE_ZSTD}"
    return "not collapsed"


def knee(x: Sequence[float], y: Sequence[float]) -> int | None:
    """Index of the knee of a curve y(x) (x increasing, e.g. log k): the point farthest from the
    chord through the first and last points, measured vertically after scaling both axes to
    [0, 1] (the "Kneedle" criterion, Satopää et al. 2011). None with fewer than 3 points or a
    flat curve."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xs) < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return None
    xn, yn = (xs - xs.min()) / np.ptp(xs), (ys - ys.min()) / np.ptp(ys)
    chord = yn[0] + (yn[-1] - yn[0]) * (xn - xn[0]) / (xn[-1] - xn[0])
    gap = np.abs(yn - chord)
    i = int(np.argmax(gap))
    return i if gap[i] > 1e-9 else None
