"""Alembic environment for the Aris store.

Migrations run programmatically from :meth:`aris.store.Store.open`, on the connection it passes in
``config.attributes["connection"]`` (inside the caller's transaction, so concurrent openers serialize).
Running ``alembic`` by hand also works with ``-x url=...``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import aris.pacs.state  # noqa: F401  (its tables, migration 0002_pacs, join Base.metadata)
from aris.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("pass the store URL: alembic -x url=sqlite:///PATH upgrade head")
    engine = create_engine(url)
    with engine.begin() as conn:
        context.configure(
            connection=conn, target_metadata=target_metadata, render_as_batch=conn.dialect.name == "sqlite"
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("the Aris store migrates online only (Store.open or alembic -x url=...)")
run_migrations_online()
