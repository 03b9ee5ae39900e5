"""Alembic's entry point: migrations run on the connection the store passes in (no alembic.ini, no URL here)."""

from alembic import context

from yolo_retrain.migrations import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the correction store's migrations through yolo_retrain.migrations.upgrade(engine)")
context.configure(connection=connection, version_table=VERSION_TABLE, transaction_per_migration=False)
with context.begin_transaction():  # inside the caller's transaction: all revisions commit (or roll back) together
    context.run_migrations()
