"""`make bench-gpu`'s code path runs end to end on the CPU (`--cpu-smoke`), and the FLOP arithmetic it reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import gpu
from tests.conftest import ROOT


def test_the_gpu_benchmark_smoke_run_trains_every_path_and_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--cpu-smoke", f"--out={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["smoke"] and [r["precision"] for r in res["runs"]] == ["bf16 autocast", "fp32"]
    assert all(r["samples_per_s"] > 0 and r["mfu"] is None for r in res["runs"])
    assert res["ddp"][0]["processes"] == 2 and res["ddp"][0]["samples_per_s"] > 0


def test_model_flop_utilisation_uses_the_device_table() -> None:
    assert gpu.peak_flops("NVIDIA H200") == gpu.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu.peak_flops("Some Future Accelerator") is None


def test_without_cuda_the_gpu_benchmark_says_so_and_exits_0(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        return
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", f"--out={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "no CUDA device" in done.stdout and not out.exists()
