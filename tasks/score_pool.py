from __future__ import annotations

from tasks import retrain_task
from yolo_retrain.config import Settings
from yolo_retrain.selection import run
from yolo_retrain.selection.pool import PoolImage
from yolo_retrain.selection.score_pool import ScoredPool


@retrain_task("score-pool")
def score_pool(settings: Settings, images: list[PoolImage], champion: run.Champion, budget: int) -> ScoredPool:
    """The champion predicts on every image; each gets its signals (uncertainty, confusion, disagreement) and a hash.

    Args:
        settings: Selection threshold and minimum confidence, image size and device.
        images: The pool (``gather-pool``).
        champion: Its version and hash-checked weights.
        budget: Images to pick: how many candidates are kept (10x, at least 200, overall and per class).
    """
    return run.score(settings, images, champion, budget)
