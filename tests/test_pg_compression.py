"""On PostgreSQL the columns that hold mail compress with lz4 (migration 0015), not pglz."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, create_engine, text

from postdesk.daemon.store.db import alembic_config, make_engine, upgrade_schema
from tests.support import Daemon, make_mail, write_config

pytestmark = pytest.mark.postgres
# Some 20 kB of text that compresses well, as mail does: stored compressed, not as it is.
BODY = "".join(f"Line {n} of the printer's error log: paper jam in tray 2.\n" for n in range(300))


def _methods(connection: Connection, table: str, column: str) -> set[str | None]:
    """The compression method of each value of ``table.column`` (None: stored as it is)."""
    query = text(f"SELECT DISTINCT pg_column_compression({column}) FROM {table}")
    return set(connection.execute(query).scalars())


def _declared(connection: Connection, table: str, column: str) -> str:
    """The method the column declares: 'l' for lz4, '' for the server's default."""
    query = text(
        "SELECT attcompression FROM pg_attribute"
        " WHERE attrelid = CAST(:table AS regclass) AND attname = :column"
    )
    return str(connection.execute(query, {"table": table, "column": column}).scalar_one())


def test_a_stored_mail_and_its_text_are_compressed_with_lz4(
    tmp_path: Path, postgres_url: str
) -> None:
    daemon = Daemon(write_config(tmp_path, postgres_url), tmp_path)
    try:
        mail = tmp_path / "long.eml"
        mail.write_bytes(make_mail(subject="Error log", body=BODY))
        assert "1 stored (1 new tickets)" in daemon.cli("ingest", str(mail)).stdout
    finally:
        daemon.stop()
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        assert _methods(connection, "messages WHERE direction = 'in'", "raw") == {"lz4"}
        assert _methods(connection, "messages WHERE direction = 'in'", "text") == {"lz4"}
    engine.dispose()


def test_a_downgrade_gives_the_columns_back_to_the_default_method(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    upgrade_schema(engine)
    with engine.begin() as connection:
        assert _declared(connection, "messages", "raw") == "l"
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.downgrade(config, "0014_outbox_raw_once")
        assert _declared(connection, "messages", "raw") == ""
        assert _declared(connection, "webhook_deliveries", "body") == ""
    upgrade_schema(engine)
    with engine.connect() as connection:
        assert _declared(connection, "webhook_deliveries", "body") == "l"
    engine.dispose()
