"""The ``yolo-retrain`` command line: one module per lifecycle stage.

Nothing here imports Prefect, Ultralytics or MLflow at import time: the callback below sets their environment
first (they read it when imported), then a command imports what it needs.
"""

import typer

from yolo_retrain.cli import approval, checks, corrections, demo, labelstudio, lifecycle, select, services
from yolo_retrain.config import configure_environment, get_settings

app = typer.Typer(help="Turn reviewers' YOLO box corrections into a better model, recorded in MLflow.", no_args_is_help=True)


@app.callback()
def _environment() -> None:
    configure_environment(get_settings())


app.add_typer(corrections.app, name="corrections")
for command in (lifecycle.init, lifecycle.run, lifecycle.status, lifecycle.rollback, approval.candidate, approval.approve, approval.refuse, approval.notify, demo.demo, services.serve, services.intake, checks.doctor, checks.verify, checks.housekeeping, labelstudio.labelstudio, select.select):
    app.command()(command)
