"""Prefect tasks: thin wrappers that give each retraining step a name and retries; the logic is in yolo_retrain."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from yolo_retrain.config import get_settings
from yolo_retrain.errors import RetrainError


def _worth_retrying(task, task_run, state) -> bool:
    """Transient faults (a busy database, a restarting server) are retried; a refused input or setup never is."""
    return not isinstance(state.result(raise_on_failure=False), RetrainError)


def retrain_task(name: str, retries: int | None = None):
    """``@task`` with exponential-backoff retries from settings; no result caching (inputs hold live clients)."""
    settings = get_settings()
    return task(
        name=name,
        retries=settings.task_retries if retries is None else retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=settings.retry_delay_seconds),
        retry_jitter_factor=0.2,
        retry_condition_fn=_worth_retrying,
        cache_policy=NO_CACHE,
    )
