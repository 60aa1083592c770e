"""The settings every part of attestflow shares: the strict base model, where a key lives, who approves.

Split from `attestflow.config` so that the release config and the environments file
(`attestflow.environments`) validate keys and approval rules with the same models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from attestflow.errors import BadInputError
from attestflow.keys import load_public_key
from attestflow.lineage import actor


class Settings(BaseModel):
    """Every settings section: a misspelt key is an error, values are frozen, no infinite or NaN bound."""

    # No infinite or NaN settings: a bound of .inf is a check that can never say no.
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(), allow_inf_nan=False)


class KeySpec(Settings):
    """Where a signing key lives: at most one private half (a PEM file, a Prefect Secret block, a PKCS#11
    token object) and the PEM public half that verification trusts. Neither: the workspace key pair."""

    private_key: Path | None = None
    """PEM EC private key; unset (and no other private half) uses the workspace key pair (created on first use)."""
    public_key: Path | None = None
    """The trusted PEM public key that verification uses; must pair with the private half."""
    secret_block: str | None = None
    """Name of a Prefect ``Secret`` block holding the PEM EC private key."""
    pkcs11_uri: str | None = None
    """RFC 7512 URI of the key in a PKCS#11 token (``pkcs11:token=...;object=...``); no PIN in it:
    ``$ATTESTFLOW_PKCS11_PIN``; the module: ``$ATTESTFLOW_PKCS11_MODULE`` (default SoftHSM2's)."""

    @model_validator(mode="after")
    def _one_private_half(self) -> KeySpec:
        given = [k for k in ("private_key", "secret_block", "pkcs11_uri") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"set one private half of the key, not {' and '.join(given)}")
        if self.pkcs11_uri is not None:
            from attestflow.pkcs11 import parse_uri

            try:
                parse_uri(self.pkcs11_uri)  # token and object only: never a PIN or a module path
            except BadInputError as e:
                raise ValueError(str(e)) from None
        return self


class ApproveConfig(Settings):
    """Who must approve a promotion: nobody (``auto``, for dev) or a person (``human``)."""

    mode: Literal["auto", "human"] = "auto"
    timeout_s: float = Field(3600.0, gt=0)
    """How long a human approval may take; when it runs out the release counts as rejected."""
    approvers: list[str] = Field(default_factory=list)
    """Who may approve or reject in ``human`` mode, as actors (``alice`` is ``user:alice``)."""
    required: int = Field(1, ge=1)
    """How many distinct approvers must approve in ``human`` mode (a rejection by one ends it)."""
    allow_self_approval: bool = False
    """Whether whoever triggered a release may approve it themselves."""
    approver_keys: dict[str, Path] = Field(default_factory=dict)
    """Approver -> their PEM EC public key; a listed approver's decision must be signed with it."""
    wait: Literal["pause", "suspend"] = "pause"
    """How a release waits for a person: ``pause`` keeps the process (and its worker or pod) waiting;
    ``suspend`` ends it and the resumed run starts again on a worker, its stages answered from their
    persisted results (for costly infrastructure; needs a deployment's top-level run, else it pauses)."""

    @field_validator("approvers")
    @classmethod
    def _identities(cls, names: list[str]) -> list[str]:
        if any(not n.strip() for n in names):
            raise ValueError("an approver's name is empty")
        return list(dict.fromkeys(actor(n.strip()) for n in names))

    @field_validator("approver_keys")
    @classmethod
    def _public_keys(cls, keys: dict[str, Path]) -> dict[str, Path]:
        for path in keys.values():
            try:
                load_public_key(path)
            except BadInputError as e:
                raise ValueError(str(e)) from None
        return {actor(name.strip()): path for name, path in keys.items() if name.strip()}

    @model_validator(mode="after")
    def _approvers_named(self) -> ApproveConfig:
        # Fail closed: an empty allow-list in human mode would let anyone type any name.
        if self.mode == "human" and not self.approvers:
            raise ValueError("mode human needs approve.approvers: the people who may decide")
        if self.mode == "human" and self.required > len(self.approvers):
            raise ValueError(f"required is {self.required}, more than the {len(self.approvers)} approvers")
        unknown = [name for name in self.approver_keys if name not in self.approvers]
        if unknown:
            raise ValueError(f"approver_keys names {', '.join(unknown)}, not in approve.approvers")
        return self
