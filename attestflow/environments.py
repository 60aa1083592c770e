"""Named environments (dev, staging, prod): each its own registry, key, audit log and rules.

The seed documents name shared credentials between development, staging and production as an
anti-pattern. An environment here is a boundary enforced by keys and evidence: each has its
own signing key, registered model, DVC remote and audit log; production takes versions only
from the environment below it (`promote_from`), trusting that environment's public keys
(`trusts`) and never its own. `configs/environments.yaml` is the one definition.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError

from attestflow.config import CanaryConfig, ReleaseConfig, describe_validation_error, load_config
from attestflow.errors import BadInputError, ConfigError
from attestflow.keys import key_id, load_public_key
from attestflow.pkcs11 import TokenKey, parse_uri
from attestflow.redact import credentials_in
from attestflow.settings import ApproveConfig, KeySpec, Settings
from attestflow.yamlfile import read_yaml

if TYPE_CHECKING:
    from attestflow.evidence_check import EnvTrust

ENV_NAME = r"^[a-z][a-z0-9_-]*$"


class EnvGates(Settings):
    """The gates an environment re-runs on a version promoted into it, on its own labelled data."""

    policy: Path
    data: Path
    """A DVC-tracked table of recent labelled data (same columns as the release data)."""


class MonitoringRequirement(Settings):
    """What "monitoring is on" means for a promotion into this environment."""

    deployment: str
    """The drift monitor's Prefect deployment, ``flow-name/deployment-name``."""
    automations: bool = True
    """Also require enabled notification automations on drift and on a canary roll-back."""


class Preconditions(Settings):
    """What must hold in an environment before a version may be promoted into it."""

    monitoring: MonitoringRequirement | None = None
    rollback_drill_days: float | None = Field(None, gt=0)
    """A rollback drill must have passed within this many days (unset: not required)."""
    min_staging_hours: float = Field(0.0, ge=0)
    """The version must have been approved in the source environment at least this long ago."""


class Environment(Settings):
    """One environment: where its versions live, who signs them, who approves, what it requires."""

    name: str = Field("", pattern=r"^$|" + ENV_NAME)
    """Filled in from the key under ``environments:``."""
    tracking_uri: str | None = None
    """MLflow tracking and registry URI; unset: the workspace's SQLite registry."""
    model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    dvc_remote: str | None = None
    """``snapshot.remote_url`` of releases into this environment; unset: as the release config says."""
    audit: str | None = None
    """``audit.location`` of this environment (each environment its own log)."""
    key: KeySpec = KeySpec()
    approve: ApproveConfig = ApproveConfig()
    alias: str = Field("champion", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    promote_from: str | None = Field(None, pattern=ENV_NAME)
    """The environment whose versions `attestflow promote --to NAME` takes; unset: releases only."""
    trusts: list[Path] = Field(default_factory=list)
    """Public keys (PEM) accepted for the source environment's signatures and evidence."""
    gates: EnvGates | None = None
    canary: CanaryConfig | None = None
    preconditions: Preconditions = Preconditions()
    require_signed_commits: bool = False
    """A protected environment: its releases must come from a commit signed by an allowed SSH key
    (``sign.require_signed_commit``)."""


class Environments(Settings):
    """The whole file: environment name -> environment."""

    environments: dict[str, Environment]


DEFAULT_PATH = Path("configs/environments.yaml")
CREDENTIAL_FIELDS = ("tracking_uri", "dvc_remote", "audit")
"""The settings of an environment that may carry a credential (in a URI's userinfo or query)."""


def load_environments(path: Path) -> Environments:
    """The environments file, validated, each environment named; a shared key or credential is refused.

    Every problem is one `ConfigError` line (exit 2) naming the file and, for a refusal, both
    environments: two environments with the same signing key (the same public key id, private
    key file, Prefect Secret block or PKCS#11 token object, or both on the workspace key), the
    same credential in a tracking URI, DVC remote or audit location, a ``promote_from`` naming
    no other environment, or an environment that trusts its own public key for incoming versions.
    """
    raw = read_yaml(path, "environments file") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with the key 'environments'")
    try:
        envs = Environments.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(str(path), e)) from None
    for name in envs.environments:
        if not re.match(ENV_NAME, name):
            raise ConfigError(f"{path}: environment name {name!r} must match {ENV_NAME}")
    named = Environments(
        environments={name: env.model_copy(update={"name": name}) for name, env in envs.environments.items()}
    )
    problem = _refusal(named)
    if problem is not None:
        raise ConfigError(f"{path}: {problem}")
    return named


def _refusal(envs: Environments) -> str | None:
    """Why these environments may not be used together, or None."""
    known = envs.environments
    for env in known.values():
        if env.promote_from == env.name:
            return f"environment {env.name} has promote_from {env.name}: an environment promotes from another"
        if env.promote_from is not None and env.promote_from not in known:
            return f"environment {env.name} promotes from {env.promote_from}, not an environment ({_names(envs)})"
        own = _trusts_own_key(env)
        if own is not None:
            return own
    for a, b in combinations(known.values(), 2):
        shared = _shared_key(a, b) or _shared_credential(a, b)
        if shared is not None:
            return f"environments {a.name} and {b.name} {shared}: each environment needs its own"
    return None


def _names(envs: Environments) -> str:
    return ", ".join(envs.environments) or "none defined"


def _resolved(path: Path | None) -> Path | None:
    return None if path is None else path.expanduser().resolve()


def _public_key_id(path: Path | None, env: str) -> str | None:
    """The key id of a public key file that exists (None when unset or not made yet)."""
    if path is None or not path.is_file():
        return None
    try:
        return key_id(load_public_key(path))
    except BadInputError as e:
        raise ConfigError(f"environment {env}: key.public_key: {e}") from None


def _pkcs11_object(uri: str | None) -> TokenKey | None:
    """The token and object a PKCS#11 URI names (`attestflow.pkcs11.parse_uri`: RFC 7512, percent-decoded)."""
    return None if uri is None else parse_uri(uri)


def _shared_key(a: Environment, b: Environment) -> str | None:
    """How `a` and `b` share a signing key, or None."""
    ka, kb = a.key, b.key
    if ka == kb == KeySpec():
        return "both sign with the workspace key (no key: set)"
    same = [
        ("private_key file", _resolved(ka.private_key), _resolved(kb.private_key)),
        ("public_key file", _resolved(ka.public_key), _resolved(kb.public_key)),
        ("Prefect Secret block", ka.secret_block, kb.secret_block),
        ("PKCS#11 token object", _pkcs11_object(ka.pkcs11_uri), _pkcs11_object(kb.pkcs11_uri)),
        ("public key id", _public_key_id(ka.public_key, a.name), _public_key_id(kb.public_key, b.name)),
    ]
    for what, x, y in same:
        if x is not None and x == y:
            return f"share a signing key (the same {what})"
    return None


def _credentials(env: Environment) -> Iterator[tuple[str, str]]:
    """(setting, credential) for each credential in the environment's URIs."""
    for field in CREDENTIAL_FIELDS:
        value = getattr(env, field)
        for secret in credentials_in(value or ""):
            yield field, secret


def _shared_credential(a: Environment, b: Environment) -> str | None:
    """Which settings of `a` and `b` carry the same credential, or None (the credential is not shown)."""
    theirs = dict((secret, field) for field, secret in _credentials(b))
    for field, secret in _credentials(a):
        if secret in theirs:
            return f"share a credential ({field} of {a.name} and {theirs[secret]} of {b.name})"
    return None


def _trusts_own_key(env: Environment) -> str | None:
    """Why `env` trusts its own public key for incoming promotions, or None."""
    own_path, own_id = _resolved(env.key.public_key), _public_key_id(env.key.public_key, env.name)
    for trusted in env.trusts:
        if _resolved(trusted) == own_path or (
            own_id is not None and _public_key_id(trusted, env.name) == own_id
        ):
            return (
                f"environment {env.name} trusts its own public key ({trusted}) for incoming versions: "
                "trust only the keys of the environment it promotes from"
            )
    return None


def get_environment(envs: Environments, name: str) -> Environment:
    """The environment `name`; an unknown name is bad input listing the known ones."""
    env = envs.environments.get(name)
    if env is None:
        raise BadInputError(f"no environment {name!r} (known: {_names(envs)})")
    return env


def apply_environment(cfg: ReleaseConfig, env: Environment) -> ReleaseConfig:
    """`cfg` releasing into `env`: its model name, registry, DVC remote, audit log, key, approval, alias.

    Settings the environment leaves unset (null, or not written) keep the release config's;
    a key it names replaces all of ``sign``'s key fields, so that no other private half lingers.
    """
    raw: dict[str, Any] = cfg.model_dump()
    raw["model_name"], raw["environment"] = env.model_name, env.name
    if env.tracking_uri is not None:
        raw["register"]["tracking_uri"] = env.tracking_uri
    if env.dvc_remote is not None:
        raw["snapshot"]["remote_url"] = env.dvc_remote
    if env.audit is not None:
        raw["audit"]["location"] = env.audit
    if env.key != KeySpec():
        raw["sign"].update(env.key.model_dump())
    if "approve" in env.model_fields_set:
        raw["approve"] = env.approve.model_dump()
    if "alias" in env.model_fields_set:
        raw["promote"]["alias"] = env.alias
    if env.require_signed_commits:
        raw["sign"]["require_signed_commit"] = True
    if env.canary is not None:
        raw["canary"].update(env.canary.model_dump(include=env.canary.model_fields_set))
    try:
        return ReleaseConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(f"environment {env.name}", e)) from None


def environment_trust(envs: Environments, name: str) -> EnvTrust | None:
    """The keys that verify versions promoted into `name`; None for an environment without `promote_from`."""
    from attestflow.evidence_check import EnvTrust

    env = get_environment(envs, name)
    if env.promote_from is None:
        return None
    if env.key.public_key is None:
        raise ConfigError(f"environment {name} promotes from {env.promote_from} but names no key.public_key")
    source = get_environment(envs, env.promote_from).key.public_key
    trusted = tuple(env.trusts) or ((source,) if source is not None else ())
    if not trusted:
        raise ConfigError(f"environment {name} trusts no key of {env.promote_from} (set trusts)")
    return EnvTrust(environment=name, key=env.key.public_key, source_keys=trusted)


def trust_in(environment: str | None, environments_path: Path | str | None = None) -> EnvTrust | None:
    """`environment_trust` of `environment` in the file at `environments_path`; None without an environment."""
    if environment is None:
        return None
    return environment_trust(load_environments(Path(environments_path or DEFAULT_PATH)), environment)


def release_config(
    config_path: Path | str,
    overrides: list[str] | None = None,
    environment: str | None = None,
    environments_path: Path | str | None = None,
) -> ReleaseConfig:
    """The release config at `config_path` with `overrides`, applied to `environment` when one is named.

    The config itself may not name an environment: a name without the environment's key, registry
    and rules applied would label a release as something it is not.
    """
    cfg = load_config(config_path, overrides)
    if cfg.environment is not None:
        raise ConfigError(
            f"{config_path}: environment {cfg.environment!r} is chosen with --env (the environments "
            "file applies it), not in the release config"
        )
    if environment is None:
        return cfg
    envs = load_environments(Path(environments_path or DEFAULT_PATH))
    return apply_environment(cfg, get_environment(envs, environment))
