"""DVC operations the release stages share: record a dataset, push it, and re-hash it as DVC does.

`tasks.snapshot` tracks and pushes with these; scheduled retraining (`flows.retrain`) hashes
the current data with `dvc_md5` to tell whether it changed. A remote that cannot be written
or reached is `UnavailableError` (exit 3), not bad input: the same command works once the
remote is back. Which remote, and how its objects are found again, is `attestflow.dvc_remote`.

DVC's own copying costs more than the bytes: `dvc add` and `dvc push` each move every file
through several layers of Python per file (~0.35 ms each, 3.5 s per 10,000 files before any
byte is written). The snapshot therefore puts the objects in place itself, where DVC would put
them (its object database says where), and leaves DVC to record what is there: `fill_cache`
copies each new file into DVC's cache with one ``sendfile`` before ``dvc add``, and
`link_push` adds the objects to a local remote on the same file system as links of the cache's
files (a reflink where the file system has them, else a hardlink), since an object's bytes are
its name and never change; both are left read-only, as DVC leaves the objects it links. Any
other remote is pushed by DVC (in parallel, ``jobs`` uploads at a time).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from attestflow.dvc_remote import DvcRemote, local_path, remote_error
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


def push(
    repo_root: Path, data_path: Path, remote: str, objects: tuple[str, dict[str, FileHashes]] | None = None
) -> str:
    """Push the data's DVC objects to `remote`; returns the remote's URL without credentials.

    With `objects` (the snapshot's md5 and its files' hashes), a local remote on the cache's
    file system gets them as links (`link_push`); any other remote, DVC's own push. A remote
    that cannot be reached or take the upload raises `UnavailableError`; one that refuses the
    credentials or cannot be configured, `BadInputError` (`remote_error`).
    """
    from dvc.repo import Repo

    with Repo(str(repo_root)) as repo:
        url = str(repo.config["remote"][remote]["url"]) if remote in repo.config["remote"] else remote
        parts = urlsplit(url)
        if parts.scheme in ("", "file") and not Path(parts.path or url).is_absolute():
            url = str((repo_root / ".dvc" / url).resolve())
        shown = redact_uri(url)
        try:
            if objects is None or not link_push(repo, url, objects[0], data_path, objects[1]):
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


PROTECTED = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
"""The mode of an object DVC protects (its ``CACHE_MODE``): read-only for everyone."""
_WORKERS = 8
"""Threads placing objects: each waits on the kernel (``sendfile``, ``link``) with the GIL released."""
_NO_LINK = (
    errno.EXDEV,
    errno.EPERM,
    errno.ENOTSUP,
    errno.EOPNOTSUPP,
    errno.ENOTTY,
    errno.EINVAL,
    errno.EMLINK,
)
"""What a file system answers when it cannot link (another device, no hardlinks, no reflinks)."""


def _objects(data_path: Path, hashes: dict[str, FileHashes]) -> dict[str, str]:
    """md5 -> one file of the data with those bytes."""
    base = data_path.parent if data_path.is_file() else data_path
    return {h.md5: os.path.join(base, rel) for rel, h in hashes.items()}


def _place(dest: str, fill: Any) -> None:
    """Create `dest` atomically with `fill(tmp)` (a temp name beside it), read-only; kept if already there."""
    if os.path.lexists(dest):
        return
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = f"{dest}.{os.getpid()}.{os.urandom(6).hex()}.tmp"
    try:
        fill(tmp)
        os.chmod(tmp, PROTECTED)
        os.replace(tmp, dest)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def fill_cache(repo: Any, data_path: Path, hashes: dict[str, FileHashes]) -> int:
    """Copy every file whose md5 DVC's cache lacks into the cache, where `dvc add` would put it; returns how many.

    `hashes` are the md5s of the bytes just read (`attestflow.hash_cache`); `dvc add` then finds
    the objects present and only records them, as it does for data it has seen before. A file
    rewritten between the hashing and this copy is the same window DVC's own add has.
    """
    odb = repo.cache.local
    todo = [(src, odb.oid_to_path(md5)) for md5, src in _objects(data_path, hashes).items()]
    todo = [(src, dest) for src, dest in todo if not os.path.lexists(dest)]

    def one(pair: tuple[str, str]) -> None:
        src, dest = pair
        _place(dest, lambda tmp: shutil.copyfile(src, tmp))

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        list(pool.map(one, todo))
    return len(todo)


def _linker(sample_src: str, sample_dest: str) -> Any:
    """`os.link`, or a reflink where this file system clones files (DVC's own first choice)."""
    from dvc_objects.fs.system import reflink

    tmp = f"{sample_dest}.{os.getpid()}.probe.tmp"
    try:
        reflink(sample_src, tmp)
        return reflink
    except OSError:
        return os.link
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def link_push(repo: Any, url: str, md5: str, data_path: Path, hashes: dict[str, FileHashes]) -> bool:
    """Add the snapshot's objects to the local remote at `url` as links of the cache's files.

    Returns False when the remote is not a local folder or not on the cache's file system, or
    the file system cannot link (then DVC pushes what is missing). Objects already in the remote
    are kept, as ``dvc push`` keeps them; any other failure to write is raised.
    """
    if local_path(url) is None:
        return False
    cache = repo.cache.local
    wanted = {m: cache.oid_to_path(m) for m in {md5, *(h.md5 for h in hashes.values())}}
    try:
        remote = DvcRemote.open(url)
        root = Path(remote.root)
        root.mkdir(parents=True, exist_ok=True)
        if os.stat(root).st_dev != os.stat(cache.path).st_dev:
            return False
        todo = [(src, remote.path(m)) for m, src in wanted.items() if not os.path.lexists(remote.path(m))]
        if not todo:
            return True
        os.makedirs(os.path.dirname(todo[0][1]), exist_ok=True)
        link = _linker(*todo[0])

        def one(pair: tuple[str, str]) -> None:
            src, dest = pair
            os.chmod(src, PROTECTED)  # the cache's file is the remote's too: neither is written in place
            _place(dest, lambda tmp: link(src, tmp))

        with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
            list(pool.map(one, todo))
    except OSError as e:
        if e.errno in _NO_LINK:
            return False
        raise
    return True
