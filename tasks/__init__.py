"""Prefect tasks: thin wrappers that give each retraining step a name and retries; the logic is in yolo_retrain."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from yolo_retrain.config import get_settings
from yolo_retrain.errors import RetrainError, TransientError
from yolo_retrain.inputs_digest import inputs_digest


def _worth_retrying(task, task_run, state) -> bool:
    """Transient faults (a busy database, a restarting server) are retried; a refused input or setup never is."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, TransientError) or not isinstance(error, RetrainError)


def _once_per_flow_run(context, parameters) -> str:
    """Cache key: this flow run, this task, and every input by what it is (dataset digest, weights bytes,
    settings, run). A retried flow run reuses the result only if nothing it depends on changed meanwhile."""
    return f"{context.task_run.flow_run_id}:{context.task.name}:{inputs_digest(parameters)[:32]}"


def retrain_task(name: str, retries: int | None = None, resumable: bool = False) -> Callable[[Callable], Any]:
    """``@task`` with exponential-backoff retries from settings, read when the task runs (not at import).

    Args:
        name: The step's name in the Prefect UI.
        retries: Overrides ``settings.task_retries``.
        resumable: Keep the result for the flow run: a retried flow run does not redo this (expensive,
            side-effect-free) step with the same inputs (``inputs_digest``). Other steps are not cached.
    """

    def decorate(fn: Callable) -> _SettingsTask:
        return _SettingsTask(fn, name, retries, resumable)

    return decorate


class _SettingsTask:
    """A Prefect task built on first use from the settings of that moment (and again if they change), so that
    importing tasks/ reads no settings. Calls and attributes (``.fn``, ``.submit``) go to that task."""

    def __init__(self, fn: Callable, name: str, retries: int | None, resumable: bool) -> None:
        functools.update_wrapper(self, fn)
        self._fn, self._name, self._retries, self._resumable = fn, name, retries, resumable
        self._built: tuple[tuple, Task] | None = None

    def task(self) -> Task:
        settings = get_settings()
        retries = settings.task_retries if self._retries is None else self._retries
        key = (retries, settings.retry_delay_seconds)
        if self._built is None or self._built[0] != key:
            caching = (
                {"cache_key_fn": _once_per_flow_run, "persist_result": True} if self._resumable else {"cache_policy": NO_CACHE}
            )
            built = task(
                name=self._name,
                retries=retries,
                retry_delay_seconds=exponential_backoff(backoff_factor=settings.retry_delay_seconds),
                retry_jitter_factor=0.2,
                retry_condition_fn=_worth_retrying,
                **caching,
            )(self._fn)
            self._built = (key, built)
        return self._built[1]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self.task()(*args, **kwargs)
        if self._resumable and _files_gone(result):  # reused, but housekeeping retired its files since: redo it
            result = self.task().with_options(refresh_cache=True)(*args, **kwargs)
        return result

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.task(), attribute)


def _files_gone(result: Any) -> bool:
    weights = getattr(result, "best_weights", None)  # a training's output
    return isinstance(weights, Path) and not weights.exists()
