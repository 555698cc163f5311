import math

import pytest

from analysis import stats


@pytest.mark.parametrize("df, t", [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (10, 2.228), (30, 2.042),
                                   (100, 1.984), (100_000, 1.960)])
def test_t_quantile_975(df, t):
    assert stats.t_quantile(0.975, df) == pytest.approx(t, abs=1e-3)


@pytest.mark.parametrize("df", [1, 2, 5, 7, 40])
def test_t_quantile_inverts_cdf_and_is_symmetric(df):
    for q in (0.6, 0.9, 0.995):
        t = stats.t_quantile(q, df)
        assert stats.t_cdf(t, df) == pytest.approx(q, abs=1e-10)
        assert stats.t_quantile(1 - q, df) == pytest.approx(-t)
    assert stats.t_cdf(0.0, df) == 0.5
    # closed forms: df 1 is Cauchy, df 2 has F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    assert stats.t_cdf(1.3, 1) == pytest.approx(0.5 + math.atan(1.3) / math.pi)
    assert stats.t_cdf(1.3, 2) == pytest.approx(0.5 + 1.3 / (2 * math.sqrt(2 + 1.3**2)))


def test_t_quantile_99_and_normal():
    assert stats.t_quantile(0.995, 10) == pytest.approx(3.169, abs=1e-3)
    assert stats.normal_quantile(0.975) == pytest.approx(1.95996, abs=1e-5)
    with pytest.raises(ValueError):
        stats.t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        stats.t_cdf(1.0, 0)


def test_sample_std_is_ddof_1():
    assert stats.sample_std([40.0, 41.0]) == pytest.approx(math.sqrt(0.5))  # np.std (ddof 0) gives 0.5
    assert stats.sample_std([1, 2, 3, 4]) == pytest.approx(math.sqrt(5 / 3))
    assert math.isnan(stats.sample_std([3.0])) and math.isnan(stats.mean([]))
    assert stats.mean([1, 2, 6]) == 3


def test_summary_interval():
    s = stats.summarize([1.0, 2.0, 3.0])
    half = 4.303 / math.sqrt(3)
    assert (s.n, s.mean, s.sd) == (3, 2.0, 1.0)
    assert s.lo == pytest.approx(2 - half, abs=1e-3) and s.hi == pytest.approx(2 + half, abs=1e-3)
    one = stats.summarize([5.0])
    assert one.n == 1 and one.mean == 5.0 and math.isnan(one.lo) and math.isnan(one.sd)


def test_paired_difference_known_answer_is_unresolved():
    a = {0: 3.0, 1: 5.0, 2: 7.0, 9: 100.0}  # seed 9 has no partner: left out
    b = {2: 4.0, 1: 3.0, 0: 2.0}  # differences 1, 2, 3
    p = stats.paired_difference(a, b)
    assert p.seeds == (0, 1, 2) and p.n == 3
    assert p.mean == pytest.approx(2.0) and p.sd == pytest.approx(1.0)
    assert p.lo == pytest.approx(2 - 4.303 / math.sqrt(3), abs=1e-3)
    assert p.lo < 0 < p.hi
    assert stats.difference_verdict(p, "k10", "k1") == "unresolved"


def test_paired_verdicts_resolved_and_one_seed():
    up = stats.paired_difference({0: 3.0, 1: 4.0, 2: 5.0}, {0: 1.0, 1: 1.0, 2: 1.0})  # d = 2, 3, 4
    assert up.lo > 0 and stats.difference_verdict(up, "A", "B") == "A > B"
    down = stats.paired_difference({0: 1.0, 1: 1.0, 2: 1.0}, {0: 3.0, 1: 4.0, 2: 5.0})
    assert down.hi < 0 and stats.difference_verdict(down, "A", "B") == "A < B"
    one = stats.paired_difference({0: 9.0, 1: 1.0}, {0: 1.0})
    assert one.n == 1 and one.mean == 8.0 and math.isnan(one.lo)
    assert stats.difference_verdict(one) == "one seed: unresolved"
    assert stats.difference_verdict(stats.paired_difference({0: 1.0}, {1: 1.0})) == "no matched seeds"
    # the same runs (differences all 0): interval [0, 0] covers 0
    same = stats.paired_difference({0: 2.0, 1: 3.0}, {0: 2.0, 1: 3.0})
    assert stats.difference_verdict(same) == "unresolved"


def test_collapse_state_is_the_stated_criterion():
    assert stats.collapse_state(40, 30, 0.2) == "collapsed"
    assert stats.collapse_state(40, 45, 0.9) == "not collapsed"
    assert stats.collapse_state(36.7, 36.9, 0.61) == "not collapsed"  # low rank alone is not the criterion
    assert stats.collapse_state(40, 45, 0.2).startswith("one sign: z_std")
    assert stats.collapse_state(40, 35, 0.9).startswith("one sign: kNN below init")
    assert stats.collapse_state(math.nan, 35, 0.9) == "n/a"
    assert str(stats.COLLAPSE_ZSTD) in stats.COLLAPSE_CRITERION


def test_knee_of_a_known_curve():
    """Flat, then falling linearly in log k: the knee is where the fall starts; a straight line has none."""
    from analysis.stats import knee

    logk = [0, 1, 2, 3, 4, 5]
    acc = [80.0, 80.0, 80.0, 70.0, 60.0, 50.0]
    assert knee(logk, acc) == 2
    assert knee(logk, [80, 78, 76, 74, 72, 70]) is None
    assert knee([0, 1], [1, 2]) is None
