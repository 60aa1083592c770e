"""A release that stops while it opens leaves one `release_failed` entry; the entry never hides the error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from attestflow.audit import AuditLog
from attestflow.context import open_release
from attestflow.errors import BadInputError, ConfigError, GateFailedError, RegistryUnavailableError
from attestflow.failures import ReleaseFailure, failure_recorded

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, **top: object) -> Path:
    raw = yaml.safe_load((ROOT / "configs/release.yaml").read_text())
    raw["workspace"] = str(tmp_path / "ws")
    raw.update(top)
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("error", "reason", "code"),
    [
        (BadInputError("column 'x' is missing\nmore detail"), "column 'x' is missing", 2),
        (RegistryUnavailableError("registry at http://h unreachable"), "registry at http://h unreachable", 3),
        (GateFailedError(["data validation failed: a", "b"]), "data validation failed: a; b", 1),
        (IndexError("Target 2 is out of bounds"), "IndexError: Target 2 is out of bounds", 1),
        (KeyError(), "KeyError", 1),
    ],
)
def test_a_failure_is_its_stage_one_line_and_exit_code(error: Exception, reason: str, code: int) -> None:
    assert ReleaseFailure.of("fine_tune", error) == ReleaseFailure("fine_tune", reason, code)


def test_a_failure_is_recorded_once_redacted_and_re_raised(tmp_path: Path) -> None:
    log = AuditLog.of(tmp_path)
    with (
        pytest.raises(BadInputError, match="bad"),
        failure_recorded(log, "m", "user:eve", "r1", lambda: "snapshot"),
    ):
        raise BadInputError("bad input at https://alice:s3cret@h.example/x")
    (entry,) = log.entries()
    assert (entry["event"], entry["model"], entry["actor"]) == ("release_failed", "m", "user:eve")
    assert entry["details"] == {
        "stage": "snapshot",
        "reason": "bad input at https://***@h.example/x",
        "exit_code": 2,
        "flow_run_id": "r1",
    }
    assert log.verify()[0]


def test_a_refusal_already_audited_is_not_recorded_twice(tmp_path: Path) -> None:
    log = AuditLog.of(tmp_path)
    with pytest.raises(GateFailedError), failure_recorded(log, "m", "user:eve", "r1", lambda: "canary"):
        raise GateFailedError(["champion not moved"], audited=True)
    assert log.entries() == []


def test_an_audit_log_that_cannot_be_written_never_hides_the_error(tmp_path: Path) -> None:
    log = AuditLog.of(  # key files outside the workspace: not created on first use
        tmp_path / "ws", private_key=tmp_path / "missing.pem", public_key=tmp_path / "missing.pub"
    )
    with pytest.raises(IndexError, match="out of bounds"), failure_recorded(log, "m", "a", "r1", lambda: "x"):
        raise IndexError("Target 2 is out of bounds")
    assert log.entries() == []


def test_a_release_that_fails_while_opening_is_audited_at_stage_start(tmp_path: Path) -> None:
    config = _config(tmp_path, gates={"policy": str(tmp_path / "no-such-gates.yaml")})
    with pytest.raises(ConfigError, match=r"no-such-gates\.yaml"):
        open_release(config, [], flow_run_id="r1")
    (entry,) = AuditLog.of(tmp_path / "ws").entries()
    assert entry["event"] == "release_failed" and entry["model"] == "credit-default"
    details = entry["details"]
    assert (details["stage"], details["exit_code"], details["flow_run_id"]) == ("start", 2, "r1")
    assert "no-such-gates.yaml" in details["reason"]


def test_a_config_that_cannot_be_loaded_leaves_no_entry(tmp_path: Path) -> None:
    config = _config(tmp_path, model_name=None)
    with pytest.raises(ConfigError):
        open_release(config, [], flow_run_id="r1")
    assert not (tmp_path / "ws").exists()
