"""The ``yolo-retrain`` command line: one module per lifecycle stage."""

import typer

from yolo_retrain.cli import checks, corrections, demo, labelstudio, lifecycle, services

app = typer.Typer(help="Turn reviewers' YOLO box corrections into a better model, recorded in MLflow.", no_args_is_help=True)
app.add_typer(corrections.app, name="corrections")
for command in (lifecycle.init, lifecycle.run, lifecycle.status, lifecycle.rollback, demo.demo, services.serve, services.intake, checks.doctor, checks.verify, labelstudio.labelstudio):
    app.command()(command)
