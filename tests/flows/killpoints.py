"""The attestflow CLI, killed with SIGKILL at a named point of the release: ``python -m tests.flows.killpoints ARGS``.

Test-only: the production code has no crash hook. ``ATTESTFLOW_TEST_KILL_AT`` names the point:
``before:STAGE`` or ``after:STAGE`` (the first time stage STAGE starts or returns), or
``inside:register`` (the model version was created, nothing after it ran: no record, no audit
entry, no evidence), or ``epoch:N`` (training is about to run epoch N). At each point named in
``ATTESTFLOW_TEST_PAUSE_AT`` (comma-separated) the release writes the point's name into the file
``ATTESTFLOW_TEST_PAUSE_FILE`` and waits until it is removed, so a test can break something
around the release at that moment. Unset, the CLI runs as it is.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

KILL_AT = os.environ.get("ATTESTFLOW_TEST_KILL_AT", "")
PAUSE_AT = [p for p in os.environ.get("ATTESTFLOW_TEST_PAUSE_AT", "").split(",") if p]


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _pause(point: str) -> None:
    flag = Path(os.environ["ATTESTFLOW_TEST_PAUSE_FILE"])
    flag.write_text(point)
    while flag.exists():
        time.sleep(0.2)


_paused: set[str] = set()


def _at(point: str) -> None:
    if point == KILL_AT:
        _die()
    if point in PAUSE_AT and point not in _paused:
        _paused.add(point)
        _pause(point)


def _install() -> None:
    import flows.release
    from attestflow.registry import Registry
    from attestflow.training.loop import Trainer

    real_stage = flows.release.stage

    def stage_with_hooks(t: Any, cfg: Any, cache: Any = None) -> Callable[..., Any]:
        configured: Callable[..., Any] = real_stage(t, cfg, cache)

        def call(*args: Any, **kwargs: Any) -> Any:
            _at(f"before:{t.name}")
            result = configured(*args, **kwargs)
            _at(f"after:{t.name}")
            return result

        return call

    flows.release.stage = stage_with_hooks  # type: ignore[assignment]
    real_create = Registry.create_version

    def create_with_hook(self: Registry, *args: Any, **kwargs: Any) -> Any:
        created = real_create(self, *args, **kwargs)
        _at("inside:register")
        return created

    Registry.create_version = create_with_hook  # type: ignore[method-assign]
    real_epoch = Trainer.run_epoch

    def epoch_with_hooks(self: Trainer, train_split: Any, epoch: int, first_batch: int) -> float:
        _at(f"epoch:{epoch}")
        return real_epoch(self, train_split, epoch, first_batch)

    Trainer.run_epoch = epoch_with_hooks  # type: ignore[method-assign]


if __name__ == "__main__":
    import flows.cli.releases
    from flows.cli import main

    real_release_state = flows.cli.releases.release_state

    def release_state_with_hooks(
        config: Path, overrides: list[str], env: str | None = None, environments: Path | None = None
    ) -> Any:
        _install()  # only now: Prefect must be imported after the workspace pointed it at its state
        return real_release_state(config, overrides, env, environments)

    flows.cli.releases.release_state = release_state_with_hooks
    main()
