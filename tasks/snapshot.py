"""Stage `snapshot`: pin the dataset with DVC, push it to the DVC remote, hash every file.

Two digests come out, for two readers: DVC's own md5 (the value in dvc.lock or the .dvc
file), which `dvc pull`/`dvc status` understand, and a per-file SHA-256 manifest, which
provenance and verification use because md5 is not collision resistant.

A dataset that is the output of a ``dvc.yaml`` stage is committed to that stage's lock
entry; any other path is tracked with ``dvc add``.

Each file is read once for both digests, and the result is kept in the workspace keyed by the
file's stat (`HashCache`), so an unchanged snapshot is re-checked without reading the data or
running DVC.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from prefect import task

from attestflow.config import SnapshotConfig
from attestflow.digests import Digest, file_digests, json_digest
from attestflow.errors import BadInputError
from attestflow.records import SnapshotRecord, write_json
from attestflow.workspace import Workspace, redact_uri


def _listing(data_path: Path) -> tuple[list[str], list[str]]:
    """The files of `data_path` (a file or a folder) and their posix paths relative to it, sorted.

    Symlinked files count, symlinked folders do not. Entry types come from the directory
    listing, and paths stay strings: with 10,000 files, pathlib alone costs a second.
    """
    if data_path.is_file():
        return [str(data_path)], [data_path.name]
    root = str(data_path)
    found: list[str] = []
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file():
                    found.append(entry.path)
    rels = sorted(f[len(root) + 1 :].replace(os.sep, "/") for f in found)
    return [os.path.join(root, r) for r in rels], rels


def _hash_many(files: list[str], algorithms: tuple[str, ...], workers: int | None) -> list[tuple[str, ...]]:
    """Hex digests of each file, one read pass per file, on a thread pool.

    hashlib releases the GIL, so this runs at disk speed; each thread reads into one buffer
    it keeps, so memory stays flat at any data size.
    """

    def one(path: str) -> tuple[str, ...]:
        return tuple(d.value for d in file_digests(path, algorithms))

    if len(files) == 1:
        return [one(files[0])]
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) + 2)) as pool:
        return list(pool.map(one, files))


def sha256_manifest(data_path: Path, workers: int | None = None) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `data_path` (or of the file itself)."""
    files, rels = _listing(data_path)
    digests = _hash_many(files, ("sha256",), workers)
    return {rel: d[0] for rel, d in zip(rels, digests, strict=True)}


@dataclass(frozen=True)
class FileHashes:
    """md5 (what DVC records) and SHA-256 (what provenance records) of one file."""

    md5: str
    sha256: str


def _stat_key(path: str) -> list[int]:
    """What says a file is unchanged without reading it: size, mtime and inode as in DVC's state, and ctime.

    ctime cannot be set back from user space, so a rewrite that restores the mtime is still seen.
    """
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class HashCache:
    """The md5 and SHA-256 of every file of one data path, keyed by each file's stat.

    A file whose size, mtime, ctime and inode are those recorded is not read again, so the
    re-check of unchanged data costs one ``stat`` per file. Also remembers the last snapshot
    that was recorded and pushed, so an unchanged one needs no DVC at all. One JSON file per
    data path under the workspace; a missing or unreadable one is an empty cache.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            raw = {}
        self.files: dict[str, list[Any]] = raw.get("files", {})
        self.last: dict[str, Any] = raw.get("snapshot", {})

    @classmethod
    def of(cls, ws: Workspace, data_path: Path) -> HashCache:
        """The cache of `data_path` in the workspace."""
        key = hashlib.sha256(str(data_path).encode()).hexdigest()[:24]
        return cls(ws.hash_cache / f"{key}.json")

    def hash(self, data_path: Path, workers: int | None = None) -> dict[str, FileHashes]:
        """Relative path -> hashes of every file, reading only files whose stat changed."""
        files, rels = _listing(data_path)
        keys = [_stat_key(p) for p in files]
        stale = [
            i for i, (rel, k) in enumerate(zip(rels, keys, strict=True)) if self.files.get(rel, [])[:4] != k
        ]
        for i, digests in zip(
            stale, _hash_many([files[i] for i in stale], ("md5", "sha256"), workers), strict=True
        ):
            self.files[rels[i]] = [*keys[i], *digests]
        if stale or len(self.files) != len(rels):
            self.files = {rel: self.files[rel] for rel in rels}
            self.save()
        return {rel: FileHashes(*self.files[rel][4:6]) for rel in rels}

    def save(self) -> None:
        """Write the cache atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"files": self.files, "snapshot": self.last}))
        tmp.replace(self.path)


def dvc_tree_md5(hashes: dict[str, FileHashes], is_dir: bool) -> str:
    """The md5 DVC gives these files: the file's md5, or for a folder the md5 of its ``.dir`` listing.

    Only used to tell that data is unchanged; the value recorded is always the one DVC wrote.
    """
    if not is_dir:
        return next(iter(hashes.values())).md5
    listing = [{"md5": h.md5, "relpath": rel} for rel, h in sorted(hashes.items())]
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"


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


def _dvc_config_digest(repo_root: Path) -> str | None:
    """SHA-256 of the repo's DVC config files (None when this is not a DVC repo)."""
    if not (repo_root / ".dvc").is_dir():
        return None
    h = hashlib.sha256()
    for name in ("config", "config.local"):
        f = repo_root / ".dvc" / name
        h.update(f.read_bytes() if f.is_file() else b"")
        h.update(b"\0")
    return h.hexdigest()


def _in_local_remote(remote_url: str, md5: str, hashes: dict[str, FileHashes]) -> bool:
    """Every object of the snapshot is in the remote, when the remote is a local folder.

    A local DVC 3 remote keeps the object with md5 ``ab12...`` at ``files/md5/ab/12...``.
    Other remotes return False: only DVC can ask them.
    """
    parts = urlsplit(remote_url)
    if parts.scheme not in ("", "file"):
        return False
    root = os.path.join(parts.path if parts.scheme else remote_url, "files", "md5")
    md5s = {md5, *(h.md5 for h in hashes.values())}
    return all(os.path.isfile(os.path.join(root, m[:2], m[2:])) for m in md5s)


def snapshot(cfg: SnapshotConfig, data_path: Path, ws: Workspace, out_dir: Path) -> SnapshotRecord:
    """Track `data_path` with DVC, push it, and write its SHA-256 manifest to `out_dir`.

    Every file is read once, for its md5 and SHA-256 together; DVC is then told those md5s
    instead of reading the data again. When the data is unchanged since the last snapshot
    (DVC's recorded md5 is what the files hash to, the DVC config is the same, and a local
    remote has every object), DVC is not run at all.
    """
    repo_root = cfg.repo.resolve()
    data_path = data_path.resolve()
    if not data_path.exists():
        raise BadInputError(f"data not found: {data_path}")
    if not data_path.is_relative_to(repo_root):
        raise BadInputError(f"data {data_path} is outside the DVC repo {repo_root}")
    cache = HashCache.of(ws, data_path)
    hashes = cache.hash(data_path)
    current = dvc_tree_md5(hashes, data_path.is_dir())
    recorded = recorded_md5(repo_root, data_path)
    done = {
        "dvc_md5": current,
        "dvc_config": _dvc_config_digest(repo_root),
        "remote": cfg.remote if cfg.push else None,
        "remote_url_setting": cfg.remote_url,
    }
    last = cache.last
    unchanged = (
        recorded is not None
        and recorded[0] == current
        and done["dvc_config"] is not None
        and {k: last.get(k) for k in done} == done
        and (not cfg.push or _in_local_remote(last.get("remote_url") or "", current, hashes))
    )
    if unchanged and recorded is not None:
        md5, dvc_file = recorded
        remote_url = last.get("remote_url") if cfg.push else None
    else:
        md5, dvc_file, remote_url = _snapshot_with_dvc(cfg, repo_root, data_path, ws, hashes)
        # After DVC ran: it may have added the remote to .dvc/config.local.
        cache.last = {
            **done,
            "dvc_md5": md5,
            "dvc_config": _dvc_config_digest(repo_root),
            "remote_url": remote_url,
        }
        cache.save()

    manifest = {rel: h.sha256 for rel, h in hashes.items()}
    manifest_path = write_json(out_dir / "data_manifest.json", {"dvc_md5": md5, "files": manifest})
    return SnapshotRecord(
        data_path=data_path,
        dvc_md5=md5,
        dvc_file=dvc_file,
        manifest_path=manifest_path,
        manifest_digest=Digest("sha256", json_digest(manifest).value, "canonical JSON of the file manifest"),
        files=len(manifest),
        size_bytes=sum(entry[0] for entry in cache.files.values()),
        remote=cfg.remote if cfg.push else None,
        remote_url=remote_url,
    )


def _snapshot_with_dvc(
    cfg: SnapshotConfig, repo_root: Path, data_path: Path, ws: Workspace, hashes: dict[str, FileHashes]
) -> tuple[str, Path, str | None]:
    """`dvc add` (or commit) and `dvc push`; returns (DVC md5, the file that records it, remote URL)."""
    from dvc.exceptions import DvcException, NotDvcRepoError
    from dvc.repo import Repo

    try:
        with _in_dir(repo_root):
            with Repo(str(repo_root)) as repo:
                if cfg.push and (cfg.remote_url or cfg.remote not in repo.config.get("remote", {})):
                    ensure_remote(repo, cfg.remote, cfg.remote_url or str(ws.dvc_remote))
                seed_dvc_state(repo, data_path, hashes)
            md5, dvc_file = track(repo_root, data_path)
            remote_url = push(repo_root, data_path, cfg.remote) if cfg.push else None
    except NotDvcRepoError:
        raise BadInputError(f"{repo_root} is not a DVC repository (run `dvc init` there)") from None
    except DvcException as e:
        raise BadInputError(f"DVC could not snapshot {data_path}: {e}") from None
    return md5, dvc_file, remote_url


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
