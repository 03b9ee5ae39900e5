"""yolo-retrain: turn reviewers' box corrections into a better YOLO model, recorded in MLflow."""

from yolo_retrain.config import configure_environment

# Ultralytics and Prefect read their config dirs at import time: set them before anything imports them.
configure_environment()
