"""benchmarks/gpu_check.sh --cpu-dry-run: the GPU check runs end to end on the CPU, every step shrunk."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_cpu_dry_run(tmp_path):
    out = tmp_path / "gpu-check.json"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "EMSIAM_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-dry-run", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["dry_run"] is True and res["gpu"].startswith("cpu")
    steps = res["steps"]
    assert set(steps) == {"cuda_tests", "resnet18_eager", "resnet18_compile", "variant_cost",
                          "convnet_cpu_preset", "ksweep_smoke"}
    assert all(s["ok"] for s in steps.values()), {k: s.get("output_tail") for k, s in steps.items()}
    tests = steps["cuda_tests"]["result"]
    assert tests["counts"]["failed"] == tests["counts"]["error"] == 0 and tests["counts"]["skipped"] >= 4
    assert any("test_one_step_alternation_is_simsiam_on_cuda_fp32" in t for t in tests["tests"])
    summary = res["summary"]
    assert summary["resnet18_eager_e2e_pairs_per_s"] > 0 and summary["convnet_cpu_preset_e2e_pairs_per_s"] > 0
    assert set(summary["variant_ratio_to_simsiam"]) == {"simsiam", "kstep k=10", "ema", "kstep k=10 disk fp16",
                                                        "ema disk fp16"}
    smoke = steps["ksweep_smoke"]["result"]
    assert set(smoke) == {"simsiam", "k10", "kepoch", "ema"}
    assert all(r["status"] == "done" and r["knn_top1"] for r in smoke.values())
