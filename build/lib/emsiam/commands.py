"""The CLI's tool commands: ``presets``, ``export``, ``eval``, ``sweep``, ``report``, and ``--version``.

:func:`add_commands` adds their parsers to ``emsiam``'s sub-parsers and
:data:`COMMANDS` maps each name to its handler (``handler(args) -> exit status``);
:mod:`emsiam.cli` parses and dispatches, and reports errors.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

from .config import PRESET_DIR, presets


def version_string() -> str:
    """``emsiam 0.1.0 (torch 2.14.1, torchvision 0.29.1, Python 3.11.7)``."""
    from . import __version__

    def ver(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    py = ".".join(map(str, sys.version_info[:3]))
    return f"emsiam {__version__} (torch {ver('torch')}, torchvision {ver('torchvision')}, Python {py})"


def preset_description(name: str) -> str:
    """The leading comment of ``presets/<name>.yaml`` up to its first full stop."""
    words: list[str] = []
    for line in (PRESET_DIR / f"{name}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        words.append(line.lstrip("#").strip())
        if words[-1].endswith("."):
            break
    return " ".join(w for w in words if w)


def before_train(cfg) -> None:
    """Before any compute: refuse missing optional logger packages, then name the run directory."""
    from . import distributed
    from .loggers import check_available

    check_available(cfg)
    if distributed.env_rank() == 0:
        print(f"run directory: {cfg.run_dir}", flush=True)


# ---- handlers ------------------------------------------------------------------


def _presets(args: argparse.Namespace) -> int:
    names = presets()
    width = max(map(len, names))
    for n in names:
        print(f"{n:<{width}}  {preset_description(n)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    import json

    from .export import export

    weights, recipe = export(args.run, args.out, args.checkpoint)
    meta = json.loads(recipe.read_text())
    print(f"backbone {meta['backbone']} (feature dim {meta['feature_dim']}, epoch {meta['source']['epoch']}) "
          f"-> {weights}\nrecipe -> {recipe}\nload with:")
    for line in meta["load"]:
        print(f"    {line}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .evaluate_run import evaluate_run

    progress = False if args.no_progress else None
    rec, dest = evaluate_run(args.run, args.checkpoint, [*args.overrides, *args.data], args.out, args.features,
                       args.tag, progress)
    t = args.tag
    keys = ["knn_top1", "linear_top1", "collapse/z_std_sqrt_d", "collapse/eff_rank"]
    shown = "  ".join(f"{k.split('/')[-1]} {rec[f'{t}/{k}']:.2f}" for k in keys if f"{t}/{k}" in rec)
    print(f"{t}: {rec[f'{t}/checkpoint']} (epoch {rec['epoch']}) on {rec[f'{t}/data']} "
          f"(train {rec[f'{t}/n_train']}, test {rec[f'{t}/n_test']}): {shown}")
    if f"{t}/features" in rec:
        print(f"features -> {rec[f'{t}/features']}")
    print(f"record (tag {t}) appended to {dest}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from experiments.sweep import main

    return main(args.args)


def _report(args: argparse.Namespace) -> int:
    from analysis.report import main

    return main(args.args)


COMMANDS = {"presets": _presets, "export": _export, "eval": _eval, "sweep": _sweep, "report": _report}


def add_commands(p: argparse.ArgumentParser, sub) -> None:
    """Add ``--version`` to ``p`` and the tool commands to its sub-parsers ``sub``."""
    p.add_argument("--version", action="version", version=version_string())
    sub.add_parser("presets", help="list the presets, one line each")

    c = sub.add_parser("export", help="write a run's backbone as a plain state_dict (torchvision key names)",
                       description="Backbone weights as a plain state_dict plus a .json build recipe beside "
                                   "it. ResNets use torchvision's key names, without fc.")
    c.add_argument("run", help="run directory (or a checkpoint file)")
    c.add_argument("--checkpoint", default=None, help="checkpoint file (default RUN/checkpoints/last.pt)")
    c.add_argument("--out", default=None, help="weights file (default RUN/export/backbone.pt)")

    c = sub.add_parser("eval", help="kNN, linear probe and collapse statistics of a checkpoint on any data",
                       description="Evaluate a checkpoint; the record (metrics under TAG/...) is appended to "
                                   "RUN/metrics.jsonl, or to --out.")
    c.add_argument("run", help="run directory (or a checkpoint file with --out)")
    c.add_argument("overrides", nargs="*", help="data.*, eval.* or device overrides, e.g. data.source=cifar10")
    c.add_argument("--data", nargs="+", default=[], metavar="KEY=VALUE", help="more overrides (data.root=DIR ...)")
    c.add_argument("--checkpoint", default=None, help="checkpoint file (default RUN/checkpoints/last.pt)")
    c.add_argument("--tag", default="posthoc", help="metric namespace of the record (default posthoc)")
    c.add_argument("--out", default=None, help="append the record to this JSON-lines file instead")
    c.add_argument("--features", default=None, help="also save backbone features and labels (.npz, .h5, .hdf5)")
    c.add_argument("--no-progress", action="store_true", help="no progress bars")

    # Everything after the command goes to the study runner's / report's own parser (its --help too);
    # a prefix character no argument uses keeps argparse from reading their flags here.
    for name, help_ in [("sweep", "run a study: emsiam sweep STUDY [--preset ...] (= python -m experiments.STUDY)"),
                        ("report", "render figures and tables: emsiam report RUNS_DIR [--out DIR]")]:
        c = sub.add_parser(name, help=help_, add_help=False, prefix_chars="\0")
        c.add_argument("args", nargs=argparse.REMAINDER)
