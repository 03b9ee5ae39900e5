"""MLflow models-from-code definition: a pyfunc that wraps Ultralytics weights and predicts boxes.

MLflow executes this file when the model is loaded (``mlflow.pyfunc.load_model("models:/<name>@champion")``),
so it imports nothing from yolo_retrain: a serving host needs only the model's pip requirements.

Input: a DataFrame with an ``image`` column (paths or URIs Ultralytics can read), or a list of paths.
Output: one row per box: ``image`` (row index of the input), ``class_id``, ``class_name``, ``confidence``,
``x1 y1 x2 y2`` in pixels.
"""

from __future__ import annotations

import mlflow
import pandas as pd

COLUMNS = ["image", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2"]


class YoloDetector(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from ultralytics import YOLO

        self.model = YOLO(context.artifacts["weights"])
        self.config = dict(context.model_config or {})

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        sources = list(model_input["image"]) if isinstance(model_input, pd.DataFrame) else list(model_input)
        options = {"imgsz": self.config.get("imgsz", 640), "conf": self.config.get("conf", 0.25), **(params or {})}
        rows = []
        for index, source in enumerate(sources):
            result = self.model.predict(str(source), verbose=False, **options)[0]
            for cls, conf, xyxy in zip(result.boxes.cls.tolist(), result.boxes.conf.tolist(), result.boxes.xyxy.tolist()):
                rows.append([index, int(cls), result.names[int(cls)], float(conf), *xyxy])
        return pd.DataFrame(rows, columns=COLUMNS)


mlflow.models.set_model(YoloDetector())
