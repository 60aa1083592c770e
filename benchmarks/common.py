"""What every benchmark shares: the example workload, timing, memory sampling, child processes.

Figures are ratios against an alternative measured in the same run, so the helpers here
make it easy to alternate the two sides and take medians. Memory is measured in child
processes where a figure needs a clean peak, since a process's peak RSS only ever grows.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
MB = 1_000_000


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values."""
    return float(statistics.median(values)) if values else float("nan")


def ratio(a: float, b: float) -> float:
    """a / b, or NaN when b is not positive."""
    return a / b if b > 0 else float("nan")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall seconds of one call of `fn`, and what it returned."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def maxrss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    Linux's ``VmHWM`` belongs to the current program image; ``ru_maxrss`` would also keep the
    peak of the forked copy of the parent from before ``exec``, i.e. the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


def rss_mb() -> float:
    """Current resident set size of this process, in MB."""
    return float(psutil.Process().memory_info().rss) / MB


class PeakRss:
    """Samples this process's RSS on a thread while the `with` block runs."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.start_mb = 0.0
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, proc.memory_info().rss / MB)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRss:
        self.start_mb = self.peak_mb = rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())


def machine() -> dict[str, Any]:
    """Where the benchmarks ran: CPU, memory, accelerator, versions, load at the start."""
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    cuda = torch.cuda.is_available()
    return {
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "cuda": torch.cuda.get_device_name(0) if cuda else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def free_port() -> int:
    """A TCP port on localhost that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a benchmark child: this checkout first on the path, quiet libraries."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    for key, value in {
        "GIT_PYTHON_REFRESH": "quiet",
        "GX_ANALYTICS_ENABLED": "false",
        "TQDM_DISABLE": "1",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "DVC_NO_ANALYTICS": "1",
        # As Workspace.activate: a busy 2-core machine can take longer than Prefect's 20 s.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }.items():
        env.setdefault(key, value)
    env.update(extra or {})
    return env


def run_child(
    module: str,
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout_s: float = 600,
    log: Path | None = None,
) -> dict[str, Any]:
    """Run ``python -m module args --result FILE`` and return the JSON it wrote to FILE."""
    with tempfile.TemporaryDirectory(prefix="attestflow-bench-child-") as tmp:
        result = Path(tmp) / "result.json"
        out = Path(tmp) / "output.log" if log is None else log
        with out.open("w") as f:
            proc = subprocess.run(  # noqa: S603 - this interpreter running a benchmark module
                [sys.executable, "-m", module, *args, "--result", str(result)],
                cwd=ROOT,
                env=env or child_env(),
                stdout=f,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
        if proc.returncode != 0 or not result.is_file():
            tail = "\n".join(out.read_text(errors="replace").splitlines()[-40:])
            raise RuntimeError(f"benchmark child {module} {' '.join(args)} exited {proc.returncode}:\n{tail}")
        data: dict[str, Any] = json.loads(result.read_text())
        return data


def write_result(path: Path, data: dict[str, Any]) -> None:
    """What a benchmark child hands back to its parent."""
    path.write_text(json.dumps(data, indent=1))


@contextmanager
def scratch(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A temporary folder for one benchmark, removed afterwards unless `keep`."""
    path = Path(tempfile.mkdtemp(prefix=f"attestflow-bench-{prefix}-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class Workload:
    """A throwaway DVC repo (no git) holding the example data, a base checkpoint and a config."""

    root: Path
    data: Path
    base_checkpoint: Path
    workspace: Path
    rows: int
    epochs: int

    def config_dict(self, **sections: dict[str, Any]) -> dict[str, Any]:
        """The bundled release config, pointed at this repo and its own workspace."""
        raw: dict[str, Any] = yaml.safe_load((ROOT / "configs/release.yaml").read_text())
        raw["workspace"] = str(self.workspace)
        raw["data"]["path"] = str(self.data)
        raw["snapshot"]["repo"] = str(self.root)
        raw["validate_data"]["suite"] = str(ROOT / "configs/expectations/credit.yaml")
        raw["fine_tune"].update(base_checkpoint=str(self.base_checkpoint), epochs=self.epochs)
        raw["gates"]["policy"] = str(ROOT / "configs/gates.yaml")
        # Benchmarks measure cost, not code state: a work tree with local edits still runs them.
        raw.setdefault("sign", {})["allow_dirty"] = True
        for name, values in sections.items():
            raw.setdefault(name, {}).update(values)
        return raw

    def write_config(self, **sections: dict[str, Any]) -> Path:
        """Write the config into the repo; returns its path."""
        path = self.root / "release.yaml"
        path.write_text(yaml.safe_dump(self.config_dict(**sections)))
        return path

    def copy_to(self, dest: Path) -> Workload:
        """A copy of this repo at `dest` with an empty workspace of its own."""
        shutil.copytree(self.root, dest, ignore=shutil.ignore_patterns("ws"))
        return Workload(
            root=dest,
            data=dest / self.data.relative_to(self.root),
            base_checkpoint=dest / self.base_checkpoint.relative_to(self.root),
            workspace=dest / "ws",
            rows=self.rows,
            epochs=self.epochs,
        )


def make_workload(
    root: Path, rows: int | None = None, epochs: int | None = None, dvc: bool = True
) -> Workload:
    """The demo workload in a fresh DVC repo (a plain folder if not `dvc`): ``params.yaml``'s data and base."""
    from tasks import pretrain_base
    from tasks.generate_data import generate

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    gen = params["generate_data"]
    rows = rows or int(gen["rows"])
    root.mkdir(parents=True, exist_ok=True)
    if dvc:
        subprocess.run(
            [sys.executable, "-m", "dvc", "init", "--no-scm", "-q"],
            cwd=root,
            env=child_env(),
            check=True,
            capture_output=True,
        )
    data = root / "data"
    data.mkdir()
    generate(rows, seed=gen["seed"]).to_csv(data / "credit.csv", index=False)
    prior_rows = max(int(gen["prior_rows"]) * rows // int(gen["rows"]), 200)
    prior = generate(prior_rows, seed=gen["seed"] + 1, drift=gen["prior_drift"])
    prior.to_csv(data / "credit_prior.csv", index=False)
    (root / "params.yaml").write_text(yaml.safe_dump({"pretrain_base": params["pretrain_base"]}))
    base = data / "base_model.safetensors"
    pretrain_base.main(
        [
            "--params",
            str(root / "params.yaml"),
            "--data",
            str(data / "credit_prior.csv"),
            "--out",
            str(base),
        ]
    )
    cfg = yaml.safe_load((ROOT / "configs/release.yaml").read_text())
    return Workload(
        root=root,
        data=data / "credit.csv",
        base_checkpoint=base,
        workspace=root / "ws",
        rows=rows,
        epochs=epochs or int(cfg["fine_tune"]["epochs"]),
    )
