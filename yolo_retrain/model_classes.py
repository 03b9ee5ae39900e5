"""The class contract's other half: a model's ``model.names`` must equal the project's classes (the base data.yaml's
names, in order). A model trained on other classes, or the same ones in another order, would be promoted and
trained on with every id meaning something else; ``init --weights``, ``doctor``, ``verify`` and every training or
evaluation of a retrain (``training.py``) refuse it here.
"""

from __future__ import annotations

from pathlib import Path

from yolo_retrain.data_yaml import class_names
from yolo_retrain.errors import InvalidInput
from yolo_retrain.files import check_regular


class ClassMismatch(InvalidInput):
    """Weights whose class names differ from the project's."""


def model_class_names(weights: Path) -> list[str]:
    """``model.names`` of YOLO weights, in index order (loading them with Ultralytics)."""
    from ultralytics import YOLO

    check_regular(weights, "weights")
    try:
        names = YOLO(str(weights)).names
    except Exception as exc:  # Ultralytics raises many types for a bad file
        raise InvalidInput(f"{weights}: not loadable as YOLO weights ({exc})") from exc
    return class_names(names, f"weights {weights}")


def check_model_classes(weights: Path, project_names: list[str], project_source: str) -> list[str]:
    """The weights' class names if they equal ``project_names`` (same names, same order); ClassMismatch naming
    both lists otherwise."""
    return require_same_classes(model_class_names(weights), weights, project_names, project_source)


# What to do about weights of other classes, where they are offered (``init --weights``) and where a retrain meets
# them (the champion, or ``base_model`` weights): init has an experiment to fill, a retrain a registered model.
FIX_OFFERED = (
    "Use weights trained on the project's classes, or train a baseline (`yolo-retrain init` without --weights)"
)
FIX_IN_RETRAIN = (
    "Restore the base data.yaml's names, or start a registered model for these classes "
    "(a new YOLO_RETRAIN_MODEL_NAME, then `yolo-retrain init` trains its baseline)"
)


def require_same_classes(
    names: list[str], weights: Path | str, project_names: list[str], project_source: str, fix: str = FIX_OFFERED
) -> list[str]:
    """``names`` (a model's, read from ``weights``) if they equal ``project_names``; ClassMismatch otherwise."""
    if names != list(project_names):
        same_set = sorted(names) == sorted(project_names)
        raise ClassMismatch(
            f"{weights}: the model's classes {names} differ from the project's {list(project_names)} "
            f"({project_source}){' (same names, another order)' if same_set else ''}: its class ids would mean "
            f"other classes. {fix}"
        )
    return names
