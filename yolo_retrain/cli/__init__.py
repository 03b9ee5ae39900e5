"""The ``yolo-retrain`` command line: one module per lifecycle stage."""

import typer

from yolo_retrain.cli import corrections, demo, lifecycle

app = typer.Typer(help="Turn reviewers' YOLO box corrections into a better model, recorded in MLflow.", no_args_is_help=True)
app.add_typer(corrections.app, name="corrections")
for command in (lifecycle.init, lifecycle.run, lifecycle.status, lifecycle.rollback, demo.demo):
    app.command()(command)
