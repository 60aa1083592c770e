"""The one redaction rule, and each place it is applied: JSON records, the audit log, the provenance,
the config digest, log records, stage exceptions, the release's run parameters and the terminal."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from attestflow import redact as r
from attestflow.audit import AuditLog
from attestflow.config import load_config
from attestflow.provenance import statement
from attestflow.records import write_json

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-T0KEN-4711"


@pytest.mark.parametrize(
    "text",
    [
        f"http://alice:{SECRET}@mlflow.example:5000",
        f"the model registry at https://alice:{SECRET}@h.example/api failed: 503",
        f"postgresql://mlflow:{SECRET}@db:5432/mlflow",
        f"https://{SECRET}@github.com/org/repo.git",
        f"s3://bucket/dvc?X-Amz-Signature={SECRET}&X-Amz-Date=20240101",
        f"GET https://h/api?private_token={SECRET}",
        f"password={SECRET} retries=3",
        f'{{"api_key": "{SECRET}"}}',
        f"X-Api-Key: {SECRET}",
        f"Authorization: Bearer {SECRET}",
        f"aws_secret_access_key = {SECRET}",
        f"AWS_SESSION_TOKEN={SECRET}",
        f"client_secret: {SECRET}",
    ],
)
def test_a_credential_anywhere_inside_a_text_is_masked(text: str) -> None:
    out = r.redact(text)
    assert SECRET not in out
    assert r.MASK in out


def test_a_masked_credential_is_masked_later_on_its_own() -> None:
    r.redact("http://bob:Later-Seen-Secret-99@host:5000")
    assert r.redact("the server said: bad token Later-Seen-Secret-99") == "the server said: bad token ***"


def test_secret_environment_variables_are_masked_wherever_their_value_appears(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "env-held-password-1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    assert r.redact("auth failed for env-held-password-1") == "auth failed for ***"
    assert r.redact("parallelism false") == "parallelism false"


@pytest.mark.parametrize(
    "text",
    [
        "sqlite:////abs/path/mlflow.db",
        "sqlite:///relative.db",
        "file:///tmp/dvc-remote",
        "models:/credit-default@champion",
        "model signature: valid, key sha256:ab12",
        "tokenizer: all-MiniLM-L6-v2",
        '{"pad_token": "[PAD]", "unk_token": "[UNK]"}',
        "PWD=/home/alice",
        "user:alice",
        "released v3 as champion (was v2)",
    ],
)
def test_text_without_credentials_is_left_as_it_is(text: str) -> None:
    assert r.redact(text) == text
    assert r.redact_uri(text) == text


def test_redact_uri_drops_credentials_and_the_query_and_keeps_absolute_sqlite_paths() -> None:
    assert r.redact_uri(f"http://u:{SECRET}@h:5000/p?x=1") == "http://***@h:5000/p"
    assert r.redact_uri("sqlite:////abs/path") == "sqlite:////abs/path"


def test_json_values_under_secret_named_keys_are_masked_and_nested_strings_redacted() -> None:
    data = {"password": "short", "nested": [{"uri": f"http://u:{SECRET}@h"}], "private_key": "/k.pem"}
    assert r.redact_json(data) == {
        "password": "***",
        "nested": [{"uri": "http://***@h"}],
        "private_key": "/k.pem",
    }
    assert r.redact_json({"pad_token": "[PAD]", "max_length": 64}) == {"pad_token": "[PAD]", "max_length": 64}


def test_terminal_safe_text_has_no_escape_sequences_or_control_characters() -> None:
    hostile = "eve\x1b[2K\x1b[1A\x1b]8;;http://evil\x1b\\click\x1b]8;;\x07\x9b31m\u202eok\r\x00\ttab\nline"
    assert r.terminal_safe(hostile) == "eveclick31mok\ttab\nline"


def test_a_scrubbed_function_raises_its_own_exception_with_the_chain_redacted() -> None:
    def fails() -> None:
        try:
            raise OSError(f"connect to http://u:{SECRET}@h failed")
        except OSError as e:
            raise RuntimeError(f"push to https://u:{SECRET}@h/dvc failed") from e

    with pytest.raises(RuntimeError) as caught:
        r.scrubbed(fails)()
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is not None
    assert SECRET not in str(caught.value.__cause__)


def test_log_records_are_redacted_and_stripped_whatever_the_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    r.install_log_redaction()
    r.install_log_redaction()  # idempotent
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("some.third.party")
    logger.addHandler(handler)
    try:
        logger.warning("retrying %s\x1b[2J", f"http://u:{SECRET}@h:5000")
        try:
            raise ValueError(f"token={SECRET}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "retrying http://***@h:5000" in out
    assert "ValueError: token=***" in out
    assert SECRET not in out
    assert "\x1b" not in out


def test_overrides_with_credentials_are_recorded_masked_and_handed_over_whole() -> None:
    overrides = [f"register.tracking_uri=http://u:{SECRET}@h:5000", "fine_tune.epochs=3"]
    shown, hidden = r.hide_overrides(overrides)
    assert shown == ["register.tracking_uri=http://***@h:5000", "fine_tune.epochs=3"]
    assert r.reveal_overrides(shown) == shown
    with r.secret_overrides(hidden):
        assert r.reveal_overrides(shown) == overrides
    assert r.reveal_overrides(shown) == shown


def test_json_records_and_the_config_digest_carry_no_credential(tmp_path: Path) -> None:
    base = ROOT / "configs/release.yaml"
    with_secret = load_config(base, [f"register.tracking_uri=http://u:{SECRET}@h:5000"])
    other_secret = load_config(base, ["register.tracking_uri=http://u:another-password-2@h:5000"])
    path = write_json(tmp_path / "config.json", with_secret.model_dump(mode="json"))
    assert SECRET not in path.read_text()
    assert json.loads(path.read_text())["register"]["tracking_uri"] == "http://***@h:5000"
    assert with_secret.digest() == other_secret.digest()
    assert with_secret.register.tracking_uri == f"http://u:{SECRET}@h:5000"  # still usable to connect


def test_the_audit_log_stores_no_credential_in_details_or_actor(tmp_path: Path) -> None:
    log = AuditLog.of(tmp_path)
    log.append("run_started", model="m", actor=f"ci:https://bot:{SECRET}@ci.example", error=f"token={SECRET}")
    assert SECRET not in log.path.read_text()
    assert log.verify()[0]


def test_the_provenance_statement_is_built_without_credentials() -> None:
    stmt = statement(
        subjects=[{"name": "model.onnx", "digest": {"sha256": "ab" * 32}}],
        external_parameters={"overrides": [f"register.tracking_uri=http://u:{SECRET}@h:5000"]},
        internal_parameters={},
        dependencies=[{"name": "data", "digest": {"md5": "cd" * 16}, "uri": f"https://u:{SECRET}@dvc/x"}],
        builder_id="b",
        invocation_id="i",
        started_on="s",
        finished_on="f",
    )
    assert SECRET not in json.dumps(stmt)
    assert stmt["subject"][0]["digest"]["sha256"] == "ab" * 32
