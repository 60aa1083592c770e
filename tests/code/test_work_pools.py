"""Work pools and their base job templates, checked before any server sees them (no cluster needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from attestflow.errors import BadInputError
from deployments.deploy import deploy
from deployments.pools import load_pools, render_kubernetes_job
from tests.conftest import ROOT

TEMPLATE = ROOT / "deployments/k8s-gpu-base-job-template.json"


def _pools(tmp_path: Path, template: dict) -> Path:
    (tmp_path / "template.json").write_text(json.dumps(template))
    pools = {
        "work_pools": {"gpu": {"type": "kubernetes", "base_job_template": str(tmp_path / "template.json")}}
    }
    (tmp_path / "pools.yaml").write_text(yaml.safe_dump(pools))
    return tmp_path / "pools.yaml"


def test_the_gpu_template_renders_to_a_job_requesting_the_gpus_it_is_given() -> None:
    job = render_kubernetes_job(json.loads(TEMPLATE.read_text()), {"image": "attestflow:cuda", "gpus": 4})
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "attestflow:cuda"
    assert (
        container["resources"]["requests"]["nvidia.com/gpu"]
        == 4
        == container["resources"]["limits"]["nvidia.com/gpu"]
    )
    assert container["args"] == ["prefect", "flow-run", "execute"]
    assert any(e["name"] == "PREFECT__FLOW_RUN_ID" for e in container["env"])


def test_a_kubernetes_template_its_worker_would_reject_is_refused_naming_what_is_missing(
    tmp_path: Path,
) -> None:
    template = json.loads(TEMPLATE.read_text())
    del template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["parallelism"]
    with pytest.raises(BadInputError, match="/spec/template/spec/parallelism"):
        load_pools(_pools(tmp_path, template), root=tmp_path)


def test_a_pool_of_a_type_attestflow_does_not_deploy_to_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pools.yaml").write_text(yaml.safe_dump({"work_pools": {"p": {"type": "ecs"}}}))
    with pytest.raises(BadInputError, match="'ecs' is not one attestflow deploys to"):
        load_pools(tmp_path / "pools.yaml")


def test_a_deployment_on_a_pool_that_is_not_defined_is_refused_before_any_server_is_asked(
    tmp_path: Path,
) -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    spec["deployments"][0]["work_pool"]["name"] = "nowhere"
    (tmp_path / "prefect.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(BadInputError, match="runs on work pool 'nowhere'"):
        deploy(tmp_path / "prefect.yaml", ROOT / "configs/deployments.yaml")


def test_every_pool_prefect_yaml_names_is_defined_with_its_template() -> None:
    pools = load_pools(ROOT / "configs/deployments.yaml")
    named = {
        d["work_pool"]["name"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    }
    assert named == set(pools)
    assert pools["attestflow-k8s-gpu"].base_job_template == json.loads(TEMPLATE.read_text())
    assert pools["attestflow-local"].type == "process"
