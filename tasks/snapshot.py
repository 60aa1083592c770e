"""Stage `snapshot`: pin the dataset with DVC, push it to the DVC remote, hash every file.

Two digests come out, for two readers: DVC's own md5 (the value in dvc.lock or the .dvc
file), which `dvc pull`/`dvc status` understand, and a per-file SHA-256 manifest, which
provenance and verification use because md5 is not collision resistant.

A dataset that is the output of a ``dvc.yaml`` stage is committed to that stage's lock
entry; any other path is tracked with ``dvc add``.

Each file is read once for both digests, and the result is kept in the workspace keyed by the
file's stat (`HashCache`), so an unchanged snapshot is re-checked without reading the data or
running DVC (only asking the remote, through DVC's filesystem, that its objects are there). The
remote is `attestflow.dvc_remote.release_remote_url`'s. A DVC remote that cannot be reached is
`UnavailableError` (exit 3, retried), not bad input; one that refuses the credentials is bad input.
Nothing is recorded for a push that failed: the workspace remembers a snapshot only once pushed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task

from attestflow.config import SnapshotConfig
from attestflow.digests import Digest, json_digest
from attestflow.dvc import (
    dvc_config_digest,
    dvc_tree_md5,
    ensure_remote,
    fill_cache,
    in_dir,
    push,
    recorded_md5,
    seed_dvc_state,
    track,
)
from attestflow.dvc_remote import DvcRemote, release_remote_url, remote_url_setting
from attestflow.errors import BadInputError
from attestflow.hash_cache import FileHashes, HashCache
from attestflow.records import SnapshotRecord
from attestflow.redact import redact
from attestflow.workspace import Workspace


def snapshot(cfg: SnapshotConfig, data_path: Path, ws: Workspace, out_dir: Path) -> SnapshotRecord:
    """Track `data_path` with DVC, push it, and write its SHA-256 manifest to `out_dir`.

    Every file is read once, for its md5 and SHA-256 together; DVC is then told those md5s
    instead of reading the data again. When the data is unchanged since the last snapshot
    (DVC's recorded md5 is what the files hash to, the DVC config and remote setting are the
    same, and the remote has every object), DVC is not run at all.
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
    setting = remote_url_setting(cfg.remote_url)
    done = {
        "dvc_md5": current,
        "dvc_config": dvc_config_digest(repo_root),
        "remote": cfg.remote if cfg.push else None,
        "remote_url_setting": redact(setting) if setting else None,  # kept in the workspace
    }
    last = cache.last
    unchanged = (
        recorded is not None
        and recorded[0] == current
        and done["dvc_config"] is not None
        and {k: last.get(k) for k in done} == done
        and (not cfg.push or _pushed(last.get("remote_url"), current, hashes))
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
            "dvc_config": dvc_config_digest(repo_root),
            "remote_url": remote_url,
        }
        cache.save()

    manifest = {rel: h.sha256 for rel, h in hashes.items()}
    manifest_path = _write_manifest(out_dir / "data_manifest.json", {"dvc_md5": md5, "files": manifest})
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


def _write_manifest(path: Path, manifest: dict[str, Any]) -> Path:
    """`write_json` of the manifest, redacted as one text: per string, 10,000 files' redaction took 0.5 s."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(redact(json.dumps(manifest, indent=2, sort_keys=True)) + "\n")
    tmp.replace(path)
    return path


def _pushed(remote_url: str | None, md5: str, hashes: dict[str, FileHashes]) -> bool:
    """Every object of the snapshot is in the remote it was last pushed to, as DVC's filesystem sees it."""
    if not remote_url:
        return False
    try:
        remote = DvcRemote.open(remote_url)
    except BadInputError:
        return False
    return remote.has({md5, *(h.md5 for h in hashes.values())})


def _snapshot_with_dvc(
    cfg: SnapshotConfig, repo_root: Path, data_path: Path, ws: Workspace, hashes: dict[str, FileHashes]
) -> tuple[str, Path, str | None]:
    """`dvc add` (or commit) and `dvc push`; returns (DVC md5, the file that records it, remote URL)."""
    from dvc.exceptions import DvcException, NotDvcRepoError
    from dvc.repo import Repo

    try:
        with in_dir(repo_root):
            with Repo(str(repo_root)) as repo:
                configured = (repo.config.get("remote", {}).get(cfg.remote) or {}).get("url")
                url = release_remote_url(cfg.remote_url, configured, ws.dvc_remote)
                if cfg.push and url != configured:
                    ensure_remote(repo, cfg.remote, url)
                seed_dvc_state(repo, data_path, hashes)
                fill_cache(repo, data_path, hashes)
            md5, dvc_file = track(repo_root, data_path)
            remote_url = push(repo_root, data_path, cfg.remote, (md5, hashes)) if cfg.push else None
    except NotDvcRepoError:
        raise BadInputError(f"{repo_root} is not a DVC repository (run `dvc init` there)") from None
    except DvcException as e:
        raise BadInputError(f"DVC could not snapshot {data_path}: {e}") from None
    return md5, dvc_file, remote_url


snapshot_task = task(name="snapshot")(snapshot)
