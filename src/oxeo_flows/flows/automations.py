"""Failure notification: a Prefect automation that notifies a notification block when an oxeo-flows run
fails or crashes (the Prefect 3 replacement of the original's Slack state handlers, without their noise:
one message per failed run, nothing on success).
"""

from __future__ import annotations

from typing import Any

TAG = "oxeo-flows"
SUBJECT = "oxeo-flows run {{ flow_run.name }} {{ flow_run.state.name }}"
BODY = (
    "Flow run {{ flow_run.name }} of {{ flow.name }} ended {{ flow_run.state.name }}: "
    "{{ flow_run.state.message }}\nParameters: {{ flow_run.parameters }}\n{{ flow_run|ui_url }}"
)


def create_failure_automation(block_name: str, name: str = "oxeo-flows-failure-alert") -> str:
    """Create (or replace) the automation; `block_name` names a saved notification block. Returns its id."""
    from prefect.automations import Automation, EventTrigger, Posture, SendNotification
    from prefect.client.orchestration import get_client

    from oxeo_flows.errors import InputError

    with get_client(sync_client=True) as client:
        docs = [d for d in client.read_block_documents() if d.name == block_name]
        if not docs:
            raise InputError("--block", f"no notification block named {block_name!r} on the server")
        block_id = docs[0].id
        for existing in client.read_automations_by_name(name):
            client.delete_automation(existing.id)
    automation: Any = Automation(
        name=name,
        description="Notify when an oxeo-flows run fails or crashes",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match_related={"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{TAG}"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)],
    ).create()
    return str(automation.id)
