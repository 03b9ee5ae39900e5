"""The champion as an MLflow pyfunc (yolo_retrain/pyfunc_model.py): loaded from the registry, it predicts the
boxes its weights detect. Real MLflow (SQLite), real Ultralytics; no Prefect, no training."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from conftest import TINY, use_home
from typer.testing import CliRunner
from ultralytics import YOLO

from yolo_retrain.cli import app
from yolo_retrain.synthetic import make_dataset, untrained_weights


def detecting_weights(path: Path) -> Path:
    """YOLO weights that detect without any training: class 0's score bias is so high that every image gets
    class-0 boxes at the default confidence (an untrained model, like a 1-epoch one, detects nothing)."""
    model = YOLO(str(untrained_weights(path)))  # the project's classes: init refuses others
    for branch in model.model.model[-1].cv3:  # the detection head's class-score convolutions, one per scale
        branch[-1].bias.data[0] = 10.0
    model.save(path)
    return path


def test_champion_loads_as_pyfunc_and_predicts_boxes(monkeypatch, tmp_path):
    settings = use_home(monkeypatch, tmp_path / "home", **TINY)
    data = make_dataset(settings.home / "demo", train=4, val=2, size=64)
    result = CliRunner().invoke(app, ["init", "--weights", str(detecting_weights(tmp_path / "champion.pt"))])
    assert result.exit_code == 0, result.output

    mlflow.set_tracking_uri(settings.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@champion")
    images = sorted((data.data_yaml.parent / "images" / "val").glob("*.png"))
    boxes = model.predict(pd.DataFrame({"image": [str(p) for p in images]}))

    assert list(boxes.columns) == ["image", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2"]
    assert sorted(set(boxes["image"])) == [0, 1]  # boxes on each image, rows numbered by input row
    for index, image in enumerate(images):  # exactly the boxes the champion's own weights detect there
        champion = YOLO(str(settings.champion_weights))
        direct = champion.predict(str(image), imgsz=settings.imgsz, conf=0.25, verbose=False)[0]
        rows = boxes[boxes["image"] == index]
        assert len(rows) == len(direct.boxes) > 0
        assert rows["class_id"].tolist() == direct.boxes.cls.int().tolist()
        assert set(rows["class_name"]) == {direct.names[0]}
        assert rows[["x1", "y1", "x2", "y2"]].to_numpy() == pytest.approx(direct.boxes.xyxy.numpy(), abs=1e-3)
        assert rows["confidence"].to_numpy() == pytest.approx(direct.boxes.conf.numpy(), abs=1e-4)
