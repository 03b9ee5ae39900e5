"""Ultralytics callbacks that move a console bar: epochs (with loss and mAP) while training, batches while validating."""

from __future__ import annotations

from yolo_retrain.console import Bar


def training(bar: Bar) -> dict:
    """Epochs done (fractional within an epoch), the last epoch's training loss and holdout mAP50-95."""
    state = {"batches": 0, "info": ""}

    def on_train_epoch_start(trainer) -> None:
        state["batches"] = 0
        bar.update(completed=trainer.epoch, total=trainer.epochs)

    def on_train_batch_end(trainer) -> None:
        state["batches"] += 1
        batches = max(1, len(trainer.train_loader))
        bar.update(completed=trainer.epoch + min(1.0, state["batches"] / batches))

    def on_fit_epoch_end(trainer) -> None:
        if trainer.epoch >= trainer.epochs:  # Ultralytics' final validation of best.pt, after the last epoch
            return
        loss = sum(trainer.label_loss_items(trainer.tloss).values()) if trainer.tloss is not None else float("nan")
        mean_ap = trainer.metrics.get("metrics/mAP50-95(B)")
        state["info"] = f"epoch {trainer.epoch + 1}/{trainer.epochs}  loss {loss:.3f}" + (
            f"  mAP50-95 {mean_ap:.3f}" if mean_ap is not None else ""
        )
        bar.update(completed=trainer.epoch + 1, info=state["info"])

    return {
        "on_train_epoch_start": on_train_epoch_start,
        "on_train_batch_end": on_train_batch_end,
        "on_fit_epoch_end": on_fit_epoch_end,
    }


def validation(bar: Bar) -> dict:
    """Holdout batches validated."""
    state = {"done": 0}

    def on_val_batch_end(validator) -> None:
        state["done"] += 1
        bar.update(completed=state["done"], total=len(validator.dataloader))

    return {"on_val_batch_end": on_val_batch_end}
