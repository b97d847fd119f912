"""Alembic environment, configured in code (no alembic.ini).

``Store.migrate()`` passes its open connection in ``config.attributes["connection"]`` so the
SQLite connection hooks (WAL, busy timeout, BEGIN IMMEDIATE) and the PostgreSQL migration lock
apply. For ad-hoc use without a store, set ``sqlalchemy.url`` on the Config.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection

import connectors.automation_store  # noqa: F401  (registers the automation tables on metadata)
import connectors.classifier_store  # noqa: F401  (registers its table on the metadata)
import connectors.escalation_store  # noqa: F401  (registers the escalation tables)
from connectors.store import engine_url, metadata

config = context.config
target_metadata = metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url to generate SQL offline")
    context.configure(url=engine_url(url), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("pass a connection in config.attributes or set sqlalchemy.url")
    engine = sa.create_engine(engine_url(url))
    try:
        with engine.begin() as conn:
            _configure(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
