"""Markdown report of every study under a runs directory: figures, measured numbers, the paper's claims.

    python -m analysis.report RUNS_DIR [--out RUNS_DIR/report]
    python -m analysis.report --from-table TABLES [RUNS_DIR] --out OUT [--title TEXT] [--note TEXT ...]

Per study: its figures, the code versions of its runs, a table per configuration (seeds
pooled) and a table of the paper's claims tested as paired differences over seeds. What each
column means, the verdict rules and ``--from-table``: docs/report.md.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple, Sequence

from analysis import figures as F
from analysis import paper, results, stats
from emsiam.runs import code_versions

#: Figures per known study, in report order; unknown studies try every figure.
STUDY_FIGURES = {
    "kstep_sweep": ["accuracy_vs_k", "staleness_vs_k", "learning_curves", "expectation_gap"],
    "ema_vs_predictor": ["ema_vs_m", "learning_curves", "expectation_gap"],
    "predictor_ablation": ["learning_curves", "expectation_gap"],
    "stopgrad": ["stopgrad_panels", "learning_curves"],
    "symmetry": ["learning_curves"],
    "mean_input": ["learning_curves", "expectation_gap"],
    "cifar10_long": ["accuracy_vs_k", "staleness_vs_k", "ema_vs_m", "learning_curves", "expectation_gap",
                     "accuracy_vs_target_views", "predictor_spectra", "gap_by_predictor"],
    "predictor_as_expectation": ["learning_curves", "expectation_gap", "accuracy_vs_target_views",
                                 "predictor_spectra", "gap_by_predictor"],
}

#: An EMA run is judged only once the initial targets weigh at most this much in its bank.
EMA_MAX_INIT_WEIGHT = 0.05

METRIC_NAMES = {F.KNN: "kNN", F.LINEAR: "linear", F.ZSTD_SQRT_D: "z_std·√d"}

TABLE_NOTE = ("Cells: mean ± sample std (ddof = 1) over the n seeds of a configuration; kNN final also gives "
              "the 95% t interval of the mean [lo, hi]; one seed: the value alone. "
              f"Collapse column: {stats.COLLAPSE_CRITERION}; \"one sign\" when only one of the two holds "
              "(the only sense in which this lab calls a run collapsed).")
CLAIMS_NOTE = ("Claims: A − B paired by seed (same seed: same init and data order), final values; "
               "mean ± sample std of the differences over n seeds, 95% t interval. "
               "yes: every interval on the paper's side of 0; no: one on the other side; "
               "unresolved: an interval covers 0, or one seed (no interval). "
               "\"init\": the same runs at epoch 0; a number: a fixed threshold.")


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
    """"m ± s" (sample std), the value alone for one seed, "–" for none."""
    if n == 0 or math.isnan(m):
        return "–"
    return f"{m:.{digits}f} ± {s:.{digits}f}" if n > 1 else f"{m:.{digits}f}"


def _fmt_ci(x: stats.Summary, digits: int = 1) -> str:
    """"m ± s [lo, hi]" with the 95% t interval; the value alone for one seed."""
    if x.n < 2:
        return _fmt(x.mean, x.sd, x.n, digits)
    return f"{_fmt(x.mean, x.sd, x.n, digits)} [{x.lo:.{digits}f}, {x.hi:.{digits}f}]"


def _last_epoch(run: F.RunData) -> int:
    return int(run.records[-1].get("epoch") or 0)


def finished(run: F.RunData) -> bool:
    """The run reached its configured ``optim.epochs``."""
    target = run.cfg.get("optim.epochs")
    return target is None or _last_epoch(run) >= int(target)


def _eval_epoch(run: F.RunData) -> float:
    """Epoch of the run's last kNN evaluation (its last record's epoch if none)."""
    epochs, _ = run.series(F.KNN)
    return float(epochs[-1]) if len(epochs) else float(_last_epoch(run))


def init_weight(run: F.RunData) -> tuple[float, bool] | None:
    """(mean weight of η₀ in the bank at the last evaluation, derived?) of an ema run, else None.

    Logged as ``bank/init_weight``; runs written before that metric get m^E, E the epoch of
    the last evaluation (each image's row is updated once per epoch), with derived = True."""
    if run.cfg.get("method.variant") != "ema":
        return None
    logged = run.final(F.INIT_WEIGHT)
    if logged is not None:
        return logged, False
    return float(run.cfg.get("method.ema_m", 0.0)) ** _eval_epoch(run), True


def too_short(group: F.Group) -> str | None:
    """"too short to judge: ..." for an ema configuration whose bank still holds more than
    :data:`EMA_MAX_INIT_WEIGHT` of η₀ (largest over its runs), else None."""
    weights = [(*w, r) for r in group.runs if (w := init_weight(r)) is not None]
    if not weights:
        return None
    w, derived, run = max(weights, key=lambda x: x[0])
    if w <= EMA_MAX_INIT_WEIGHT:
        return None
    how = f", derived: m^E = {float(run.cfg.get('method.ema_m')):g}^{_eval_epoch(run):g}" if derived else ""
    return f"too short to judge: η₀ weight {w:.2f} > {EMA_MAX_INIT_WEIGHT}{how}"


def _short_sha(sha: str) -> str:
    """A git.txt sha as 7 hex digits (keeping "-dirty"); "unknown" as is."""
    base, dirty = (sha[:-6], "-dirty") if sha.endswith("-dirty") else (sha, "")
    return (base[:7] if re.fullmatch(r"[0-9a-f]{8,}", base) else base) + dirty


def code_line(runs: Sequence[F.RunData]) -> str | None:
    """"code: <sha> (n runs), ..." over the runs' code versions (git.txt: one line per start or
    resume; a run resumed under other code counts as "a → b"), in order of first appearance;
    None when no run records its code (runs restored from a table keep no git.txt)."""
    counts: dict[str, int] = {}
    for r in runs:
        key = " → ".join(_short_sha(s) for s in code_versions(r.path)) or "not recorded"
        counts[key] = counts.get(key, 0) + 1
    if set(counts) <= {"not recorded"}:
        return None
    return "code: " + ", ".join(f"{k} ({n} run{'s' if n != 1 else ''})" for k, n in counts.items())


def study_table(name: str, groups: list[F.Group]) -> list[str]:
    """One row per configuration (columns: docs/report.md)."""
    head = ("| configuration | n seeds | epochs | data (n_train) | kNN init | kNN final [95% t] | linear final "
            "| z_std·√d | collapse | paper setting | paper (" + paper.METRIC + ") | source | note |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for g in groups:
        epochs = sorted({_last_epoch(r) for r in g.runs})
        target = g.get("optim.epochs")
        ep = "/".join(map(str, epochs)) + (f" of {target}" if target is not None and epochs != [target] else "")
        data = f"{g.get('data.source', '?')} ({g.get('data.n_train') or 'all'})"
        ki = g.stat(lambda r: r.init(F.KNN))
        kf = stats.summarize(g.values(lambda r: r.final(F.KNN)).values())
        lf = g.stat(lambda r: r.final(F.LINEAR))
        zs = g.stat(lambda r: r.final(F.ZSTD_SQRT_D))
        pn = paper.lookup(name, g.label, g.cfg)
        pv = "–" if pn is None or pn.value is None else f"{pn.value:.1f}"
        notes = []
        unfinished = sum(not finished(r) for r in g.runs)
        if unfinished:
            notes.append(f"incomplete: {unfinished} of {g.n} runs short of {target} epochs")
        failed = sum(r.status == "failed" for r in g.runs)
        if failed:
            notes.append(f"{failed} failed")
        if short := too_short(g):
            notes.append(short)
        lines.append(f"| {g.label} | {g.n} | {ep} | {data} | {_fmt(*ki)} | {_fmt_ci(kf)} | {_fmt(*lf)} "
                     f"| {_fmt(*zs, digits=2)} | {stats.collapse_state(ki[0], kf.mean, zs[0])} "
                     f"| {pn.setting if pn else '–'} | {pv} | {pn.source if pn else '–'} "
                     f"| {'; '.join(notes) or '–'} |")
    return lines


class Tested(NamedTuple):
    """One comparison of a claim, as measured."""

    text: str  # e.g. "kNN: k10 > k1"
    paired: stats.Paired | None  # None: a configuration has no finished runs
    holds: bool | None  # True/False when the interval excludes 0, None otherwise
    verdict: str
    short: str | None  # an ema configuration too short to judge


def check_comparison(by_label: dict[str, F.Group], c: paper.Comparison) -> Tested:
    """Paired difference a − b over seeds (finished runs only) and whether it has the claimed sign."""
    metric = METRIC_NAMES.get(c.metric, c.metric)
    if isinstance(c.b, tuple):
        b = next((lab for lab in c.b if lab in by_label), c.b[0])
    else:
        b = c.b
    b_name = "init" if b == paper.INIT else f"{b:g}" if isinstance(b, (int, float)) else b
    a_name = f"{c.a} final" if b == paper.INIT else c.a
    text = f"{metric}: {a_name} {c.direction} {b_name}"
    missing = [lab for lab in (c.a, b) if isinstance(lab, str) and lab != paper.INIT and lab not in by_label]
    if missing:
        return Tested(text, None, None, f"not run: no finished {' or '.join(missing)} runs", None)
    ga = by_label[c.a]
    a_vals = ga.values(lambda r: r.final(c.metric))
    if b == paper.INIT:
        b_vals = ga.values(lambda r: r.init(c.metric))
    elif isinstance(b, (int, float)):
        b_vals = dict.fromkeys(a_vals, float(b))
    else:
        b_vals = by_label[b].values(lambda r: r.final(c.metric))
    p = stats.paired_difference(a_vals, b_vals)
    verdict = stats.difference_verdict(p, a_name, b_name)
    holds = None
    if p.n >= 2 and (p.lo > 0 or p.hi < 0):
        holds = (p.lo > 0) == (c.direction == ">")
    groups = [ga] + ([by_label[b]] if isinstance(b, str) and b in by_label else [])
    short = next((s for s in (too_short(g) for g in groups) if s), None)
    return Tested(text, p, holds, verdict, short)


def claim_verdict(tested: list[Tested]) -> str:
    """yes / no / unresolved over a claim's comparisons; "too short to judge" overrides (EMA)."""
    if any(t.paired is None for t in tested):
        verdict = next(t.verdict for t in tested if t.paired is None)
    elif all(t.holds is True for t in tested):
        verdict = "yes"
    elif any(t.holds is False for t in tested):
        verdict = "no"
    elif any(t.paired.n < 2 for t in tested):
        verdict = "unresolved (one seed)"
    else:
        verdict = "unresolved (interval covers 0)"
    short = next((t.short for t in tested if t.short), None)
    return f"{short} (measured: {verdict})" if short and tested[0].paired is not None else verdict


def _paper_pair(c: paper.Comparison) -> str:
    def one(v):
        return "–" if v is None else f"{v:.1f}"
    if isinstance(c.b, (int, float)):
        return f"{one(c.paper_a)} vs threshold"
    b = "init" if c.b == paper.INIT else one(c.paper_b)
    return f"{one(c.paper_a)} vs {b}"


def claims_table(name: str, groups: list[F.Group]) -> list[str]:
    """One row per comparison of each claim of ``name`` (:data:`analysis.paper.CLAIMS`); [] if none."""
    claims = paper.CLAIMS.get(name, ())
    if not claims:
        return []
    by_label = {}
    for g in groups:
        done = [r for r in g.runs if finished(r)]
        if done:
            by_label[g.label] = F.Group(g.label, done)
    head = ("| claim | source | paper (A vs B) | comparison A vs B | n seeds | A − B mean ± sd | 95% t interval "
            "| comparison | claim verdict |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for claim in claims:
        tested = [check_comparison(by_label, c) for c in claim.comparisons]
        verdict = claim_verdict(tested)
        for i, (c, t) in enumerate(zip(claim.comparisons, tested)):
            p = t.paired
            n = "–" if p is None else str(p.n)
            diff = "–" if p is None or p.n == 0 else _fmt(p.mean, p.sd, p.n, 2)
            ci = "–" if p is None or p.n < 2 else f"[{p.lo:.2f}, {p.hi:.2f}]"
            first = i == 0
            lines.append(f"| {claim.text if first else '… and'} | {claim.source if first else ''} "
                         f"| {_paper_pair(c)} | {t.text} | {n} | {diff} | {ci} | {t.verdict} "
                         f"| {verdict if first else ''} |")
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
            paths = {**F.FIGURES, **F.PREDICTOR_FIGURES}[fig](study_dir, out / name / fig)
        except ValueError as exc:
            notes.append(f"{fig} skipped: {exc}")
            continue
        images.append(f"![{fig}]({os.path.relpath(paths[0], out)})")
    return images, notes


def build_report(runs_dir: str | Path | Sequence[str | Path], out: str | Path | None = None,
                 title: str | None = None, preamble: Sequence[str] = ()) -> Path:
    """Write ``out/report.md`` (default ``runs_dir/report``) and return its path.

    ``runs_dir`` may be several roots: their studies are reported together, by name.
    ``title`` replaces the default heading text (the runs directory); ``preamble`` lines
    follow the heading."""
    roots = [Path(runs_dir)] if isinstance(runs_dir, (str, Path)) else [Path(r) for r in runs_dir]
    if not roots:
        raise ValueError("build_report: no runs directory given")
    out = Path(out) if out is not None else roots[0] / "report"
    out.mkdir(parents=True, exist_ok=True)
    studies = [s for r in roots for s in find_studies(r)]
    if len(roots) > 1:
        studies.sort(key=lambda s: s[0])
    if not studies:
        raise ValueError(f"no studies (run directories or su_dynamics results) under {', '.join(map(str, roots))}")
    md = [f"# Report: {title if title is not None else roots[0]}", "", *preamble, *([""] if preamble else []),
          "Measured: kNN top-1 (%) on this lab's data (seeds pooled per configuration). "
          f"Paper: {paper.METRIC}, Chen & He (CVPR 2021); only the direction of each claim is compared.", "",
          TABLE_NOTE, "", CLAIMS_NOTE, "",
          f"EMA: \"too short to judge\" while the initial targets η₀ weigh more than {EMA_MAX_INIT_WEIGHT} "
          "in the bank (bank/init_weight at the last evaluation; \"derived\": m^E after E epochs).", ""]
    for name, study_dir in studies:
        md += [f"## {name}", ""]
        images, notes = _render(name, study_dir, out)
        runs = F.load_runs(study_dir) if any(study_dir.rglob("config.yaml")) else []
        if study_dir in roots:  # a flat root: only the runs lying directly under it
            runs = [r for r in runs if r.path.parent == study_dir or r.path == study_dir]
        groups = F.group_runs(runs)
        if code := code_line(runs):
            md += [code, ""]
        if groups:
            md += study_table(name, groups) + [""]
            claims = claims_table(name, groups)
            if claims:
                md += [f"Claims of the paper, tested on these runs ({name}):", ""] + claims + [""]
        elif not images:
            md += ["_No finished evaluations yet._", ""]
        for img in images:
            md += [img, ""]
        md += [f"- {n}" for n in notes] + ([""] if notes else [])
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n")
    return path


def table_files(tables: str | Path) -> list[tuple[str, Path]]:
    """(study, file) of each saved tidy table: ``tables`` itself when it is a file (study: its
    stem, or its folder's name for ``results.csv``), else its ``*.csv`` files and the
    ``*/results.csv`` files the runner writes (``.parquet`` where there is no ``.csv``)."""
    tables = Path(tables)

    def study_of(p: Path) -> str:
        return p.parent.name if p.stem == "results" else p.stem

    if tables.is_file():
        return [(study_of(tables), tables)]
    found: dict[Path, Path] = {}
    for pattern in ("*.csv", "*/results.csv", "*.parquet", "*/results.parquet"):
        for p in sorted(tables.glob(pattern)):
            found.setdefault(p.with_suffix(""), p)
    files = [(study_of(p), p) for _, p in sorted(found.items())]
    if not files:
        raise ValueError(f"no tidy tables (*.csv, */results.csv, .parquet) in {tables}")
    return files


def build_report_from_tables(tables: str | Path, out: str | Path, runs_dir: str | Path | None = None,
                             title: str | None = None, command: str | None = None,
                             notes: Sequence[str] = ()) -> Path:
    """The report of the runs recorded in saved tidy tables (:func:`table_files`), written to
    ``out/report.md`` with its figures; studies under ``runs_dir`` join them. The run
    directories are restored into a temporary folder (:func:`analysis.results.restore_runs`)
    that is removed afterwards; the header names the tables and ``command``, then ``notes``."""
    tables, out = Path(tables), Path(out)
    if command is None:
        command = "python -m analysis.report " + " ".join(
            shlex.quote(a) for a in (*([str(runs_dir)] if runs_dir else []), "--from-table", str(tables),
                                     "--out", str(out)))
    preamble = [f"Rebuilt from the tidy tables in `{tables}` (one row per run and evaluation; the run "
                "directories were not kept). A table holds the evaluation records only: figures show the "
                "evaluated epochs, and metrics logged only between evaluations are absent."
                + (f" Studies from run directories: `{runs_dir}`." if runs_dir else "") + " Command:",
                "", "```", command, "```"]
    preamble += [line for n in notes for line in ("", n)]
    with tempfile.TemporaryDirectory(prefix="report-tables-") as tmp:
        root = Path(tmp) / "runs"
        for study, path in table_files(tables):
            results.restore_runs(results.read_table(path), root, study=study)
        roots = [root] + ([Path(runs_dir)] if runs_dir else [])
        report = build_report(roots, out, title=title if title is not None else str(tables), preamble=preamble)
        md = report.read_text()
        report.write_text(md.replace(str(root), str(tables)))  # skip notes name the tables, not the temp folder
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs_dir", nargs="?", default=None,
                    help="runs directory (with --from-table: further studies, e.g. su_dynamics results)")
    ap.add_argument("--out", default=None, help="report folder (default RUNS_DIR/report; required with --from-table)")
    ap.add_argument("--from-table", default=None, metavar="TABLES",
                    help="build from saved tidy tables: a folder of <study>.csv or <study>/results.csv, or one file")
    ap.add_argument("--title", default=None, help="heading text (default: the runs directory or the tables)")
    ap.add_argument("--note", action="append", default=[], help="a paragraph for the header (repeatable)")
    args = ap.parse_args(argv)
    if args.from_table is not None:
        if args.out is None:
            ap.error("--from-table needs --out")
        command = "python -m analysis.report " + " ".join(map(shlex.quote, argv if argv is not None else sys.argv[1:]))
        path = build_report_from_tables(args.from_table, args.out, args.runs_dir, args.title, command, args.note)
    elif args.runs_dir is None:
        ap.error("give RUNS_DIR or --from-table TABLES")
    else:
        path = build_report(args.runs_dir, args.out, title=args.title,
                            preamble=[line for n in args.note for line in ("", n)][1:])
    figures = sorted(path.parent.rglob("*.png"))
    print(f"report written to {path}" + (f"; figures ({len(figures)}, PNG + PDF):" if figures else ""))
    for f in figures:
        print(f"  {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
