"""Stage `snapshot`: pin the dataset with DVC, push it to the DVC remote, hash every file.

Two digests come out, for two readers: DVC's own md5 (the value in dvc.lock or the .dvc
file), which `dvc pull`/`dvc status` understand, and a per-file SHA-256 manifest, which
provenance and verification use because md5 is not collision resistant.

A dataset that is the output of a ``dvc.yaml`` stage is committed to that stage's lock
entry; any other path is tracked with ``dvc add``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from prefect import task

from attestflow.config import SnapshotConfig
from attestflow.digests import Digest, file_digest, json_digest
from attestflow.errors import BadInputError
from attestflow.records import SnapshotRecord, write_json
from attestflow.workspace import Workspace, redact_uri


def _sha256(path: Path) -> str:
    """Hex SHA-256 of one file, for the thread pool."""
    return file_digest(path).value


def _files(folder: Path) -> list[Path]:
    """Every file under `folder` (symlinked files too, symlinked folders not), sorted.

    The same set as ``rglob("*")`` filtered by ``is_file()``, but the entry types come from
    the directory listing instead of one ``stat`` per entry.
    """
    found: list[Path] = []
    stack = [folder]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file():
                    found.append(Path(entry.path))
    return sorted(found)


def sha256_manifest(data_path: Path, workers: int | None = None) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `data_path` (or of the file itself).

    Files are hashed on a thread pool: hashlib releases the GIL, so this runs at disk speed.
    Each thread reads into one buffer it keeps, so memory stays flat at any data size.
    """
    if data_path.is_file():
        return {data_path.name: _sha256(data_path)}
    files = _files(data_path)
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) + 2)) as pool:
        digests = list(pool.map(_sha256, files))
    return {p.relative_to(data_path).as_posix(): d for p, d in zip(files, digests, strict=True)}


@contextmanager
def _in_dir(path: Path) -> Iterator[None]:
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
    """Push the data's DVC objects to `remote`; returns the remote's URL without credentials."""
    from dvc.repo import Repo

    with Repo(str(repo_root)) as repo:
        repo.push(targets=[str(data_path)], remote=remote)
        url = str(repo.config["remote"][remote]["url"])
    parts = urlsplit(url)
    if parts.scheme in ("", "file") and not Path(parts.path or url).is_absolute():
        url = str((repo_root / ".dvc" / url).resolve())
    return redact_uri(url) if parts.scheme not in ("", "file") else url


def snapshot(cfg: SnapshotConfig, data_path: Path, ws: Workspace, out_dir: Path) -> SnapshotRecord:
    """Track `data_path` with DVC, push it, and write its SHA-256 manifest to `out_dir`."""
    from dvc.exceptions import DvcException, NotDvcRepoError

    repo_root = cfg.repo.resolve()
    data_path = data_path.resolve()
    if not data_path.exists():
        raise BadInputError(f"data not found: {data_path}")
    if not data_path.is_relative_to(repo_root):
        raise BadInputError(f"data {data_path} is outside the DVC repo {repo_root}")
    try:
        with _in_dir(repo_root):
            if cfg.push:
                from dvc.repo import Repo

                with Repo(str(repo_root)) as repo:
                    if cfg.remote_url or cfg.remote not in repo.config.get("remote", {}):
                        ensure_remote(repo, cfg.remote, cfg.remote_url or str(ws.dvc_remote))
            md5, dvc_file = track(repo_root, data_path)
            remote_url = push(repo_root, data_path, cfg.remote) if cfg.push else None
    except NotDvcRepoError:
        raise BadInputError(f"{repo_root} is not a DVC repository (run `dvc init` there)") from None
    except DvcException as e:
        raise BadInputError(f"DVC could not snapshot {data_path}: {e}") from None

    manifest = sha256_manifest(data_path)
    manifest_path = write_json(out_dir / "data_manifest.json", {"dvc_md5": md5, "files": manifest})
    size = (
        data_path.stat().st_size
        if data_path.is_file()
        else sum(p.stat().st_size for p in data_path.rglob("*") if p.is_file())
    )
    return SnapshotRecord(
        data_path=data_path,
        dvc_md5=md5,
        dvc_file=dvc_file,
        manifest_path=manifest_path,
        manifest_digest=Digest("sha256", json_digest(manifest).value, "canonical JSON of the file manifest"),
        files=len(manifest),
        size_bytes=size,
        remote=cfg.remote if cfg.push else None,
        remote_url=remote_url,
    )


snapshot_task = task(name="snapshot")(snapshot)


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
        with _in_dir(repo_root), Repo(str(repo_root)) as repo:
            rel = os.path.relpath(data_path, repo_root)
            _, _, obj = build(repo.cache.local, rel, repo.fs, "md5", dry_run=True, ignore=repo.dvcignore)
    except DvcException as e:
        raise BadInputError(f"DVC could not hash {data_path}: {e}") from None
    return str(obj.hash_info.value)
