from __future__ import annotations

from tasks import retrain_task
from yolo_retrain.config import Settings
from yolo_retrain.selection import run
from yolo_retrain.selection.score_pool import ScoredPool


@retrain_task("choose-for-review")
def choose_for_review(
    settings: Settings, pool: ScoredPool, champion: run.Champion, budget: int, sources: list[str], class_names: list[str]
) -> run.Selection:
    """Pick the budget's images (informative, no near-duplicates, rare classes covered) and record them as selected,
    all or none, so no image is ever picked twice.

    Args:
        settings: Near-duplicate distance, coverage weight; the sample store.
        pool: The scored candidates.
        champion: The version that scored them.
        budget: Images to pick.
        sources: What the pool was read from (recorded with the selection).
        class_names: The project's classes.
    """
    selection = run.new_selection(settings, champion, budget, sources, pool, run.pick(settings, pool, budget, class_names), class_names)
    run.record(settings, selection)
    return selection
