"""yolo-retrain: turn reviewers' box corrections into a better YOLO model, recorded in MLflow.

Importing it changes nothing: the entry points (the CLI, the flow, the intake app, ``deployments/serve.py``) call
:func:`yolo_retrain.config.configure_environment` before Ultralytics or Prefect is used.
"""
