"""The GPU check: CUDA tests and the GPU figures in one JSON (run it through gpu_check.sh).

    bash benchmarks/gpu_check.sh                 # one GPU, <= 8 minutes; benchmarks/results/gpu-check-<gpu>.json
    bash benchmarks/gpu_check.sh --cpu-dry-run   # every step shrunk, on CPU (~1 minute): proves the script runs

Steps, in order (each a subprocess with its own time limit; what does not fit in the
budget is recorded as skipped, a failing step does not stop the others):

1. ``pytest -m cuda``: banks on CUDA, augmentation CPU vs CUDA, resume on CUDA, k = 1 = SimSiam
   in fp32 (cuDNN deterministic mode; tolerances in tests/test_cuda.py), 2-GPU tests (skip on 1 GPU);
2. ResNet-18 CIFAR-10, B = 512, preset ``gpu-cifar`` (bf16, channels_last, TF32, cudnn.benchmark):
   end-to-end and model-only pairs/s, eager and ``compile=true`` (benchmarks/throughput.py);
3. variant cost per step: kstep k = 10, ema, disk banks (benchmarks/variant_cost.py);
4. the ``cpu`` preset's convnet on the GPU: pairs/s (benchmarks/throughput.py);
5. a 5-epoch k-sweep smoke on CIFAR-10 (simsiam, k = 10, k = epoch, ema; kNN), through the
   sweep runner: epoch time from the runs' own ``time/epoch_s``.

CIFAR-10 is read from ``data/cifar10-jpeg.tar.gz`` (copied there from ../shared/data when that
exists; ``data/`` is ignored by git); without it, steps 2-5 use the built-in synthetic set
and the JSON says so. Needs python3 with torch and torchvision; installs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import torch
from bench_io import device_label, write_json

ROOT = Path(__file__).resolve().parent.parent
CIFAR = ROOT / "data" / "cifar10-jpeg.tar.gz"
SHARED = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
BUDGET_S = 8 * 60

#: Everything shrunk for the CPU dry run: tiny convnet, 512 synthetic images, a few steps.
DRY = ["device=cpu", "amp=none", "tf32=false", "cudnn_benchmark=false", "data.source=synthetic", "data.n_train=512",
       "data.n_test=128", "model.backbone=convnet", "model.convnet_widths=[8,16]", "model.proj_hidden=32",
       "model.dim=32", "optim.batch_size=64", "eval.linear=false", "eval.knn_k=20", "eval.batch_size=128",
       "method.probe_images=32", "method.probe_views=2"]

SMOKE_RUNS = {
    "simsiam": ["method.variant=simsiam"],
    "k10": ["method.variant=kstep", "method.k=10"],
    "kepoch": ["method.variant=kstep", "method.k=epoch"],
    "ema": ["method.variant=ema"],
}


def data_overrides(dry: bool) -> tuple[list[str], str]:
    """Overrides selecting the data, and a line saying which data it is."""
    if dry:
        return [], "synthetic, 512 images (dry run)"
    if not CIFAR.exists() and SHARED.exists():
        CIFAR.parent.mkdir(exist_ok=True)
        shutil.copy2(SHARED, CIFAR)
    if CIFAR.exists():
        return ["data.source=imagefolder", f"data.root={CIFAR}"], f"CIFAR-10 ({CIFAR.relative_to(ROOT)})"
    return ["data.source=synthetic", "data.n_train=50000", "data.n_test=10000"], \
        "synthetic 50k/10k (CIFAR-10 not found in data/ or ../shared/data)"


class Check:
    """Runs the steps under one time budget and collects their results. Each step is a
    script and its arguments: a subprocess with a time limit, or (``inproc``, the dry run)
    a call in this process, which pays torch's import once instead of once per step."""

    def __init__(self, budget_s: float, tmp: Path, inproc: bool = False):
        self.t0, self.budget_s, self.tmp, self.inproc = time.monotonic(), budget_s, tmp, inproc
        self.steps: dict[str, dict] = {}

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.t0)

    def run(self, name: str, cmd: list[str], limit_s: float, read=None) -> dict:
        """Run ``cmd``; ``read()`` turns its output files into the step's result."""
        limit = min(limit_s, self.left())
        if limit < 10:
            self.steps[name] = {"ok": False, "skipped": f"out of the {self.budget_s:.0f} s budget"}
            print(f"[gpu-check] {name}: skipped (budget)", flush=True)
            return self.steps[name]
        print(f"[gpu-check] {name}: {' '.join(cmd)}", flush=True)
        t0 = time.monotonic()
        if self.inproc:
            rc, out = _call_inproc(cmd), ""
        else:
            try:
                proc = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True, timeout=limit)
                rc, out = proc.returncode, proc.stdout + proc.stderr
            except subprocess.TimeoutExpired as e:
                rc, out = "timeout", f"stopped after {limit:.0f} s\n" + _text(e.stdout) + _text(e.stderr)
        step = {"rc": rc, "wall_s": round(time.monotonic() - t0, 1), "command": " ".join(["python", *cmd])}
        try:
            step["result"] = read() if read is not None else None
        except Exception as e:  # noqa: BLE001 - a step without output is recorded, not fatal
            step["result"], step["read_error"] = None, f"{type(e).__name__}: {e}"
        step["ok"] = rc == 0 and "read_error" not in step
        if not step["ok"]:
            step["output_tail"] = out[-4000:]
        print(f"[gpu-check] {name}: {'ok' if step['ok'] else 'FAILED'} in {step['wall_s']} s", flush=True)
        self.steps[name] = step
        return step


def _call_inproc(cmd: list[str]) -> int | str:
    """``python SCRIPT ARGS`` or ``python -m pytest ARGS`` in this process; the exit status."""
    import runpy
    import traceback

    argv = sys.argv
    try:
        if cmd[:2] == ["-m", "pytest"]:
            import pytest

            return int(pytest.main(cmd[2:]))
        sys.argv = cmd
        runpy.run_path(str(ROOT / cmd[0]), run_name="__main__")
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception:  # noqa: BLE001 - recorded as the step's failure
        traceback.print_exc()
        return "exception"
    finally:
        sys.argv = argv


def _text(b) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


def read_junit(path: Path) -> dict:
    """Outcome of each test, their counts, and the properties the tests recorded."""
    tests, props = {}, {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                if tag != "skipped" or el.get("message"):
                    outcome += f": {(el.get('message') or '')[:200]}"
        tests[name] = outcome
        for p in case.iter("property"):
            props[f"{name}:{p.get('name')}"] = _num(p.get("value"))
    counts = {k: sum(v.startswith(k) for v in tests.values()) for k in ("passed", "failed", "error", "skipped")}
    return {"counts": counts, "tests": tests, "properties": props}


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def cuda_test_files() -> list[str]:
    """The test files holding ``pytest.mark.cuda`` tests (collecting only them is quicker)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if "pytest.mark.cuda" in p.read_text())


def read_json(path: Path):
    return lambda: json.loads(path.read_text())


def read_smoke(out: Path, study: str):
    def read() -> dict:
        from emsiam.runs import read_metrics

        rows = {}
        for label in SMOKE_RUNS:
            recs = read_metrics(out / study / f"{label}_s0")
            train = [r for r in recs if "time/epoch_s" in r]
            evals = [r for r in recs if "eval/knn_top1" in r]
            rows[label] = {
                "epochs": train[-1]["epoch"] if train else 0,
                "knn_top1": [(r["epoch"], r["eval/knn_top1"]) for r in evals],
                "final_loss": train[-1]["train/loss"] if train else None,
                "epoch_s": [r["time/epoch_s"] for r in train],
                "pairs_per_s_last_epoch": train[-1]["time/pairs_per_s"] if train else None,
                "ckpt_s": [r.get("time/ckpt_s") for r in train],
            }
            status = out / study / f"{label}_s0" / "status.json"
            rows[label]["status"] = json.loads(status.read_text())["status"] if status.exists() else None
        return rows
    return read


def summary(steps: dict, dry: bool) -> dict:
    """The headline figures, pulled from the steps' results (None where a step failed)."""
    get = lambda name: (steps.get(name) or {}).get("result") or {}  # noqa: E731
    eager, comp = get("resnet18_eager"), get("resnet18_compile")
    out: dict = {"cuda_tests": get("cuda_tests").get("counts")}
    for label, r in (("eager", eager), ("compile", comp)):
        if r:
            out[f"resnet18_{label}_e2e_pairs_per_s"] = r["e2e_pairs_per_s"]
            out[f"resnet18_{label}_model_pairs_per_s"] = r["model_pairs_per_s"]
            out[f"resnet18_{label}_ratio_e2e_over_model"] = r["ratio_e2e_over_model"]
            out[f"resnet18_{label}_projected_epoch_s"] = 50000 // r["batch_size"] * r["batch_size"] / r["e2e_pairs_per_s"]
    if eager and comp:  # compilation: the extra time of the first (warm-up) steps
        out["compile_time_s"] = comp["warmup_s"] - eager["warmup_s"]
    smoke = get("ksweep_smoke")
    if smoke.get("simsiam", {}).get("epoch_s"):
        e = smoke["simsiam"]["epoch_s"]
        out["resnet18_eager_measured_epoch_s"] = {"first": e[0], "median": sorted(e)[len(e) // 2]}
    if smoke:
        out["ksweep_final_knn"] = {k: (v["knn_top1"][-1][1] if v["knn_top1"] else None) for k, v in smoke.items()}
    cost = get("variant_cost").get("variants", {})
    out["variant_ratio_to_simsiam"] = {k: v["ratio_to_simsiam"] for k, v in cost.items()}
    if get("convnet_cpu_preset"):
        out["convnet_cpu_preset_e2e_pairs_per_s"] = get("convnet_cpu_preset")["e2e_pairs_per_s"]
    if dry:
        out["note"] = "CPU dry run: every figure is from a shrunk step on the CPU and means nothing"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-dry-run", action="store_true", help="shrink every step and run it on the CPU")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/gpu-check-<gpu>.json)")
    ap.add_argument("--budget-s", type=float, default=BUDGET_S, help="time budget of all steps together")
    args = ap.parse_args()
    dry = args.cpu_dry_run
    if not dry and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; use --cpu-dry-run to test the script on the CPU", file=sys.stderr)
        return 2
    device = torch.device("cpu" if dry else "cuda")
    gpu = device_label(device)
    data, data_note = data_overrides(dry)
    tmp = Path(tempfile.mkdtemp(prefix="emsiam-gpu-check-"))
    check = Check(args.budget_s, tmp, inproc=dry)
    shrink = DRY if dry else []
    reps = ["--steps", "2", "--rounds", "1", "--warmup", "1"] if dry else ["--steps", "20", "--rounds", "3"]
    try:
        junit = tmp / "cuda-tests.xml"
        check.run("cuda_tests", ["-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                                 f"--junitxml={junit}", "-o", "junit_family=xunit1", *cuda_test_files()],
                  120 if dry else 150, lambda: read_junit(junit))
        for label, extra in (("resnet18_eager", []), ("resnet18_compile", [] if dry else ["compile=true"])):
            out = tmp / f"{label}.json"
            check.run(label, ["benchmarks/throughput.py", "--preset", "gpu-cifar", *reps, "--out", str(out),
                              *data, *shrink, *extra], 60 if dry else 150, read_json(out))
        out = tmp / "variant_cost.json"
        check.run("variant_cost", ["benchmarks/variant_cost.py", "--preset", "gpu-cifar",
                                   *(["--steps", "2", "--rounds", "1"] if dry else ["--steps", "20", "--rounds", "2"]),
                                   "--only", "simsiam", "kstep k=10", "ema", "kstep k=10 disk fp16", "ema disk fp16",
                                   "--out", str(out), *data, *shrink], 60 if dry else 120, read_json(out))
        out = tmp / "convnet.json"
        check.run("convnet_cpu_preset", ["benchmarks/throughput.py", "--preset", "cpu", *reps, "--out", str(out),
                                         *data, *(shrink or ["device=cuda"])], 60 if dry else 60, read_json(out))
        smoke = tmp / "smoke"
        check.run("ksweep_smoke", ["benchmarks/gpu_check.py", "--smoke", str(smoke), *(["--dry"] if dry else []),
                                   "--", *data, *shrink], 120 if dry else 240, read_smoke(smoke, "gpu_check_smoke"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda, "date": date.today().isoformat(),
        "dry_run": dry, "data": data_note, "budget_s": args.budget_s,
        "wall_s": round(time.monotonic() - check.t0, 1),
        "deterministic_mode_in_fp32_tests": "cudnn.deterministic=True, benchmark=False, TF32 off (tests/test_cuda.py)",
        "summary": summary(check.steps, dry), "steps": check.steps,
    }
    slug = re.sub(r"[^A-Za-z0-9]+", "-", "cpu-dry-run" if dry else gpu).strip("-").lower()
    path = write_json(result, args.out or ROOT / "benchmarks" / "results" / f"gpu-check-{slug}.json")
    failed = [k for k, v in check.steps.items() if not v["ok"]]
    print(f"[gpu-check] wrote {path} in {result['wall_s']} s; " + (f"FAILED: {', '.join(failed)}" if failed else "all steps ok"))
    return 1 if failed else 0


def smoke_main(argv: list[str]) -> int:
    """``gpu_check.py --smoke OUT [--dry] -- OVERRIDES``: the k-sweep smoke through the sweep runner."""
    from experiments.sweep import Study, run_study

    out, rest = Path(argv[1]), argv[2:]
    dry = "--dry" in rest
    overrides = rest[rest.index("--") + 1:] if "--" in rest else []
    study = Study("gpu_check_smoke", "5-epoch k-sweep smoke of the GPU check", SMOKE_RUNS)
    extra = ["eval.linear=false", "ckpt_every=5"] + ([] if dry else ["eval.eval_every=5"])
    kw = {"executor": _inproc_train} if dry else {}  # dry run: no child process per run
    res = run_study(study, preset="gpu-cifar", out=out, data=overrides, extra=extra, epochs=1 if dry else 5, **kw)
    return 1 if res.count("failed") else 0


def _inproc_train(spec, threads) -> tuple[int, str]:
    from emsiam.cli import main as cli_main

    cmd = spec.command()
    return cli_main(cmd[cmd.index("train"):]), ""


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--smoke":
        sys.exit(smoke_main(sys.argv[1:]))
    sys.exit(main())
