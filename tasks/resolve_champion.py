from __future__ import annotations

from tasks import retrain_task
from yolo_retrain import registry, tracking
from yolo_retrain.config import Settings


@retrain_task("resolve-champion")
def resolve_champion(settings: Settings) -> registry.Champion | None:
    """The registry's ``champion`` version and its local weights, hash-checked; None before the first one.

    Args:
        settings: The registered model name and the local models folder.
    """
    return registry.current_champion(tracking.client_for(settings), settings)
