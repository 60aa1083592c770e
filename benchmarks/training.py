"""Training throughput and memory: the fine_tune stage against a plain PyTorch loop.

The plain loop is what a user would write without attestflow: the same `TabularMLP` from
the same base checkpoint, the same rows, batch size, epochs, optimizer and per-epoch
shuffle, and nothing else (no per-epoch evaluation, metric logging or checkpoints). It runs
twice: with torch's default threads, and on one intra-op thread as the stage's inner loop
runs a model this small. The sides alternate with the whole stage and its inner loop
(`train_in_memory`: the same Trainer with no checkpoints or tracking), so the stage's per-epoch bookkeeping, the thread choice and the
inner loop's own speed show apart. Each fine_tune run starts from the base checkpoint: its
checkpoint folder is removed first, since the stage would otherwise resume from it.

The demo data (about 3,200 training rows) makes per-epoch costs dominate; the same
comparison on 40,000 generated rows shows how they amortise. Peak memory is taken in two
fresh processes, one per side. On a CUDA host, training also runs with and without autocast.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import (
    PeakRss,
    make_workload,
    maxrss_mb,
    median,
    ratio,
    rss_mb,
    run_child,
    scratch,
    write_result,
)
from benchmarks.results import Figure, Section, Target


def plain_loop(
    model: Any, x: Any, y: Any, *, epochs: int, batch_size: int, lr: float, wd: float, seed: int
) -> float:
    """Train `model` the plain PyTorch way; returns the wall seconds of the epoch loop."""
    import numpy as np
    import torch
    from torch import nn

    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(yt)))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            loss = loss_fn(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


class Sides:
    """The three ways of training one workload, each returning samples/s."""

    def __init__(self, config: Path, ws_root: Path, device: str = "cpu", amp: bool = False) -> None:
        from attestflow.adapters import load_adapter
        from attestflow.config import load_config
        from attestflow.dataset import load_splits
        from attestflow.workspace import Workspace

        self.cfg = load_config(
            config, [f"workspace={ws_root}", f"fine_tune.device={device}", f"fine_tune.amp={amp}"]
        )
        self.ws = Workspace.at(self.cfg.workspace)
        self.ws.activate()
        self.adapter = load_adapter(self.cfg.model)
        self.train, _ = load_splits(self.cfg.data, self.adapter)
        self.samples = len(self.train.y) * self.cfg.fine_tune.epochs
        self.data_md5 = hashlib.md5(self.cfg.data.path.read_bytes(), usedforsecurity=False).hexdigest()
        self.folder: Path | None = None

    def stage(self) -> dict[str, float]:
        """The fine_tune stage from the base checkpoint: its own samples/s, and over the whole call."""
        from tasks.fine_tune import fine_tune

        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        t0 = time.perf_counter()
        rec = fine_tune(
            self.cfg.fine_tune, self.cfg.data, self.ws, self.data_md5, self.ws.mlflow_uri, "bench"
        )
        wall = time.perf_counter() - t0
        if rec.resumed_from_epoch != 0:
            raise RuntimeError("fine_tune resumed: the benchmark must start from the base")
        self.folder = rec.checkpoint_path.parent
        return {"stage": rec.samples_per_s, "stage_call": self.samples / wall}

    def _fresh_model(self) -> Any:
        import torch

        from attestflow.tabular import load_checkpoint

        base = self.cfg.fine_tune.base_checkpoint
        if base is None:
            raise RuntimeError("the benchmark workload names its base checkpoint")
        model = load_checkpoint(base)
        model.set_normalisation(torch.from_numpy(self.train.x))
        return model

    def inner(self) -> dict[str, float]:
        """The stage's training loop alone (`train_in_memory`), over the stage's epochs, on a fresh model, on the CPU."""
        import torch

        from attestflow.training.loop import train_in_memory

        model = self._fresh_model()
        torch.manual_seed(self.cfg.fine_tune.seed)
        t0 = time.perf_counter()
        train_in_memory(self.adapter, model, self.train, self.cfg.fine_tune)
        return {"inner": self.samples / (time.perf_counter() - t0)}

    def plain(self) -> dict[str, float]:
        """The plain PyTorch loop on a fresh model, with torch's default threads."""
        return {"plain": self.samples / self._plain_seconds()}

    def plain_one_thread(self) -> dict[str, float]:
        """The plain loop on one intra-op thread, as the stage's inner loop runs a small model."""
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return {"plain_1t": self.samples / self._plain_seconds()}
        finally:
            torch.set_num_threads(threads)

    def _plain_seconds(self) -> float:
        ft = self.cfg.fine_tune
        return plain_loop(
            self._fresh_model(),
            self.train.x,
            self.train.y,
            epochs=ft.epochs,
            batch_size=ft.batch_size,
            lr=ft.lr,
            wd=ft.weight_decay,
            seed=ft.seed,
        )


def _throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Child: build the workloads, then alternate the three sides on each."""
    work = Path(args.work)
    out: dict[str, Any] = {}
    for name, rows in (("demo", args.rows), ("scaled", args.scaled_rows)):
        if not rows and name == "scaled":
            continue
        workload = make_workload(work / name, rows=rows or None, epochs=args.epochs or None, dvc=False)
        config = workload.write_config()
        sides = Sides(config, work / f"{name}-ws")
        calls = [sides.stage, sides.plain_one_thread]
        if name == "demo":
            calls += [sides.inner, sides.plain]
        for call in calls:
            call()
        runs: dict[str, list[float]] = {}
        for r in range(args.repeats):
            k = r % len(calls)
            for call in calls[k:] + calls[:k]:
                for key, value in call().items():
                    runs.setdefault(key, []).append(value)
        out[name] = {
            "config": str(config),
            "train_rows": len(sides.train.y),
            "epochs": sides.cfg.fine_tune.epochs,
            "batch_size": sides.cfg.fine_tune.batch_size,
            "samples_per_s": runs,
        }
    return out


def _memory(args: argparse.Namespace) -> dict[str, Any]:
    """Child: peak RSS of one side (the fine_tune stage or the plain loop) in a fresh process."""
    if args.side == "fine_tune":
        import tasks.fine_tune  # noqa: F401  (what loading the stage costs)
    else:
        import torch  # noqa: F401
    sides = Sides(Path(args.config), Path(args.work))
    after_import = rss_mb()
    if args.side == "fine_tune":
        # The stage imports its MLflow client lazily, and the first call creates the tracking
        # store (SQLAlchemy engine, schema migrations: about 60 MB). Both happen before the
        # measurement, so that "training itself" is training and the libraries are counted apart.
        from mlflow.tracking import MlflowClient

        MlflowClient(sides.ws.mlflow_uri).search_experiments()
    after_libraries = rss_mb()
    with PeakRss() as peak:
        sides.stage() if args.side == "fine_tune" else sides.plain()
    return {
        "rss_after_import_mb": after_import,
        "rss_after_libraries_mb": after_libraries,
        "peak_rss_mb": max(peak.peak_mb, maxrss_mb()),
    }


def _gpu(args: argparse.Namespace) -> dict[str, Any]:
    """Child: fine_tune on CUDA with and without autocast, sampling GPU utilisation."""
    import torch

    work = Path(args.work)
    workload = make_workload(
        work / "gpu", rows=args.scaled_rows or None, epochs=args.epochs or None, dvc=False
    )
    config = workload.write_config()
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0)}
    for amp in (True, False, True, False):
        sides = Sides(config, work / f"ws-{amp}", device="cuda", amp=amp)
        util: list[float] = []
        stop = threading.Event()

        def sample(util: list[float] = util, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                try:
                    util.append(float(torch.cuda.utilization()))
                except Exception:  # utilisation needs NVML (pynvml); without it there is no reading
                    return
                stop.wait(0.05)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        res = sides.stage()
        stop.set()
        thread.join()
        key = "autocast" if amp else "fp32"
        out.setdefault(key, []).append({"samples_per_s": res["stage"], "gpu_util_pct": median(util)})
    return out


def _paired(a: list[float], b: list[float]) -> float:
    """Median of the per-repeat ratios a/b (each pair measured back to back)."""
    return median([x / y for x, y in zip(a, b, strict=True)])


def section(*, repeats: int, rows: int | None, scaled_rows: int, epochs: int | None, memory: bool) -> Section:
    """Compare the stage, its inner loop and the plain loop; measure their peak memory if `memory`."""
    started = time.perf_counter()
    with scratch("training") as work:
        args = [
            "throughput",
            "--work",
            str(work),
            "--repeats",
            str(repeats),
            "--scaled-rows",
            str(scaled_rows),
        ]
        if rows:
            args += ["--rows", str(rows)]
        if epochs:
            args += ["--epochs", str(epochs)]
        tp = run_child("benchmarks.training", args, timeout_s=900)
        config = tp["demo"]["config"]
        mems: list[dict[str, Any]] = []
        if memory:
            # Two fresh processes side by side: a peak RSS does not depend on the other's timing.
            with ThreadPoolExecutor(2) as pool:
                mems = list(
                    pool.map(
                        lambda side: run_child(
                            "benchmarks.training",
                            [
                                "memory",
                                "--side",
                                side,
                                "--config",
                                config,
                                "--work",
                                str(work / f"mem-{side}"),
                            ],
                        ),
                        ["fine_tune", "plain"],
                    )
                )
    figures = []
    for name, res in tp.items():
        sps = res["samples_per_s"]
        s = {k: median(v) for k, v in sps.items()}
        what = f"{res['train_rows']:,} rows x {res['epochs']} epochs, batch {res['batch_size']}"
        whole = f"; whole call {s['stage_call']:,.0f} samples/s"
        if "plain" in sps:
            figures.append(
                Figure.of(
                    f"fine_tune_vs_plain_{name}",
                    f"fine_tune samples/s vs plain PyTorch loop (torch defaults, context), {name} data ({what})",
                    _paired(sps["stage"], sps["plain"]),
                    "x",
                    measured=f"{s['stage']:,.0f} vs {s['plain']:,.0f} samples/s" + whole,
                )
            )
            whole = ""
        figures.append(
            Figure.of(
                f"fine_tune_vs_plain_1t_{name}",
                f"fine_tune stage vs a plain PyTorch loop, one thread, {name} data ({what})",
                _paired(sps["stage"], sps["plain_1t"]),
                "x",
                measured=f"{s['stage']:,.0f} vs {s['plain_1t']:,.0f} samples/s" + whole,
                target=Target(">=", 0.95),
            )
        )
        if "inner" in sps:
            figures.append(
                Figure.of(
                    f"inner_loop_vs_plain_1t_{name}",
                    f"the training loop alone (train_in_memory) vs plain loop on one thread, {name} data",
                    _paired(sps["inner"], sps["plain_1t"]),
                    "x",
                    measured=f"{s['inner']:,.0f} vs {s['plain_1t']:,.0f} samples/s",
                    target=Target(">=", 0.95),
                )
            )
    memory_details: dict[str, Any] = {}
    if mems:
        ft_mem, plain_mem = mems
        memory_details = {"fine_tune": ft_mem, "plain": plain_mem}
        ft_add = ft_mem["peak_rss_mb"] - ft_mem["rss_after_libraries_mb"]
        plain_add = plain_mem["peak_rss_mb"] - plain_mem["rss_after_libraries_mb"]
        figures.append(
            Figure.of(
                "training_peak_rss_vs_plain",
                "training peak RSS vs plain loop (whole process, demo data)",
                ratio(ft_mem["peak_rss_mb"], plain_mem["peak_rss_mb"]),
                "x",
                measured=f"{ft_mem['peak_rss_mb']:.0f} MB vs {plain_mem['peak_rss_mb']:.0f} MB; "
                f"libraries loaded: {ft_mem['rss_after_libraries_mb']:.0f} MB vs "
                f"{plain_mem['rss_after_libraries_mb']:.0f} MB; training itself: +{ft_add:.0f} MB vs +{plain_add:.0f} MB",
                target=Target("<=", 1.2),
            )
        )
        figures.append(
            Figure.of(
                "training_own_rss_vs_plain",
                "memory training itself adds (peak - after libraries and tracking store) vs plain loop",
                ratio(ft_add, plain_add),
                "x",
                measured=f"+{ft_add:.0f} MB vs +{plain_add:.0f} MB (model, optimizer, batches, checkpoints)",
                target=Target("<=", 1.2),
            )
        )
    return Section(
        name="training",
        title="Training throughput and memory",
        figures=figures,
        details={"throughput": tp, "memory": memory_details},
        seconds=time.perf_counter() - started,
    )


def gpu_section(*, scaled_rows: int, epochs: int | None) -> Section:
    """Training samples/s on CUDA with and without autocast; skipped without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return Section(name="gpu", title="GPU training with and without autocast", skipped="no CUDA")
    started = time.perf_counter()
    with scratch("gpu") as work:
        args = ["gpu", "--work", str(work), "--scaled-rows", str(scaled_rows)]
        if epochs:
            args += ["--epochs", str(epochs)]
        out = run_child("benchmarks.training", args, timeout_s=900)
    amp = median([r["samples_per_s"] for r in out["autocast"]])
    fp32 = median([r["samples_per_s"] for r in out["fp32"]])
    util = median([r["gpu_util_pct"] for r in out["autocast"]])
    figures = [
        Figure.of(
            "autocast_vs_fp32",
            f"fine_tune samples/s with autocast vs fp32 on {out['device']}",
            ratio(amp, fp32),
            "x",
            measured=f"{amp:,.0f} vs {fp32:,.0f} samples/s; GPU utilisation {util:.0f}% with autocast",
        )
    ]
    return Section(
        name="gpu",
        title="GPU training with and without autocast",
        figures=figures,
        details=out,
        seconds=time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(description="Training benchmarks (child process).")
    parser.add_argument("mode", choices=["throughput", "memory", "gpu"])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=0)
    parser.add_argument("--scaled-rows", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=0)
    parser.add_argument("--side", choices=["fine_tune", "plain"])
    parser.add_argument("--config")
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    from attestflow.workspace import quiet_third_parties

    quiet_third_parties()
    if args.mode == "throughput":
        write_result(args.result, _throughput(args))
    elif args.mode == "memory":
        write_result(args.result, _memory(args))
    else:
        write_result(args.result, _gpu(args))


if __name__ == "__main__":
    main()
