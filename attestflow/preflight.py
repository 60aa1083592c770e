"""Checks and builds that run before a flow run starts, so that a bad input costs nothing.

A release's config names a gate policy, a model adapter and input files; each is checked
here before Prefect starts a flow run, and an input that a stage of the DVC pipeline outputs
(the example data, the base checkpoint) is built or pulled first, as `dvc repro` would. DVC
is imported only inside the functions that run it: it binds its log handler to whatever
stdout is at its first import.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from attestflow.config import CanaryConfig, DataConfig, GatesConfig, ReleaseConfig, load_config
from attestflow.errors import BadInputError
from attestflow.policy import GatePolicy, load_policy

if TYPE_CHECKING:
    import pandas as pd

DEMO_CONFIG = Path("configs/release.yaml")
"""The bundled example's release config, relative to the project root."""

ReproHook = Callable[[str, Path], None]
"""Called with a stage name and the missing file it outputs, before `dvc repro` builds it."""


def python_on_path() -> None:
    """Put this environment's interpreter first on PATH: DVC stage commands say `python`."""
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def pipeline_stage_of(path: Path, repo_root: Path) -> str | None:
    """The name of the stage in ``repo_root/dvc.yaml`` that outputs `path`, read without importing DVC."""
    dvc_yaml = repo_root / "dvc.yaml"
    if not dvc_yaml.is_file():
        return None
    try:
        stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {})
    except yaml.YAMLError:
        return None
    target = path.resolve()
    for name, stage in stages.items():
        wdir = repo_root / stage.get("wdir", ".")
        for out in stage.get("outs", []):
            out_path = next(iter(out)) if isinstance(out, dict) else out
            if (wdir / str(out_path)).resolve() == target:
                return str(name)
    return None


def reproduce(repo_root: Path, stage: str | None = None) -> None:
    """``dvc repro`` of the whole pipeline, or of one stage pulling cached outputs from the remote."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    python_on_path()
    try:
        with Repo(str(repo_root)) as repo:
            if stage is None:
                repo.reproduce()
            else:
                repo.reproduce(stage, pull=True)
    except DvcException as e:
        raise BadInputError(f"`dvc repro{f' {stage}' if stage else ''}` failed: {e}") from None


def materialize(path: Path, repo_root: Path, on_repro: ReproHook | None = None) -> bool:
    """Build or fetch a missing file that a stage of the DVC pipeline outputs; False when no stage does."""
    stage = pipeline_stage_of(path, repo_root)
    if stage is None:
        return False
    if on_repro is not None:
        on_repro(stage, path)
    try:
        reproduce(repo_root, stage)
    except BadInputError as e:
        raise BadInputError(f"{path} is missing and {e}") from None
    return path.exists()


def check_config(cfg: ReleaseConfig) -> None:
    """An invalid gate policy, adapter, key pair or task runner is bad input before any work."""
    from attestflow.adapters import load_adapter  # brings torch: only once a command needs it

    load_policy(cfg.gates.policy)
    load_adapter(cfg.model)
    from attestflow.signers import check_key
    from attestflow.workspace import Workspace

    check_key(cfg.sign.key_spec(), Workspace.at(cfg.workspace).root)
    check_task_runner(cfg.gates)


def check_task_runner(gates: GatesConfig) -> None:
    """The gates' task runner starts and stops with its options (a runner checks some only when started)."""
    if gates.task_runner == "threads":
        return
    try:
        with gates.make_task_runner():
            pass
    except Exception as e:  # whatever the runner's own checks raise
        raise BadInputError(
            f"gates.task_runner_options: {gates.task_runner} does not start with "
            f"{gates.task_runner_options}: {type(e).__name__}: {' '.join(str(e).split())}"
        ) from None


def materialize_inputs(cfg: ReleaseConfig, on_repro: ReproHook | None = None) -> None:
    """Every input file of the release exists, built by the DVC pipeline where a stage outputs it.

    The data path must be a file before DVC runs: `dvc add` of a folder rewrites the tracked
    ``.gitignore`` beside it, and the stages read one table.
    """
    from attestflow.dataset import require_data_file

    for what, path in (
        ("data.path", cfg.data.path),
        ("validate_data.suite", cfg.validate_data.suite),
        ("fine_tune.base_checkpoint", cfg.fine_tune.base_checkpoint),
    ):
        if path is not None and not path.exists() and not materialize(path, cfg.snapshot.repo, on_repro):
            raise BadInputError(f"{what}: {path} does not exist")
        if path == cfg.data.path:
            require_data_file(path)


def preflight(cfg: ReleaseConfig, on_repro: ReproHook | None = None) -> None:
    """Catch a bad config and missing inputs before a flow run starts, building what DVC can build."""
    check_config(cfg)
    check_registry(cfg)
    materialize_inputs(cfg, on_repro)
    check_canary_labels(cfg.canary, cfg.data)


def check_canary_labels(
    canary: CanaryConfig, data: DataConfig, columns: Iterable[object] | None = None
) -> None:
    """With ``canary.quality``, the canary's sample (`columns`, else read from it) has the label column."""
    if not canary.quality or canary.sample is None:
        return
    if columns is None:
        from attestflow.dataset import read_table

        columns = read_table(canary.sample).columns
    if data.label not in list(columns):
        raise BadInputError(
            f"canary.quality compares quality on labelled rows, but canary.sample {canary.sample} "
            f"has no {data.label!r} (data.label) column"
        )


def check_registry(cfg: ReleaseConfig) -> None:
    """The model registry answers: an unreachable one is `RegistryUnavailableError` (exit 3), not a late failure."""
    from attestflow.registry import Registry
    from attestflow.tracking import tracking_uri
    from attestflow.workspace import Workspace

    Registry(tracking_uri(cfg.register.tracking_uri, Workspace.at(cfg.workspace))).ping()


def check_release_data(cfg: ReleaseConfig) -> ReleaseConfig:
    """`cfg` with ``data.classes`` filled in, once the table is fit to train on; else one `BadInputError` line.

    Reads the table once. Refuses a missing label or feature column, a label with a missing
    value, with fewer than two classes or with a value outside ``data.classes``; for the
    tabular adapter also a non-numeric feature, a missing feature value under ``data.missing:
    refuse`` (a feature with no value at all under ``median``), and a base checkpoint whose
    input width or class count differs from the data's (read from its header).
    """
    from attestflow.adapters import load_adapter
    from attestflow.adapters.tabular import TabularAdapter
    from attestflow.dataset import classifier_classes, encode_labels, read_table

    data = cfg.data
    df = read_table(data.path)
    if data.label not in df.columns:
        raise BadInputError(
            f"data.label {data.label!r} is not a column of {data.path} ({_shown(df.columns)})"
        )
    classes = classifier_classes(df[data.label], data)
    encode_labels(df[data.label], classes, data.label)
    adapter = load_adapter(cfg.model)
    if isinstance(adapter, TabularAdapter):
        check_tabular_features(df, cfg)
        check_base_shape(cfg, len(classes))
    else:
        adapter.encode(df.head(1), data)  # the adapter's own columns are there
    check_canary_labels(cfg.canary, data)
    return cfg.model_copy(update={"data": data.model_copy(update={"classes": classes})})


def check_tabular_features(df: pd.DataFrame, cfg: ReleaseConfig) -> None:
    """The tabular model's features are numeric columns of `df`, with no missing value unless one is imputed."""
    import pandas as pd

    data = cfg.data
    absent = [c for c in data.features if c not in df.columns]
    if absent:
        raise BadInputError(f"data.features: {_shown(absent)} not column(s) of {data.path}")
    text = [c for c in data.features if not pd.api.types.is_numeric_dtype(df[c])]
    if text:
        raise BadInputError(
            f"data.features {_shown(text)} are not numeric (the tabular model reads numbers): "
            "encode them as numbers or drop them from data.features"
        )
    missing = {c: int(n) for c, n in df[data.features].isna().sum().items() if n}
    empty = [c for c, n in missing.items() if n == len(df)]
    if empty:
        raise BadInputError(f"data.features {_shown(empty)} have no values: drop them from data.features")
    if missing and data.missing == "refuse":
        counts = ", ".join(f"{c!r}: {n}" for c, n in list(missing.items())[:5])
        more = ", ..." if len(missing) > 5 else ""
        raise BadInputError(
            f"missing feature values ({counts}{more}): fill them in the data, or set data.missing: median "
            "to replace each by the training rows' median"
        )


def check_base_shape(cfg: ReleaseConfig, n_classes: int) -> None:
    """A tabular base checkpoint takes ``len(data.features)`` inputs and returns `n_classes` logits."""
    from attestflow.formats import Format, detect_format
    from attestflow.tabular import checkpoint_shape

    base = cfg.fine_tune.base_checkpoint
    if base is None:
        return
    if not base.is_file():
        raise BadInputError(f"fine_tune.base_checkpoint: {base} does not exist")
    if detect_format(base) != Format.SAFETENSORS:
        return  # the fine_tune stage's format rule refuses it, or imports it when allowed
    shape = checkpoint_shape(base)
    hint = "unset fine_tune.base_checkpoint to train from scratch"
    n_features = len(cfg.data.features)
    if shape.n_features != n_features:
        raise BadInputError(
            f"base checkpoint {base} takes {shape.n_features} features, data.features has {n_features}; {hint}"
        )
    if shape.n_classes != n_classes:
        raise BadInputError(
            f"base checkpoint {base} has {shape.n_classes} classes, the label {cfg.data.label!r} has "
            f"{n_classes}; {hint}"
        )
    hidden = cfg.model.options.get("hidden")
    if hidden is not None and tuple(hidden) != shape.hidden:
        raise BadInputError(
            f"model.options.hidden {list(hidden)} differs from base checkpoint {base}'s {list(shape.hidden)}; "
            "the option shapes a model trained from scratch: unset one of them"
        )


def _shown(names: Iterable[object], limit: int = 8) -> str:
    """Up to `limit` names, quoted, then how many more."""
    items = [repr(str(n)) for n in names]
    rest = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + rest


def require_project_root(root: Path) -> None:
    """The bundled example runs only in the project root: its pipeline and config must be there."""
    missing = [name for name in ("dvc.yaml", str(DEMO_CONFIG)) if not (root / name).is_file()]
    if missing:
        raise BadInputError(
            f"the demo runs in the project root: {' and '.join(missing)} not found in {root.resolve()}"
        )


def evaluation_inputs(
    config: Path, policy: Path | None, data: Path | None, checkpoint: Path | None
) -> tuple[ReleaseConfig, GatePolicy]:
    """The config (with `data` as its data path, if given) and gate policy of a stand-alone evaluation."""
    from attestflow.dataset import require_data_file

    cfg = load_config(config)
    if data is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": data})})
    gate_policy = load_policy(policy or cfg.gates.policy)
    require_data_file(cfg.data.path)
    if checkpoint is not None and not checkpoint.is_file():
        raise BadInputError(f"checkpoint not found: {checkpoint}")
    return cfg, gate_policy
