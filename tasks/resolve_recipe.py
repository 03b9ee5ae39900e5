from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from tasks import retrain_task
from yolo_retrain import tracking
from yolo_retrain.config import Settings
from yolo_retrain.recipe import RECIPE_ARTIFACT, Recipe, resolve


@retrain_task("resolve-recipe")
def resolve_recipe(
    settings: Settings, run: tracking.RetrainRun, team_recipe: dict[str, Any], start_weights: str
) -> Recipe:
    """The retrain's effective training arguments, each logged as a param, and ``recipe.yaml`` (arguments and where
    each came from: ultralytics / champion / continuation / recipe / setting) in the run.

    Args:
        settings: Epochs, and any image size, batch, device or workers set (the flow's parameters included).
        run: The retrain's MLflow run.
        team_recipe: The team's recipe file, already checked (:func:`yolo_retrain.recipe.read_recipe_file`).
        start_weights: The champion's weights (their recorded training arguments are inherited), or the base model.
    """
    recipe = resolve(settings, team_recipe, start_weights)
    client = tracking.client_for(settings)
    tracking.log_params(client, run.run_id, recipe.as_params())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / RECIPE_ARTIFACT
        path.write_text(yaml.safe_dump(recipe.as_document(), sort_keys=False))
        client.log_artifact(run.run_id, str(path))
    return recipe
