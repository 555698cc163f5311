"""Do two code versions train bit-identically? The proof a study needs to mix them.

    python benchmarks/same_training.py --old de3f88e            # old commit vs this checkout
    python benchmarks/same_training.py --old de3f88e --new HEAD

For each variant (simsiam, kstep k=3, ema), a tiny 2-epoch synthetic run is trained three ways:
with the old code, with the new code, and started with the old code, stopped after epoch 1 and
resumed with the new code. Every epoch's training loss and kNN must be equal to the bit; the
exit status is 1 otherwise. Old revisions are checked out with ``git worktree`` in a temporary
folder (removed afterwards). Runs single-threaded; about a minute per variant.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {
    "simsiam": ["method.variant=simsiam"],
    "kstep": ["method.variant=kstep", "method.k=3"],
    "ema": ["method.variant=ema"],
}

#: Run inside a child with the tree under test first on sys.path: full | part | resume.
CHILD = r"""
import json, sys
tree, mode, out, name, *extra = sys.argv[1:]
sys.path.insert(0, tree)
from emsiam.config import load_config
from emsiam.train import train
cfg = ["data.source=synthetic", "data.n_train=512", "data.n_test=128", "model.convnet_widths=[8,16]",
       "model.proj_hidden=32", "model.dim=32", "optim.batch_size=64", "optim.epochs=2", "eval.linear=false",
       "eval.knn_k=20", "progress=false", f"out_dir={out}", f"name={name}", *extra]
if mode == "part":
    from emsiam import alternation
    end = alternation._end_of_epoch
    def stop(s, epoch, *a, **k):
        end(s, epoch, *a, **k)
        raise SystemExit(0)  # as if killed right after the first checkpoint
    alternation._end_of_epoch = stop
    train(load_config(None, cfg))
else:
    recs = train(load_config(None, cfg + (["resume=true"] if mode == "resume" else [])))
    print(json.dumps([[r["epoch"], r.get("train/loss"), r.get("eval/knn_top1")] for r in recs]))
"""


def _train(tree: Path, mode: str, out: Path, name: str, extra: list[str]) -> list | None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(tree))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tree), mode, str(out), name, *extra],
                          capture_output=True, text=True, env=env, cwd=tree)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run {name} with {tree} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]) if mode != "part" else None


def _checkout(rev: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where), rev],
                   check=True, capture_output=True)
    return where


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="git revision of the old code")
    ap.add_argument("--new", default=None, help="git revision of the new code (default: this checkout as it is)")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="same-training-") as tmp:
        tmp = Path(tmp)
        trees = [_checkout(args.old, tmp / "old")]
        trees.append(_checkout(args.new, tmp / "new") if args.new else ROOT)
        old, new = trees
        same = True
        try:
            for name in args.variants:
                extra = VARIANTS[name]
                a = _train(old, "full", tmp / "runs", f"{name}_old", extra)
                b = _train(new, "full", tmp / "runs", f"{name}_new", extra)
                _train(old, "part", tmp / "runs", f"{name}_mix", extra)
                c = _train(new, "resume", tmp / "runs", f"{name}_mix", extra)
                ok = a == b == c
                same &= ok
                print(f"{name:8s} {'identical' if ok else 'DIFFERENT'}  old {a}\n{'':8s} {'':9s}  new {b}\n"
                      f"{'':8s} {'':9s}  old->new resumed {c}")
        finally:
            for t in trees:
                if t != ROOT:
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(t)],
                                   capture_output=True)
    print("bit-identical" if same else "the versions train differently")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
