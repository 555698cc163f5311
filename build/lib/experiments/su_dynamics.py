"""Su's scalar dynamics: why stop-gradient prevents collapse (kexue.fm 7980).

    python -m experiments.su_dynamics [--out runs/su_dynamics]     # seconds, no training

It accepts the flags of the training studies (experiments/sweep/cli.py) so one loop
can call every study: ``--preset``, ``--seeds``, ``--data``, ``--epochs``,
``--workers`` and ``--set`` are accepted and ignored (there is no training and the
simulation is deterministic); ``--dry-run`` prints what would be written.
With ``--out DIR`` given as a runs root (no ``su_dynamics`` component) the
results go to ``DIR/su_dynamics``.

Loss l = ½(φθ − θ)², with φ the "predictor" and θ the "encoder", from
φ(0) = 0.6, θ(0) = 0.1, integrated by gradient flow (explicit Euler):

- with stop-grad on the target θ:  θ' = −(φθ − θ)·φ,      φ' = −(φθ − θ)·θ
- without (full gradient):        θ' = −(φθ − θ)·(φ − 1), φ' = −(φθ − θ)·θ

Stated behaviour (Su): with stop-grad φ → 1 quickly and θ settles at a
non-zero value (no collapse); with the full gradient θ → 0 and φ never
reaches 1 (collapse). ``tests/test_su_dynamics.py`` checks both.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from analysis.figures import su_phase_plot


def simulate(stopgrad: bool, phi0: float = 0.6, theta0: float = 0.1, dt: float = 0.01,
             t_end: float = 400.0) -> dict[str, np.ndarray]:
    """Gradient flow of l = ½(φθ − θ)²; returns arrays t, phi, theta, loss."""
    n = int(round(t_end / dt))
    phi, theta = np.empty(n + 1), np.empty(n + 1)
    phi[0], theta[0] = phi0, theta0
    for i in range(n):
        f, th = phi[i], theta[i]
        r = f * th - th  # residual φθ − θ
        d_theta = r * f if stopgrad else r * (f - 1.0)
        phi[i + 1] = f - dt * r * th
        theta[i + 1] = th - dt * d_theta
    return {"t": np.arange(n + 1) * dt, "phi": phi, "theta": theta, "loss": 0.5 * (phi * theta - theta) ** 2}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/su_dynamics")
    # Shared study flags (experiments/sweep/cli.py), accepted and ignored here.
    ap.add_argument("--preset", default=None, help="ignored (no training)")
    ap.add_argument("--seeds", type=int, default=1, help="ignored (deterministic)")
    ap.add_argument("--data", nargs="*", default=[], help="ignored (no data)")
    ap.add_argument("--epochs", type=int, default=None, help="ignored")
    ap.add_argument("--workers", type=int, default=1, help="ignored")
    ap.add_argument("--set", nargs="*", default=[], help="ignored")
    ap.add_argument("--dry-run", action="store_true", help="print where results would go and exit")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.name != "su_dynamics":
        out = out / "su_dynamics"
    if args.dry_run:
        print(f"su_dynamics: 2 simulations (stopgrad, no_stopgrad), no training; would write {out}")
        return
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name, sg in [("stopgrad", True), ("no_stopgrad", False)]:
        r = simulate(sg)
        np.savez(out / f"{name}.npz", **r)
        summary[name] = {"phi_end": float(r["phi"][-1]), "theta_end": float(r["theta"][-1])}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    su_phase_plot(out, out / "su_phase")
    for k, v in summary.items():
        print(f"{k:12s} phi -> {v['phi_end']:.4f}   theta -> {v['theta_end']:.4f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
