"""Environments: each one's own key, credentials and trust, refused when shared, and applied to a release."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from attestflow.config import load_config
from attestflow.environments import (
    apply_environment,
    environment_trust,
    get_environment,
    load_environments,
)
from attestflow.errors import BadInputError, ConfigError
from attestflow.evidence_check import EnvTrust
from attestflow.keys import ensure_keypair
from attestflow.settings import ApproveConfig
from flows.cli import app

ROOT = Path(__file__).resolve().parents[2]


def _envs(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """dev, staging and prod, each with its own key pair in `tmp_path`; prod trusts staging's."""
    raw: dict[str, dict[str, Any]] = {}
    for env in ("dev", "staging", "prod"):
        pair = ensure_keypair(tmp_path / env)
        raw[env] = {
            "model_name": f"credit-{env}",
            "audit": str(tmp_path / env / "audit"),
            "key": {"private_key": str(pair.private_key), "public_key": str(pair.public_key)},
        }
    raw["prod"].update(
        promote_from="staging",
        trusts=[raw["staging"]["key"]["public_key"]],
        approve={"mode": "human", "approvers": ["alice", "bob"], "required": 2},
        alias="serving",
        tracking_uri="http://mlflow.prod:5000",
        dvc_remote="s3://prod-data/dvc",
        canary={"max_disagreement": 0.1},
    )
    return raw


def _write(tmp_path: Path, raw: dict[str, dict[str, Any]]) -> Path:
    path = tmp_path / "environments.yaml"
    path.write_text(yaml.safe_dump({"environments": raw}, sort_keys=False))
    return path


def _refused(tmp_path: Path, raw: dict[str, dict[str, Any]]) -> str:
    with pytest.raises(ConfigError) as e:
        load_environments(_write(tmp_path, raw))
    return str(e.value)


def test_the_bundled_environments_file_loads_and_names_each_environment() -> None:
    envs = load_environments(ROOT / "configs/environments.yaml")
    assert {n: e.name for n, e in envs.environments.items()} == {
        "dev": "dev",
        "staging": "staging",
        "prod": "prod",
    }
    prod = envs.environments["prod"]
    assert prod.promote_from == "staging" and prod.key.pkcs11_uri and prod.approve.mode == "human"
    assert prod.gates is not None and prod.gates.data == Path("data/prod-recent.csv")


def test_a_private_key_file_in_two_environments_is_refused_naming_both(tmp_path: Path) -> None:
    raw = _envs(tmp_path)
    raw["staging"]["key"]["private_key"] = raw["dev"]["key"]["private_key"]
    said = _refused(tmp_path, raw)
    assert "dev and staging share a signing key (the same private_key file)" in said


def test_the_same_public_key_under_another_file_name_is_refused(tmp_path: Path) -> None:
    raw = _envs(tmp_path)
    copy = tmp_path / "copy.pub.pem"
    shutil.copy(raw["dev"]["key"]["public_key"], copy)
    raw["staging"]["key"] = {"private_key": str(tmp_path / "other.pem"), "public_key": str(copy)}
    assert "dev and staging share a signing key (the same public key id)" in _refused(tmp_path, raw)


def test_the_same_prefect_secret_block_is_refused(tmp_path: Path) -> None:
    raw = _envs(tmp_path)
    for env in ("dev", "prod"):
        raw[env]["key"] = {"secret_block": "signing-key", "public_key": str(tmp_path / f"{env}.pub.pem")}
    assert "dev and prod share a signing key (the same Prefect Secret block)" in _refused(tmp_path, raw)


def test_the_same_pkcs11_token_object_is_refused_however_the_uri_is_written(tmp_path: Path) -> None:
    raw = _envs(tmp_path)
    raw["staging"]["key"] = {
        "pkcs11_uri": "pkcs11:token=hsm;object=signing",
        "public_key": str(tmp_path / "a.pub.pem"),
    }
    raw["prod"]["key"] = {
        "pkcs11_uri": "pkcs11:object=sign%69ng;token=hsm",
        "public_key": str(tmp_path / "b.pub.pem"),
    }
    assert "staging and prod share a signing key (the same PKCS#11 token object)" in _refused(tmp_path, raw)
    raw["prod"]["key"]["pkcs11_uri"] = "pkcs11:token=hsm;object=prod-signing"
    load_environments(_write(tmp_path, raw))
    # The module and the PIN come from the environment only: a URI carrying either is refused.
    raw["prod"]["key"]["pkcs11_uri"] = "pkcs11:token=hsm;object=prod-signing?module-path=/tmp/evil.so"
    assert "has query attributes" in _refused(tmp_path, raw)


def test_two_environments_on_the_workspace_key_are_refused(tmp_path: Path) -> None:
    raw = _envs(tmp_path)
    del raw["dev"]["key"], raw["staging"]["key"]
    assert "dev and staging both sign with the workspace key" in _refused(tmp_path, raw)


@pytest.mark.parametrize(
    ("dev", "staging", "where"),
    [
        (
            {"tracking_uri": "postgresql://ml:hunter22@db/mlflow"},  # pragma: allowlist secret
            {"tracking_uri": "postgresql://ml:hunter22@db/mlflow"},  # pragma: allowlist secret
            "tracking_uri of dev and tracking_uri of staging",
        ),
        (
            {"dvc_remote": "https://dvc.example/store?token=s3cr3t-token"},
            {"tracking_uri": "https://mlflow.example/?token=s3cr3t-token"},
            "dvc_remote of dev and tracking_uri of staging",
        ),
        (
            {"audit": "s3://audit/dev/?X-Amz-Credential=AKIAEXAMPLE"},
            {"dvc_remote": "s3://data/?x-amz-credential=AKIAEXAMPLE"},
            "audit of dev and dvc_remote of staging",
        ),
    ],
)
def test_a_credential_in_two_environments_is_refused_without_showing_it(
    tmp_path: Path, dev: dict[str, str], staging: dict[str, str], where: str
) -> None:
    raw = _envs(tmp_path)
    raw["dev"].update(dev)
    raw["staging"].update(staging)
    said = _refused(tmp_path, raw)
    assert f"dev and staging share a credential ({where})" in said
    assert "hunter22" not in said and "s3cr3t" not in said and "AKIAEXAMPLE" not in said


def test_uris_without_credentials_may_be_shared(tmp_path: Path) -> None:
    raw = _envs(tmp_path)
    for env in ("dev", "staging"):
        raw[env].update(tracking_uri="http://mlflow:5000", dvc_remote="s3://bucket/dvc?region=eu")
    load_environments(_write(tmp_path, raw))


def test_an_environment_that_trusts_its_own_key_is_refused_by_path_and_by_key_id(tmp_path: Path) -> None:
    raw = _envs(tmp_path)
    raw["prod"]["trusts"].append(raw["prod"]["key"]["public_key"])
    assert "environment prod trusts its own public key" in _refused(tmp_path, raw)
    copy = tmp_path / "looks-like-staging.pub.pem"
    shutil.copy(raw["prod"]["key"]["public_key"], copy)
    raw["prod"]["trusts"] = [str(copy)]
    assert "environment prod trusts its own public key" in _refused(tmp_path, raw)


def test_promote_from_must_name_another_known_environment(tmp_path: Path) -> None:
    raw = _envs(tmp_path)
    raw["prod"]["promote_from"] = "qa"
    assert "prod promotes from qa, not an environment (dev, staging, prod)" in _refused(tmp_path, raw)
    raw["prod"]["promote_from"] = "prod"
    assert "prod has promote_from prod" in _refused(tmp_path, raw)


def test_a_misspelt_key_or_bad_name_is_one_line_naming_the_file(tmp_path: Path) -> None:
    raw = _envs(tmp_path)
    raw["dev"]["modelname"] = "x"
    assert "unknown key 'environments.dev.modelname'" in _refused(tmp_path, raw)
    del raw["dev"]["modelname"]
    raw["Dev"] = raw.pop("dev")
    assert "environment name 'Dev'" in _refused(tmp_path, raw)


def test_an_unknown_environment_name_lists_the_known_ones(tmp_path: Path) -> None:
    envs = load_environments(_write(tmp_path, _envs(tmp_path)))
    with pytest.raises(BadInputError, match=r"no environment 'qa' \(known: dev, staging, prod\)"):
        get_environment(envs, "qa")


def test_applying_an_environment_sets_its_model_registry_remote_audit_key_approval_alias_and_canary(
    tmp_path: Path,
) -> None:
    envs = load_environments(_write(tmp_path, _envs(tmp_path)))
    cfg = load_config(ROOT / "configs/release.yaml")
    prod = apply_environment(cfg, envs.environments["prod"])
    key = envs.environments["prod"].key
    assert prod.environment == "prod" and prod.model_name == "credit-prod"
    assert prod.register.tracking_uri == "http://mlflow.prod:5000"
    assert prod.snapshot.remote_url == "s3://prod-data/dvc"
    assert prod.audit.location == str(tmp_path / "prod" / "audit")
    assert (prod.sign.private_key, prod.sign.public_key) == (key.private_key, key.public_key)
    assert prod.approve.required == 2 and prod.approve.approvers == ["user:alice", "user:bob"]
    assert prod.promote.alias == "serving"
    assert prod.canary.max_disagreement == 0.1 and prod.canary.rows == cfg.canary.rows
    assert prod.fine_tune == cfg.fine_tune and prod.sign.builder_id == cfg.sign.builder_id
    dev = apply_environment(cfg, envs.environments["dev"])
    assert dev.register.tracking_uri == cfg.register.tracking_uri and dev.approve == cfg.approve
    assert dev.promote.alias == cfg.promote.alias and dev.canary == cfg.canary


def test_a_release_config_may_not_name_an_environment_it_does_not_apply() -> None:
    from attestflow.environments import release_config

    with pytest.raises(ConfigError, match="'prod' is chosen with --env"):
        release_config(ROOT / "configs/release.yaml", ["environment=prod"])


def test_a_pkcs11_key_replaces_the_configs_key_file(tmp_path: Path) -> None:
    raw = _envs(tmp_path)
    raw["prod"]["key"] = {"pkcs11_uri": "pkcs11:token=t;object=o", "public_key": str(tmp_path / "p.pub.pem")}
    envs = load_environments(_write(tmp_path, raw))
    cfg = load_config(ROOT / "configs/release.yaml", [f"sign.private_key={tmp_path / 'x.pem'}"])
    applied = apply_environment(cfg, envs.environments["prod"])
    assert applied.sign.private_key is None and applied.sign.pkcs11_uri == "pkcs11:token=t;object=o"


def test_the_trust_of_an_environment_is_its_key_and_the_keys_it_trusts_for_its_source(tmp_path: Path) -> None:
    raw = _envs(tmp_path)
    envs = load_environments(_write(tmp_path, raw))
    assert environment_trust(envs, "prod") == EnvTrust(
        "prod", Path(raw["prod"]["key"]["public_key"]), (Path(raw["staging"]["key"]["public_key"]),)
    )
    assert environment_trust(envs, "staging") is None


def test_required_approvals_are_at_least_one_and_at_most_the_approvers() -> None:
    assert ApproveConfig(mode="human", approvers=["a", "b"], required=2).required == 2
    with pytest.raises(ValueError, match="required is 3, more than the 2 approvers"):
        ApproveConfig(mode="human", approvers=["a", "b"], required=3)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        ApproveConfig(mode="human", approvers=["a"], required=0)


def test_the_cli_refuses_a_shared_key_with_exit_2_naming_both_environments(tmp_path: Path) -> None:
    raw = _envs(tmp_path)
    raw["prod"]["key"]["private_key"] = raw["staging"]["key"]["private_key"]
    path = _write(tmp_path, raw)
    config = str(ROOT / "configs/release.yaml")
    for args in (
        ["run", "--config", config, "--env", "staging", "--environments", str(path)],
        ["audit", "show", "--config", config, "--env", "prod", "--environments", str(path)],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "staging and prod share a signing key" in result.output and "Traceback" not in result.output


def test_the_cli_refuses_an_unknown_environment_and_environments_without_env(tmp_path: Path) -> None:
    path = _write(tmp_path, _envs(tmp_path))
    config = str(ROOT / "configs/release.yaml")
    unknown = CliRunner().invoke(
        app, ["lineage", "x", "--config", config, "--env", "qa", "--environments", str(path)]
    )
    assert unknown.exit_code == 2 and "no environment 'qa'" in unknown.output, unknown.output
    alone = CliRunner().invoke(
        app, ["rollback", "--reason", "r", "--config", config, "--environments", str(path)]
    )
    assert alone.exit_code == 2 and "give --env too" in alone.output, alone.output
