from experiments.su_dynamics import simulate


def test_stopgrad_keeps_theta_away_from_zero():
    r = simulate(stopgrad=True)
    assert abs(r["phi"][-1] - 1.0) < 1e-3  # φ -> 1
    assert r["theta"][-1] > 0.1  # θ settles at a non-zero value (it grows from 0.1)
    assert abs(r["theta"][-1] - r["theta"][-1000]) < 1e-4  # settled


def test_full_gradient_collapses():
    r = simulate(stopgrad=False)
    assert r["theta"][-1] < 0.02  # θ -> 0
    assert r["phi"][-1] < 0.9  # φ never reaches 1
