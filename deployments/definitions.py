"""Read the deployments from prefect.yaml, so serve() and `prefect deploy` share one definition."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron

PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"


def deployment_specs(path: Path = PREFECT_YAML) -> dict[str, dict[str, Any]]:
    """The deployments of prefect.yaml by name (YAML anchors and merge keys resolved)."""
    return {spec["name"]: spec for spec in yaml.safe_load(path.read_text())["deployments"]}


def _load_flow(entrypoint: str):
    """``flows/retrain.py:retrain`` → the flow object (imported as a module of this checkout)."""
    file, name = entrypoint.split(":")
    return getattr(importlib.import_module(file.removesuffix(".py").replace("/", ".")), name)


def to_runner_deployment(spec: dict[str, Any]) -> RunnerDeployment:
    """The prefect.yaml entry as a deployment for ``serve()``: same schedules, triggers and limit."""
    schedules = [
        Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True), parameters=s.get("parameters") or {})
        for s in spec.get("schedules") or []
    ]
    triggers = [DeploymentEventTrigger.model_validate(t) for t in spec.get("triggers") or []]
    return _load_flow(spec["entrypoint"]).to_deployment(
        name=spec["name"],
        description=spec.get("description"),
        tags=spec.get("tags"),
        parameters=spec.get("parameters") or {},
        schedules=schedules,
        triggers=triggers,
        concurrency_limit=spec.get("concurrency_limit"),
    )
