"""Gate `resources`: what serving the ONNX model costs, against the policy's budgets.

File size, p50/p95 latency of ONNX Runtime inference at each batch size of the policy, and
the growth of the process's resident memory while a fresh session loads and runs them (RSS
sampled after every run; ONNX Runtime's arena keeps what it allocated, so the last samples
hold the peak). A model that ONNX Runtime cannot load still has its file size judged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from attestflow.adapters import Inputs, n_rows, take
from attestflow.policy import GatePolicy, ResourcesPolicy, Threshold
from attestflow.records import GateDecision
from tasks.gates.decisions import bound, cannot_run, judge
from tasks.gates.evaluation import Evaluation

GATE = "resources"


@dataclass(frozen=True)
class InferenceProfile:
    """Latency per batch size and memory growth of one ONNX Runtime session."""

    latency_ms: dict[int, tuple[float, float]]
    """Batch size -> (p50, p95) in milliseconds."""
    memory_mb: float


def profile_inference(
    onnx_path: Path, provider: str, inputs: Inputs, rules: ResourcesPolicy
) -> InferenceProfile:
    """Load a fresh session and time it at every batch size of the policy."""
    from attestflow.onnx_runtime import session

    proc = psutil.Process()
    before = peak = proc.memory_info().rss
    sess = session(onnx_path, provider)
    latency: dict[int, tuple[float, float]] = {}
    for budget in rules.latency:
        # Held-out rows repeated up to the batch size (the rows cycle when there are fewer).
        batch = take(inputs, np.arange(budget.batch_size) % n_rows(inputs))
        sess.run(None, batch)
        times = []
        for _ in range(rules.runs):
            started = time.perf_counter()
            sess.run(None, batch)
            times.append((time.perf_counter() - started) * 1000)
            peak = max(peak, proc.memory_info().rss)
        latency[budget.batch_size] = (float(np.percentile(times, 50)), float(np.percentile(times, 95)))
    return InferenceProfile(latency_ms=latency, memory_mb=max(0.0, (peak - before) / 2**20))


def runtime_rules(rules: ResourcesPolicy) -> list[Threshold]:
    """The latency and memory budgets of the policy as thresholds, in reporting order."""
    out = []
    for b in rules.latency:
        out.append(bound(f"latency_p50_ms_batch_{b.batch_size}", b.max_p50_ms, "at_most"))
        out.append(bound(f"latency_p95_ms_batch_{b.batch_size}", b.max_p95_ms, "at_most"))
    out.append(bound("memory_mb", rules.max_memory_mb, "at_most"))
    return out


def gate(ev: Evaluation, policy: GatePolicy) -> list[GateDecision]:
    """File size, then p50/p95 latency per batch size, then memory."""
    rules = policy.resources
    if rules is None:
        return []
    digest = str(policy.digest())
    size_kb = ev.onnx_path.stat().st_size / 1024
    decisions = [judge(GATE, bound("file_size_kb", rules.max_file_kb, "at_most"), size_kb, digest)]
    runtime = runtime_rules(rules)
    if ev.problem is not None:
        return decisions + [cannot_run(GATE, r, ev.problem, digest) for r in runtime]
    profile = profile_inference(ev.onnx_path, ev.provider, ev.held_out.inputs, rules)
    values = [v for b in rules.latency for v in profile.latency_ms[b.batch_size]] + [profile.memory_mb]
    return decisions + [judge(GATE, r, v, digest) for r, v in zip(runtime, values, strict=True)]
