"""Command line: ``python -m emsiam train --config FILE key=value ...`` (also the ``emsiam`` script)."""

from __future__ import annotations

import argparse
import sys

import yaml

from . import distributed
from .config import ConfigError, load_config, presets, to_dict


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emsiam", description="EM view of SimSiam: training and evaluation.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in [("train", "train and evaluate a run"), ("config", "print the resolved config and exit")]:
        c = sub.add_parser(name, help=help_)
        c.add_argument("--config", "-c", default=None,
                       help=f"YAML file or preset name ({', '.join(presets())}); default: built-in defaults")
        c.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.epochs=5 data.root=DIR")
    sub.add_parser("presets", help="list the presets")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "presets":
        print("\n".join(presets()))
        return 0
    try:
        cfg = load_config(args.config, args.overrides)
        if args.command == "config":
            print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
            return 0
        from .data import DataError
        from .runs import RunError
        from .train import train

        try:
            records = train(cfg)
        except (DataError, RunError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    if distributed.env_rank() != 0:  # torchrun: rank 0 reports
        return 0
    final = records[-1] if records else {}
    summary = {k: round(v, 3) for k, v in final.items() if isinstance(v, float)}
    print(f"run: {cfg.run_dir}\nfinal: {summary}")
    return 0
