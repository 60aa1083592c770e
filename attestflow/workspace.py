"""The workspace: the one folder that holds all local state of attestflow.

Prefect's SQLite database, the MLflow store and artifacts, the DVC remote, checkpoints and
release folders all live under it (default ``.attestflow/``), never in the source tree.
Nothing happens at import: `Workspace.activate` is called at flow or CLI entry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from attestflow.redact import install_log_redaction
from attestflow.redact import redact_uri as redact_uri  # where callers have long found it


@dataclass(frozen=True)
class Workspace:
    """Paths of the local state, all below `root`."""

    root: Path
    """Absolute path of the workspace folder."""

    @classmethod
    def at(cls, root: Path | str) -> Workspace:
        """A workspace rooted at `root` (made absolute against the current directory)."""
        return cls(Path(root).expanduser().resolve())

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def dvc_remote(self) -> Path:
        return self.root / "dvc-remote"

    @property
    def training(self) -> Path:
        """Checkpoints, one folder per training key (content of the inputs)."""
        return self.root / "training"

    @property
    def releases(self) -> Path:
        """One folder per release: ONNX model, manifests, evidence."""
        return self.root / "releases"

    @property
    def hash_cache(self) -> Path:
        """md5 and SHA-256 of data files keyed by their stat, one JSON per data path."""
        return self.root / "hash-cache"

    @property
    def stage_cache(self) -> Path:
        """Results of cached release stages, one JSON file per content key."""
        return self.root / "stage-cache"

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"

    def activate(self) -> None:
        """Create the folders and point Prefect and MLflow at them, unless the user already did.

        Must run before `prefect` is imported: Prefect reads its settings at import.
        """
        for d in (self.root, self.prefect_home, self.mlflow_artifacts, self.training, self.releases):
            d.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("PREFECT_HOME", str(self.prefect_home))
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
        # The temporary API's first start creates and migrates its SQLite database; on a busy
        # 2-core machine that can take longer than Prefect's default 20 s.
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
        quiet_third_parties()


def quiet_third_parties() -> None:
    """Turn off what Great Expectations, MLflow and DVC print on their own, and redact every log record."""
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    # MLflow prints "View run ... at <tracking URI>" to stdout, credentials and all; never let it.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    install_log_redaction()
