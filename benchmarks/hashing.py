"""Data snapshot hashing against ``md5sum``, and how hashing time and memory grow with the data.

The data is random bytes in 100 kB files (1 GB is 10,000 files), written to a temporary
folder and deleted afterwards. Both sides see the same page-cache state: each runs once to
warm the cache, then they alternate. ``md5sum`` is one process on one core; the SHA-256
manifest hashes on a thread pool, which is what the snapshot stage does.

The snapshot stage itself (one read pass for md5 and SHA-256, ``dvc add`` told those md5s,
``dvc push`` to a local remote) is measured on the largest size after its hashing, then again
on the unchanged data: the warm re-check a scheduled release pays when nothing changed. Every size runs in its own
child process, so its peak RSS is the hashing's own and not an earlier, larger run's.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import MB, PeakRss, maxrss_mb, median, ratio, rss_mb, run_child, scratch, write_result
from benchmarks.results import Figure, Section, Target

FILE_BYTES = 100_000


def make_files(root: Path, total_bytes: int, seed: int) -> int:
    """Write `total_bytes` of random bytes in 100 kB files under `root`; returns the file count."""
    rng = np.random.default_rng(seed)
    n = max(1, total_bytes // FILE_BYTES)
    for i in range(n):
        folder = root / f"{i // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"part-{i:05d}.bin").write_bytes(rng.bytes(FILE_BYTES))
    return n


def md5sum(folder: Path) -> float:
    """Wall seconds of ``md5sum`` over every file under `folder` (listing included)."""
    t0 = time.perf_counter()
    subprocess.run(  # noqa: S602 - the measured alternative is this fixed shell pipeline
        "find . -type f -print0 | xargs -0 md5sum > /dev/null",  # noqa: S607
        shell=True,
        cwd=folder,
        check=True,
    )
    return time.perf_counter() - t0


def growth_exponent(sizes: list[float], seconds: list[float]) -> float:
    """b in t ~ size^b between the two largest sizes (1 is linear, above 1 worse than linear)."""
    if len(sizes) < 2 or min(seconds[-2:]) <= 0:
        return float("nan")
    return math.log(seconds[-1] / seconds[-2]) / math.log(sizes[-1] / sizes[-2])


def _hash(args: argparse.Namespace) -> dict[str, Any]:
    """Child: warm both sides, then alternate md5sum and the SHA-256 manifest; snapshot if asked."""
    from attestflow.hash_cache import sha256_manifest

    folder = Path(args.folder)
    base = rss_mb()
    md5sum(folder)
    with PeakRss() as peak:
        sha256_manifest(folder)
        md5_s, sha_s = [], []
        for _ in range(args.repeats):
            md5_s.append(md5sum(folder))
            t0 = time.perf_counter()
            sha256_manifest(folder)
            sha_s.append(time.perf_counter() - t0)
    out: dict[str, Any] = {
        "md5sum_s": md5_s,
        "manifest_s": sha_s,
        "rss_after_import_mb": base,
        "peak_rss_mb": max(peak.peak_mb, maxrss_mb()),
    }
    if args.snapshot:
        out["snapshot"] = _snapshot(folder)
    return out


def _plain_dvc(repo: Path, folder: Path) -> dict[str, float]:
    """What the stage did before it hashed once and kept a hash cache: `dvc add`, `dvc push`,
    then its own SHA-256 pass; first on new data, then on the unchanged data. Leaves no DVC trace.
    """
    from attestflow.dvc import in_dir, push, track
    from attestflow.hash_cache import sha256_manifest

    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=repo, check=True)
    with in_dir(repo):
        subprocess.run(  # noqa: S603 - this interpreter running dvc
            [sys.executable, "-m", "dvc", "remote", "add", "-d", "plain", str(repo / "plain-remote")],
            check=True,
        )
        out: dict[str, float] = {}
        for run in ("first", "recheck"):
            os.sync()  # no writes of the run before still being flushed during this one
            t0 = time.perf_counter()
            track(repo, folder)
            push(repo, folder, "plain")
            sha256_manifest(folder)
            out[run] = time.perf_counter() - t0
    for leftover in (repo / ".dvc", repo / "plain-remote", repo / "data.dvc", repo / ".dvcignore"):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink(missing_ok=True)
    return out


def _snapshot(folder: Path) -> dict[str, Any]:
    """The snapshot stage on a fresh DVC repo, then again on the unchanged data."""
    import tasks.snapshot as snap
    from attestflow.config import SnapshotConfig
    from attestflow.workspace import Workspace

    repo = folder.parent
    plain = _plain_dvc(repo, folder)
    parts: dict[str, float] = {}

    def clocked(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                parts[name] = time.perf_counter() - t0

        return wrapper

    snap.HashCache.hash = clocked("read_and_hash", snap.HashCache.hash)  # type: ignore[method-assign]
    snap.seed_dvc_state = clocked("seed_dvc_state", snap.seed_dvc_state)
    snap.fill_cache = clocked("fill_cache", snap.fill_cache)
    snap.track = clocked("dvc_add", snap.track)
    snap.push = clocked("dvc_push", snap.push)
    ws = Workspace.at(repo / "ws")
    cfg = SnapshotConfig(repo=repo, push=True)
    md5_before = md5sum(folder)
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=repo, check=True)
    os.sync()
    t0 = time.perf_counter()
    first = snap.snapshot(cfg, folder, ws, repo / "out-1")
    first_s = time.perf_counter() - t0
    first_parts = dict(parts)
    parts.clear()
    os.sync()
    t0 = time.perf_counter()
    snap.snapshot(cfg, folder, ws, repo / "out-2")
    recheck_s = time.perf_counter() - t0
    recheck_parts = dict(parts)
    md5_after = md5sum(folder)

    from dvc.repo import Repo

    with snap.in_dir(repo), Repo(str(repo)) as r:
        t0 = time.perf_counter()
        r.status(targets=[str(folder)])
        status_s = time.perf_counter() - t0
    return {
        "md5sum_s": [md5_before, md5_after],
        "snapshot_s": first_s,
        "snapshot_parts_s": first_parts,
        "recheck_s": recheck_s,
        "recheck_parts_s": recheck_parts,
        "dvc_status_s": status_s,
        "plain_dvc": plain,
        "files": first.files,
        "bytes": first.size_bytes,
        "peak_rss_mb": maxrss_mb(),
    }


def section(*, sizes_mb: list[float], repeats: int) -> Section:
    """Hash each size against md5sum, snapshot the largest, and report throughput, growth and memory."""
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    with scratch("hashing") as work:
        for i, size in enumerate(sizes_mb):
            folder = work / f"size-{i}" / "data"
            files = make_files(folder, int(size * MB), seed=i)
            args = [str(folder), "--repeats", str(repeats)]
            if i == len(sizes_mb) - 1:
                args.append("--snapshot")
            run = run_child("benchmarks.hashing", args, timeout_s=900)
            run.update(size_mb=files * FILE_BYTES / MB, files=files)
            runs.append(run)
            shutil.rmtree(folder.parent)
        snap = runs[-1].pop("snapshot")

    big = runs[-1]
    mb = big["size_mb"]
    md5_s, sha_s = median(big["md5sum_s"]), median(big["manifest_s"])
    pair = median([m / s for m, s in zip(big["md5sum_s"], big["manifest_s"], strict=True)])
    snap_md5 = median(snap["md5sum_s"])
    sizes = [r["size_mb"] for r in runs]
    times = [median(r["manifest_s"]) for r in runs]
    peaks = [r["peak_rss_mb"] for r in runs]
    per_mb = ", ".join(f"{s:g} MB: {1000 * t / s:.2f}" for s, t in zip(sizes, times, strict=True))
    top = sorted(snap["recheck_parts_s"].items(), key=lambda kv: -kv[1])
    label_size = f"{mb:g} MB in {big['files']:,} files"
    figures = [
        Figure.of(
            "manifest_vs_md5sum",
            f"SHA-256 manifest throughput vs md5sum, {label_size}",
            pair,
            "x",
            measured=f"{mb / sha_s:,.0f} MB/s vs {mb / md5_s:,.0f} MB/s",
            target=Target(">=", 0.9),
        ),
        Figure.of(
            "snapshot_vs_md5sum",
            f"snapshot stage (md5 + SHA-256 pass, dvc add, dvc push) throughput vs md5sum, {label_size}",
            ratio(snap_md5, snap["snapshot_s"]),
            "x",
            measured=f"{mb / snap['snapshot_s']:,.0f} MB/s vs {mb / snap_md5:,.0f} MB/s; "
            + ", ".join(f"{k} {v:.1f} s" for k, v in snap["snapshot_parts_s"].items())
            + f"; before (dvc add, dvc push, SHA-256 pass): {ratio(snap_md5, snap['plain_dvc']['first']):.3f}x",
        ),
        Figure.of(
            "snapshot_vs_plain_dvc",
            f"snapshot stage vs plain `dvc add && dvc push` plus a SHA-256 pass, {label_size} (new, local remote)",
            ratio(snap["plain_dvc"]["first"], snap["snapshot_s"]),
            "x",
            measured=f"{snap['snapshot_s']:.2f} s vs {snap['plain_dvc']['first']:.2f} s; the stage: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in snap["snapshot_parts_s"].items()),
            target=Target(">=", 1.0),
        ),
        Figure.of(
            "warm_recheck",
            f"warm re-check of the unchanged snapshot, {label_size}",
            snap["recheck_s"],
            "s",
            measured=", ".join(f"{k} {v:.2f} s" for k, v in top)
            + f"; `dvc status` alone {snap['dvc_status_s']:.2f} s"
            + f"; before (dvc add, dvc push, SHA-256 pass): {snap['plain_dvc']['recheck']:.2f} s",
            target=Target("<=", 1.0),
        ),
        Figure.of(
            "manifest_growth",
            "SHA-256 manifest time growth exponent, two largest sizes (1 = linear)",
            growth_exponent(sizes, times),
            "",
            measured=f"ms per MB at {per_mb}",
            target=Target("<=", 1.1),
        ),
        Figure.of(
            "manifest_peak_rss",
            "SHA-256 manifest peak RSS at the largest size (whole process)",
            peaks[-1],
            "MB",
            measured=", ".join(f"{s:g} MB: {p:.0f} MB" for s, p in zip(sizes, peaks, strict=True))
            + f"; {runs[-1]['rss_after_import_mb']:.0f} MB after imports",
            target=Target("<=", 200),
        ),
    ]
    return Section(
        name="hashing",
        title="Data snapshot hashing",
        figures=figures,
        details={"sizes": runs, "snapshot": snap, "file_bytes": FILE_BYTES},
        seconds=time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(description="Hashing benchmarks (child process).")
    parser.add_argument("folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--snapshot", action="store_true", help="then run the snapshot stage on it")
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    from attestflow.workspace import quiet_third_parties

    quiet_third_parties()
    write_result(args.result, _hash(args))


if __name__ == "__main__":
    main()
