"""Command line: ``python -m emsiam train --config FILE key=value ...`` (also the ``emsiam`` script).

Errors a user can act on are reported as one line on stderr (naming the file or
key and what to do) with a distinct exit status; the traceback is printed only
with ``--debug`` (anywhere on the command line) or ``EMSIAM_DEBUG=1``. Anything
else is a bug: it keeps its traceback and exits with 1.

====  =====================================================================
exit  meaning
====  =====================================================================
0     success
1     unexpected error (a bug: traceback printed)
2     bad command line or config: unknown key, wrong type or range, malformed
      YAML, ``--config`` is a directory, ``name`` leaving out_dir, unsupported
      ``device``, ``optim.batch_size`` larger than the training set
3     data error: dataset missing, malformed or too small (``DataError``)
4     run directory cannot be used as asked: it already holds a run, the config
      differs from the saved one on resume, the saved ``config.yaml`` is
      missing or broken, nothing to resume (``RunError``)
5     checkpoint cannot be read: empty, truncated, corrupt or refused
6     disk: out_dir read-only or not writable, disk full, file size limit
      (``OSError`` ENOSPC, EDQUOT, EFBIG, EROFS, EACCES, EPERM)
7     target bank error (``emsiam.banks.BankError``)
8     the configured device is not available (``device=cuda`` without CUDA)
9     the run directory is locked by another live process (its pid is named)
130   interrupted (Ctrl-C or SIGTERM); resume with ``resume=true``
====  =====================================================================
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
import traceback

import yaml

from . import distributed
from .config import ConfigError, load_config, presets, to_dict
from .commands import COMMANDS, add_commands, before_train

EXIT_UNEXPECTED, EXIT_CONFIG, EXIT_DATA, EXIT_RUN, EXIT_CHECKPOINT = 1, 2, 3, 4, 5
EXIT_DISK, EXIT_BANK, EXIT_DEVICE, EXIT_LOCKED, EXIT_INTERRUPTED = 6, 7, 8, 9, 130

#: OSError numbers reported as disk errors (exit 6).
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emsiam", description="EM view of SimSiam: training and evaluation.",
                                epilog="Exit status: see `python -c 'import emsiam.cli; help(emsiam.cli)'`.")
    p.add_argument("--debug", action="store_true",
                   help="print the traceback of errors (also EMSIAM_DEBUG=1); accepted anywhere on the line")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in [("train", "train and evaluate a run"), ("config", "print the resolved config and exit")]:
        c = sub.add_parser(name, help=help_)
        c.add_argument("--config", "-c", default=None,
                       help=f"YAML file or preset name ({', '.join(presets())}); default: built-in defaults")
        c.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.epochs=5 data.root=DIR")
    add_commands(p, sub)  # presets, export, eval, sweep, report, --version (emsiam.commands)
    return p


def _split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """Remove ``--debug`` from anywhere before a ``--``; returns the rest and whether it was there."""
    cut = argv.index("--") if "--" in argv else len(argv)
    rest = [a for a in argv[:cut] if a != "--debug"] + argv[cut:]
    return rest, len(rest) != len(argv)


def classify(e: BaseException) -> tuple[int, str] | None:
    """(exit status, one-line message) for an error a user can act on; None for anything else."""
    from .banks import BankError
    from .data import DataError

    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted; continue the run with resume=true"
    if isinstance(e, BankError):
        return EXIT_BANK, f"bank error: {e}"
    if isinstance(e, DataError):
        return EXIT_DATA, f"data error: {e}"
    if isinstance(e, ConfigError):
        return getattr(e, "exit_code", EXIT_CONFIG), f"config error: {e}"
    if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
        where = e.filename or "a file under out_dir"
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            fix = "free some space (or raise the limit), then continue with resume=true, or choose another out_dir=..."
        else:
            fix = "make it writable or choose another out_dir=..."
        return EXIT_DISK, f"disk error: cannot write {where}: {e.strerror}; {fix}"
    code = getattr(e, "exit_code", None)  # RunError and its kinds (checkpoint, lock, ...)
    if isinstance(code, int):
        return code, f"error: {e}"
    return None


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


def _on_sigterm(signum, frame):  # noqa: ARG001
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    argv, debug = _split_debug(list(sys.argv[1:] if argv is None else argv))
    debug = debug or os.environ.get("EMSIAM_DEBUG", "") not in ("", "0")
    args = _parser().parse_args(argv)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    try:
        return _run(args)
    except BaseException as e:  # noqa: BLE001 - classified below, re-raised if not ours
        if isinstance(e, SystemExit):
            raise
        known = classify(e)
        if known is None:
            raise
        if debug:
            traceback.print_exc()
        print(f"emsiam: {known[1]}", file=sys.stderr)
        return known[0]
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; errors propagate to :func:`main`."""
    if args.command in COMMANDS:
        return COMMANDS[args.command](args)
    from .variants import check_config

    cfg = load_config(args.config, args.overrides)
    check_config(cfg)  # keys the chosen variant would ignore: refused, for `config` too
    if args.command == "config":
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    from .train import train

    before_train(cfg)  # prints the run directory; checks optional logger packages (emsiam.commands)
    records = train(cfg)
    if distributed.env_rank() != 0:  # torchrun: rank 0 reports
        return 0
    final = records[-1] if records else {}
    summary = {k: round(v, 3) for k, v in final.items() if isinstance(v, float)}
    print(f"run: {cfg.run_dir}\nfinal: {summary}")
    return 0
