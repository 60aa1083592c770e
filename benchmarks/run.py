"""The benchmark runner: ``python -m benchmarks.run`` (``make bench``).

Runs every benchmark (or those named by ``--only``), one after another so that none
disturbs another's timings, writes ``benchmarks/results/latest.json`` (ignored by git, so a
run never leaves the work tree dirty, which a release would refuse) and prints the table.
``--quick`` is a smoke run on tiny data: per-stage memory is skipped, the release is run once
as the bare script only, the others run side by side, and its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from benchmarks.common import ROOT, machine
from benchmarks.results import Report, Section, markdown_table, print_table, section_from_json, to_json

SECTIONS = {
    "orchestration": "Orchestration overhead and unchanged re-run",
    "hashing": "Data snapshot hashing",
    "validation": "Data validation growth",
    "training": "Training throughput and memory",
    "onnx": "ONNX Runtime vs torch eager",
    "memory": "Peak memory per stage",
    "gpu": "GPU training with and without autocast",
}
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "latest.json"


@dataclass(frozen=True)
class Options:
    """What to run, and how big."""

    quick: bool
    data_gb: float
    repeats: int


def _sizes_mb(opts: Options) -> list[float]:
    if opts.quick:
        return [1.0]
    top = 1000 * opts.data_gb
    return [s for s in (10.0, 100.0) if s < top] + [top]


def _runner(name: str, opts: Options) -> Callable[[], Section]:
    """A call that runs benchmark `name` with `opts` (imported lazily: each pulls in heavy libraries)."""
    q = opts.quick
    if name == "orchestration":
        from benchmarks import orchestration

        if q:
            return lambda: orchestration.quick_section(rows=1000, epochs=1)
        return lambda: orchestration.section(repeats=opts.repeats, rows=None, epochs=None)
    if name == "hashing":
        from benchmarks import hashing

        return lambda: hashing.section(sizes_mb=_sizes_mb(opts), repeats=1 if q else 3)
    if name == "validation":
        from benchmarks import validation

        suite = ROOT / "configs/expectations/credit.yaml"
        return lambda: validation.section(sizes_mb=_sizes_mb(opts), repeats=1 if q else 3, suite=suite)
    if name == "training":
        from benchmarks import training

        if q:
            return lambda: training.section(repeats=1, rows=1000, scaled_rows=0, epochs=1, memory=False)
        return lambda: training.section(repeats=5, rows=None, scaled_rows=40_000, epochs=None, memory=True)
    if name == "onnx":
        from benchmarks import inference

        if q:
            return lambda: inference.section(repeats=1, calls=20, rows=1000)
        return lambda: inference.section(repeats=5, calls=200, rows=None)
    if name == "memory":
        from benchmarks import memory

        return lambda: memory.section(rows=None, epochs=None)
    if name == "gpu":
        from benchmarks import training

        return lambda: training.gpu_section(scaled_rows=2000 if q else 100_000, epochs=1 if q else None)
    raise ValueError(f"unknown benchmark {name!r}")


def run_one(name: str, opts: Options, console: Console) -> Section:
    """Run one benchmark; a failure is recorded in its section, not raised."""
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    if opts.quick and name == "memory":
        return Section(name=name, title=SECTIONS[name], skipped="not part of --quick", measured_at=stamp)
    console.print(f"[bold]{name}[/]: {SECTIONS[name]} ...")
    started = time.perf_counter()
    try:
        sec = _runner(name, opts)()
    except Exception as e:  # one broken benchmark must not lose the others' results
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        console.print(f"[red]{name} failed:[/] {type(e).__name__}: {e}", highlight=False)
        return Section(
            name=name,
            title=SECTIONS[name],
            skipped=f"error: {type(e).__name__}: {first}",
            seconds=time.perf_counter() - started,
            measured_at=stamp,
        )
    console.print(f"  {name} took {sec.seconds:.0f} s")
    return Section(
        name=sec.name,
        title=sec.title,
        figures=sec.figures,
        details=sec.details,
        seconds=sec.seconds,
        skipped=sec.skipped,
        measured_at=stamp,
    )


def _previous(out: Path) -> dict[str, Section]:
    """Sections of an earlier report at `out`, kept when ``--only`` re-runs some of them."""
    if not out.is_file():
        return {}
    try:
        raw = json.loads(out.read_text())
        return {name: section_from_json(s) for name, s in raw.get("sections", {}).items()}
    except (ValueError, KeyError, TypeError):
        return {}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, write the JSON report and print the table; 1 if any benchmark failed."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run on tiny data (numbers mean nothing)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only this benchmark (repeatable, or comma-separated): {', '.join(SECTIONS)}",
    )
    parser.add_argument(
        "--data-gb", type=float, default=1.0, help="largest data size for hashing and validation"
    )
    parser.add_argument("--repeats", type=int, default=3, help="release-flow repeats per side")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report to write")
    parser.add_argument(
        "--markdown", action="store_true", help="print the report at --out as a Markdown table; run nothing"
    )
    args = parser.parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)

    if args.markdown:
        raw = json.loads(args.out.read_text())
        sections = {n: section_from_json(s) for n, s in raw["sections"].items()}
        report = Report(raw["machine"], raw["quick"], sections, raw["command"], raw["seconds"])
        print(markdown_table(report), end="")
        return 0

    names = [n.strip() for item in args.only or [] for n in item.split(",") if n.strip()] or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    opts = Options(quick=args.quick, data_gb=args.data_gb, repeats=args.repeats)
    started = time.perf_counter()
    info = machine()
    if args.quick:
        # Tiny data, and the numbers are not read: run the benchmarks side by side.
        with ThreadPoolExecutor(len(names)) as pool:
            done = list(pool.map(lambda n: run_one(n, opts, console), names))
    else:
        done = [run_one(n, opts, console) for n in names]
    sections = _previous(args.out) if args.only else {}
    sections.update({s.name: s for s in done})
    ordered = {n: sections[n] for n in SECTIONS if n in sections}
    command = shlex.join(["python", "-m", "benchmarks.run", *(argv if argv is not None else sys.argv[1:])])
    report = Report(info, args.quick, ordered, command, time.perf_counter() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(to_json(report))
    print_table(report, console)
    console.print(f"wrote {args.out} ({report.seconds:.0f} s)")
    failed = [s.name for s in done if s.skipped and s.skipped.startswith("error:")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
