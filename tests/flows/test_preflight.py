"""A release whose repository holds a secret is refused by its preflight, before any stage runs."""

from __future__ import annotations

import pytest
import yaml

from attestflow.audit import AuditLog
from attestflow.errors import GateFailedError
from flows.release import release
from tests.code.gitrepos import aws_key, make_repo
from tests.conftest import ExampleRepo


def test_a_planted_secret_refuses_the_release_before_any_stage(example_repo: ExampleRepo) -> None:
    key = aws_key()
    config = example_repo.write_config()
    make_repo(
        example_repo.root,
        {"notes.py": f"KEY = '{key}'\n"},
        check_config={"release": ["secrets", "model-files"]},
    )
    with pytest.raises(GateFailedError) as refused:
        release(config_path=str(config))
    (reason,) = refused.value.reasons
    assert reason.startswith("preflight: secrets notes.py:1: AWS Access Key in the file")
    assert key not in reason

    entries = AuditLog.of(example_repo.workspace).entries()
    assert [e["event"] for e in entries] == ["release_failed"], "no run_started: nothing began"
    (failed,) = entries
    assert failed["details"]["stage"] == "preflight" and failed["details"]["exit_code"] == 1
    assert key not in yaml.safe_dump(entries)
    assert not (example_repo.workspace / "releases").exists()
