"""Per-epoch training metrics into *our* MLflow run, named by id.

Replaces Ultralytics' own MLflow callback (switched off in its settings), which calls ``set_experiment``,
starts or reuses the thread-local active run and ends it after training. Here the run id is explicit, so it
also works from Prefect's worker threads and from DDP subprocesses, which cannot see the parent's run.

A tracking server outage never stops training. Each epoch's metrics are queued and sent in order; a send
rides out a short outage in MLflow's own HTTP retries (about 4 minutes). If it still fails, the batch stays
queued with its original timestamp, a warning is logged, and training goes on; later epochs first check
quickly whether the server answers again (so a long outage does not stall every epoch for minutes) and then
send the backlog. Training's end makes one last full attempt; whatever is still unsent is named in a
warning, and is in ``results.csv``, which the retrain logs as an artifact.
"""

from __future__ import annotations

import logging
import os
import time

from mlflow import MlflowClient

from yolo_retrain import tracking

log = logging.getLogger(__name__)


def _main_process() -> bool:
    """In DDP every rank runs the epoch callbacks; only rank 0 (or a single process, -1) logs."""
    return int(os.environ.get("RANK", -1)) in (-1, 0)


def _clean(metrics: dict) -> dict[str, float]:
    # Ultralytics names metrics like "metrics/mAP50(B)"; MLflow accepts the name without parentheses.
    return {k.replace("(", "").replace(")", ""): float(v) for k, v in metrics.items()}


class MetricQueue:
    """Metric batches for one run, sent in order; unsent ones wait (with their timestamps) for the server."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self._client: MlflowClient | None = None
        self.pending: list[tuple[dict[str, float], int, int]] = []  # (metrics, step, timestamp_ms)
        self.failed = False  # the last send failed: check the server answers before trying again

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def __getstate__(self) -> dict:
        # Only the URI and run id travel to a DDP worker (callbacks are cloudpickled into it); it opens its own client.
        return {**self.__dict__, "_client": None}

    def put(self, metrics: dict[str, float], step: int) -> None:
        self.pending.append((metrics, step, int(time.time() * 1000)))
        self.flush(final=False)

    def flush(self, final: bool) -> bool:
        """Send the backlog in order; True when nothing is left. Never raises."""
        uri = self.tracking_uri
        if self.failed and not final and tracking.is_http_uri(uri) and tracking.server_problem(uri) is not None:
            return False  # still down: keep training, try again next epoch
        while self.pending:
            metrics, step, when = self.pending[0]
            try:
                tracking.log_metrics(self.client, self.run_id, metrics, step=step, timestamp_ms=when)
            except Exception as exc:  # noqa: BLE001 — any failure to log must not stop training
                self.failed = True
                log.warning(
                    "could not log epoch %d metrics to MLflow run %s (%s); %d batch(es) queued%s",
                    step,
                    self.run_id,
                    exc,
                    len(self.pending),
                    " and not sent: they are in results.csv" if final else ", training goes on",
                )
                return False
            self.pending.pop(0)
        self.failed = False
        return True


def callbacks(tracking_uri: str, run_id: str) -> dict:
    """Callbacks for ``YOLO.add_callback`` that log to ``run_id``, one step per epoch.

    They hold only the URI and the run id, so they survive being pickled into another process (Ultralytics
    DDP runs training in subprocesses that cannot see this process's MLflow state).
    """
    queue = MetricQueue(tracking_uri, run_id)

    def on_train_epoch_end(trainer) -> None:
        if not _main_process():
            return
        queue.put(
            {**_clean(trainer.lr), **_clean(trainer.label_loss_items(trainer.tloss, prefix="train"))}, trainer.epoch
        )

    def on_fit_epoch_end(trainer) -> None:
        if not _main_process():
            return
        val_metrics = {k: v for k, v in trainer.metrics.items() if not k.startswith("train/")}
        queue.put(_clean(val_metrics), trainer.epoch)

    def on_train_end(trainer) -> None:
        queue.flush(final=True)

    return {
        "on_train_epoch_end": on_train_epoch_end,
        "on_fit_epoch_end": on_fit_epoch_end,
        "on_train_end": on_train_end,
    }
