"""Commands that read what a release left behind: `verify` and `lineage`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from flows.cli import render
from flows.cli.common import (
    ConfigOpt,
    EnvironmentsOpt,
    EnvOpt,
    JsonOpt,
    audit_log,
    env_trust,
    registry_uri,
    workspace_of,
)


def verify(
    model_uri: Annotated[
        str,
        typer.Argument(
            metavar="TARGET", help="models:/NAME/VERSION, models:/NAME@ALIAS, or a downloaded model folder"
        ),
    ],
    config: ConfigOpt = None,
    public_key: Annotated[
        Path | None, typer.Option(help="Trusted PEM public key (default: config/workspace).")
    ] = None,
    require: Annotated[
        str,
        typer.Option(
            help="What must hold, comma-separated: provenance (signature, files, provenance, tags, data), "
            "gates (a signed PASSED gate verdict), approval (a signed approval, not undone by the canary)."
        ),
    ] = "provenance,gates,approval",
    policy: Annotated[
        Path | None,
        typer.Option(help="Also require the signed gate verdict to be under this gate policy file."),
    ] = None,
    as_json: JsonOpt = False,
    env: EnvOpt = None,
    environments: EnvironmentsOpt = None,
) -> None:
    """Re-hash and verify a registered model or a downloaded folder: signature, provenance and evidence.

    A folder is checked offline, without the registry: no registry tags and no data snapshot.
    """
    from attestflow.errors import BadInputError
    from attestflow.evidence_check import parse_requirements, verify_release
    from attestflow.keys import trusted_public_key
    from attestflow.policy import load_policy
    from attestflow.verify import parse_model_uri, verify_model_uri

    started = time.perf_counter()
    needs = parse_requirements(require)
    policy_digest = load_policy(policy).digest().value if policy else None
    if ":/" in model_uri:
        parse_model_uri(model_uri)
        registry, key = _registry_and_key(config, public_key, env, environments)
        result = verify_model_uri(
            model_uri,
            registry,
            key,
            require=needs,
            policy_digest=policy_digest,
            trust=env_trust(env, environments),
        )
    else:
        folder = Path(model_uri)
        if not folder.is_dir():
            raise BadInputError(f"{folder} is not a model folder (nor a models:/ URI)")
        if public_key is None:
            cfg, ws = workspace_of(config, env, environments)
            public_key = trusted_public_key(cfg.sign.public_key, ws.root)
        result = verify_release(
            folder,
            public_key,
            require=needs,
            check_data=False,
            target=str(folder),
            policy_digest=policy_digest,
        )
    render.verification(model_uri, result, time.perf_counter() - started, as_json)
    raise typer.Exit(0 if result.ok else 1)


def lineage(
    start: Annotated[
        str, typer.Argument(help="models:/NAME/VERSION, models:/NAME@ALIAS, an ONNX SHA-256 or a flow run id")
    ],
    config: ConfigOpt = None,
    model: Annotated[
        str | None, typer.Option(help="Restrict a digest or run id search to this model.")
    ] = None,
    as_json: JsonOpt = False,
    env: EnvOpt = None,
    environments: EnvironmentsOpt = None,
) -> None:
    """The chain from data snapshot to promotions of one model version (a model of an environment: its log)."""
    from attestflow.lineage_graph import lineage as gather

    cfg, ws = workspace_of(config, env or _environment_of(start, environments), environments)
    graph = gather(start, registry_uri(cfg, ws), ws.root, model, audit=audit_log(cfg, ws))
    render.lineage(graph, as_json)


def _environment_of(start: str, environments: Path | None) -> str | None:
    """The one environment of the environments file whose registered model `start` (models:/NAME...) names."""
    from attestflow.env_promotion import environments_path, load_environments
    from attestflow.registry import parse_model_uri

    path = environments_path(environments)
    if not start.startswith("models:/") or not path.is_file():
        return None
    name = parse_model_uri(start).name
    found = [e.name for e in load_environments(path).environments.values() if e.model_name == name]
    return found[0] if len(found) == 1 else None


def _registry_and_key(
    config: Path | None, public_key: Path | None, env: str | None, environments: Path | None
) -> tuple[str, Path]:
    """The registry to ask and the key to trust: from the release config, or, where there is none and
    a key is given (a verifier's empty folder), the environment's ``MLFLOW_TRACKING_URI`` and that key."""
    from attestflow.config import default_config_path
    from attestflow.keys import trusted_public_key
    from attestflow.tracking import tracking_uri
    from attestflow.workspace import Workspace

    if config is None and env is None and public_key is not None and not default_config_path().is_file():
        return tracking_uri(None, Workspace.at(Path(".attestflow"))), public_key
    cfg, ws = workspace_of(config, env, environments)
    return registry_uri(cfg, ws), trusted_public_key(public_key or cfg.sign.public_key, ws.root)
