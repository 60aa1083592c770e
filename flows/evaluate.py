"""The gate suite on its own: judge an ONNX file or a registered model version without a release.

This is what ``attestflow evaluate`` runs. It needs no Prefect server: the data is checked
with the Great Expectations suite of the release config, the model is run in ONNX Runtime,
and the champion is fetched from the configured registry, exactly as in a release, but
nothing is logged or promoted.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from attestflow.bundle import AIBOM, ATTRIBUTIONS, MODEL
from attestflow.config import ReleaseConfig
from attestflow.errors import BadInputError, GateFailedError
from attestflow.evidence_check import EnvTrust
from attestflow.keys import trusted_public_key
from attestflow.policy import GatePolicy
from attestflow.records import GateReport
from attestflow.tracking import tracking_uri
from attestflow.verify import parse_model_uri, verify_model_uri
from attestflow.workspace import Workspace
from tasks.gates import run_gates
from tasks.gates.registry import training_checkpoint
from tasks.validate_data import validate_data


def evaluate(
    model: str,
    cfg: ReleaseConfig,
    policy: GatePolicy,
    checkpoint: Path | None = None,
    trust: EnvTrust | None = None,
) -> GateReport:
    """Run every gate of `policy` on `model` (an ONNX file or a ``models:/`` URI) and the config's data.

    `trust`: the champion (the regression gate's baseline) was promoted from another environment.
    """
    ws = Workspace.at(cfg.workspace)
    uri = tracking_uri(cfg.register.tracking_uri, ws)
    model_name = cfg.model_name
    attributions: Path | None = None
    with tempfile.TemporaryDirectory(prefix="attestflow-evaluate-") as tmp:
        key_path = cfg.sign.public_key or ws.root / "keys" / "signing-key.pub.pem"
        public_key = key_path if key_path.is_file() else None
        if model.startswith("models:/"):
            ref = parse_model_uri(model)
            model_name = ref.name
            dest = Path(tmp) / "model"
            verified = verify_model_uri(
                model, uri, trusted_public_key(public_key, ws.root), use=lambda f: shutil.copytree(f, dest)
            )
            if not verified.ok:
                raise GateFailedError(
                    [f"{verified.target} failed verification: {f}" for f in verified.failures]
                )
            onnx_path = dest / MODEL
            bom = dest / AIBOM if (dest / AIBOM).is_file() else None
            attributions = dest / ATTRIBUTIONS if (dest / ATTRIBUTIONS).is_file() else None
            checkpoint = checkpoint or training_checkpoint(ref, uri, ws)
        else:
            onnx_path, bom = Path(model), None
            if not onnx_path.is_file():
                raise BadInputError(
                    f"{model}: no such file (give an ONNX file or a models:/NAME/VERSION URI)"
                )
        checked = validate_data(cfg.validate_data, cfg.data.path, Path(tmp))
        return run_gates(
            policy,
            onnx_path,
            cfg.data,
            model_name=model_name,
            tracking_uri=uri,
            provider=cfg.validate_onnx.provider,
            checkpoint=checkpoint,
            data_validation=checked,
            model_label=model,
            public_key=public_key,
            model=cfg.model,
            trust=trust,
            bom=bom,
            attributions=attributions,
        )
