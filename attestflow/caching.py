"""Content-keyed caching of release stages: a re-run with unchanged inputs skips the work.

A stage's cache key is the digest of what decides its output: the stage name, the code
version, the data's DVC md5 and the stage's inputs, where each input file counts by its
content (SHA-256) and the data file by its DVC md5. Retries and timeouts do not count, nor
do run-specific inputs such as the release folder. Results are kept as JSON in the
workspace; a cached result is trusted only while every file it names still exists and
still has the digest it recorded, otherwise the stage runs again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.logging import get_logger
from pydantic import BaseModel

from attestflow.config import ReleaseConfig, StageConfig
from attestflow.digests import Digest, file_digest

RUN_SPECIFIC = ("out_dir", "run_tags")
"""Parameters that name this run (its release folder, its tags), never part of a key."""
STAGE_SETTINGS = set(StageConfig.model_fields)
"""Retries, retry delay and timeout: they change how a stage is run, not what it returns."""
TRAINING_SECTIONS = {"workspace", "model_name", "data", "model", "fine_tune", "register"}
"""The sections of a release config that the training stage's result depends on."""
MAX_STALE = 20
"""How many stale entries in a row a key may skip before caching is given up for it."""

log = get_logger("attestflow.caching")


def _canonical(value: Any, data_path: Path | None, data_md5: str) -> Any:
    """`value` as plain JSON types, with every existing file replaced by its content digest."""
    if isinstance(value, ReleaseConfig):
        # Training gets the whole release config (it may hand it to torchrun); only these
        # sections decide its result, so a gate policy or canary change does not retrain.
        sections = {name: getattr(value, name) for name in sorted(TRAINING_SECTIONS)}
        return _canonical(sections, data_path, data_md5)
    if isinstance(value, BaseModel):
        dumped = value.model_dump()
        if isinstance(value, StageConfig):
            dumped = {k: v for k, v in dumped.items() if k not in STAGE_SETTINGS}
        return _canonical(dumped, data_path, data_md5)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {"__type__": type(value).__name__, **_canonical(fields, data_path, data_md5)}
    if isinstance(value, dict):
        return {str(k): _canonical(v, data_path, data_md5) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v, data_path, data_md5) for v in value]
    if isinstance(value, Path):
        path = value.expanduser().resolve()
        if data_path is not None and path == data_path:
            return f"data:dvc-md5:{data_md5}"
        if path.is_file():
            return f"{path}@{file_digest(path)}"
        return str(path)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def artifacts_intact(record: Any) -> str | None:
    """None when every file `record` names exists with the digest it recorded; else what is wrong.

    A field ``x_path`` pairs with ``x_digest``, and a lone ``*_path`` with a field ``digest``;
    other paths need only exist.
    """
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        return None
    fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    paths = {name: v for name, v in fields.items() if isinstance(v, Path)}
    for name, path in paths.items():
        if not path.exists():
            return f"{name} {path} is gone"
        digest = fields.get(name.removesuffix("_path") + "_digest")
        if digest is None and len(paths) == 1:
            digest = fields.get("digest")
        if isinstance(digest, Digest) and path.is_file():
            now = file_digest(path, digest.algorithm)
            if now.value != digest.value:
                return f"{name} {path} changed: {digest} recorded, {now} now"
    return None


@dataclass
class ContentKey(CachePolicy):
    """Cache key from the stage's content inputs; skips entries whose files are gone or changed."""

    stage: str = ""
    code_version: str = ""
    data_md5: str = ""
    data_path: Path | None = None
    """The data file or folder: it counts by `data_md5` instead of being read."""

    def base_key(self, inputs: dict[str, Any]) -> str:
        """Digest of the stage, code version, data md5 and the content of every input."""
        data_path = self.data_path.resolve() if self.data_path else None
        content = {
            "stage": self.stage,
            "code": self.code_version,
            "data_md5": self.data_md5,
            "inputs": {
                k: _canonical(v, data_path, self.data_md5) for k, v in inputs.items() if k not in RUN_SPECIFIC
            },
        }
        text = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return f"{self.stage}-{hashlib.sha256(text.encode()).hexdigest()}"

    def problem(self, result: Any, inputs: dict[str, Any]) -> str | None:
        """None when a cached `result` may be served; else why not."""
        return artifacts_intact(result)

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """The base key, or the first follow-up key whose cached result is intact or absent."""
        base = self.base_key(inputs)
        store = task_ctx.result_store
        for n in range(MAX_STALE):
            key = base if n == 0 else f"{base}-{n}"
            if not store.exists(key):
                return key
            try:
                problem = self.problem(store.read(key).result, inputs)
            except Exception as e:  # an unreadable entry is as good as none
                problem = f"unreadable ({type(e).__name__})"
            if problem is None:
                log.info("%s served from cache, key %s", self.stage, key)
                return key
            log.warning("cached %s result %s not used: %s", self.stage, key, problem)
        return None


@dataclass
class SignedBundleKey(ContentKey):
    """The `sign` stage's key: every build input of the bundle, none of the run; a hit is its bundle, verified.

    The inputs are the whole release config, the snapshot (its md5 and manifest digest, not the
    manifest's run-specific path), the training, export and ONNX validation records (their
    digests, not their files: those stages are content-cached and their records carry the
    digests), the code revision (the committed lock with it) and the installed environment. Who started
    the run and when do not count: an identical re-run is served the bundle the first release
    signed, and its provenance names that release. On a hit the bundle is verified as
    ``attestflow verify`` does, with the key verification trusts; any failing check runs `sign` again.
    """

    def base_key(self, inputs: dict[str, Any]) -> str:
        """Digest of the build inputs (see the class)."""
        from attestflow.checks.lockenv import environment_digest
        from attestflow.records import to_jsonable

        snap = {k: v for k, v in to_jsonable(inputs["snap"]).items() if k != "manifest_path"}
        invocation = inputs["invocation"]
        content = {
            "stage": self.stage,
            "code": self.code_version,
            "config": inputs["cfg"].digest().value,
            "snapshot": snap,
            "records": [to_jsonable(inputs[k]) for k in ("trained", "exported", "checked")],
            "revision": to_jsonable(invocation.revision),
            "templates": invocation.preflight.template_digests if invocation.preflight else {},
            "environment": environment_digest().value,
            "workspace": str(inputs["ws"].root),
        }
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        return f"{self.stage}-{hashlib.sha256(text.encode()).hexdigest()}"

    def problem(self, result: Any, inputs: dict[str, Any]) -> str | None:
        """Why the cached bundle may not be served: a changed file, or a verification check that says no."""
        from attestflow.keys import trusted_public_key
        from attestflow.verify import verify_bundle

        changed = artifacts_intact(result)
        if changed is not None:
            return changed
        cfg = inputs["cfg"]
        checked = verify_bundle(
            result.bundle_dir, trusted_public_key(cfg.sign.public_key, inputs["ws"].root), check_data=False
        )
        return None if checked.ok else "; ".join(checked.failures)


@dataclass
class RunPosition(CachePolicy):
    """Cache key from the flow run and the stage's place in it (``<stage>-<n>``: its n-th call).

    A run that starts again from the top (a suspended release, resumed) calls its stages in the
    same order, so each call gets back what the same call returned before it was suspended:
    the same snapshot, signature, registered version, gate report and signed evidence, never a
    second of each. The place is counted by the caller (`flows.stages.resumable`): Prefect's
    own task run keys are random. Outside a flow run there is no key.
    """

    position: str = ""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """``run-<flow run id>-<position>``, or None outside a flow run."""
        flow_run_id = task_ctx.task_run.flow_run_id
        return None if flow_run_id is None else f"run-{flow_run_id}-{self.position}"


@dataclass(frozen=True)
class StageCache:
    """What one release's cached stages share: where results go and what every key includes."""

    results: Path
    """Folder of the cached results (JSON), in the workspace."""
    code_version: str
    data_md5: str
    data_path: Path

    def task_options(self, stage: str) -> dict[str, Any]:
        """`Task.with_options` arguments that cache the stage `stage` by content."""
        policy = SignedBundleKey if stage == "sign" else ContentKey
        return {
            "cache_policy": policy(
                stage=stage, code_version=self.code_version, data_md5=self.data_md5, data_path=self.data_path
            ),
            "persist_result": True,
            "result_storage": self.results,
            "result_serializer": "json",
        }
