"""`init_project`: from a table and a label column to the three files a release needs, data tracked.

A new user should not copy four files and list thirty feature names by hand. Everything that
can refuse the table or the target files is checked first, so that a refusal writes nothing;
then the data is tracked with DVC (a DVC repository is created when there is none), and the
release config, gate policy and expectation suite are written, each validated by the same
models that load them at release time.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from attestflow.errors import BadInputError
from attestflow.scaffold.baseline import Baseline, fit_baseline, policy_yaml
from attestflow.scaffold.profile import suite_yaml
from attestflow.scaffold.release import config_yaml
from attestflow.scaffold.table import TableSpec, inspect_table
from attestflow.yamlfile import parse_yaml

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""What a model name may be (`ReleaseConfig.model_name`)."""


@dataclass(frozen=True)
class InitResult:
    """What `init_project` wrote and inferred, and the command that releases it."""

    config: Path
    """The release config (``configs/<name>.yaml``)."""
    policy: Path
    """The gate policy (``configs/<name>-gates.yaml``)."""
    suite: Path
    """The expectation suite (``configs/expectations/<name>.yaml``)."""
    dvc_file: Path
    """The file in which DVC recorded the data."""
    dvc_init: str | None
    """The ``dvc init`` that was run because no DVC repository held the data, or None."""
    name: str
    """The model name."""
    spec: TableSpec
    """Features, classes and adapter, as inferred and checked."""
    baseline: Baseline
    """The baseline's held-out scores that set the thresholds."""
    next_command: str
    """The command that releases the data with these files."""

    @property
    def written(self) -> tuple[Path, ...]:
        """The files written, in the order a user reads them."""
        return (self.config, self.policy, self.suite)


def model_name_for(stem: str) -> str:
    """`stem` made a valid model name: runs of other characters become ``-``; a leading one is dropped."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-_.")
    return name or "model"


def _checked_task(task: str) -> None:
    if task == "regression":
        raise BadInputError(
            "--task regression: regression is not supported yet; attestflow releases classifiers"
        )
    if task != "classification":
        raise BadInputError(f"--task {task!r}: expected classification")


def _checked_name(name: str | None, data: Path) -> str:
    if name is None:
        return model_name_for(data.stem)
    if not NAME_PATTERN.match(name):
        raise BadInputError(
            f"--name {name!r}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )
    return name


def _dvc_home(root: Path) -> tuple[Path | None, str]:
    """The DVC repository above or at `root` (None when there is none), and the ``dvc init`` to make one."""
    for folder in (root, *root.parents):
        if (folder / ".dvc").is_dir():
            return folder, ""
    for folder in (root, *root.parents):
        if (folder / ".git").exists():
            return None, "dvc init" if folder == root else "dvc init --subdir"
    return None, "dvc init --no-scm"


def _track(root: Path, data: Path) -> tuple[Path, Path, str | None]:
    """Track `data` with DVC, making a DVC repo at `root` if needed: (repo root, DVC file, the init run)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    from attestflow.dvc import in_dir, track

    repo_root, how = _dvc_home(root)
    dvc_log = logging.getLogger("dvc")
    level = dvc_log.level
    dvc_log.setLevel(
        logging.WARNING
    )  # DVC's own hints ("To track the changes with git...") would bury init's
    try:
        if repo_root is None:
            Repo.init(str(root), no_scm="--no-scm" in how, subdir="--subdir" in how)
            repo_root = root
        with in_dir(repo_root):
            _, dvc_file = track(repo_root, data)
    except DvcException as e:
        raise BadInputError(f"DVC could not track {data}: {' '.join(str(e).split())}") from None
    finally:
        dvc_log.setLevel(level)
    return repo_root, dvc_file, how or None


def _validated(config: str, policy: str, suite: str) -> None:
    """The generated files load as a release will load them (a failure here is a bug in init)."""
    from attestflow.config import ReleaseConfig
    from attestflow.policy import GatePolicy

    ReleaseConfig.model_validate(parse_yaml(config))
    GatePolicy.model_validate(parse_yaml(policy))
    if not isinstance(parse_yaml(suite).get("expectations"), list):
        raise AssertionError("the generated expectation suite has no expectations")


def init_project(
    data: Path | str,
    label: str,
    *,
    sensitive: str | None = None,
    task: str = "classification",
    name: str | None = None,
    features: list[str] | None = None,
    force: bool = False,
    root: Path = Path("."),
) -> InitResult:
    """Write a release config, a gate policy and an expectation suite for `data`, and track it with DVC.

    `data` is a CSV or Parquet file inside `root` (a relative path is relative to `root`); the
    files go to ``root/configs/``. Nothing is written when any check fails; an existing file
    is overwritten only with `force`.
    """
    from attestflow.dataset import read_table

    _checked_task(task)
    root = root.resolve()
    data_path = (root / data).resolve()
    if not data_path.is_relative_to(root):
        raise BadInputError(
            f"--data {data}: the data must lie inside the project folder {root}; copy it there"
        )
    model_name = _checked_name(name, data_path)
    config = root / "configs" / f"{model_name}.yaml"
    policy = root / "configs" / f"{model_name}-gates.yaml"
    suite = root / "configs" / "expectations" / f"{model_name}.yaml"
    if not force:
        for path in (config, policy, suite):
            if path.exists():
                raise BadInputError(f"{path.relative_to(root)} exists; pass --force to overwrite it")

    df = read_table(data_path)
    spec = inspect_table(df, label, sensitive=sensitive, features=features)
    baseline = fit_baseline(df, spec)
    rel = data_path.relative_to(root).as_posix()
    suite_text = suite_yaml(df, spec, model_name, rel)
    policy_text = policy_yaml(baseline, spec, rel)

    repo_root, _ = _dvc_home(root)
    dvc_repo = os.path.relpath(repo_root, root) if repo_root is not None else "."
    config_text = config_yaml(
        spec,
        df,
        name=model_name,
        data_path=rel,
        suite_path=suite.relative_to(root).as_posix(),
        policy_path=policy.relative_to(root).as_posix(),
        dvc_repo=Path(dvc_repo).as_posix(),
    )
    _validated(config_text, policy_text, suite_text)

    _, dvc_file, dvc_init = _track(root, data_path)
    for path, text in ((config, config_text), (policy, policy_text), (suite, suite_text)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return InitResult(
        config=config,
        policy=policy,
        suite=suite,
        dvc_file=dvc_file,
        dvc_init=dvc_init,
        name=model_name,
        spec=spec,
        baseline=baseline,
        next_command=f"attestflow run --config {config.relative_to(root).as_posix()}",
    )
