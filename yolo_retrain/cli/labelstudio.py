"""``yolo-retrain labelstudio``: the Label Studio ML backend (pre-annotations from the champion, corrections in)."""

from __future__ import annotations

from yolo_retrain.cli.common import exit_on_error
from yolo_retrain.config import get_settings, setup_logging


def labelstudio() -> None:
    """Start the Label Studio ML backend: enter its URL in Label Studio (Model) and its /webhook as a project webhook."""
    from yolo_retrain.labelstudio.backend import serve_backend

    setup_logging()
    with exit_on_error():
        serve_backend(get_settings())
