"""What MLOps see: a release's lineage, gates and training curves on the Prefect UI, in a real browser.

A real `prefect server` (with its UI), a release run against it from the CLI, and headless
Chromium opening its flow run page and artifacts. Screenshots are kept in
tests/output/ (git-ignored) to look at.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, ExampleRepo
from tests.flows import api
from tests.flows.browser import CHROMIUM, Page, chromium

OUTPUT = ROOT / "tests" / "output"
ATTESTFLOW = str(Path(sys.executable).with_name("attestflow"))
# An image that has loaded and decoded has a natural width; a refused or broken one has none.
CURVE_SHOWN = (
    "Array.from(document.querySelectorAll('img'))"
    ".some(i => i.src.startsWith('data:image/svg+xml;base64,') && i.complete && i.naturalWidth > 300)"
)


def _env(api_url: str) -> dict[str, str]:
    # PYTHONPATH: this checkout's code, whichever checkout the virtual environment was installed from.
    env = {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(ROOT), "ATTESTFLOW_ACTOR": "mlops"}
    env.pop("PREFECT_HOME", None)
    return env


def _flow_run_id(api_url: str, flow_name: str) -> str:
    body = {"flows": {"name": {"any_": [flow_name]}}, "sort": "START_TIME_DESC", "limit": 1}
    (run,) = api.post(f"{api_url}/flow_runs/filter", body)
    return str(run["id"])


def _artifacts(api_url: str, flow_run_id: str) -> dict[str, dict[str, Any]]:
    body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
    return {a["key"]: a for a in api.post(f"{api_url}/artifacts/filter", body)}


def _artifacts_tab(page: Page, ui: str, flow_run_id: str, keys: list[str]) -> None:
    """Open the flow run page and its Artifacts tab, and wait for the cards of `keys`."""
    page.open(f"{ui}/runs/flow-run/{flow_run_id}", until="document.querySelector('li.p-tab#artifacts')")
    page.click("li.p-tab#artifacts")
    page.wait(" && ".join(f"document.body.innerText.includes({k!r})" for k in keys))


def test_the_run_pages_show_lineage_gates_and_training_curves(
    example_repo: ExampleRepo, prefect_server: str, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium package")
    ui = prefect_server.removesuffix("/api")
    env = _env(prefect_server)

    config = example_repo.write_config()
    release = subprocess.run(
        [ATTESTFLOW, "run", "--config", str(config)], env=env, capture_output=True, text=True, timeout=600
    )
    assert release.returncode == 0, release.stdout + release.stderr

    release_run = _flow_run_id(prefect_server, "release")
    release_artifacts = _artifacts(prefect_server, release_run)
    keys = [
        "lineage-tiny-credit",
        "gates-tiny-credit",
        "training-progress-tiny-credit",
        "training-curves-tiny-credit",
    ]
    assert set(keys) <= set(release_artifacts)
    assert release_artifacts["training-progress-tiny-credit"]["data"] == 100
    curves = release_artifacts["training-curves-tiny-credit"]

    OUTPUT.mkdir(parents=True, exist_ok=True)
    with chromium(tmp_path / "chromium-profile") as page:
        # The release's run page: its lineage and gate artifacts, each a card on the Artifacts tab.
        _artifacts_tab(page, ui, release_run, keys)
        assert page.evaluate("document.body.innerText.includes('lineage of models:/tiny-credit/1')")
        assert page.evaluate("document.body.innerText.includes('Gates of models:/tiny-credit/1: passed')")
        page.screenshot(OUTPUT / "release-run-artifacts.png")

        # The lineage itself, rendered from markdown into a table, with the ids to follow.
        lineage = release_artifacts["lineage-tiny-credit"]
        page.open(f"{ui}/artifacts/artifact/{lineage['id']}", until="document.querySelector('table')")
        text = page.evaluate("document.querySelector('.artifact-data-markdown').innerText")
        for stage in ("data snapshot", "validation", "training", "ONNX", "signature", "gates", "promotion"):
            assert stage in text
        assert "Release of tiny-credit: released" in text
        page.screenshot(OUTPUT / "release-lineage.png")

        # The gate decisions as a table artifact: one row per decision.
        gates = release_artifacts["gates-tiny-credit"]
        page.open(
            f"{ui}/artifacts/artifact/{gates['id']}", until="document.body.innerText.includes('performance')"
        )
        assert page.evaluate("document.body.innerText.includes('roc_auc')")
        page.screenshot(OUTPUT / "release-gates.png")

        # The training curves: the plot is on the run page itself, in the artifact's card.
        _artifacts_tab(page, ui, release_run, keys)
        page.wait(CURVE_SHOWN)
        page.screenshot(OUTPUT / "release-run-curves.png")
        page.open(f"{ui}/artifacts/artifact/{curves['id']}", until=CURVE_SHOWN)
        assert page.evaluate("document.body.innerText.includes('Metrics at the end of each epoch')")
        page.screenshot(OUTPUT / "training-curves.png")
