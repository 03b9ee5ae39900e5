"""The current champion's boxes for an image: what reviewers see as pre-annotations and what their fix is diffed against.

The champion is looked up in the registry on every call (one alias read), so a promotion changes the
predictions at once; its weights are loaded once per version, after their sha256 matched the registry.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from yolo_retrain import registry, tracking
from yolo_retrain.config import Settings
from yolo_retrain.errors import RetrainError
from yolo_retrain.labels import decode_image
from yolo_retrain.labelstudio.convert import ScoredBox

log = logging.getLogger(__name__)


class NoChampion(RetrainError):
    """The registry has no champion yet: nothing to pre-annotate with."""


@dataclass(frozen=True)
class Prediction:
    """The champion's boxes for one image, classes indexed by the class contract."""

    model_version: str
    boxes: list[ScoredBox]
    width: int
    height: int


class ChampionPredictor:
    """Predicts with whatever version holds the ``champion`` alias now."""

    def __init__(self, settings: Settings, class_names: Sequence[str]) -> None:
        self.settings = settings
        self.class_names = list(class_names)
        self._lock = threading.Lock()  # Ultralytics models are not safe to share between threads
        self._loaded: tuple[str, Any] | None = None  # (version, YOLO model)

    def version(self) -> str:
        """The registry version of the current champion; NoChampion if there is none."""
        with self._lock:  # one MLflow client setup at a time (a first one creates MLflow's tables with Alembic)
            client = tracking.client_for(self.settings)
            found = registry.version_by_alias(client, self.settings.model_name, "champion")
        if found is None:
            raise NoChampion(f"model {self.settings.model_name!r} has no champion yet (run `yolo-retrain init`)")
        return str(found.version)

    def warm_up(self) -> None:
        """Load the champion now, so the first request (a webhook Label Studio waits on) is not the slow one."""
        try:
            with self._lock:
                self._model()
        except Exception as exc:  # no champion yet, MLflow down: the first request says why
            log.warning("could not load the champion ahead of requests: %s", exc)

    def predict(self, image: bytes, source: str = "image") -> Prediction:
        """The champion's boxes on ``image`` (bytes from elsewhere: checked before they are decoded, naming
        ``source`` if refused)."""
        picture = decode_image(image, source)
        with self._lock:
            version, model = self._model()
            size = {"imgsz": self.settings.imgsz} if self.settings.imgsz else {}  # else the size the model was trained at
            result = model.predict(picture, **size, conf=self.settings.label_studio_min_score, device=self.settings.device, verbose=False)[0]
        boxes = []
        for cls, conf, xywhn in zip(result.boxes.cls.tolist(), result.boxes.conf.tolist(), result.boxes.xywhn.tolist()):
            name = result.names[int(cls)]
            if name in self.class_names:  # a class outside the contract has no label to show
                boxes.append(ScoredBox((self.class_names.index(name), *map(float, xywhn)), float(conf)))
        return Prediction(version, boxes, picture.width, picture.height)

    def _model(self) -> tuple[str, Any]:
        """The champion's model, reloaded when the alias moved to another version."""
        from ultralytics import YOLO

        client = tracking.client_for(self.settings)
        found = registry.version_by_alias(client, self.settings.model_name, "champion")
        if found is None:
            raise NoChampion(f"model {self.settings.model_name!r} has no champion yet (run `yolo-retrain init`)")
        if self._loaded is None or self._loaded[0] != str(found.version):
            weights = registry.verified_weights(self.settings, client, found)
            self._loaded = (str(found.version), YOLO(str(weights)))
        return self._loaded
