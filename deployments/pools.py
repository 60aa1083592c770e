"""The work pools of ``configs/deployments.yaml``, each with the base job template its workers fill in.

`prefect deploy` needs every pool a deployment names to exist already, and a pool's base job
template decides what its workers start (a process, a Kubernetes Job with GPUs, a volume and
the stack's credentials). The templates are kept here, in the repository, and created or
updated on the server by `ensure_pools`, so the server's pools are what review saw. A
Kubernetes template is first rendered with prefect-kubernetes' own job configuration
(`render_kubernetes_job`): a template its worker would reject is refused before it reaches the
server, and the rendered Job is what a test can check without a cluster.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import yaml
from pydantic import ValidationError

from attestflow.errors import BadInputError

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class PoolSpec:
    """One work pool: its name, worker type and base job template."""

    name: str
    type: str
    base_job_template: dict[str, Any]


def default_template(pool_type: str) -> dict[str, Any]:
    """The base job template of Prefect's own worker of `pool_type` (``process`` or ``kubernetes``)."""
    if pool_type == "process":
        from prefect.workers.process import ProcessWorker

        return ProcessWorker.get_default_base_job_template()
    if pool_type == "kubernetes":
        from prefect_kubernetes.worker import KubernetesWorker

        return KubernetesWorker.get_default_base_job_template()
    raise BadInputError(
        f"work pool type {pool_type!r} is not one attestflow deploys to (process, kubernetes)"
    )


def load_pools(config: Path, root: Path = ROOT) -> dict[str, PoolSpec]:
    """The work pools of `config` by name, each template read from its file (or the worker's default)."""
    if not config.is_file():
        raise BadInputError(f"work pools config not found: {config}")
    raw = yaml.safe_load(config.read_text()) or {}
    pools = raw.get("work_pools") if isinstance(raw, dict) else None
    if not isinstance(pools, dict) or not pools:
        raise BadInputError(f"{config}: no work_pools")
    specs = {}
    for name, entry in pools.items():
        pool_type = str((entry or {}).get("type", ""))
        template_file = (entry or {}).get("base_job_template")
        if template_file is None:
            template = default_template(pool_type)
        else:
            path = root / str(template_file)
            try:
                template = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise BadInputError(f"work pool {name}: cannot read {path}: {e}") from None
        spec = PoolSpec(str(name), pool_type, template)
        if pool_type == "kubernetes":
            render_kubernetes_job(spec.base_job_template, {"image": "check"})
        specs[spec.name] = spec
    return specs


def render_kubernetes_job(
    template: dict[str, Any], job_variables: dict[str, Any], flow_run_name: str = "check"
) -> dict[str, Any]:
    """The Job manifest a Kubernetes worker would create for a flow run with `job_variables`.

    Rendered by prefect-kubernetes (template and variables merged, then prepared for a flow
    run: command, environment, labels, name); a template it rejects is `BadInputError`.
    """
    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    async def render() -> dict[str, Any]:
        config = await KubernetesWorkerJobConfiguration.from_template_and_values(
            template, job_variables, client=_NoClient()
        )
        config.prepare_for_flow_run(FlowRun(id=uuid4(), name=flow_run_name, flow_id=uuid4()))
        return dict(config.job_manifest)

    try:
        return asyncio.run(render())
    except ValidationError as e:
        raise BadInputError(
            f"the Kubernetes base job template does not render: {e.errors()[0]['msg']}"
        ) from None
    except (ValueError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInputError(f"the Kubernetes base job template does not render: {first}") from None


class _NoClient:
    """Stands in for the API client when rendering: the templates refer to no blocks or variables."""

    async def read_block_document_by_name(self, *args: Any, **kwargs: Any) -> Any:
        raise BadInputError("the Kubernetes base job template may not refer to blocks")

    async def read_variables(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []


def ensure_pools(specs: dict[str, PoolSpec]) -> None:
    """Create each pool with its base job template, or set the template of one that exists."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        for spec in specs.values():
            try:
                client.create_work_pool(
                    WorkPoolCreate(name=spec.name, type=spec.type, base_job_template=spec.base_job_template)
                )
            except ObjectAlreadyExists:
                current = client.read_work_pool(spec.name)
                if current.type != spec.type:
                    raise BadInputError(
                        f"work pool {spec.name} exists with type {current.type}, not {spec.type}"
                    ) from None
                client.update_work_pool(spec.name, WorkPoolUpdate(base_job_template=spec.base_job_template))
