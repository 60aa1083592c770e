"""How data validation time (and memory) grows with the size of the dataset.

The example's generator writes a CSV chunk of about 10 MB; bigger files repeat its rows, which
costs Great Expectations the same per row as fresh rows would. Each size runs in a fresh
process (so its peak RSS is its own) after a warm-up validation of a 1 MB file there, so
imports and the first ephemeral GX context are not counted.

validate_data holds the whole table in memory several times over, so a size whose peak
RSS, projected linearly from the size before it, would take more than three quarters of the
memory available is skipped and says so, instead of pushing a shared machine into swap or
the OOM killer. The projection errs high: the peak grows less than linearly (100 MB of CSV
peaked at 1.5 GB, 1 GB at 5.2 GB on the machine in the README).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import MB, PeakRss, median, run_child, scratch, write_result
from benchmarks.hashing import growth_exponent
from benchmarks.results import Figure, Section, Target


def write_csv(path: Path, size_mb: float, chunk: str) -> int:
    """A CSV of about `size_mb` MB made of copies of `chunk`'s rows; returns its row count."""
    header, body = chunk.split("\n", 1)
    rows_per_chunk = body.count("\n")
    copies = max(1, round(size_mb * MB / len(body)))
    with path.open("w") as f:
        f.write(header + "\n")
        for _ in range(copies):
            f.write(body)
    return copies * rows_per_chunk


def _validate(args: argparse.Namespace) -> dict[str, Any]:
    """Child: validate_data on one size, after a warm-up run on a small file."""
    from attestflow.config import ValidateDataConfig
    from tasks.generate_data import generate
    from tasks.validate_data import validate_data

    work = Path(args.work)
    cfg = ValidateDataConfig(suite=Path(args.suite))
    chunk = generate(int(args.chunk_mb * MB / 36.7), seed=7).to_csv(index=False)
    warm = work / "warm.csv"
    write_csv(warm, 1.0, chunk)
    validate_data(cfg, warm, work / "out")
    warm.unlink()
    path = work / f"data-{args.size:g}.csv"
    rows = write_csv(path, args.size, chunk)
    size_mb = path.stat().st_size / MB
    times = []
    with PeakRss() as peak:
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            rec = validate_data(cfg, path, work / "out")
            times.append(time.perf_counter() - t0)
    path.unlink()
    return {
        "size_mb": size_mb,
        "rows": rows,
        "seconds": times,
        "success": rec.success,
        "failed": rec.failed,
        "start_rss_mb": peak.start_mb,
        "peak_rss_mb": peak.peak_mb,
    }


def section(*, sizes_mb: list[float], repeats: int, suite: Path) -> Section:
    """Time validate_data at each size, each in a fresh process, and see how it grows."""
    started = time.perf_counter()
    done: list[dict[str, Any]] = []
    skipped: list[str] = []
    with scratch("validation") as work:
        for size in sorted(sizes_mb):
            available = psutil.virtual_memory().available / MB
            if done:
                prev = done[-1]
                grow = (prev["peak_rss_mb"] - prev["start_rss_mb"]) * size / prev["size_mb"]
                projected = prev["start_rss_mb"] + grow
                if projected > 0.75 * available:
                    skipped.append(
                        f"{size:g} MB skipped: projected peak RSS {projected:,.0f} MB "
                        f"> 3/4 of the {available:,.0f} MB available"
                    )
                    continue
            args = ["--work", str(work), "--suite", str(suite), "--size", f"{size:g}"]
            args += ["--repeats", str(repeats if size < 200 else 1), "--chunk-mb", f"{min(10.0, size):g}"]
            done.append(run_child("benchmarks.validation", args, timeout_s=900))
    sizes = [r["size_mb"] for r in done]
    times = [median(r["seconds"]) for r in done]
    per_mb = ", ".join(f"{s:.0f} MB: {1000 * t / s:.1f}" for s, t in zip(sizes, times, strict=True))
    failing = [
        f"{r['size_mb']:.0f} MB fails {', '.join(r['failed'])} (every expectation still ran)"
        for r in done
        if not r["success"]
    ]
    note = "; ".join(skipped + failing)
    last = done[-1]
    mem_per_mb = (last["peak_rss_mb"] - last["start_rss_mb"]) / last["size_mb"]
    figures = [
        Figure.of(
            "validation_growth",
            f"validate_data time growth exponent, {sizes[-2]:.0f} -> {sizes[-1]:.0f} MB (1 = linear)"
            if len(sizes) > 1
            else "validate_data time growth exponent",
            growth_exponent(sizes, times),
            "",
            measured=f"ms per MB at {per_mb}",
            target=Target("<=", 1.1),
            note=note,
        ),
        Figure.of(
            "validation_peak_rss",
            f"validate_data peak RSS at {sizes[-1]:.0f} MB of CSV ({last['rows']:,} rows)",
            last["peak_rss_mb"],
            "MB",
            measured=f"{mem_per_mb:.1f} MB per MB of CSV above the {last['start_rss_mb']:.0f} MB after imports"
            + (f"; {note}" if note else ""),
        ),
    ]
    return Section(
        name="validation",
        title="Data validation growth",
        figures=figures,
        details={"sizes": done, "skipped": skipped},
        seconds=time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(description="validate_data growth (child process).")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--suite", type=Path, required=True)
    parser.add_argument("--size", type=float, required=True)
    parser.add_argument("--chunk-mb", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    from attestflow.workspace import quiet_third_parties

    quiet_third_parties()
    write_result(args.result, _validate(args))


if __name__ == "__main__":
    main()
