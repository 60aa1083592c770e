"""The ``prefect`` command, with the one fix ``prefect deploy`` needs against Prefect 3.8.8's own server.

After applying each deployment, ``prefect deploy`` asks for the pool's online workers with
``offset`` and ``limit`` sent as JSON ``null``; the 3.8.8 server (on the FastAPI this lock
pins) answers 422 because it takes only integers there, and the command stops before the
next deployment. Here that one client call sends the defaults the server would apply itself
(offset 0, limit 1: the answer is only used to say whether some worker is online). Nothing
else changes; drop this module when the server accepts the call.

Usage: ``python -m deployments.prefect_cli ARGS...`` as ``prefect ARGS...``.
"""

from __future__ import annotations

from typing import Any


def patch_read_workers() -> None:
    """Make ``read_workers_for_work_pool`` send integers for an unset offset and limit."""
    from prefect.client.orchestration import PrefectClient

    original = PrefectClient.read_workers_for_work_pool
    if getattr(original, "attestflow_patched", False):
        return

    async def read_workers_for_work_pool(
        self: PrefectClient,
        work_pool_name: str,
        worker_filter: Any = None,
        offset: int | None = None,
        limit: int | None = None,
    ) -> Any:
        return await original(
            self, work_pool_name, worker_filter, offset=offset or 0, limit=1 if limit is None else limit
        )

    read_workers_for_work_pool.attestflow_patched = True  # type: ignore[attr-defined]
    PrefectClient.read_workers_for_work_pool = read_workers_for_work_pool  # type: ignore[method-assign,assignment]


if __name__ == "__main__":
    from prefect.cli import app

    patch_read_workers()
    app()
