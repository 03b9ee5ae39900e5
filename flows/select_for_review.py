"""The selection flow: the champion scores the unlabelled pool and the most informative images go to reviewers."""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import Field

from tasks.choose_for_review import choose_for_review
from tasks.gather_pool import gather_pool
from tasks.log_selection import log_selection
from tasks.resolve_champion import resolve_champion
from tasks.score_pool import score_pool
from tasks.send_for_review import send_for_review
from yolo_retrain.config import configure_environment, get_settings
from yolo_retrain.data_yaml import read_class_names
from yolo_retrain.labelstudio.champion import NoChampion
from yolo_retrain.selection.run import Champion, EmptyPool, Selection


@flow(name="select-for-review", log_prints=True)
def select_for_review(
    budget: Annotated[int | None, Field(ge=1, le=10_000)] = None,
    sources: list[str] | None = None,
    include_samples: bool = True,
    project: Annotated[int | None, Field(ge=1)] = None,
) -> Selection | None:
    """Pick the images reviewers should look at next and send them to Label Studio pre-annotated.

    Args:
        budget: Images to pick; default YOLO_RETRAIN_SELECTION_BUDGET (50).
        sources: Folders, globs ("/data/cams/*.jpg") or list files of production images; none: only posted samples.
        include_samples: Also the samples posted to the intake (POST /samples) that no selection picked yet.
        project: Label Studio project id for the tasks; default YOLO_RETRAIN_LABEL_STUDIO_PROJECT (none: CSV only).
    """
    settings = configure_environment(get_settings())  # the flow is an entry point
    budget = budget or settings.selection_budget
    sources = list(sources or [])

    # 1. The champion that scores (its weights hash-checked).
    found = resolve_champion(settings)
    if found is None:
        raise NoChampion(f"model {settings.model_name!r} has no champion yet (run `yolo-retrain init`): nothing to score with")
    champion = Champion(found.version, found.weights)

    # 2. The pool: files named + posted samples (retention first). An empty pool ends the run quietly.
    try:
        images = gather_pool(settings, sources, include_samples)
    except EmptyPool as empty:
        create_markdown_artifact(markdown=f"Nothing to select: {empty}", key="selection-summary")
        print(f"nothing to select: {empty}")
        return None

    # 3. Score every image, 4. choose and record the picks (never twice), 5. Label Studio tasks + CSV + sheet.
    pool = score_pool(settings, images, champion, budget)
    selection = choose_for_review(settings, pool, champion, budget, sources, read_class_names(settings.base_data))
    selection = send_for_review(settings, selection, project or settings.label_studio_project)

    # 6. The record: an MLflow run (type=selection) and the Prefect summary.
    log_selection(settings, selection)
    print(selection.summary())
    return selection


if __name__ == "__main__":
    select_for_review()
