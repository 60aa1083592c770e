"""The benchmark runner's smoke path writes a report with every benchmark and figure in it.

Only the shape is checked: timings are measured by ``make bench``, never asserted in tests.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import run
from benchmarks.results import Figure, Section, Target


def test_quick_run_reports_every_benchmark_with_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    assert run.main(["--quick", "--out", str(out)]) == 0

    report = json.loads(out.read_text())
    assert report["quick"] is True
    assert {"cpu", "cpu_count", "memory_gb", "cuda"} <= report["machine"].keys()
    assert list(report["sections"]) == list(run.SECTIONS)
    for name, section in report["sections"].items():
        assert section["name"] == name
        if section["skipped"]:
            assert not section["skipped"].startswith("error"), section["skipped"]
            continue
        assert section["figures"], f"{name} reported no figures"
        for fig in section["figures"]:
            assert {"key", "label", "value", "unit", "measured", "target", "met"} <= fig.keys()
    keys = {s: {f["key"] for f in sec["figures"]} for s, sec in report["sections"].items()}
    hashing = {"manifest_vs_md5sum", "snapshot_vs_md5sum", "warm_recheck", "manifest_peak_rss"}
    assert hashing <= keys["hashing"]
    assert {"validation_growth", "validation_peak_rss"} <= keys["validation"]
    assert {"fine_tune_vs_plain_demo", "inner_loop_vs_plain_1t_demo"} <= keys["training"]
    assert {"latency_batch1", "throughput_batch64", "parity"} <= keys["onnx"]
    # The quick run releases once through the bare script, which is the flow's own body.
    assert "bare_release" in keys["orchestration"]
    bare = report["sections"]["orchestration"]["details"]
    assert bare["approved_by"] == "policy:auto" and bare["promoted"] == "1"
    assert {"snapshot", "register", "gates", "promote", "canary"} <= bare["stages"].keys()
    assert report["sections"]["memory"]["skipped"] == "not part of --quick"


def test_only_reruns_one_benchmark_and_keeps_the_others(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    kept = Section(name="hashing", title="Data snapshot hashing", figures=[Figure.of("x", "x", 1.0, "s")])
    from benchmarks.results import Report, to_json

    out.write_text(to_json(Report({}, False, {"hashing": kept}, "earlier", 1.0)))
    assert run.main(["--quick", "--only", "gpu", "--out", str(out)]) == 0
    sections = json.loads(out.read_text())["sections"]
    assert list(sections) == ["hashing", "gpu"]
    assert sections["hashing"]["figures"][0]["key"] == "x"


def test_a_target_is_judged_only_when_there_is_a_value() -> None:
    assert Figure.of("r", "ratio", 1.02, "x", target=Target("<=", 1.05)).met is True
    assert Figure.of("r", "ratio", 1.2, "x", target=Target("<=", 1.05)).met is False
    assert Figure.of("r", "ratio", float("nan"), "x", target=Target(">=", 0.9)).met is None
