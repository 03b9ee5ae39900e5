"""What a step's result depends on, as one digest: a cached result is reused only for the same inputs.

A retried flow run (Prefect's *Retry*: the same flow run id) reuses the training and evaluation results of its
earlier attempt; corrections may have arrived in between, or the champion changed. So each input counts by
what it is, not by how it is named: a dataset by its content digest, a weights file by its bytes, the
settings by every value, the recipe by its arguments, an MLflow run by its id, a champion by its version and weights hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from yolo_retrain.hashing import file_sha256


def inputs_digest(parameters: Mapping[str, Any]) -> str:
    """A digest of ``parameters`` (name -> value) that changes whenever any of them means something else.

    Raises TypeError for a value it cannot describe: a result is never reused on a guess.
    """
    described = sorted((name, describe(value)) for name, value in parameters.items())
    return hashlib.sha256(repr(described).encode()).hexdigest()


def describe(value: Any) -> str:
    """One value as text that is equal exactly when the value means the same input."""
    from yolo_retrain.dataset import BuiltDataset  # here: importing the dataset package is not needed otherwise
    from yolo_retrain.recipe import Recipe
    from yolo_retrain.registry import Champion
    from yolo_retrain.tracking import RetrainRun

    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):  # a weights path counts by its bytes: the same name may hold other weights
        path = Path(value)
        return f"{value!s} sha256:{file_sha256(path)}" if path.is_file() else repr(str(value))
    if isinstance(value, BuiltDataset):
        return f"dataset {value.digest}"
    if isinstance(value, RetrainRun):
        return f"run {value.run_id}"
    if isinstance(value, Recipe):  # the train arguments the step uses (their sources change no result)
        return f"recipe {json.dumps(value.args, sort_keys=True, default=repr)}"
    if isinstance(value, Champion):
        return f"champion v{value.version} {describe(value.weights)}"
    if isinstance(value, BaseModel):  # the settings: every value (epochs, image size, gate, paths ...)
        return f"{type(value).__name__} {value.model_dump_json()}"
    raise TypeError(f"no stable description of a {type(value).__name__} as a step's input: add one here")
