"""Stage `canary`: after promotion, the new champion and the previous one score recent data.

Both are loaded only after verification and run through ONNX Runtime, as they would serve.
The new one may not error more, disagree with the previous one more, or be slower by more
than the policy allows; if it does, the flow's transaction rolls the promotion back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import task

from attestflow.bundle import MODEL
from attestflow.config import CanaryConfig, DataConfig
from attestflow.dataset import load_splits, read_table
from attestflow.errors import BadInputError, GateFailedError
from attestflow.verify import verify_model_uri


@dataclass(frozen=True)
class CanaryRecord:
    """How the new champion compared with the previous one on the canary sample."""

    model_name: str
    version: str
    previous_version: str | None
    rows: int
    error_rate: float
    disagreement: float
    latency_ratio: float
    passed: bool
    reason: str


def _score(onnx_path: Path, x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(logits, error rate, p95 latency in ms over 10 batch runs) of a model on `x`."""
    from tasks.validate_onnx import session

    sess = session(onnx_path, "auto")
    name = sess.get_inputs()[0].name
    try:
        logits = np.asarray(sess.run(None, {name: x})[0])
    except Exception:  # an ONNX Runtime failure on the sample is the canary's error
        return np.full((len(x), 2), np.nan), 1.0, float("inf")
    errors = float(np.mean(~np.isfinite(logits).all(axis=1)))
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t0) * 1000)
    return logits, errors, float(np.percentile(times, 95))


def canary_sample(cfg: CanaryConfig, data: DataConfig) -> np.ndarray:
    """The rows the canary scores: the configured sample, else the held-out split."""
    if cfg.sample is None:
        x = load_splits(data)[1].x
    else:
        df = read_table(cfg.sample)
        missing = [c for c in data.features if c not in df.columns]
        if missing:
            raise BadInputError(f"canary sample {cfg.sample} lacks column(s) {', '.join(missing)}")
        x = df[data.features].to_numpy(dtype=np.float32, copy=True)
    return x[: cfg.rows]


def canary(
    cfg: CanaryConfig,
    data: DataConfig,
    model_name: str,
    version: str,
    previous_version: str | None,
    tracking_uri: str,
    public_key: Path,
) -> CanaryRecord:
    """Compare the new champion with the previous one; raise `GateFailedError` if it is worse."""
    x = canary_sample(cfg, data)
    scored: dict[str, tuple[np.ndarray, float, float]] = {}

    def load(label: str, v: str) -> None:
        def use(folder: Path) -> None:
            scored[label] = _score(folder / MODEL, x)

        result = verify_model_uri(f"models:/{model_name}/{v}", tracking_uri, public_key, use=use)
        if not result.ok:
            raise GateFailedError(
                [f"canary: {result.target} failed verification: {f}" for f in result.failures]
            )

    load("new", version)
    new_logits, errors, new_p95 = scored["new"]
    if previous_version is None:
        disagreement, ratio = 0.0, 1.0
    else:
        load("previous", previous_version)
        old_logits, _, old_p95 = scored["previous"]
        disagreement = float(np.mean(new_logits.argmax(1) != old_logits.argmax(1)))
        ratio = new_p95 / old_p95 if old_p95 > 0 else 1.0
    problems = []
    if errors > cfg.max_error_rate:
        problems.append(f"error rate {errors:.3f} > {cfg.max_error_rate:.3f}")
    if disagreement > cfg.max_disagreement:
        problems.append(
            f"disagreement with v{previous_version} {disagreement:.3f} > {cfg.max_disagreement:.3f}"
        )
    if ratio > cfg.max_latency_ratio:
        problems.append(f"p95 latency {ratio:.2f}x the previous champion's > {cfg.max_latency_ratio:.2f}x")
    against = f"v{previous_version}" if previous_version else "no previous champion"
    reason = "; ".join(problems) or (
        f"on {len(x)} rows against {against}: errors {errors:.3f}, disagreement {disagreement:.3f}, latency {ratio:.2f}x"
    )
    record = CanaryRecord(
        model_name, version, previous_version, len(x), errors, disagreement, ratio, not problems, reason
    )
    if problems:
        raise GateFailedError([f"canary of v{version}: {reason}"])
    return record


canary_task = task(name="canary")(canary)
