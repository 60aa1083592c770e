"""Training in this process or under ``torchrun``, and the worker that ``torchrun`` starts.

With ``fine_tune.processes`` > 1 the release's training runs as ``python -m
attestflow.training.launcher`` under ``torchrun --standalone``, one process per GPU; rank 0
writes its `TrainingRecord` as JSON, which the launching process reads back. The worker
lives here, below the stages, because it runs the training itself, not the Prefect task.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

from attestflow.config import ReleaseConfig
from attestflow.digests import file_digest
from attestflow.errors import BadInputError
from attestflow.records import TrainingRecord, WarmStart
from attestflow.training.fine_tuning import fine_tune
from attestflow.training.loop import Ranks
from attestflow.workspace import Workspace

WORKER_MODULE = "attestflow.training.launcher"
"""The module ``torchrun`` runs in each process (this one)."""


def train_release(
    cfg: ReleaseConfig,
    ws: Workspace,
    data_md5: str,
    tracking_uri: str,
    run_tags: dict[str, str],
    out_dir: Path,
    warm_start: WarmStart | None = None,
) -> TrainingRecord:
    """The release's training: in this process, or under ``torchrun`` when ``fine_tune.processes`` > 1."""
    if cfg.fine_tune.processes == 1:
        return fine_tune(
            cfg.fine_tune,
            cfg.data,
            ws,
            data_md5,
            tracking_uri,
            cfg.register.experiment,
            run_tags,
            model=cfg.model,
            warm_start=warm_start,
            model_name=cfg.model_name,
        )
    return launch(cfg, data_md5, run_tags, out_dir, warm_start, tracking_uri)


def launch(
    cfg: ReleaseConfig,
    data_md5: str,
    run_tags: dict[str, str],
    out_dir: Path,
    warm_start: WarmStart | None,
    tracking_uri: str | None = None,
) -> TrainingRecord:
    """Run `main` under ``torchrun --standalone`` with one process per GPU; rank 0's record comes back.

    The config file the workers read is written redacted, so the tracking URI, credentials
    and all, reaches them through their environment (``MLFLOW_TRACKING_URI``) instead.
    """
    from attestflow.records import to_jsonable, write_json

    env = dict(os.environ)
    dump = cfg.model_dump(mode="json")
    if tracking_uri or cfg.register.tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri or str(cfg.register.tracking_uri)
        dump["register"]["tracking_uri"] = None
    config = write_json(out_dir / "fine_tune.config.json", dump)
    record = out_dir / "fine_tune.record.json"
    record.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={cfg.fine_tune.processes}",
        "-m",
        WORKER_MODULE,
        f"--config={config}",
        f"--data-md5={data_md5}",
        f"--out={record}",
        f"--tags={json.dumps(run_tags)}",
    ]
    if warm_start is not None:
        cmd.append(f"--warm-start={json.dumps(to_jsonable(warm_start))}")
    done = subprocess.run(cmd, stderr=subprocess.PIPE, text=True, check=False, env=env)  # noqa: S603 - torchrun argv
    if done.returncode != 0 or not record.is_file():
        bad_input = re.search(r"^(?:\[rank\d+\]:\s*)?error: (.+)$", done.stderr, re.MULTILINE)
        if bad_input:
            raise BadInputError(bad_input.group(1))
        errors = [line for line in done.stderr.splitlines() if "Error" in line] or ["no error message"]
        raise RuntimeError(f"torchrun exited with {done.returncode}: {errors[-1].strip()}")
    return TrainingRecord.from_json(json.loads(record.read_text()))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {WORKER_MODULE}", description=main.__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--data-md5", help="DVC md5 of the data (default: md5 of the data file's bytes)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tags", default="{}", help="MLflow run tags as JSON")
    parser.add_argument("--warm-start", help="a WarmStart record as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train from a release config outside Prefect: ``python -m attestflow.training.launcher`` or under ``torchrun``.

    Writes the TrainingRecord as JSON to ``--out`` (rank 0). Used by the flow to launch
    several processes, and by anyone who wants the training stage alone.
    """
    from attestflow.config import load_config
    from attestflow.records import write_json
    from attestflow.tracking import tracking_uri

    args = _parse(argv)
    cfg = load_config(args.config, args.overrides)
    ws = Workspace.at(cfg.workspace)
    ws.activate()
    md5 = args.data_md5 or file_digest(cfg.data.path, "md5").value
    ranks = Ranks.from_env()
    if ranks.world > 1:
        backend = "nccl" if torch.cuda.is_available() and cfg.fine_tune.device != "cpu" else "gloo"
        torch.distributed.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(ranks.local_rank)
    warm = WarmStart.from_json(json.loads(args.warm_start)) if args.warm_start else None
    try:
        record = fine_tune(
            cfg.fine_tune,
            cfg.data,
            ws,
            md5,
            tracking_uri(cfg.register.tracking_uri, ws),
            cfg.register.experiment,
            json.loads(args.tags),
            model=cfg.model,
            warm_start=warm,
            model_name=cfg.model_name,
        )
        if ranks.is_main:
            write_json(args.out, record)
    except BadInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if ranks.world > 1:
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
