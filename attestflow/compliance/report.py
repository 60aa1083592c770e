"""One compliance report: the mapping loaded, the version verified and read, every control judged."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from attestflow.compliance.assess import Report, assess
from attestflow.compliance.gather import declared, gather, gather_folder
from attestflow.compliance.mapping import load_mapping
from attestflow.errors import BadInputError

if TYPE_CHECKING:
    from attestflow.audit import AuditLog
    from attestflow.config import ReleaseConfig
    from attestflow.evidence_check import EnvTrust


def compliance_report(
    target: str,
    framework: str,
    cfg: ReleaseConfig,
    *,
    tracking_uri: str,
    public_key: Path,
    audit: AuditLog | None,
    trust: EnvTrust | None = None,
) -> Report:
    """The report of `framework` on `target` (``models:/...`` or a downloaded model folder, offline).

    The mapping and the human text (``model_card.path``, ``gates.policy``) are the config's;
    a version that does not verify is refused (`attestflow.compliance.gather.ReportRefusedError`).
    """
    from attestflow.registry import parse_model_uri

    mapping = load_mapping(cfg.compliance.mappings, framework)
    text = declared(cfg.model_card.path, cfg.gates.policy)
    if ":/" in target:
        parse_model_uri(target)
        gathered = gather(target, tracking_uri, public_key, declared_text=text, audit=audit, trust=trust)
    else:
        folder = Path(target)
        if not folder.is_dir():
            raise BadInputError(f"{folder} is not a model folder (nor a models:/ URI)")
        gathered = gather_folder(folder, public_key, declared_text=text)
    return assess(mapping, gathered)
