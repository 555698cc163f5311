"""Markdown report of every study under a runs directory: figures, measured numbers, the paper's.

    python -m analysis.report RUNS_DIR [--out RUNS_DIR/report]

For each study directory found (``RUNS_DIR/<study>/<run>/``; run directories lying
directly under RUNS_DIR form one study named after RUNS_DIR), the report renders
the study's figures (:mod:`analysis.figures`) into the report folder, embeds them,
and tabulates per configuration (seeds pooled): n seeds, epochs, data source and
n_train, kNN at init and at the end (mean ± std), linear top-1 when logged,
std(z)·√d, the paper's number (:mod:`analysis.paper`) and whether the paper's
qualitative finding is reproduced, with the criterion used:

* collapse expected: yes if std(z)·√d < 0.5 and final kNN < kNN at init, partly if one holds;
* "does not converge" expected: yes if final kNN does not beat init;
* learning expected: yes if final kNN > init kNN and std(z)·√d ≥ 0.5, partly if only kNN beats init.

The paper's numbers are ImageNet linear top-1; this lab's numbers are usually CIFAR
kNN after a few epochs, so only the qualitative finding is compared.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from analysis import figures as F
from analysis import paper

#: Figures per known study, in report order; unknown studies try every figure.
STUDY_FIGURES = {
    "kstep_sweep": ["accuracy_vs_k", "staleness_vs_k", "learning_curves", "expectation_gap"],
    "ema_vs_predictor": ["ema_vs_m", "learning_curves", "expectation_gap"],
    "predictor_ablation": ["learning_curves", "expectation_gap"],
    "stopgrad": ["stopgrad_panels", "learning_curves"],
    "symmetry": ["learning_curves"],
    "mean_input": ["learning_curves", "expectation_gap"],
}

COLLAPSE_ZSTD = 0.5


def find_studies(root: Path) -> list[tuple[str, Path]]:
    """(name, directory) of each study: subdirectories holding runs (or su_dynamics .npz files);
    runs lying directly under ``root`` make ``root`` itself a study."""
    root = Path(root)
    studies = []
    children = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if any((c / "config.yaml").exists() for c in children) or (root / "config.yaml").exists():
        studies.append((root.name, root))
    for c in children:
        if (c / "config.yaml").exists() or c.name == "report":
            continue
        if any(c.rglob("config.yaml")) or (c / "stopgrad.npz").exists():
            studies.append((c.name, c))
    return studies


def _fmt(m: float, s: float, n: int, digits: int = 1) -> str:
    if n == 0 or math.isnan(m):
        return "–"
    return f"{m:.{digits}f} ± {s:.{digits}f}" if n > 1 else f"{m:.{digits}f}"


def judge(expect: str, knn_init: float, knn_end: float, zs: float) -> tuple[str, str]:
    """(verdict, criterion) for one configuration."""
    have_init, have_z = not math.isnan(knn_init), not math.isnan(zs)
    if math.isnan(knn_end):
        return "no data", "no kNN evaluation"
    beats = knn_end > knn_init if have_init else None
    if expect == "collapse":
        crit = f"collapse: z_std·√d < {COLLAPSE_ZSTD} and kNN below init"
        checks = [c for c in ((zs < COLLAPSE_ZSTD) if have_z else None, (not beats) if have_init else None)
                  if c is not None]
        if not checks:
            return "n/a", crit
        return ("yes" if all(checks) else "partly" if any(checks) else "no"), crit
    if expect == "fails":
        crit = "does not converge: final kNN ≤ init kNN"
        return ("n/a" if beats is None else "no" if beats else "yes"), crit
    if expect == "learns":
        crit = f"learns: final kNN > init kNN and z_std·√d ≥ {COLLAPSE_ZSTD}"
        if beats is None:
            return "n/a", crit
        if beats and (not have_z or zs >= COLLAPSE_ZSTD):
            return "yes", crit
        return ("partly" if beats else "no"), crit
    crit = "no paper number; beats init: final kNN > init kNN"
    return ("n/a" if beats is None else f"({'beats' if beats else 'does not beat'} init)"), crit


def study_table(name: str, groups: list[F.Group]) -> list[str]:
    head = ("| configuration | n seeds | epochs | data (n_train) | kNN init | kNN final | linear final "
            "| z_std·√d | paper setting | paper (" + paper.METRIC + ") | source | reproduced? | criterion |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for g in groups:
        epochs = sorted({int(r.records[-1].get("epoch") or 0) for r in g.runs})
        target = g.get("optim.epochs")
        ep = "/".join(map(str, epochs)) + (f" of {target}" if target is not None and epochs != [target] else "")
        data = f"{g.get('data.source', '?')} ({g.get('data.n_train') or 'all'})"
        ki = g.stat(lambda r: r.init(F.KNN))
        kf = g.stat(lambda r: r.final(F.KNN))
        lf = g.stat(lambda r: r.final(F.LINEAR))
        zs = g.stat(lambda r: r.final(F.ZSTD_SQRT_D))
        pn = paper.lookup(name, g.label, g.cfg)
        expect = pn.expect if pn else "unknown"
        verdict, crit = judge(expect, ki[0], kf[0], zs[0])
        if target is not None and min(epochs) < target:  # a run still going, or stopped early
            verdict = f"incomplete ({verdict} so far)" if min(epochs) > 0 else "incomplete"
        pv = "–" if pn is None or pn.value is None else f"{pn.value:.1f}"
        failed = sum(r.status == "failed" for r in g.runs)
        label = g.label + (f" ({failed} failed)" if failed else "")
        lines.append(f"| {label} | {g.n} | {ep} | {data} | {_fmt(*ki)} | {_fmt(*kf)} | {_fmt(*lf)} "
                     f"| {_fmt(*zs, digits=2)} | {pn.setting if pn else '–'} | {pv} | {pn.source if pn else '–'} "
                     f"| {verdict} | {crit} |")
    return lines


def _render(name: str, study_dir: Path, out: Path) -> tuple[list[str], list[str]]:
    """Markdown image links and skip notes for the study's figures."""
    images, notes = [], []
    if (study_dir / "stopgrad.npz").exists() and (study_dir / "no_stopgrad.npz").exists():
        try:
            paths = F.su_phase_plot(study_dir, out / name / "su_phase")
            images.append(f"![su_phase]({os.path.relpath(paths[0], out)})")
        except (OSError, KeyError, ValueError) as exc:
            notes.append(f"su_phase skipped: {exc}")
    if not any(study_dir.rglob("config.yaml")):
        return images, notes
    for fig in STUDY_FIGURES.get(name, list(F.FIGURES)):
        try:
            paths = F.FIGURES[fig](study_dir, out / name / fig)
        except ValueError as exc:
            notes.append(f"{fig} skipped: {exc}")
            continue
        images.append(f"![{fig}]({os.path.relpath(paths[0], out)})")
    return images, notes


def build_report(runs_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``out/report.md`` (default ``runs_dir/report``) and return its path."""
    runs_dir = Path(runs_dir)
    out = Path(out) if out is not None else runs_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    studies = find_studies(runs_dir)
    if not studies:
        raise ValueError(f"no studies (run directories or su_dynamics results) under {runs_dir}")
    md = [f"# Report: {runs_dir}", "",
          "Measured: kNN top-1 (%) on this lab's data, mean ± std over seeds (seeds pooled per configuration). "
          f"Paper: {paper.METRIC}, Chen & He (CVPR 2021). Only the qualitative finding is compared "
          "(\"reproduced?\"; criterion per row).", ""]
    for name, study_dir in studies:
        md += [f"## {name}", ""]
        images, notes = _render(name, study_dir, out)
        runs = F.load_runs(study_dir) if any(study_dir.rglob("config.yaml")) else []
        if study_dir == runs_dir:  # a flat root: only the runs lying directly under it
            runs = [r for r in runs if r.path.parent == study_dir or r.path == study_dir]
        groups = F.group_runs(runs)
        if groups:
            md += study_table(name, groups) + [""]
        elif not images:
            md += ["_No finished evaluations yet._", ""]
        for img in images:
            md += [img, ""]
        md += [f"- {n}" for n in notes] + ([""] if notes else [])
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs_dir")
    ap.add_argument("--out", default=None, help="report folder (default RUNS_DIR/report)")
    args = ap.parse_args(argv)
    path = build_report(args.runs_dir, args.out)
    figures = sorted(path.parent.rglob("*.png"))
    print(f"report written to {path}" + (f"; figures ({len(figures)}, PNG + PDF):" if figures else ""))
    for f in figures:
        print(f"  {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
