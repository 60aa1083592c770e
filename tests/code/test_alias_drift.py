"""An alias moved outside attestflow is drift: named, refused until adopted with a reason or set back."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TypedDict

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from attestflow.alias_drift import adopt, alias_drift, audited_aliases, refuse_on_drift
from attestflow.aliases import restore_alias, rollback
from attestflow.audit import AuditLog
from attestflow.errors import BadInputError, GateFailedError
from attestflow.registry import Registry
from attestflow.workspace import Workspace
from flows.cli import app

ROOT = Path(__file__).resolve().parents[2]
MODEL = "credit"


class _Aliases(TypedDict):
    alias: str
    previous_alias: str


ALIASES: _Aliases = {"alias": "champion", "previous_alias": "previous"}


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite registry with versions 1 and 2 of ``credit``, made once (creating MLflow's tables is slow)."""
    db = tmp_path_factory.mktemp("registry") / "mlflow.db"
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri, uri)
    client.create_registered_model(MODEL)
    for _ in range(2):
        client.create_model_version(MODEL, source=db.parent.as_uri())
    return db


def _store(root: Path, db: Path) -> tuple[str, AuditLog]:
    """A copy of the registry in `root`, v2 champion and v1 previous, as promotions audited in `root`."""
    shutil.copy(db, root / "mlflow.db")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri, uri)
    client.set_registered_model_alias(MODEL, "champion", "2")
    client.set_registered_model_alias(MODEL, "previous", "1")
    audit = AuditLog.of(root)
    audit.append("promotion", model=MODEL, version="1", alias="champion", previous=None)
    audit.append("promotion", model=MODEL, version="2", alias="champion", previous="1")
    return uri, audit


def _drift(uri: str, audit: AuditLog) -> list[str]:
    return [str(d) for d in alias_drift(MODEL, registry=Registry(uri), audit=audit, **ALIASES)]


def test_the_audited_state_follows_moves_undos_restores_and_adoptions() -> None:
    def e(event: str, version: str | None, **details: object) -> dict[str, object]:
        return {"event": event, "model": MODEL, "version": version, "details": details}

    entries = [
        e("promotion", "1", alias="champion", previous=None),
        e("promotion", "2", alias="champion", previous="1"),
        e("promotion_refused", "3", failures=["x"]),
        e("promotion", "3", alias="champion", previous="2"),
        e("canary_rollback", "2", alias="champion", previous="3"),
        e("alias_restored", "1", alias="previous"),
        {**e("promotion", "9", alias="champion", previous="2"), "model": "other"},
    ]
    assert audited_aliases(entries, MODEL, "previous") == {"champion": "2", "previous": "1"}
    cleared = [
        *entries,
        e("canary_rollback", None, alias="champion"),
        e("alias_restored", None, alias="previous"),
    ]
    assert audited_aliases(cleared, MODEL, "previous") == {"champion": None, "previous": None}
    adopted = [*cleared, e("alias_adopted", None, aliases={"champion": "7", "previous": None})]
    assert audited_aliases(adopted, MODEL, "previous") == {"champion": "7", "previous": None}


def test_an_alias_set_through_the_mlflow_client_is_drift_until_adopted(
    tmp_path: Path, empty_store: Path
) -> None:
    uri, audit = _store(tmp_path, empty_store)
    assert _drift(uri, audit) == []
    MlflowClient(uri, uri).set_registered_model_alias(MODEL, "champion", "1")
    MlflowClient(uri, uri).set_registered_model_alias(MODEL, "canary", "2")  # not managed: ignored
    assert _drift(uri, audit) == ["credit@champion is v1 in the registry but v2 in the audit log"]
    with pytest.raises(
        GateFailedError, match=r"rollback refused: credit@champion is v1 .* audit adopt credit"
    ):
        refuse_on_drift("rollback", MODEL, registry=Registry(uri), audit=audit, **ALIASES)
    refused = audit.entries()[-1]
    assert (
        refused["event"] == "rollback_refused" and "credit@champion is v1" in refused["details"]["drift"][0]
    )
    with pytest.raises(BadInputError, match="--reason is required"):
        adopt(MODEL, " ", registry=Registry(uri), audit=audit, **ALIASES)
    assert [str(d) for d in adopt(MODEL, "hotfix", registry=Registry(uri), audit=audit, **ALIASES)] == [
        "credit@champion is v1 in the registry but v2 in the audit log"
    ]
    entry = audit.entries()[-1]
    assert entry["event"] == "alias_adopted" and entry["details"]["reason"] == "hotfix"
    assert entry["details"]["aliases"] == {"champion": "1", "previous": "1"}
    assert _drift(uri, audit) == [] and audit.verify()[0]
    refuse_on_drift("rollback", MODEL, registry=Registry(uri), audit=audit, **ALIASES)
    assert adopt(MODEL, "again", registry=Registry(uri), audit=audit, **ALIASES) == []


def test_setting_a_moved_alias_back_clears_the_drift(tmp_path: Path, empty_store: Path) -> None:
    uri, audit = _store(tmp_path, empty_store)
    client = MlflowClient(uri, uri)
    client.delete_registered_model_alias(MODEL, "previous")
    assert _drift(uri, audit) == ["credit@previous is unset in the registry but v1 in the audit log"]
    client.set_registered_model_alias(MODEL, "previous", "1")
    assert _drift(uri, audit) == []


def test_a_restored_alias_is_audited_and_is_no_drift(tmp_path: Path, empty_store: Path) -> None:
    uri, audit = _store(tmp_path, empty_store)
    restore_alias(MODEL, "previous", None, tracking_uri=uri, audit=audit, reason="undo")
    assert Registry(uri).alias_version(MODEL, "previous") is None
    assert audit.entries()[-1]["event"] == "alias_restored" and _drift(uri, audit) == []
    restore_alias(MODEL, "previous", None, tracking_uri=uri, audit=audit, reason="undo")
    assert len(audit.entries()) == 3  # already there: nothing to move, nothing to audit


def test_a_rollback_says_why_and_refuses_while_an_alias_has_drifted(
    tmp_path: Path, empty_store: Path
) -> None:
    uri, audit = _store(tmp_path, empty_store)
    key = tmp_path / "keys" / "signing-key.pub.pem"
    with pytest.raises(BadInputError, match="--reason is required"):
        rollback(MODEL, None, tracking_uri=uri, public_key=key, audit=audit, reason="", **ALIASES)
    MlflowClient(uri, uri).set_registered_model_alias(MODEL, "previous", "2")
    with pytest.raises(GateFailedError, match="credit@previous is v2 in the registry but v1"):
        rollback(MODEL, None, tracking_uri=uri, public_key=key, audit=audit, reason="why", **ALIASES)
    assert Registry(uri).aliases(MODEL) == {"champion": "2", "previous": "2"}


def test_audit_verify_names_the_drift_and_adopt_settles_it(tmp_path: Path, empty_store: Path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    ws.root.mkdir(parents=True)
    uri, _ = _store(ws.root, empty_store)
    assert uri == ws.mlflow_uri
    config = tmp_path / "release.yaml"
    raw = yaml.safe_load((ROOT / "configs/release.yaml").read_text())
    config.write_text(yaml.safe_dump({**raw, "workspace": str(ws.root), "model_name": MODEL}))
    MlflowClient(uri, uri).set_registered_model_alias(MODEL, "champion", "1")
    runner = CliRunner()
    result = runner.invoke(app, ["audit", "verify", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert "credit@champion is v1 in the registry but v2 in the audit log" in result.output
    result = runner.invoke(app, ["audit", "adopt", MODEL, "--reason", "", "--config", str(config)])
    assert result.exit_code == 2 and "--reason is required" in result.output
    result = runner.invoke(app, ["audit", "adopt", MODEL, "--reason", "hotfix", "--config", str(config)])
    assert result.exit_code == 0 and "adopted: credit@champion" in result.output
    result = runner.invoke(app, ["audit", "verify", "--config", str(config)])
    assert result.exit_code == 0 and "chain intact" in result.output


def test_a_canary_undo_that_cannot_restore_the_old_champion_clears_the_alias_instead(
    tmp_path: Path, empty_store: Path
) -> None:
    from attestflow.aliases import restore_previous
    from attestflow.keys import ensure_keypair
    from attestflow.outcomes import PromotionRecord

    uri, audit = _store(tmp_path, empty_store)  # v1 has no bundle, so it cannot verify any more
    record = PromotionRecord(MODEL, "champion", "2", previous_version="1", previous_alias_version=None)
    key = ensure_keypair(tmp_path / "keys").public_key
    restore_previous(record, uri, key, audit, "previous", "the canary said no")
    assert Registry(uri).alias_version(MODEL, "champion") is None
    events = [(e["event"], e["version"]) for e in audit.entries()]
    assert ("canary_rollback_refused", "1") in events
    assert events[-2:] == [("canary_rollback", None), ("alias_restored", None)]
    assert "cannot be restored" in audit.entries()[-2]["details"]["reason"]


def test_moving_the_alias_again_to_the_champion_keeps_the_model_it_replaced_as_previous(
    tmp_path: Path, empty_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-run after a crash between the promotion and the canary moves the alias to the same version:
    the canary and a rollback must still see the old champion, not this version, as the previous one."""
    from types import SimpleNamespace

    from attestflow import aliases

    uri, audit = _store(tmp_path, empty_store)
    passed = SimpleNamespace(ok=True, failures=[], target="models:/credit/2")
    monkeypatch.setattr(aliases, "verify_model_uri", lambda *a, **k: passed)  # evidence is tested elsewhere
    record = aliases.move_alias(
        "promotion", MODEL, "2", tracking_uri=uri, public_key=tmp_path / "unused.pem", audit=audit, **ALIASES
    )
    assert record.previous_version == "1"
    assert Registry(uri).alias_version(MODEL, "previous") == "1"
    assert audit.entries()[-1]["details"]["previous"] == "2"  # the log says what the alias was: unchanged
