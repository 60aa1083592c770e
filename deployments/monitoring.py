"""Turn prod's monitoring on through the Prefect API: the drift monitor's schedule and two notifying automations.

Prod's promotion precondition (`attestflow.preconditions`) asks the Prefect API whether the
drift monitor deployment exists with an active, unpaused schedule, and whether enabled
automations send a notification on drift (``attestflow.drift.detected``) and on a canary
roll-back (``attestflow.audit.canary_rollback``). This sets exactly that up, idempotently:
the deployment comes from ``prefect.yaml`` (`deployments.deploy`, only that deployment) when
it is missing, and is resumed with its schedules activated when it is paused; the
notification goes to a `CustomWebhookNotificationBlock` (created once, pointed at the URL
given), and each automation is created or brought back to this definition (enabled).

Usage: ``python -m deployments.monitoring --env prod [--environments PATH] [--webhook-url URL]``
with ``PREFECT_API_URL`` set (the URL also from ``$ATTESTFLOW_NOTIFY_URL``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, cast
from uuid import UUID

from attestflow.environments import MonitoringRequirement
from attestflow.errors import BadInputError
from attestflow.preconditions import CANARY_ROLLBACK_EVENT, DRIFT_EVENT
from deployments.deploy import POOLS_FILE, PREFECT_FILE, deploy

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

BLOCK = "attestflow-notify"
"""The notification block's name (a `CustomWebhookNotificationBlock`)."""
AUTOMATIONS = {"notify on drift": DRIFT_EVENT, "notify on canary roll-back": CANARY_ROLLBACK_EVENT}
URL_VARIABLE = "ATTESTFLOW_NOTIFY_URL"


def ensure_monitoring(
    req: MonitoringRequirement,
    webhook_url: str | None = None,
    *,
    prefect_file: Path = PREFECT_FILE,
    pools_file: Path = POOLS_FILE,
) -> list[str]:
    """Make `req` hold: the deployment scheduled and unpaused, and (if asked) the automations; what was done."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    done = []
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(req.deployment)
        except ObjectNotFound:
            deploy(prefect_file, pools_file, names=[req.deployment])
            done.append(f"deployed {req.deployment} from {prefect_file.name}")
        done += _scheduled(client, req.deployment)
        if req.automations:
            block = _notification_block(webhook_url)
            done += [_automation(client, name, event, block) for name, event in AUTOMATIONS.items()]
    return done


def _scheduled(client: SyncPrefectClient, name: str) -> list[str]:
    """Resume the deployment if paused and activate its schedules; refuse one without any."""
    from prefect.exceptions import ObjectNotFound

    try:
        deployment = client.read_deployment_by_name(name)
    except ObjectNotFound:
        raise BadInputError(f"prefect.yaml deploys no {name} (flow-name/deployment-name)") from None
    if not deployment.schedules:
        raise BadInputError(f"deployment {name} has no schedule: give it one in prefect.yaml")
    done = []
    if deployment.paused:
        client.resume_deployment(deployment.id)
        done.append(f"resumed {name}")
    for schedule in deployment.schedules:
        if not schedule.active:
            client.update_deployment_schedule(deployment.id, schedule.id, active=True)
            done.append(f"activated a schedule of {name}")
    return done or [f"{name} already scheduled"]


def _notification_block(url: str | None) -> UUID:
    """The id of the webhook notification block, created (or re-pointed at `url`) as needed."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    if url is None:
        try:
            existing = cast(CustomWebhookNotificationBlock, CustomWebhookNotificationBlock.load(BLOCK))
        except ValueError:
            raise BadInputError(
                f"no notification block {BLOCK!r} yet: give --webhook-url or ${URL_VARIABLE}"
            ) from None
        if existing._block_document_id is None:
            raise BadInputError(f"notification block {BLOCK!r} has no id")
        return existing._block_document_id
    block = CustomWebhookNotificationBlock(
        name="attestflow",
        url=url,
        method="POST",
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
    )
    return cast(UUID, block.save(BLOCK, overwrite=True))


def _automation(client: SyncPrefectClient, name: str, event: str, block: UUID) -> str:
    """Create the automation `name` notifying on `event`, or bring an existing one back to it (enabled)."""
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    wanted = AutomationCore(
        name=name,
        description=f"attestflow: notify a person on {event} (prod's monitoring precondition).",
        enabled=True,
        trigger=EventTrigger(expect={event}, posture=Posture.Reactive, threshold=1),
        actions=[
            SendNotification(
                block_document_id=block,
                subject=f"attestflow: {event}",
                body="{{ event.event }} for {{ event.resource.id }} at {{ event.occurred }}",
            )
        ],
    )
    existing = client.read_automations_by_name(name)
    if not existing:
        client.create_automation(wanted)
        return f"created automation {name!r}"
    client.update_automation(existing[0].id, wanted)
    return f"updated automation {name!r}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Set up an environment's monitoring through the Prefect API."
    )
    parser.add_argument("--env", required=True, help="environment whose preconditions.monitoring to set up")
    parser.add_argument("--environments", type=Path, default=Path("configs/environments.yaml"))
    parser.add_argument("--webhook-url", default=os.environ.get(URL_VARIABLE), help="where notifications go")
    args = parser.parse_args(argv)
    from attestflow.environments import get_environment, load_environments

    try:
        env = get_environment(load_environments(args.environments), args.env)
        if env.preconditions.monitoring is None:
            raise BadInputError(f"environment {args.env} requires no monitoring (preconditions.monitoring)")
        done = ensure_monitoring(env.preconditions.monitoring, args.webhook_url)
    except BadInputError as e:
        raise SystemExit(f"error: {e}") from None
    for line in done:
        print(line)


if __name__ == "__main__":
    main()
