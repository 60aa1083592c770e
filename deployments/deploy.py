"""Deploy attestflow the Prefect way: work pools with their job templates, then ``prefect deploy --all``.

``prefect.yaml`` at the repository root is the one definition of the deployments (flows,
parameters, schedules and their time zones, the drift trigger, pull steps, job variables);
``configs/deployments.yaml`` names the work pools they run on. This script only does what
``prefect deploy`` does not: it creates or updates each pool with the base job template kept
in the repository (a Kubernetes template is rendered by prefect-kubernetes first, so a broken
one never reaches the server), refuses a ``prefect.yaml`` that names a pool not defined there,
optionally sets the Prefect variable the git pull step clones from, and then runs
``prefect --no-prompt deploy --all`` from the repository root (through `deployments.prefect_cli`, which
works around the one call of ``prefect deploy`` that the 3.8.8 server refuses).

Usage: ``python -m deployments.deploy [--repository URL]`` with ``PREFECT_API_URL`` set, then
``prefect worker start --pool attestflow-local`` (and a Kubernetes worker for ``attestflow-k8s-gpu``).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import yaml

from attestflow.errors import BadInputError
from deployments.pools import ROOT, ensure_pools, load_pools

PREFECT_FILE = ROOT / "prefect.yaml"
POOLS_FILE = ROOT / "configs/deployments.yaml"
REPOSITORY_VARIABLE = "attestflow_repository"
"""The Prefect variable naming the git repository that remote workers clone (read at run time)."""
_CREATED = re.compile(r"Deployment '([^']+)' successfully created")


def deployment_pools(prefect_file: Path) -> dict[str, str]:
    """Each deployment of `prefect_file` (``flow-entrypoint name``) and the work pool it names."""
    raw = yaml.safe_load(prefect_file.read_text()) or {}
    return {
        f"{d.get('entrypoint')} {d.get('name')}": str((d.get("work_pool") or {}).get("name"))
        for d in raw.get("deployments") or []
    }


def _require_api() -> None:
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        raise BadInputError(
            "PREFECT_API_URL is not set: deployments need a Prefect server that workers reach"
        )


def set_repository(url: str) -> None:
    """Set the Prefect variable that the git pull step clones from."""
    from prefect.variables import Variable

    Variable.set(REPOSITORY_VARIABLE, url, overwrite=True)


def deploy(
    prefect_file: Path = PREFECT_FILE,
    pools_file: Path = POOLS_FILE,
    repository: str | None = None,
    names: list[str] | None = None,
) -> list[str]:
    """Create the pools, then every deployment of `prefect_file` (or those `names`); returns the ``flow/name`` of each.

    A name is ``flow/name`` or ``name``: prefect.yaml names its deployments without their flow.
    """
    pools = load_pools(pools_file)
    for deployment, pool in deployment_pools(prefect_file).items():
        if pool not in pools:
            raise BadInputError(
                f"{prefect_file}: {deployment} runs on work pool {pool!r}, not in {pools_file}"
            )
    _require_api()
    ensure_pools(pools)
    if repository:
        set_repository(repository)
    done = subprocess.run(  # noqa: S603 - this interpreter running prefect deploy, no shell
        [
            sys.executable,
            "-m",
            "deployments.prefect_cli",
            "--no-prompt",
            "deploy",
            *([arg for name in names for arg in ("--name", name.rsplit("/", 1)[-1])] if names else ["--all"]),
            "--prefect-file",
            str(prefect_file),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise BadInputError(f"prefect deploy {' '.join(names or ['--all'])} failed:\n{tail}")
    return _CREATED.findall(done.stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Create attestflow's work pools and deploy prefect.yaml.")
    parser.add_argument("--prefect-file", type=Path, default=PREFECT_FILE)
    parser.add_argument("--pools", type=Path, default=POOLS_FILE, help="work pools and their job templates")
    parser.add_argument(
        "--repository", help=f"git URL remote workers clone (sets variable {REPOSITORY_VARIABLE})"
    )
    args = parser.parse_args(argv)
    try:
        names = deploy(args.prefect_file, args.pools, args.repository)
    except BadInputError as e:
        raise SystemExit(f"error: {e}") from None
    for name in names:
        print(f"deployed {name}")


if __name__ == "__main__":
    main()
