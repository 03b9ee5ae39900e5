"""Long-running services on one machine: ``serve`` (everything) and ``intake`` (the HTTP intake alone)."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Annotated

import typer

from yolo_retrain import processes
from yolo_retrain.cli.common import exit_on_error
from yolo_retrain.config import get_settings, setup_logging
from yolo_retrain.demo import mlflow_ui_command


def intake() -> None:
    """Start the correction intake service (FastAPI) on the configured host and port."""
    from yolo_retrain.api import serve_api

    setup_logging()
    with exit_on_error():
        serve_api(get_settings())


def serve(
    prefect_port: Annotated[int, typer.Option(help="Port of the Prefect server (and UI) started on loopback.")] = 4200,
) -> None:
    """Start on loopback: the Prefect server, the deployments of prefect.yaml (served, no worker) and the intake."""
    from yolo_retrain.api import check_bind

    settings = get_settings()
    with exit_on_error():
        check_bind(settings)
    api_url = f"http://127.0.0.1:{prefect_port}/api"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the children on `kill` too, not only Ctrl-C
    with processes.ProcessGroup({**os.environ, "PREFECT_API_URL": api_url}) as group:
        group.start("prefect-server", processes.prefect_server(prefect_port))
        processes.wait_healthy(f"{api_url}/health", timeout=90)
        group.start("deployments", processes.served_deployments())
        group.start("intake", processes.intake())
        typer.echo(
            f"\nPrefect UI:  http://127.0.0.1:{prefect_port}  (deployment {settings.deployment})\n"
            f"Intake API:  http://{settings.api_host}:{settings.api_port}/docs\n"
            f"{mlflow_ui_command(settings)}\n"
            f"For the CLI in other shells: export PREFECT_API_URL={api_url}\nCtrl-C stops everything.\n"
        )
        try:
            while group.alive():
                time.sleep(1)
        except KeyboardInterrupt:
            return
    raise typer.Exit(code=1)  # a child died
