"""SLSA v1 provenance as an in-toto Statement v1, signed in a DSSE envelope.

The statement says which files were built (subject), from what (resolved dependencies:
data snapshot, base checkpoint, code revision, lock file), with which parameters, by which
builder and run. It is signed with the release key in a DSSE envelope (`attestflow.dsse`),
so that a verifier can check it offline with the public key alone.

Specs: https://in-toto.io/Statement/v1, https://slsa.dev/provenance/v1,
https://github.com/secure-systems-lab/dsse/blob/master/protocol.md
"""

from __future__ import annotations

from typing import Any

from attestflow import dsse
from attestflow.redact import redact_json

STATEMENT_TYPE = dsse.STATEMENT_TYPE
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://attestflow.dev/release-flow/v1"


def byproduct(statement: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The byproduct `name` (e.g. ``mlflow_run``, ``checkpoint``) of a provenance statement, if listed."""
    for item in statement.get("predicate", {}).get("runDetails", {}).get("byproducts", []):
        if item.get("name") == name:
            return dict(item)
    return None


def resource(name: str, digest: dict[str, str], uri: str | None = None, **annotations: Any) -> dict[str, Any]:
    """An in-toto ResourceDescriptor."""
    out: dict[str, Any] = {"name": name, "digest": digest}
    if uri:
        out["uri"] = uri
    if annotations:
        out["annotations"] = annotations
    return out


def statement(
    *,
    subjects: list[dict[str, Any]],
    external_parameters: dict[str, Any],
    internal_parameters: dict[str, Any],
    dependencies: list[dict[str, Any]],
    builder_id: str,
    invocation_id: str,
    started_on: str,
    finished_on: str,
    byproducts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An in-toto Statement v1 carrying a SLSA v1 provenance predicate, credentials redacted before signing."""
    return dsse.statement(
        subjects,
        PREDICATE_TYPE,
        redact_json(
            {
                "buildDefinition": {
                    "buildType": BUILD_TYPE,
                    "externalParameters": external_parameters,
                    "internalParameters": internal_parameters,
                    "resolvedDependencies": dependencies,
                },
                "runDetails": {
                    "builder": {"id": builder_id},
                    "metadata": {
                        "invocationId": invocation_id,
                        "startedOn": started_on,
                        "finishedOn": finished_on,
                    },
                    "byproducts": byproducts or [],
                },
            }
        ),
    )
