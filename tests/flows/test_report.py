"""`attestflow report` on a real release: every control gets a status, in a real browser, and a tampered
version gets no report.

One release of the tiny example for the module, then the report in each format from the CLI,
its HTML page opened in headless Chromium (the screenshot is kept in tests/output/, git-ignored,
like the dashboard test's), and the registered folder tampered with.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from attestflow.bundle import ATTESTATION
from attestflow.compliance.mapping import load_mapping
from attestflow.workspace import Workspace
from flows.cli import app
from flows.release import release
from tests.conftest import ROOT, make_example_repo
from tests.flows.browser import CHROMIUM, chromium

OUTPUT = ROOT / "tests" / "output"
CHAMPION = "models:/tiny-credit@champion"


@dataclass
class Released:
    config: Path
    artifacts: Path
    """The registered version's artifact folder on disk."""


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Released:
    repo = make_example_repo(tmp_path_factory.mktemp("report") / "repo")
    config = repo.write_config()
    summary = release(config_path=str(config))
    uri = Workspace.at(repo.workspace).mlflow_uri
    client = MlflowClient(uri, uri)
    model_id = str(client.get_model_version("tiny-credit", summary.registration.version).source).rsplit(
        "/", 1
    )[-1]
    return Released(config, Path(urlparse(client.get_logged_model(model_id).artifact_location).path))


def _report(released: Released, *args: str) -> tuple[int, str, float]:
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["report", CHAMPION, *args, "--config", str(released.config)])
    return result.exit_code, result.output, time.perf_counter() - started


def test_the_html_report_of_the_champion_shows_every_controls_status_in_a_browser(
    released: Released, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium package")
    page_file = tmp_path / "eu-ai-act.html"
    code, out, seconds = _report(
        released, "--framework", "eu-ai-act", "--format", "html", "--out", str(page_file)
    )
    assert code == 0, out
    print(f"attestflow report (eu-ai-act, html) took {seconds:.2f} s")
    assert "eu-ai-act report of models:/tiny-credit/1" in out and str(page_file) in out
    controls = load_mapping(ROOT / "configs/compliance", "eu-ai-act").spec.controls

    OUTPUT.mkdir(parents=True, exist_ok=True)
    with chromium(tmp_path / "chromium-profile") as page:
        page.open(page_file.as_uri(), until="document.querySelectorAll('tr[data-control]').length > 0")
        shown = page.evaluate(
            "Array.from(document.querySelectorAll('tr[data-control]')).map(r => [r.dataset.control, r.dataset.status,"
            " r.querySelector('.badge').innerText])"
        )
        assert [c for c, _, _ in shown] == [c.id for c in controls]
        assert all(
            status in ("verified", "declared", "missing") and badge == status for _, status, badge in shown
        )
        status = {c: s for c, s, _ in shown}
        assert status["art12"] == "verified"  # audit log, provenance and signature, re-verified
        assert status["art15-robustness"] == "verified" and status["art10-governance"] == "verified"
        assert status["art14"] == "missing"  # the example approves automatically
        counts = page.evaluate(
            "['verified','declared','missing'].map(s => Number(document.querySelector('#count-' + s + ' b').innerText))"
        )
        assert sum(counts) == len(controls) and counts[0] == list(status.values()).count("verified")
        text = page.evaluate("document.body.innerText")
        assert "tiny-credit" in text and "Mapping" in text and "Generated" in text
        assert page.evaluate("document.scripts.length") == 0
        page.screenshot(OUTPUT / "compliance-report.png")


def test_the_nist_report_in_markdown_and_json(released: Released) -> None:
    code, out, _ = _report(released, "--framework", "nist-ai-rmf", "--format", "json")
    assert code == 0, out
    report = json.loads(out)
    assert report["model"]["name"] == "tiny-credit" and report["model"]["version"] == "1"
    assert report["verification"]["ok"] and {"signature", "data snapshot"} <= {
        c["name"] for c in report["verification"]["checks"]
    }
    assert (
        report["mapping"]["sha256"] == load_mapping(ROOT / "configs/compliance", "nist-ai-rmf").digest.value
    )
    by_id = {c["id"]: c["status"] for c in report["controls"]}
    assert by_id["MEASURE-2.11"] == "verified" and by_id["MANAGE-4.1"] == "missing"
    code, out, _ = _report(released, "--framework", "nist-ai-rmf")
    assert code == 0 and out.startswith("# NIST AI Risk Management Framework 1.0: models:/tiny-credit/1")


def test_a_tampered_version_gets_no_report(released: Released) -> None:
    metrics = released.artifacts / ATTESTATION / "metrics.json"
    original = metrics.read_bytes()
    try:
        metrics.write_bytes(original.replace(b"}", b', "accuracy": 0.99}', 1))
        code, out, _ = _report(released, "--framework", "eu-ai-act", "--format", "html")
        assert code == 1, out
        assert "report refused" in out and "signature: model-signing verification failed" in out
        assert "<html" not in out and "verified" not in out.replace("verification failed", "")
    finally:
        metrics.write_bytes(original)
    assert _report(released, "--framework", "eu-ai-act", "--format", "json")[0] == 0
