"""The DVC remote of a release and the objects in it, reached through DVC's own filesystems.

The snapshot pushes to one remote URL, decided in one place (`release_remote_url`); `verify`'s
data check, the drift monitor and (through verify) warm start then find the snapshot's objects
the way ``dvc pull`` does: DVC turns the URL into one of its filesystems (a local folder,
``s3://``, any remote whose DVC plugin is installed) and its object database says where an md5
lives. Nothing here reads a remote's folder layout by hand.

An object counts as there only with its md5 proven: by S3's ETag where that is the md5 of a
single-part upload, else (a multipart ETag ``...-N``, a local folder, any other store) by
re-hashing its bytes as DVC does. Endpoint and credentials come from the environment
(``AWS_ENDPOINT_URL``, ``AWS_*``, which DVC's s3 filesystem reads through botocore), never from
a file attestflow writes, and every URL shown or recorded is redacted.

A remote that cannot be reached is an outage (`UnavailableError`, retried, exit 3); one that
is misconfigured (no credentials, access refused, a scheme DVC cannot open) is bad input.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from attestflow.digests import file_digest
from attestflow.errors import BadInputError, GateFailedError, UnavailableError, message_line
from attestflow.redact import redact, redact_uri

REMOTE_URL_ENV = "ATTESTFLOW_DVC_REMOTE_URL"
"""The DVC remote a release pushes to when ``snapshot.remote_url`` is not set (the stack's ``stack.env``)."""


def remote_url_setting(configured: str | None) -> str | None:
    """The remote URL set for the release: ``snapshot.remote_url``, else `REMOTE_URL_ENV`; None if neither."""
    return configured or os.environ.get(REMOTE_URL_ENV) or None


def release_remote_url(configured: str | None, repo_url: str | None, workspace_remote: Path) -> str:
    """THE DVC remote URL of a release.

    ``snapshot.remote_url``, else `REMOTE_URL_ENV`, else the URL the repo already configures
    for the remote's name, else the workspace's local folder.
    """
    return remote_url_setting(configured) or repo_url or str(workspace_remote)


def local_path(uri: str) -> Path | None:
    """The folder a ``file:`` URI or a plain path names; None for a remote store."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return Path(uri) if parts.scheme == "" else None


def _failure_kind(e: BaseException) -> str | None:
    """``misconfigured``, ``unreachable``, or None when `e` is not about reaching a remote."""
    from aiohttp import ClientError
    from botocore.exceptions import BotoCoreError, NoCredentialsError, NoRegionError, PartialCredentialsError
    from dvc.config import ConfigError
    from dvc.exceptions import FileTransferError

    credentials = (NoCredentialsError, PartialCredentialsError, NoRegionError)
    if isinstance(e, (PermissionError, ImportError, ConfigError, *credentials)):
        return "misconfigured"
    if isinstance(e, OSError | BotoCoreError | ClientError | FileTransferError):
        return "unreachable"
    return None


def remote_error(e: BaseException, where: str) -> Exception | None:
    """The error to raise for `e`, met while using the DVC remote `where`; None when it is not the remote's.

    Misconfigured (no credentials, access refused, a scheme DVC cannot open) is bad input;
    unreachable (connection refused, timeouts, a failed transfer) is an outage.
    """
    cause = redact(message_line(e))
    kind = _failure_kind(e)
    if kind == "misconfigured":
        return BadInputError(f"{where} refused the request or is misconfigured: {cause}")
    if kind == "unreachable":
        return UnavailableError(f"{where} could not be reached: {cause}")
    return None


@dataclass(frozen=True)
class Proof:
    """Whether an object is in the remote with its md5, and how that was shown or why not."""

    ok: bool
    detail: str


@dataclass(frozen=True)
class DvcRemote:
    """A DVC remote opened from its URL: DVC's filesystem for it and its md5 object database."""

    shown: str
    """The URL without credentials, for messages."""
    fs: Any
    odb: Any
    root: str

    @classmethod
    def open(cls, url: str) -> DvcRemote:
        """Open the remote at `url` as DVC would; `BadInputError` when DVC cannot open such a URL (see `remote_error`)."""
        from dvc.fs import get_cloud_fs
        from dvc_data.hashfile.db import get_odb

        shown = redact_uri(url)
        local = local_path(url)
        try:
            fs_cls, config, root = get_cloud_fs(None, url=str(local) if local is not None else url)
            fs = fs_cls(**config)
        except Exception as e:
            raise remote_error(e, f"the DVC remote {shown}") or BadInputError(
                f"DVC cannot open the remote {shown}: {redact(message_line(e))}"
            ) from None
        odb = get_odb(fs, fs.join(root, "files", "md5"), hash_name="md5", **config)
        return cls(shown, fs, odb, root)

    @property
    def is_local(self) -> bool:
        return bool(self.fs.protocol == "local")

    def path(self, md5: str) -> str:
        """Where the remote keeps the object with this md5."""
        return str(self.odb.oid_to_path(md5))

    def has(self, md5s: set[str]) -> bool:
        """Every object is in the remote (existence only); False when the remote cannot say."""
        try:
            return all(self.fs.exists([self.path(m) for m in sorted(md5s)]))
        except Exception:  # an outage or a misconfiguration: whoever needs the objects finds out why
            return False

    def prove(self, md5: str, info: dict[str, Any] | None = None) -> Proof:
        """The object `md5` is in the remote and its content has that md5 (by S3's ETag or by re-hashing)."""
        from dvc_data.hashfile.hash import file_md5
        from dvc_data.hashfile.meta import Meta

        path = self.path(md5)
        try:
            info = info or self.fs.info(path)
        except FileNotFoundError:
            return Proof(False, f"DVC object {md5} is not in the remote {self.shown}")
        if Meta.from_info(info, self.fs.protocol).etag == md5:
            return Proof(True, "by its ETag")
        if file_md5(path, self.fs) != md5:
            return Proof(False, f"DVC object {md5} in the remote {self.shown} does not have that md5")
        return Proof(True, "re-hashed")

    def check(self, md5: str) -> Proof:
        """The snapshot `md5` is in the remote with that md5; a directory snapshot with every entry's."""
        if self.is_local and not self.fs.isdir(self.root):
            return Proof(False, f"cannot reach the DVC remote {self.shown}: no such folder")
        proof = self._check_dir(md5) if md5.endswith(".dir") else self.prove(md5)
        if not proof.ok:
            return proof
        return Proof(True, f"DVC md5 {md5} is in the remote {self.shown} with that content ({proof.detail})")

    def _check_dir(self, md5: str) -> Proof:
        """The ``.dir`` listing re-hashed as it is read, then each entry proven."""
        try:
            with self.fs.open(self.path(md5), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return Proof(False, f"DVC object {md5} is not in the remote {self.shown}")
        if hashlib.md5(raw, usedforsecurity=False).hexdigest() != md5.removesuffix(".dir"):
            return Proof(False, f"DVC object {md5} in the remote {self.shown} does not have that md5")
        entries = json.loads(raw)
        infos = self.fs.info([self.path(e["md5"]) for e in entries], return_exceptions=True)
        bad = []
        for entry, info in zip(entries, infos, strict=True):
            if isinstance(info, Exception) and not isinstance(info, FileNotFoundError):
                raise info
            if not self.prove(entry["md5"], None if isinstance(info, Exception) else info).ok:
                bad.append(entry["relpath"])
        if bad:
            return Proof(
                False,
                f"{len(bad)} file(s) of the snapshot {md5} not in the remote {self.shown} with their md5, "
                f"e.g. {bad[0]}",
            )
        return Proof(True, f"listing re-hashed, its {len(entries)} file(s) each proven")

    def fetch(self, md5: str, dest: Path) -> Path:
        """Copy the object `md5` to `dest` and check that the copy has that md5.

        Not there is bad input, another md5 a failed check (exit 1), an unreachable remote an outage.
        """
        where = f"the DVC remote {self.shown}"
        try:
            self.fs.get_file(self.path(md5), str(dest))
        except FileNotFoundError:
            raise BadInputError(f"DVC object {md5} is not in {where}") from None
        except Exception as e:
            raise (remote_error(e, where) or e) from None
        if file_digest(dest, "md5").value != md5:
            dest.unlink()
            raise GateFailedError([f"DVC object {md5} in {where} does not have that md5"])
        return dest


def check_snapshot(url: str, md5: str) -> Proof:
    """The data snapshot `md5` is in the DVC remote at `url` with that md5; says why not, never raises."""
    try:
        return DvcRemote.open(url).check(md5)
    except (BadInputError, UnavailableError) as e:
        return Proof(False, str(e))
    except Exception as e:  # a check that cannot run fails, with its reason: absent evidence is not evidence
        verb = {"unreachable": "cannot reach", "misconfigured": "cannot use"}.get(
            _failure_kind(e) or "", "cannot check"
        )
        return Proof(False, f"{verb} the DVC remote {redact_uri(url)}: {redact(message_line(e))}")


def fetch_object(url: str, md5: str, dest: Path) -> Path:
    """The DVC object `md5` from the remote at `url`, copied to `dest` with its md5 checked."""
    return DvcRemote.open(url).fetch(md5, dest)
