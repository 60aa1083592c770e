"""Fixtures shared by all tests: a throwaway DVC repo holding a tiny copy of the example."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from attestflow.config import ReleaseConfig, load_config
from attestflow.workspace import quiet_third_parties

ROOT = Path(__file__).resolve().parents[1]

# `s3`: moto's S3 server; `stack`: the stack of `make stack-up`; `softhsm`: a PKCS#11 token in a temp folder
pytest_plugins = ["tests.s3", "tests.stack", "tests.softhsm"]

quiet_third_parties()
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# `attestflow run` without an API uses a temporary one, leaving no server behind (tests that want
# the background server set it themselves: tests/code/test_local_server.py).
os.environ.setdefault("ATTESTFLOW_LOCAL_API", "temporary")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


TINY_THRESHOLDS: dict[str, Any] = {
    "performance": {
        "thresholds": [
            {"metric": "accuracy", "threshold": 0.6},
            {"metric": "f1", "threshold": 0.6},
            {"metric": "roc_auc", "threshold": 0.7},
        ]
    },
    "fairness": {
        "thresholds": [
            {"metric": "demographic_parity_difference", "direction": "at_most", "threshold": 0.4},
            {"metric": "equalized_odds_difference", "direction": "at_most", "threshold": 0.4},
            {"metric": "worst_group_accuracy", "threshold": 0.6},
        ]
    },
    # Its models, two epochs deep, rank their features differently from one release to the next.
    "attribution": {"max_sensitive_share": 0.2, "proxy_threshold": 0.5, "min_total": 0.05},
}
"""The tiny example (1,000 rows, 2 epochs, 193 held-out rows) scores lower and noisier than the bundled one."""


@dataclass
class ExampleRepo:
    """A DVC repo (no git) with tiny example data, a base checkpoint and a release config."""

    root: Path
    data: Path
    base_checkpoint: Path
    workspace: Path

    def config_dict(self, **sections: dict[str, Any]) -> dict[str, Any]:
        raw: dict[str, Any] = yaml.safe_load((ROOT / "configs/release.yaml").read_text())
        raw["workspace"] = str(self.workspace)
        raw["model_name"] = "tiny-credit"
        raw["data"]["path"] = str(self.data)
        raw["snapshot"].update(repo=str(self.root), retry_delay_s=0)
        raw["validate_data"]["suite"] = str(ROOT / "configs/expectations/credit.yaml")
        raw["fine_tune"].update(base_checkpoint=str(self.base_checkpoint), epochs=2, retry_delay_s=0)
        raw["sign"] = {"allow_dirty": True}
        raw["register"].update(experiment="tests", retry_delay_s=0)
        raw["validate_onnx"]["latency_runs"] = 5
        raw["gates"].update(policy=str(self.root / "gates.yaml"), retry_delay_s=0)
        raw["canary"] = {"max_disagreement": 0.5}  # models fine-tuned on 1,000 rows differ a lot
        for name, values in sections.items():
            raw.setdefault(name, {}).update(values)
        return raw

    def write_config(self, name: str = "release.yaml", /, **sections: dict[str, Any]) -> Path:
        path = self.root / name
        # Written whole and renamed into place: tests that train from two threads read it at once.
        tmp = path.with_name(f".{name}.{threading.get_ident()}.tmp")
        tmp.write_text(yaml.safe_dump(self.config_dict(**sections)))
        os.replace(tmp, path)
        return path

    def config(self, **sections: dict[str, Any]) -> ReleaseConfig:
        return load_config(self.write_config(**sections))

    def write_environments(self, name: str = "environments.yaml", /, **envs: dict[str, Any]) -> Path:
        """An environments file: `dev` and `staging`, each with its own key pair (made now) and audit
        log in this repo's workspace and its own model name (``tiny-credit-<env>``), then `envs`."""
        from attestflow.keys import ensure_keypair

        raw: dict[str, Any] = {}
        for env in ("dev", "staging"):
            pair = ensure_keypair(self.workspace / "envs" / env / "keys")
            raw[env] = {
                "model_name": f"tiny-credit-{env}",
                "audit": str(self.workspace / "envs" / env / "audit"),
                "key": {"private_key": str(pair.private_key), "public_key": str(pair.public_key)},
            }
        for env, values in envs.items():
            raw.setdefault(env, {}).update(values)
        path = self.root / name
        path.write_text(yaml.safe_dump({"environments": raw}, sort_keys=False))
        return path

    def write_policy(self, name: str = "gates.yaml", /, **sections: Any) -> Path:
        """The bundled gate policy with the tiny example's thresholds, then `sections`."""
        raw: dict[str, Any] = yaml.safe_load((ROOT / "configs/gates.yaml").read_text())
        raw.update(TINY_THRESHOLDS)
        raw.update(sections)
        path = self.root / name
        path.write_text(yaml.safe_dump(raw))
        return path


def make_example_repo(root: Path, rows: int = 1000) -> ExampleRepo:
    from tasks import pretrain_base
    from tasks.generate_data import generate

    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True, capture_output=True
    )
    data = root / "data"
    data.mkdir()
    generate(rows, seed=3).to_csv(data / "credit.csv", index=False)
    generate(rows, seed=4, drift=0.25).to_csv(data / "credit_prior.csv", index=False)
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"pretrain_base": {"epochs": 3, "seed": 1, "hidden": [16, 8]}}))
    base = data / "base_model.safetensors"
    pretrain_base.main(
        ["--params", str(params), "--data", str(data / "credit_prior.csv"), "--out", str(base)]
    )
    repo = ExampleRepo(root=root, data=data / "credit.csv", base_checkpoint=base, workspace=root / "ws")
    repo.write_policy()
    return repo


@pytest.fixture
def example_repo(tmp_path: Path) -> ExampleRepo:
    """A fresh tiny example repo per test."""
    return make_example_repo(tmp_path / "repo")
