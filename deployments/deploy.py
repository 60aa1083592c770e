"""Register attestflow's Prefect deployments on the server that ``PREFECT_API_URL`` names.

- ``release/on-demand``: the release flow, run from the Prefect UI ("Run" -> custom run) or
  ``prefect deployment run release/on-demand``.
- ``retrain/nightly``: the retraining flow on the cron schedule from ``configs/deployments.yaml``;
  it ends as ``Skipped`` in seconds when the data is what the champion was trained on.
- ``retrain/on-drift``: the same flow, triggered by the ``attestflow.drift.detected`` event.
- ``drift-monitor/on-demand``: compares a snapshot with the champion's training data.
- ``release/gpu`` (when ``gpu.enabled``): the release on a Kubernetes work pool whose job
  template requests ``gpu.gpus`` GPUs; training runs one DDP process per GPU.

Usage: ``python -m deployments.deploy [--config configs/deployments.yaml]``, then run a worker:
``prefect worker start --pool attestflow-local``.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SystemExit(f"error: deployments config not found: {path}")
    return dict(yaml.safe_load(path.read_text()))


def ensure_process_pool(name: str) -> None:
    """Create the process work pool `name` if the server does not have it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as c, contextlib.suppress(ObjectAlreadyExists):
        c.create_work_pool(WorkPoolCreate(name=name, type="process"))


def deploy(config: Path, root: Path = ROOT) -> list[str]:
    """Create or update every deployment; returns their ``flow/deployment`` names."""
    from prefect import Flow
    from prefect import flow as load_flow
    from prefect.deployments.runner import RunnerDeployment
    from prefect.events import DeploymentEventTrigger

    from flows.drift import DRIFT_EVENT

    spec = _load(config)
    pool = spec["work_pool"]
    ensure_process_pool(pool)
    release_params = {"config_path": spec["release_config"]}
    source = str(root)
    made = []

    def add(entrypoint: str, name: str, **kwargs: Any) -> None:
        f = load_flow.from_source(source=source, entrypoint=entrypoint)
        assert isinstance(f, Flow)  # from_source is sync when called outside an event loop
        # Flow.deploy() of Prefect 3.8.8 asks the server for online workers with limit=None, which
        # its own server rejects (422); to_deployment().apply() registers the same deployment.
        pool_name = kwargs.pop("work_pool_name")
        deployment = f.to_deployment(name=name, **kwargs)
        assert isinstance(deployment, RunnerDeployment)
        deployment.apply(work_pool_name=pool_name)
        made.append(f"{f.name}/{name}")

    add("flows/release.py:release", "on-demand", work_pool_name=pool, parameters=release_params)
    add(
        "flows/retrain.py:retrain",
        "nightly",
        work_pool_name=pool,
        parameters=release_params,
        cron=spec["retrain"]["cron"],
    )
    add(
        "flows/retrain.py:retrain",
        "on-drift",
        work_pool_name=pool,
        parameters=release_params,
        triggers=[
            DeploymentEventTrigger(
                name="retrain when drift is detected",
                expect={DRIFT_EVENT},
                match={"prefect.resource.id": "attestflow.model.*"},
            )
        ],
    )
    add(
        "flows/drift.py:monitor_drift",
        "on-demand",
        work_pool_name=pool,
        parameters={"current": spec["drift"]["current"], "config_path": spec["release_config"]},
    )
    gpu = spec.get("gpu", {})
    if gpu.get("enabled"):
        add(
            "flows/release.py:release",
            "gpu",
            work_pool_name=gpu["work_pool"],
            # One training process per requested GPU: the stage runs itself under torchrun with DDP.
            parameters={
                **release_params,
                "overrides": ["fine_tune.device=cuda", f"fine_tune.processes={int(gpu.get('gpus', 1))}"],
            },
            job_variables={"gpus": int(gpu.get("gpus", 1))},
        )
    return made


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Register attestflow's Prefect deployments.")
    parser.add_argument("--config", type=Path, default=ROOT / "configs/deployments.yaml")
    args = parser.parse_args(argv)
    for name in deploy(args.config):
        print(f"deployed {name}")


if __name__ == "__main__":
    main()
