"""Per-epoch training metrics into *our* MLflow run, named by id.

Replaces Ultralytics' own MLflow callback (switched off in its settings), which calls ``set_experiment``,
starts or reuses the thread-local active run and ends it after training. Here the run id is explicit, so it
also works from Prefect's worker threads and from DDP subprocesses, which cannot see the parent's run.
"""

from __future__ import annotations

from mlflow import MlflowClient

from yolo_retrain.tracking import log_metrics


def _clean(metrics: dict) -> dict[str, float]:
    # Ultralytics names metrics like "metrics/mAP50(B)"; MLflow accepts the name without parentheses.
    return {k.replace("(", "").replace(")", ""): float(v) for k, v in metrics.items()}


def callbacks(client: MlflowClient, run_id: str) -> dict:
    """Callbacks for ``YOLO.add_callback`` that log to ``run_id``, one step per epoch."""

    def on_train_epoch_end(trainer) -> None:
        log_metrics(
            client,
            run_id,
            {**_clean(trainer.lr), **_clean(trainer.label_loss_items(trainer.tloss, prefix="train"))},
            step=trainer.epoch,
        )

    def on_fit_epoch_end(trainer) -> None:
        val_metrics = {k: v for k, v in trainer.metrics.items() if not k.startswith("train/")}
        log_metrics(client, run_id, _clean(val_metrics), step=trainer.epoch)

    return {"on_train_epoch_end": on_train_epoch_end, "on_fit_epoch_end": on_fit_epoch_end}
