"""The parts of a Label Studio labelling config (XML) the backend needs: which tag holds the boxes, on which image."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from yolo_retrain.errors import InvalidInput


@dataclass(frozen=True)
class BoxTag:
    """A ``<RectangleLabels>`` tag: its name (``from_name``), its image (``to_name``), the task data key, the labels."""

    from_name: str
    to_name: str
    image_key: str  # the task's data field holding the image URL (``$image`` -> ``image``)
    labels: tuple[str, ...]

    def unknown_labels(self, class_names: Sequence[str]) -> list[str]:
        """Labels of the project that are not classes of the model (annotations using them are refused)."""
        return [label for label in self.labels if label not in class_names]


def box_tag(label_config: str, where: str = "label config") -> BoxTag:
    """The first ``<RectangleLabels>`` tag bound to an ``<Image>``; InvalidInput if the config has none."""
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError as exc:
        raise InvalidInput(f"{where}: not valid XML ({exc})") from exc
    images = {el.get("name"): el.get("value", "") for el in root.iter() if el.tag == "Image"}
    for el in root.iter():
        if el.tag != "RectangleLabels":
            continue
        name, to_name = el.get("name"), el.get("toName")
        if name and to_name in images:
            labels = tuple(label.get("value") or "" for label in el if label.tag == "Label")
            return BoxTag(name, to_name, images[to_name].lstrip("$"), labels)
    raise InvalidInput(f"{where}: no <RectangleLabels> tag bound to an <Image> tag (toName)")
