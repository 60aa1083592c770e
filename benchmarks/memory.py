"""Peak memory of each release stage, each in a fresh process.

A process's peak RSS only ever grows, so stages measured one after another in one process
would each report the largest before them. Here every stage runs in its own child on the
demo workload, handed the paths and ids the stages before it produced; the child reports its
RSS once the stage module is imported (what merely loading it costs) and its peak while the
stage ran, libraries the stage imports lazily (DVC, Great Expectations, MLflow) included.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.common import PeakRss, make_workload, maxrss_mb, rss_mb, run_child, scratch, write_result
from benchmarks.results import Figure, Section

STAGES = ["snapshot", "validate_data", "fine_tune", "export_onnx", "validate_onnx"]
"""The stages that hold data or a model in memory; the later ones (sign, register, gates, promote,
canary) need a signed bundle and a registry and are measured inside the release by `orchestration`."""


def _run_stage(name: str, mod: Any, cfg: Any, ws: Any, uri: str, ctx: dict[str, Any]) -> dict[str, Any]:
    """Call stage `name`'s plain function with the config and what earlier stages produced."""
    from attestflow.records import to_jsonable

    out_dir = Path(ctx["out_dir"])
    if name == "snapshot":
        rec = mod.snapshot(cfg.snapshot, cfg.data.path, ws, out_dir)
        return {"dvc_md5": rec.dvc_md5, "data_path": str(rec.data_path)}
    if name == "validate_data":
        checked = mod.validate_data(cfg.validate_data, Path(ctx["data_path"]), out_dir)
        return {"validate_data_engine": checked.engine}
    if name == "fine_tune":
        rec = mod.fine_tune(
            cfg.fine_tune, cfg.data, ws, ctx["dvc_md5"], uri, cfg.register.experiment, {}, model=cfg.model
        )
        return {"checkpoint": str(rec.checkpoint_path), "run_id": rec.mlflow_run_id}
    if name == "export_onnx":
        rec = mod.export_onnx(cfg.export_onnx, Path(ctx["checkpoint"]), out_dir, cfg.data, cfg.model)
        return {"onnx": str(rec.onnx_path)}
    if name == "validate_onnx":
        rec = mod.validate_onnx(
            cfg.validate_onnx, cfg.data, Path(ctx["onnx"]), Path(ctx["checkpoint"]), cfg.model
        )
        return {"validation": to_jsonable(rec)}
    raise ValueError(f"unknown stage {name!r}")


def _stage(args: argparse.Namespace) -> dict[str, Any]:
    """Child: import one stage, then run it under an RSS sampler."""
    mod = importlib.import_module(f"tasks.{args.stage}")
    from attestflow.config import load_config
    from attestflow.tracking import tracking_uri
    from attestflow.workspace import Workspace

    cfg = load_config(args.config)
    ws = Workspace.at(cfg.workspace)
    ws.activate()
    ctx = json.loads(Path(args.context).read_text())
    uri = tracking_uri(cfg.register.tracking_uri, ws)
    base = rss_mb()
    with PeakRss() as peak:
        t0 = time.perf_counter()
        produced = _run_stage(args.stage, mod, cfg, ws, uri, ctx)
        seconds = time.perf_counter() - t0
    return {
        "rss_after_import_mb": base,
        "peak_rss_mb": max(peak.peak_mb, maxrss_mb()),
        "seconds": seconds,
        "produced": produced,
    }


def section(*, rows: int | None, epochs: int | None) -> Section:
    """Run the release's stages one child process each and report their peak RSS."""
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    with scratch("memory") as work:
        workload = make_workload(work / "repo", rows=rows, epochs=epochs)
        config = workload.write_config()
        ctx: dict[str, Any] = {"out_dir": str(work / "release")}
        context = work / "context.json"
        for name in STAGES:
            context.write_text(json.dumps(ctx))
            res = run_child("benchmarks.memory", [name, "--config", str(config), "--context", str(context)])
            ctx.update(res.pop("produced"))
            results[name] = res
    figures = [
        Figure.of(
            f"peak_rss_{name}",
            f"{name}: peak RSS (own process)",
            r["peak_rss_mb"],
            "MB",
            measured=f"{r['rss_after_import_mb']:.0f} MB after importing the stage, "
            f"+{r['peak_rss_mb'] - r['rss_after_import_mb']:.0f} MB while it ran ({r['seconds']:.1f} s"
            + (f", {ctx['validate_data_engine']} engine" if name == "validate_data" else "")
            + ")",
        )
        for name, r in results.items()
    ]
    return Section(
        name="memory",
        title="Peak memory per stage",
        figures=figures,
        details={"stages": results, "rows": workload.rows, "epochs": workload.epochs},
        seconds=time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(description="Peak memory of one stage (child process).")
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--context", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    from attestflow.workspace import quiet_third_parties

    quiet_third_parties()
    write_result(args.result, _stage(args))


if __name__ == "__main__":
    main()
