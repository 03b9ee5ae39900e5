"""A retried flow run reuses a step's cached result only for the same inputs (tasks/__init__.py's cache key)."""

import pytest
from conftest import use_home

from yolo_retrain.dataset import build_dataset
from yolo_retrain.inputs_digest import describe, inputs_digest
from yolo_retrain.recipe import Recipe
from yolo_retrain.registry import Champion
from yolo_retrain.synthetic import make_dataset
from yolo_retrain.tracking import RetrainRun


def test_the_cache_key_changes_with_the_dataset_the_weights_bytes_and_the_settings(monkeypatch, tmp_path):
    settings = use_home(monkeypatch, tmp_path / "home", epochs=1)
    data = make_dataset(tmp_path / "demo", train=4, val=2, size=32)
    dataset = build_dataset(data.data_yaml, [], tmp_path / "datasets")
    weights = tmp_path / "champion.pt"
    weights.write_bytes(b"weights one")
    run = RetrainRun("run-1", "1", "flow-run-1")
    inputs = {"settings": settings, "run": run, "dataset": dataset, "start_weights": str(weights)}
    key = inputs_digest(inputs)
    assert inputs_digest(dict(inputs)) == key  # the same inputs: the result is reused

    other_data = make_dataset(tmp_path / "demo2", train=4, val=2, size=32, seed=3)  # corrections arrived: another dataset
    assert inputs_digest({**inputs, "dataset": build_dataset(other_data.data_yaml, [], tmp_path / "datasets")}) != key
    assert inputs_digest({**inputs, "settings": use_home(monkeypatch, tmp_path / "home", epochs=2)}) != key
    assert inputs_digest({**inputs, "run": RetrainRun("run-2", "1", "flow-run-1")}) != key
    weights.write_bytes(b"weights two")  # the same path, other weights (a new champion)
    assert inputs_digest(inputs) != key
    champion = Champion("3", weights, {"weights_sha256": "x"})
    assert describe(champion) != describe(Champion("4", weights)) and "sha256:" in describe(champion)

    with pytest.raises(TypeError, match="no stable description of a list"):
        inputs_digest({"corrections": [1, 2]})  # never reused on a guess



def test_the_cache_key_changes_with_the_recipes_arguments_not_their_sources():
    recipe = Recipe({"imgsz": 96, "lr0": 0.003, "optimizer": "AdamW"}, {"imgsz": "champion", "lr0": "champion", "optimizer": "champion"})
    key = inputs_digest({"recipe": recipe})
    same_args = Recipe(dict(recipe.args), {k: "recipe" for k in recipe.args})  # the same arguments from another layer
    assert inputs_digest({"recipe": same_args}) == key
    assert inputs_digest({"recipe": Recipe({**recipe.args, "lr0": 0.0003}, recipe.sources)}) != key
    assert inputs_digest({"recipe": Recipe({**recipe.args, "imgsz": 64}, recipe.sources)}) != key
