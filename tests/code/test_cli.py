"""The CLI's exit-code contract (one clear line, no traceback) and its light start: `--help` loads no ML library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from attestflow import __version__
from attestflow.errors import (
    BadInputError,
    ConfigError,
    GateFailedError,
    RegistryUnavailableError,
    UnavailableError,
)
from attestflow.workspace import Workspace
from flows.cli import app, exit_code

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--config", "does/not/exist.yaml"], "config file not found"),
        (["run", "--config", str(ROOT / "configs/release.yaml"), "--set", "fine_tune.epochs=zero"], "epochs"),
        (["run", "--config", str(ROOT / "configs/release.yaml"), "--set", "nonsense"], "KEY=VALUE"),
        (
            ["run", "--config", str(ROOT / "configs/release.yaml"), "--set", "data.path=/no/such.csv"],
            "data.path: /no/such.csv does not exist",
        ),
        (
            ["run", "--config", str(ROOT / "configs/release.yaml"), "--set", "gates.policy=/no/gates.yaml"],
            "gate policy not found: /no/gates.yaml",
        ),
        (
            ["run", "--config", str(ROOT / "configs/release.yaml"), "--set", "model.adapter=nope.mod:X"],
            "model.adapter 'nope.mod:X' cannot be imported",
        ),
        (
            ["run", "--config", str(ROOT / "configs/release.yaml"), "--set", "model.options.foo=1"],
            "model.options.foo: the tabular adapter takes only hidden",
        ),
        (
            ["run", "--config", str(ROOT / "configs/release.yaml"), "--set", "approve.mode=human"],
            "mode human needs approve.approvers",
        ),
        (
            [
                "run",
                "--config",
                str(ROOT / "configs/release.yaml"),
                "--set",
                "approve={approvers: [alice], approver_keys: {alice: /no/alice.pem}}",
            ],
            "cannot read public key /no/alice.pem",
        ),
        (["approve", "run-7", "--digest", "ab" * 32, "--reason", "ok"], "not a flow run id"),
        (["approve", str(UUID(int=7)), "--digest", "ab" * 32, "--reason", " "], "--reason is required"),
        (
            ["reject", str(UUID(int=7)), "--digest", "ab" * 8, "--reason", "no", "--key", "alice.pem"],
            "with --key, --digest must be the bundle's full SHA-256",
        ),
        (
            ["approve", str(UUID(int=7)), "--digest", "ab" * 32, "--reason", "ok", "--key", "/no/key.pem"],
            "cannot read private key /no/key.pem",
        ),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") <= 2


HEAVY = ("torch", "prefect", "mlflow", "onnxruntime", "dvc")


def _loaded_in_fresh_interpreter(code: str) -> list[str]:
    """The heavy libraries in `sys.modules` after `code` ran in a new Python process."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_cli_loads_neither_torch_prefect_nor_mlflow() -> None:
    assert _loaded_in_fresh_interpreter("import flows.cli") == []


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_load_none_of_the_heavy_libraries(flag: str) -> None:
    run_cli = (
        "import runpy, sys, contextlib, io\n"
        f"sys.argv = ['attestflow', {flag!r}]\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    runpy.run_module('flows.cli', run_name='__main__')"
    )
    assert _loaded_in_fresh_interpreter(run_cli) == []


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"attestflow {__version__}"


def test_demo_outside_the_project_root_exits_2_naming_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 2, result.output
    assert "dvc.yaml" in result.output and "configs/release.yaml" in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (GateFailedError(["gate performance: accuracy 0.61 < 0.70"]), 1, "  - gate performance"),
        (BadInputError("data.path: /no/such.csv does not exist"), 2, "error: data.path"),
        (ConfigError("config file not found: x.yaml"), 2, "error: config file not found"),
        (UnavailableError("the Prefect API did not answer"), 3, "could not run: the Prefect API"),
        (RegistryUnavailableError("http://127.0.0.1:9 refused the connection"), 3, "could not run: http://"),
    ],
)
def test_each_domain_error_maps_to_its_exit_code(
    error: Exception, code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(error, "verify") == code
    assert message in capsys.readouterr().err


def test_an_error_outside_the_contract_is_left_to_propagate() -> None:
    assert exit_code(ValueError("a bug"), "run") is None


class _FailedState:
    """A flow run's final state that failed with `exc`."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def is_completed(self) -> bool:
        return False

    def result(self, raise_on_failure: bool = True) -> BaseException:
        return self.exc


def _release_that(behaviour: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand in for the release flow (and skip the preflight and workspace it would need)."""
    monkeypatch.setattr("attestflow.preflight.preflight", lambda cfg, on_repro=None: None)
    monkeypatch.setattr(Workspace, "activate", lambda self: None)
    monkeypatch.setitem(sys.modules, "flows.release", SimpleNamespace(release=behaviour))


def _refuse_to_connect(**_: Any) -> Any:
    raise ConnectionRefusedError("[Errno 111] Connection refused")


@pytest.mark.parametrize(
    ("behaviour", "code", "message"),
    [
        (_refuse_to_connect, 3, "could not run: the release flow run did not start: ConnectionRefusedError"),
        (
            lambda **_: _FailedState(UnavailableError("DVC remote unreachable")),
            3,
            "could not run: DVC remote",
        ),
        (lambda **_: _FailedState(GateFailedError(["champion not moved"])), 1, "release refused:"),
        (lambda **_: _FailedState(BadInputError("data.path: x")), 2, "error: data.path: x"),
        (lambda **_: _FailedState(RuntimeError("boom")), 1, "release failed: RuntimeError: boom"),
    ],
    ids=["orchestrator-down", "outage-in-the-flow", "gate-said-no", "bad-input-in-the-flow", "a-bug"],
)
def test_a_release_exits_3_when_it_cannot_run_and_1_when_refused(
    behaviour: Callable[..., Any], code: int, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _release_that(behaviour, monkeypatch)
    result = CliRunner().invoke(app, ["run", "--config", str(ROOT / "configs/release.yaml")])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "args",
    [
        ["run"],
        ["verify", "models:/tiny-credit@champion"],
        ["rollback", "--reason", "test"],
        ["rollback", "--to", "1", "--reason", "test"],
    ],
    ids=["run", "verify", "rollback", "rollback-to"],
)
def test_an_unreachable_registry_exits_3_not_as_a_refusal_or_bad_input(
    example_repo: Any, args: list[str]
) -> None:
    from attestflow.keys import ensure_keypair

    ensure_keypair(Workspace.at(example_repo.workspace).root / "keys")  # a key as after a first release
    config = example_repo.write_config(register={"tracking_uri": f"http://127.0.0.1:{_closed_port()}"})
    result = CliRunner().invoke(app, [*args, "--config", str(config)])
    assert result.exit_code == 3, result.output
    assert "could not run" in result.output
    assert "127.0.0.1" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("outcome", "code", "said"),
    [
        ({"accepted": True, "refused": None}, 0, "approved flow run"),
        ({"accepted": False, "refused": "user:bob is not in approve.approvers"}, 1, "it keeps waiting"),
        (None, 3, "did not decide on the answer within 1 s"),
    ],
)
def test_approve_reports_what_the_flow_decided_not_what_it_sent(
    monkeypatch: pytest.MonkeyPatch, outcome: dict[str, Any] | None, code: int, said: str
) -> None:
    import attestflow.approval_channel as channel

    sent: list[dict[str, Any]] = []

    def send_answer(run_id: UUID, answer: dict[str, Any]) -> str:
        sent.append(answer)
        return "approval-1"

    monkeypatch.setattr(channel, "send_answer", send_answer)
    monkeypatch.setattr(channel, "wait_for_outcome", lambda run_id, key, wait: outcome)
    args = ["approve", str(UUID(int=7)), "--digest", "ab" * 8, "--reason", "ok", "--approver", "bob"]
    result = CliRunner().invoke(app, [*args, "--wait", "1"])
    assert result.exit_code == code, result.output
    assert said in result.output and "Traceback" not in result.output
    assert sent == [
        {"approve": True, "approver": "user:bob", "reason": "ok", "digest": "ab" * 8, "signed": ""}
    ]


def test_lineage_reads_the_environment_whose_model_it_is_given_and_no_other() -> None:
    from flows.cli.verification import _environment_of

    envs = ROOT / "configs" / "environments.yaml"
    assert _environment_of("models:/credit-default-prod@champion", envs) == "prod"
    assert _environment_of("models:/credit-default/3", envs) == "staging"
    assert _environment_of("models:/another-model@champion", envs) is None
    assert _environment_of("ab" * 32, envs) is None
    assert _environment_of("models:/credit-default-prod/1", ROOT / "absent.yaml") is None
