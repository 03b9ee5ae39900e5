"""A person's decision on the candidate awaiting approval, from the Prefect UI (deployment ``review-candidate``).

No worker or GPU waits for the person: the retrain ended when it held the candidate; this short flow runs when
someone decides. The logic is in ``yolo_retrain.approval``; the CLI's ``approve``/``refuse`` do the same.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from yolo_retrain import approval, tracking
from yolo_retrain.approval_view import candidate_summary
from yolo_retrain.config import configure_environment, get_settings
from yolo_retrain.errors import InvalidInput
from yolo_retrain.recovery import no_retrain_running


@flow(name="review-candidate", log_prints=True)
def review_candidate(
    version: str = "",
    decision: Literal["show", "approve", "refuse"] = "show",
    by: str = "",
    reason: str = "",
) -> str:
    """See the candidate awaiting approval (the gate's comparison: overall, per class, fixed/learned), then approve
    or refuse it. Run it first with decision=show; the comparison is this run's artifact.

    Args:
        version: The registry version awaiting approval (the retrain's summary names it); empty with show: the one waiting.
        decision: show (the comparison only), approve (it becomes champion), refuse (it stays out of use).
        by: Who decides, recorded on the version with the time: required to approve or refuse.
        reason: Why, recorded on the version: required to refuse.
    """
    settings = configure_environment(get_settings())  # the flow is an entry point
    client = tracking.client_for(settings)
    if decision != "show":
        if not version or not by.strip():
            raise InvalidInput(f"review-candidate: to {decision}, give the version and who decides (by)")
        decide = approval.approve if decision == "approve" else approval.refuse
        with no_retrain_running(settings):  # the running retrain's gate writes the aliases too
            decided = decide(client, settings, version, by=by, **({"note": reason} if decision == "approve" else {"reason": reason}))
    else:
        approval.reconcile(client, settings)
        decided = client.get_model_version(settings.model_name, version) if version else approval.awaiting(client, settings)
        if decided is None:
            print("no candidate awaits approval")
            return "no candidate awaits approval"
    summary = candidate_summary(client, decided, markdown=True)
    create_markdown_artifact(summary, key="candidate-review", description=f"Candidate v{decided.version}: {decision}")
    print(candidate_summary(client, decided))
    return approval.describe(decided)
