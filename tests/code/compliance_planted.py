"""A signed release bundle planted as the release leaves one, for the compliance report's tests.

A real MLflow ONNX model folder with ``attestation/`` (config, data manifest, metrics,
attributions, AIBOM), DSSE provenance and the model-signing signature over every file, then
signed statements in ``evidence/``: the gate verdict, the approval, the canary's verdict and
the model card, each signed with the test key through `attestflow.dsse`, as the release does.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from onnx import TensorProto, helper

from attestflow.aibom import BomInputs, write_aibom
from attestflow.bundle import (
    ATTESTATION,
    ATTRIBUTIONS,
    MODEL,
    PROVENANCE,
    PUBLIC_KEY,
    bundle_digest,
    sign_bundle,
    signed_files,
)
from attestflow.digests import Digest, file_digest
from attestflow.dsse import dsse_sign
from attestflow.evidence import (
    EVIDENCE_DIR,
    approval_statement,
    attachment,
    canary_statement,
    evidence_name,
    kind_of,
    model_card_statement,
    statement_time,
    verification_summary,
)
from attestflow.keys import KeyPair, load_private_key
from attestflow.lineage import CodeRevision
from attestflow.model_card import card_text
from attestflow.outcomes import ApprovalRecord
from attestflow.policy import load_policy
from attestflow.provenance import resource
from attestflow.provenance import statement as provenance
from attestflow.records import GateDecision, GateReport, Invocation, RegistrationRecord, SignatureRecord

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "configs/gates.yaml"
NAME, VERSION = "credit", "2"
CARD_SECTIONS = {
    "intended_use": "Ranks credit applications for review by a loan officer.",
    "out_of_scope_uses": ["Automatic rejection without review."],
    "limitations": ["Trained on generated data."],
    "ethical_considerations": [
        {"name": "Default rates differ by group.", "mitigation": "The fairness gate."}
    ],
}
GATES = ("format", "data", "performance", "fairness", "robustness", "attribution", "resources", "licenses")


def _onnx() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return bytes(model.SerializeToString())


def _json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value))


def bom_inputs(onnx_sha256: str, **changes: Any) -> BomInputs:
    """What a release would know for the BOM of a small tabular model (`attestflow.aibom`), then `changes`."""
    return replace(
        BomInputs(
            model_name=NAME,
            onnx_sha256=onnx_sha256,
            adapter="tabular",
            architecture="multilayer perceptron",
            inputs={"x": ["batch", 2]},
            outputs={"y": ["batch", 2]},
            classes=["0", "1"],
            dataset_name="credit.csv",
            dvc_md5="cd" * 16,
            manifest_sha256="ab" * 32,
            base_model=None,
            metrics={"accuracy": 0.83},
            text=card_text(ROOT / "configs/model_card.yaml"),
        ),
        **changes,
    )


def _lock_dependency(root: Path) -> list[dict[str, Any]]:
    """The provenance's ``requirements.lock`` dependency naming the lock copy the BOM was checked against."""
    lock = root / ATTESTATION / "requirements.lock"
    return [resource("requirements.lock", {"sha256": file_digest(lock).value})] if lock.is_file() else []


class Planted:
    """A signed bundle in `root`, and helpers that add signed evidence about it."""

    def __init__(
        self, root: Path, keys: KeyPair, *, sensitive: str | None = "group", extras: bool = True
    ) -> None:
        import mlflow.onnx
        import onnx

        self.root, self.keys = root, keys
        self.clock = datetime(2024, 1, 1, tzinfo=UTC)
        mlflow.onnx.save_model(onnx.load_from_string(_onnx()), str(root), save_as_external_data=False)
        att = root / ATTESTATION
        att.mkdir()
        _json(att / "config.json", {"model_name": NAME, "data": {"sensitive": sensitive}})
        _json(att / "data_manifest.json", {"files": {"credit.csv": "ab" * 32}})
        _json(att / "metrics.json", {"training": {"accuracy": 0.83}})
        if extras:
            _json(
                root / ATTRIBUTIONS, {"method": "permutation", "global": {"age": 0.1}, "share": {"age": 1.0}}
            )
            write_aibom(root, bom_inputs(file_digest(root / MODEL).value), ROOT)
        shutil.copy2(keys.public_key, root / PUBLIC_KEY)
        onnx_digest = file_digest(root / MODEL)
        prov = provenance(
            subjects=[
                resource(MODEL, {"sha256": onnx_digest.value}),
                resource("release-bundle", {"sha256": bundle_digest(signed_files(root)).value}),
            ],
            external_parameters={"model_name": NAME},
            internal_parameters={},
            dependencies=[
                resource("data:credit.csv", {"md5": "cd" * 16, "sha256": "ab" * 32}),
                *_lock_dependency(root),
            ],
            builder_id="test",
            invocation_id="run",
            started_on="2024-01-01T00:00:00+00:00",
            finished_on="2024-01-01T00:00:01+00:00",
        )
        (root / PROVENANCE).write_text(json.dumps(dsse_sign(prov, self._key())))
        sign_bundle(root, keys.private_key)
        self._records()

    @classmethod
    def copied(cls, source: Path, root: Path, keys: KeyPair) -> Planted:
        """A copy in `root` of the planted bundle in `source`, to add evidence to (or tamper with)."""
        planted = cls.__new__(cls)
        planted.root, planted.keys = Path(shutil.copytree(source, root)), keys
        planted.clock = datetime(2024, 1, 1, tzinfo=UTC)
        planted._records()
        return planted

    def _records(self) -> None:
        root, onnx_digest = self.root, file_digest(self.root / MODEL)
        self.registered = RegistrationRecord(NAME, VERSION, f"models:/{NAME}/{VERSION}", "run")
        self.bundle = bundle_digest(signed_files(root))
        self.signed = SignatureRecord(
            root,
            onnx_digest,
            self.bundle,
            root,
            onnx_digest,
            root / PROVENANCE,
            file_digest(root / PROVENANCE),
            "k",
            "rk",
        )

    def _key(self) -> Any:
        return load_private_key(self.keys.private_key)

    def tick(self) -> str:
        self.clock += timedelta(minutes=1)
        return self.clock.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def add(self, stmt: dict[str, Any], attach: Path | None = None) -> Path:
        path = self.root / EVIDENCE_DIR / evidence_name(kind_of(stmt), statement_time(stmt))
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(dsse_sign(stmt, self._key())))
        if (named := attachment(stmt)) is not None:
            shutil.copy(attach or self.root.parent / "gates.json", self.root / named)
        return path

    def verdict(
        self, failing: tuple[str, ...] = (), gates: tuple[str, ...] = GATES, policy: Path = POLICY
    ) -> Path:
        digest = load_policy(policy).digest().value
        decisions = [
            GateDecision(g, "m", 0.9, 0.5, 0.4, g not in failing, "r", f"sha256:{digest}") for g in gates
        ]
        report = GateReport(
            "m",
            self.signed.onnx_digest,
            Digest("sha256", digest, "canonical JSON"),
            "cpu",
            None,
            not failing,
            decisions,
            1.0,
        )
        gates_json = self.root.parent / "gates.json"
        gates_json.write_text(json.dumps({"passed": not failing}))
        return self.add(
            verification_summary(
                report, self.registered, self.signed, gates_json, policy_uri="gates.yaml", time=self.tick()
            )
        )

    def approval(self, mode: str = "human") -> Path:
        at = self.tick()
        record = ApprovalRecord(True, "user:ann", "looks good", self.bundle.value, at, mode)
        invocation = Invocation("c.yaml", [], "run", at, "user:bob", CodeRevision("abc", False))
        return self.add(approval_statement(record, self.registered, invocation))

    def canary(self, passed: bool = True) -> Path:
        stmt = canary_statement(
            self.registered, self.signed, passed=passed, reasons=["ok"], previous="1", time=self.tick()
        )
        return self.add(stmt)

    def model_card(self, sections: dict[str, Any] = CARD_SECTIONS) -> Path:
        card = {"generated": self.tick(), "model": {"name": NAME, "version": VERSION}, "text": sections}
        markdown = self.root.parent / "card.md"
        markdown.write_text(f"# Model card of {NAME}\n")
        return self.add(model_card_statement(card, markdown, self.signed.onnx_digest), attach=markdown)

    def released(self) -> Planted:
        """Every piece of evidence of a release that passed, approved by a person, canary passed, carded."""
        self.verdict()
        self.approval()
        self.canary()
        self.model_card()
        return self
