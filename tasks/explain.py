"""Stage `explain`: attributions of the released model, written for the signed bundle.

Runs after `validate_onnx`, so the torch checkpoint it explains is the one shown to agree
with the ONNX file; the attributions (`attestflow.explain` says how and why that way) go into
``<out_dir>/attributions.json``, which `sign` copies into the bundle as
``attestation/attributions.json`` and the `attribution` gate judges.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import task

from attestflow.adapters import load_adapter
from attestflow.config import DataConfig, ExplainConfig, ModelConfig
from attestflow.dataset import load_splits
from attestflow.digests import file_digest
from attestflow.explain import explain_model
from attestflow.records import ExplanationRecord, write_json

TOP = 5


def explain(
    cfg: ExplainConfig, data: DataConfig, checkpoint: Path, out_dir: Path, model: ModelConfig | None = None
) -> ExplanationRecord:
    """Attribute the checkpoint's decisions on sampled held-out rows and write ``attributions.json``."""
    started = time.perf_counter()
    adapter = load_adapter(model or ModelConfig())
    _, held_out = load_splits(data, adapter)
    found = explain_model(adapter, checkpoint, held_out, data, cfg)
    path = write_json(out_dir / "attributions.json", found)
    ranked = sorted(found["global"], key=lambda f: -found["global"][f])
    return ExplanationRecord(
        path=path,
        digest=file_digest(path),
        method=found["method"],
        rows=found["rows"],
        top=ranked[:TOP],
        seconds=round(time.perf_counter() - started, 3),
    )


explain_task = task(name="explain")(explain)
