"""A framework's controls and the evidence that meets each: read strictly from ``configs/compliance/``.

The mapping is the claim a compliance report makes ("Article 12 is met by the audit log and
the signed provenance"), so it is reviewed and versioned like the gate policy: validated with
``extra="forbid"``, every requirement in the fixed vocabulary (`attestflow.compliance.vocabulary`),
and its SHA-256 (of the file's bytes, as reviewed) written into every report. A control that
attestflow's evidence cannot speak to says so in ``gap`` and lists no evidence: it is always
reported missing, never quietly left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from attestflow.compliance.vocabulary import Requirement, parse_requirement
from attestflow.config import describe_validation_error
from attestflow.digests import Digest, file_digest
from attestflow.errors import BadInputError, ConfigError
from attestflow.yamlfile import read_yaml

RiskTier = Literal["minimal", "limited", "high"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Control(_Strict):
    """One control of a framework (an article, an Annex IV item, a NIST AI RMF subcategory)."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    title: str = Field(min_length=1)
    description: str = Field(min_length=1, max_length=300)
    """What the control asks, in one plain-language line."""
    evidence: list[str] = Field(default_factory=list)
    """Requirements from the vocabulary; every one must be met."""
    required_when: list[RiskTier] = Field(default_factory=list)
    """Risk tiers at which a release that cannot meet this control is refused before training."""
    gap: str | None = None
    """Why attestflow holds no evidence for this control (only for a control that lists none)."""

    @field_validator("description")
    @classmethod
    def _one_line(cls, text: str) -> str:
        if "\n" in text.strip():
            raise ValueError("a description is one line")
        return text.strip()

    @field_validator("evidence")
    @classmethod
    def _in_vocabulary(cls, items: list[str]) -> list[str]:
        for item in items:
            parse_requirement(item)
        if len(set(items)) != len(items):
            raise ValueError("a requirement is listed twice")
        return items

    @model_validator(mode="after")
    def _evidence_or_gap(self) -> Control:
        if not self.evidence and not self.gap:
            raise ValueError(f"control {self.id} lists no evidence: say why in 'gap'")
        if self.evidence and self.gap:
            raise ValueError(f"control {self.id} lists evidence and a gap: one or the other")
        if self.gap and self.required_when:
            raise ValueError(f"control {self.id} has no evidence, so no risk tier can require it")
        return self

    @property
    def requirements(self) -> list[Requirement]:
        return [parse_requirement(e) for e in self.evidence]


class MappingFile(_Strict):
    """A framework's mapping file."""

    framework: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str = Field(min_length=1)
    version: int = Field(ge=1)
    source: str = Field(min_length=1)
    """Where the framework's text is published."""
    controls: list[Control] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> MappingFile:
        ids = [c.id for c in self.controls]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"control id(s) listed twice: {', '.join(twice)}")
        return self


@dataclass(frozen=True)
class Mapping:
    """A validated mapping and the digest of the file it was read from."""

    path: Path
    digest: Digest
    spec: MappingFile


def frameworks(folder: Path) -> list[str]:
    """The frameworks with a mapping in `folder` (``<framework>.yaml``), sorted."""
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_mapping(folder: Path, framework: str) -> Mapping:
    """The mapping of `framework` in `folder`; an unknown framework or a bad mapping is one `BadInputError` line."""
    known = frameworks(folder)
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", framework) or framework not in known:
        raise BadInputError(
            f"unknown framework {framework!r}: one of {', '.join(known) or f'none (no mappings in {folder})'}"
        )
    return read_mapping(folder / f"{framework}.yaml")


def read_mapping(path: Path) -> Mapping:
    """Read and validate one mapping file, named after its framework; any problem is one `ConfigError` line."""
    raw = read_yaml(path, "compliance mapping")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping with 'framework', 'title', 'version', 'source', 'controls'"
        )
    try:
        spec = MappingFile.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(str(path), e)) from None
    if spec.framework != path.stem:
        raise ConfigError(f"{path}: framework {spec.framework!r} in a file named {path.name}")
    return Mapping(path, file_digest(path), spec)
