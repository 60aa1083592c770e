"""`attestflow lineage` tells the whole chain from any starting point the user has."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from flows.cli import app
from flows.release import release
from tests.conftest import ExampleRepo


def test_lineage_from_a_model_uri_a_digest_and_a_flow_run_id(example_repo: ExampleRepo) -> None:
    config = example_repo.write_config()
    summary = release(config_path=str(config))
    starts = ["models:/tiny-credit@champion", summary.onnx.digest.value, str(summary.flow_run_id)]
    graphs = []
    for start in starts:
        result = CliRunner().invoke(app, ["lineage", start, "--config", str(config), "--json"])
        assert result.exit_code == 0, result.output
        graphs.append(json.loads(result.output))
    assert graphs[0] == graphs[1] == graphs[2]
    g = graphs[0]
    assert g["model"] == {
        "name": "tiny-credit",
        "version": "1",
        "uri": "models:/tiny-credit/1",
        "aliases": ["champion"],
    }
    assert g["data"]["dvc_md5"] == summary.snapshot.dvc_md5
    assert g["validation"][0]["passed"] is True
    assert g["training"]["mlflow_run_id"] == summary.training.mlflow_run_id
    assert g["training"]["checkpoint_sha256"] == summary.training.checkpoint_digest.value
    assert g["onnx"]["sha256"] == summary.onnx.digest.value
    assert g["signature"]["bundle_sha256"] == summary.signature.bundle_digest.value
    assert [x["gate"] for x in g["gates"]] and all(x["passed"] for x in g["gates"])
    assert g["approval"][0]["event"] == "approval"
    assert g["promotions"][0]["event"] == "promotion"

    tree = CliRunner().invoke(app, ["lineage", "models:/tiny-credit/1", "--config", str(config)])
    assert tree.exit_code == 0 and "training: MLflow run" in tree.output and "promotion at" in tree.output


def test_lineage_of_something_unknown_is_bad_input(example_repo: ExampleRepo) -> None:
    config = example_repo.write_config()
    for start in ("models:/nope/1", "0" * 64, "not-a-thing"):
        result = CliRunner().invoke(app, ["lineage", start, "--config", str(config)])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
