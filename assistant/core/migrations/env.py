"""Alembic environment: migrations run on the connection handed over by assistant.core.db.migrate,
or on LINLI_DATABASE_URL when run from the alembic command line."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from assistant.core.db import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is None:
    from assistant.core.settings import get_settings

    engine = create_engine(get_settings().resolved_database_url)
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
