"""Alembic environment: runs on the connection `geogate.store` hands over.

`geogate.store.open_store` configures alembic in code (no alembic.ini) and passes an open
connection whose transaction already holds the database's write lock, so processes that start
at the same time migrate one after the other. New revisions go in `versions/`, numbered
`0002_...`, written like `0001_initial.py`; a test checks them against `models.py`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from geogate.store.models import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("GeoGate migrations run through geogate.store.open_store, not the CLI")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
