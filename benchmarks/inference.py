"""ONNX Runtime against torch eager on the exported model: latency, throughput and parity.

The model is the example's `TabularMLP` exported by the export_onnx stage; it is served by
ONNX Runtime, so this says what serving it that way gains or costs against running the
checkpoint in torch. Both run with their default threading on the provider the pipeline
would pick; torch also runs on one thread, since for a model this small its default
thread pool mostly adds waiting. Blocks of calls alternate, and the figures are medians.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import make_workload, median, ratio, run_child, scratch, write_result
from benchmarks.results import Figure, Section


def _per_call(fn: Any, calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    """Child: export, then alternate torch and ONNX Runtime at batch 1 and batch 64."""
    import torch

    from attestflow.adapters import load_adapter
    from attestflow.config import ExportOnnxConfig, load_config
    from attestflow.dataset import load_splits
    from attestflow.onnx_runtime import session
    from attestflow.tabular import load_checkpoint
    from tasks.export_onnx import export_onnx

    work = Path(args.work)
    workload = make_workload(work / "repo", rows=args.rows or None, dvc=False)
    cfg = load_config(workload.write_config())
    t0 = time.perf_counter()
    exported = export_onnx(
        ExportOnnxConfig(opset=cfg.export_onnx.opset), workload.base_checkpoint, work / "out", cfg.data
    )
    export_s = time.perf_counter() - t0
    model = load_checkpoint(workload.base_checkpoint).eval()
    sess = session(exported.onnx_path, cfg.validate_onnx.provider)
    name = sess.get_inputs()[0].name
    _, test = load_splits(cfg.data, load_adapter(cfg.model))
    rows = test.x
    with torch.inference_mode():
        expected = model(torch.from_numpy(rows)).numpy()
    got = sess.run(None, {name: rows})[0]
    max_diff = float(np.max(np.abs(expected - got)))

    reps = max(64, len(rows) // 64 * 64)
    batch64 = np.resize(rows, (reps, rows.shape[1]))[: (reps // 64) * 64].reshape(-1, 64, rows.shape[1])
    one = rows[:1]
    one_t = torch.from_numpy(one)
    batches_t = [torch.from_numpy(b) for b in batch64]

    def torch_one() -> None:
        with torch.inference_mode():
            model(one_t)

    def ort_one() -> None:
        sess.run(None, {name: one})

    def torch_64() -> None:
        with torch.inference_mode():
            for b in batches_t:
                model(b)

    def ort_64() -> None:
        for b in batch64:
            sess.run(None, {name: b})

    for fn in (torch_one, ort_one, torch_64, ort_64):
        fn()
    threads = torch.get_num_threads()
    lat: dict[str, list[float]] = {"torch": [], "torch_1t": [], "ort": []}
    thr: dict[str, list[float]] = {"torch": [], "torch_1t": [], "ort": []}
    sides = [("torch", torch_one, torch_64), ("torch_1t", torch_one, torch_64), ("ort", ort_one, ort_64)]
    for r in range(args.repeats):
        for side, single, batched in sides[r % 3 :] + sides[: r % 3]:
            torch.set_num_threads(1 if side == "torch_1t" else threads)
            lat[side] += _per_call(single, args.calls)
            t0 = time.perf_counter()
            batched()
            thr[side].append(len(batch64) * 64 / (time.perf_counter() - t0))
    torch.set_num_threads(threads)
    return {
        "provider": sess.get_providers()[0],
        "export_s": export_s,
        "opset": exported.opset,
        "onnx_bytes": exported.size_bytes,
        "parity_rows": len(rows),
        "max_abs_diff": max_diff,
        "latency_batch1_ms": {
            k: {
                "p50": 1000 * float(np.percentile(v, 50)),
                "p90": 1000 * float(np.percentile(v, 90)),
                "calls": len(v),
            }
            for k, v in lat.items()
        },
        "throughput_batch64_rows_per_s": thr,
        "torch_threads": threads,
    }


def section(*, repeats: int, calls: int, rows: int | None) -> Section:
    """ONNX Runtime vs torch eager: latency at batch 1, throughput at batch 64, parity."""
    started = time.perf_counter()
    with scratch("onnx") as work:
        args = ["--work", str(work), "--repeats", str(repeats), "--calls", str(calls)]
        if rows:
            args += ["--rows", str(rows)]
        out = run_child("benchmarks.inference", args)
    lat = {k: v["p50"] for k, v in out["latency_batch1_ms"].items()}
    thr = {k: median(v) for k, v in out["throughput_batch64_rows_per_s"].items()}
    threads = out["torch_threads"]
    figures = [
        Figure.of(
            "latency_batch1",
            f"batch-1 latency, ONNX Runtime ({out['provider']}) vs torch eager: speed-up",
            ratio(lat["torch"], lat["ort"]),
            "x",
            measured=f"p50 {1000 * lat['ort']:.0f} us vs {1000 * lat['torch']:.0f} us "
            f"({threads} threads), {1000 * lat['torch_1t']:.0f} us (torch on 1 thread)",
        ),
        Figure.of(
            "throughput_batch64",
            "batch-64 throughput, ONNX Runtime vs torch eager",
            ratio(thr["ort"], thr["torch"]),
            "x",
            measured=f"{thr['ort']:,.0f} vs {thr['torch']:,.0f} rows/s "
            f"({threads} threads), {thr['torch_1t']:,.0f} rows/s (torch on 1 thread)",
        ),
        Figure.of(
            "parity",
            f"max |ONNX Runtime - torch| over {out['parity_rows']} held-out rows",
            out["max_abs_diff"],
            "",
            measured=f"export {out['export_s']:.1f} s, opset {out['opset']}, {out['onnx_bytes']:,} bytes",
        ),
    ]
    return Section(
        name="onnx",
        title="ONNX Runtime vs torch eager",
        figures=figures,
        details=out,
        seconds=time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(description="ONNX Runtime vs torch (child process).")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rows", type=int, default=0)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    from attestflow.workspace import quiet_third_parties

    quiet_third_parties()
    write_result(args.result, _measure(args))


if __name__ == "__main__":
    main()
