"""DVC operations the release stages share: record a dataset, push it, and re-hash it as DVC does.

`tasks.snapshot` tracks and pushes with these; scheduled retraining (`flows.retrain`) hashes
the current data with `dvc_md5` to tell whether it changed. A remote that cannot be written
or reached is `UnavailableError` (exit 3), not bad input: the same command works once the
remote is back. Which remote, and how its objects are found again, is `attestflow.dvc_remote`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from attestflow.dvc_remote import remote_error
from attestflow.errors import BadInputError
from attestflow.hash_cache import FileHashes
from attestflow.redact import redact_uri


def dvc_tree_md5(hashes: dict[str, FileHashes], is_dir: bool) -> str:
    """The md5 DVC gives these files: the file's md5, or for a folder the md5 of its ``.dir`` listing.

    Only used to tell that data is unchanged; the value recorded is always the one DVC wrote.
    """
    if not is_dir:
        return next(iter(hashes.values())).md5
    listing = [{"md5": h.md5, "relpath": rel} for rel, h in sorted(hashes.items())]
    return (
        hashlib.md5(json.dumps(listing, sort_keys=True).encode(), usedforsecurity=False).hexdigest() + ".dir"
    )


@contextmanager
def in_dir(path: Path) -> Iterator[None]:
    """Run the block with `path` as the working directory (DVC resolves some paths against it)."""
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _lock_entry(lock_file: Path, rel: str) -> dict[str, Any] | None:
    lock = yaml.safe_load(lock_file.read_text()) or {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") == rel:
                return dict(out)
    return None


def _dvc_file_entry(dvc_file: Path) -> dict[str, Any]:
    data = yaml.safe_load(dvc_file.read_text()) or {}
    return dict(data["outs"][0])


def ensure_remote(repo: Any, name: str, url: str) -> None:
    """Make `name` a DVC remote at `url` in the repo's local (untracked) config."""
    with repo.config.edit("local") as conf:
        conf["remote"][name] = {"url": url}


def track(repo_root: Path, data_path: Path) -> tuple[str, Path]:
    """Record the data in DVC; returns (DVC md5, the file that records it)."""
    from dvc.repo import Repo

    rel = os.path.relpath(data_path, repo_root)
    with Repo(str(repo_root)) as repo:
        outs = [o for o in repo.index.outs if o.fs_path == str(data_path)]
        stage_out = next((o for o in outs if o.stage.is_data_source is False), None)
        if stage_out is not None:
            repo.commit(stage_out.stage.addressing, force=True)
            lock_file = repo_root / "dvc.lock"
            entry = _lock_entry(lock_file, Path(rel).as_posix())
            if entry is None:
                raise BadInputError(f"{rel} is a dvc.yaml output but has no dvc.lock entry")
            return str(entry["md5"]), lock_file
        repo.add(rel)
    dvc_file = data_path.with_name(data_path.name + ".dvc")
    return str(_dvc_file_entry(dvc_file)["md5"]), dvc_file


def push(repo_root: Path, data_path: Path, remote: str) -> str:
    """Push the data's DVC objects to `remote`; returns the remote's URL without credentials.

    A remote that cannot be reached or take the upload raises `UnavailableError`; one that
    refuses the credentials or cannot be configured, `BadInputError` (`remote_error`).
    """
    from dvc.repo import Repo

    with Repo(str(repo_root)) as repo:
        url = str(repo.config["remote"][remote]["url"]) if remote in repo.config["remote"] else remote
        parts = urlsplit(url)
        if parts.scheme in ("", "file") and not Path(parts.path or url).is_absolute():
            url = str((repo_root / ".dvc" / url).resolve())
        shown = redact_uri(url)
        try:
            repo.push(targets=[str(data_path)], remote=remote)
        except Exception as e:  # DVC logs each failed file; its error only counts them
            err = remote_error(e, f"the DVC remote {remote!r} ({shown})")
            if err is None:
                raise
            raise err from e
    return shown


def seed_dvc_state(repo: Any, data_path: Path, hashes: dict[str, FileHashes]) -> None:
    """Tell DVC's state database the md5 of every file we just read, so `dvc add` does not read them again."""
    from dvc_data.hashfile.hash_info import HashInfo

    base = data_path.parent if data_path.is_file() else data_path
    repo.state.save_many(
        ((os.path.join(base, rel), HashInfo("md5", h.md5), None) for rel, h in hashes.items()),
        repo.fs,
    )


def recorded_md5(repo_root: Path, data_path: Path) -> tuple[str, Path] | None:
    """The md5 DVC last wrote for `data_path` (its .dvc file or dvc.lock entry), read without DVC."""
    dvc_file = data_path.with_name(data_path.name + ".dvc")
    lock_file = repo_root / "dvc.lock"
    try:
        if dvc_file.is_file():
            return str(_dvc_file_entry(dvc_file)["md5"]), dvc_file
        if lock_file.is_file():
            entry = _lock_entry(lock_file, Path(os.path.relpath(data_path, repo_root)).as_posix())
            return (str(entry["md5"]), lock_file) if entry and "md5" in entry else None
    except (KeyError, IndexError, TypeError, yaml.YAMLError):
        return None
    return None


def dvc_config_digest(repo_root: Path) -> str | None:
    """SHA-256 of the repo's DVC config files (None when this is not a DVC repo)."""
    if not (repo_root / ".dvc").is_dir():
        return None
    h = hashlib.sha256()
    for name in ("config", "config.local"):
        f = repo_root / ".dvc" / name
        h.update(f.read_bytes() if f.is_file() else b"")
        h.update(b"\0")
    return h.hexdigest()


def dvc_md5(repo_root: Path, data_path: Path) -> str:
    """DVC's md5 of the data as it is now, without tracking, caching or pushing anything.

    Uses DVC's own hashing and its stat cache, so an unchanged snapshot re-checks fast.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc_data.hashfile.build import build

    repo_root, data_path = repo_root.resolve(), data_path.resolve()
    if not data_path.exists():
        raise BadInputError(f"data not found: {data_path}")
    try:
        with in_dir(repo_root), Repo(str(repo_root)) as repo:
            rel = os.path.relpath(data_path, repo_root)
            _, _, obj = build(repo.cache.local, rel, repo.fs, "md5", dry_run=True, ignore=repo.dvcignore)
    except DvcException as e:
        raise BadInputError(f"DVC could not hash {data_path}: {e}") from None
    return str(obj.hash_info.value)
