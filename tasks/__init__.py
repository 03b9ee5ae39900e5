"""Prefect tasks: thin wrappers that give each retraining step a name and retries; the logic is in yolo_retrain."""

from __future__ import annotations

import hashlib

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from yolo_retrain.config import get_settings
from yolo_retrain.errors import RetrainError, TransientError


def _worth_retrying(task, task_run, state) -> bool:
    """Transient faults (a busy database, a restarting server) are retried; a refused input or setup never is."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, TransientError) or not isinstance(error, RetrainError)


def _once_per_flow_run(context, parameters) -> str:
    """Cache key: this flow run, this task, its plain parameters. A retried flow run reuses the result."""
    plain = sorted((k, v) for k, v in parameters.items() if isinstance(v, (str, int, float, bool)))
    digest = hashlib.sha256(repr(plain).encode()).hexdigest()[:16]
    return f"{context.task_run.flow_run_id}:{context.task.name}:{digest}"


def retrain_task(name: str, retries: int | None = None, resumable: bool = False):
    """``@task`` with exponential-backoff retries from settings.

    Args:
        name: The step's name in the Prefect UI.
        retries: Overrides ``settings.task_retries``.
        resumable: Keep the result for the flow run: a retried flow run does not redo this (expensive,
            side-effect-free) step. Other steps are not cached (their inputs hold live clients).
    """
    settings = get_settings()
    caching = {"cache_key_fn": _once_per_flow_run, "persist_result": True} if resumable else {"cache_policy": NO_CACHE}
    return task(
        name=name,
        retries=settings.task_retries if retries is None else retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=settings.retry_delay_seconds),
        retry_jitter_factor=0.2,
        retry_condition_fn=_worth_retrying,
        **caching,
    )
